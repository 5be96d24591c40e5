/* Twilio webhooks: X-Twilio-Signature (sign and validate) and the TwiML voxbridge
 * answers with. Used by the api workers (/twilio/voice, /twilio/status) and by
 * voxbridge-callsim, which signs the webhooks it sends. */
#ifndef VB_API_TWILIO_H
#define VB_API_TWILIO_H

#include <stddef.h>

#include "api/form.h"

/* Length of a signature: base64 of a 20-byte HMAC-SHA1. */
#define VB_TWILIO_SIG_LEN 28

/* Base64(HMAC-SHA1(TOKEN, URL + for each name in sorted order, each of its values sorted
 * with duplicates removed: name + value)) into OUT, NUL-terminated. PARAMS may be NULL.
 * Returns 0, or -ENOMEM. */
int vb_twilio_sign(const char *token, const char *url, const vb_form_t *params, char out[64]);

/* 1 when SIGNATURE_HEADER is the signature of the request, 0 otherwise (missing or empty
 * header, empty token, any mismatch). URL is the full public URL Twilio requested,
 * query string included. A form body is passed parsed as PARAMS (BODY is then ignored).
 * A JSON body is passed with PARAMS == NULL: the URL must then carry
 * bodySHA256=<hex sha256(BODY)>, which is checked, and the URL alone is signed; a
 * non-empty body without bodySHA256 is refused. A URL with the default port of its scheme
 * (:443 for https, :80 for http) is also tried without it, and one without a port also
 * with it; other ports must match as given. Compares in constant time. -ENOMEM when
 * the signature could not be computed (OpenSSL out of memory): neither valid nor
 * invalid, the request should be retried. */
int vb_twilio_validate(const char *token, const char *url, const vb_form_t *params,
                       const char *body, size_t body_len, const char *signature_header);

/* Lowercase hex SHA-256 of BODY into OUT (65 bytes with the NUL). */
void vb_twilio_body_sha256(const char *body, size_t len, char out[65]);

/* TwiML, every value XML-escaped, NUL-terminated in OUT. Each returns the length, or 0
 * when it does not fit in CAP.
 * <?xml version="1.0" encoding="UTF-8"?><Response><Connect><Stream url="URL">
 * <Parameter name="call_id" value="CALL_ID"/></Stream></Connect></Response> (one line) */
size_t vb_twiml_connect_stream(char *out, size_t cap, const char *stream_url,
                               const char *call_id);
/* The same with N parameters <Parameter name="NAMES[i]" value="VALUES[i]"/> in order
 * (a NULL value is written as ""); with none, <Stream url="URL"/>. vb_twiml_connect_stream
 * is this with call_id alone. */
size_t vb_twiml_connect_stream_params(char *out, size_t cap, const char *stream_url,
                                      const char *const *names, const char *const *values,
                                      size_t n);
/* <?xml ...?><Response><Say>TEXT</Say><Hangup/></Response> */
size_t vb_twiml_say_hangup(char *out, size_t cap, const char *text);

#endif
