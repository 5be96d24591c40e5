/* The token that ties a Media Streams connection to the webhook that created
 * the call: the api worker puts it in the TwiML <Parameter>s, Twilio hands it
 * back in the stream's `start`, the media worker checks it. Used by api and
 * worker. */
#ifndef VB_COMMON_CALLTOKEN_H
#define VB_COMMON_CALLTOKEN_H

#include <stddef.h>

#define VB_CALL_TOKEN_LEN 32

/* HMAC-SHA256(key, call_id "\n" assistant "\n" from "\n" to), first 16 bytes in hex.
 * 0, or -ENOMEM (OUT is then empty) when OpenSSL could not compute it. */
int vb_call_token(const char *key, const char *call_id, const char *assistant, const char *from,
                  const char *to, char out[VB_CALL_TOKEN_LEN + 1]);
/* 1 when TOKEN matches (constant time), 0 when it does not, -ENOMEM when the
 * HMAC could not be computed (not the caller's fault: answer 1011, not 1008). */
int vb_call_token_ok(const char *key, const char *call_id, const char *assistant,
                     const char *from, const char *to, const char *token);
/* What the token says about the assistant: its name, database id and revision
 * ("name\nid\nrevision"), so none of them can be changed on the stream. */
void vb_call_assistant_ref(const char *name, const char *id, long long revision, char *out,
                           size_t cap);
/* A random UUIDv4 string for a new call. */
void vb_call_id_new(char out[37]);
/* 1 when S is non-empty and only letters, digits, '-', '_', '+', '.' and at most MAX bytes. */
int vb_id_is_safe(const char *s, size_t max);

#endif
