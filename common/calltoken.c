/* Call ids and the stream token: see calltoken.h. */
#include "common/calltoken.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <string.h>

int vb_call_token(const char *key, const char *call_id, const char *assistant, const char *from,
                  const char *to, char out[VB_CALL_TOKEN_LEN + 1])
{
    char msg[1024];
    int n = snprintf(msg, sizeof(msg), "%s\n%s\n%s\n%s", call_id, assistant, from, to);
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int maclen = 0;
    /* HMAC fails when OpenSSL cannot allocate: never hand out (or compare
     * with) whatever was on the stack */
    if (HMAC(EVP_sha256(), key, (int)strlen(key), (const unsigned char *)msg, (size_t)n, mac,
             &maclen) == NULL ||
        maclen < VB_CALL_TOKEN_LEN / 2) {
        memset(out, 0, VB_CALL_TOKEN_LEN + 1);
        return -ENOMEM;
    }
    for (int i = 0; i < VB_CALL_TOKEN_LEN / 2; i++) {
        snprintf(out + 2 * i, 3, "%02x", mac[i]);
    }
    out[VB_CALL_TOKEN_LEN] = '\0';
    return 0;
}

int vb_call_token_ok(const char *key, const char *call_id, const char *assistant,
                     const char *from, const char *to, const char *token)
{
    char want[VB_CALL_TOKEN_LEN + 1];
    if (vb_call_token(key, call_id, assistant, from, to, want) < 0) {
        return -ENOMEM;
    }
    return token != NULL && strlen(token) == VB_CALL_TOKEN_LEN &&
           CRYPTO_memcmp(want, token, VB_CALL_TOKEN_LEN) == 0;
}

void vb_call_assistant_ref(const char *name, const char *id, long long revision, char *out,
                           size_t cap)
{
    snprintf(out, cap, "%s\n%s\n%lld", name, id, revision);
}

void vb_call_id_new(char out[37])
{
    unsigned char b[16];
    if (RAND_bytes(b, sizeof(b)) != 1) {
        memset(b, 0, sizeof(b)); /* never reached with a seeded OpenSSL */
    }
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
    snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
             b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12],
             b[13], b[14], b[15]);
}

int vb_id_is_safe(const char *s, size_t max)
{
    size_t n = 0;
    for (; s[n] != '\0'; n++) {
        char c = s[n];
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                 c == '-' || c == '_' || c == '+' || c == '.';
        if (!ok || n >= max) {
            return 0;
        }
    }
    return n > 0;
}
