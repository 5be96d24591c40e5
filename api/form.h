/* application/x-www-form-urlencoded bodies: parse (strict percent-decoding, '+' is a
 * space, a cap on the number of parameters, repeated names kept in order), build, and
 * encode. Used by the api workers for Twilio webhooks, by the broker for Twilio REST
 * requests and by voxbridge-callsim. */
#ifndef VB_API_FORM_H
#define VB_API_FORM_H

#include <stddef.h>

/* More parameters than this in one body: E2BIG. Twilio's webhooks send about 20-40. */
#define VB_FORM_MAX_PARAMS 256

typedef struct vb_form vb_form_t;

/* Parses BODY (LEN bytes, need not be NUL-terminated). Returns NULL with errno EINVAL for
 * a bad %-escape or an escaped NUL (%00), E2BIG past VB_FORM_MAX_PARAMS, ENOMEM.
 * Empty segments ("a=1&&b=2") are skipped; a segment without '=' has the value "". */
vb_form_t *vb_form_parse(const char *body, size_t len);
/* An empty set, to fill with vb_form_add. NULL + ENOMEM. */
vb_form_t *vb_form_new(void);
/* Appends NAME=VALUE (copied). 0, -E2BIG or -ENOMEM. */
int vb_form_add(vb_form_t *f, const char *name, const char *value);
void vb_form_free(vb_form_t *f);

/* The first value of NAME, or NULL. */
const char *vb_form_get(const vb_form_t *f, const char *name);
/* Iteration in body order: names and values of parameter I < vb_form_count(). */
size_t vb_form_count(const vb_form_t *f);
const char *vb_form_name(const vb_form_t *f, size_t i);
const char *vb_form_value(const vb_form_t *f, size_t i);

/* Percent-encodes the set as a body ("a=1&b=x%20y": spaces as %20, only ALPHA DIGIT
 * '-' '.' '_' '~' left as they are) into OUT (CAP bytes, NUL-terminated). Returns the
 * length, or 0 if it does not fit (or the set is empty). */
size_t vb_form_encode(const vb_form_t *f, char *out, size_t cap);

#endif
