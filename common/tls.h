/* OpenSSL contexts for the TLS listeners (terminated in the api and media
 * workers) and for outbound wss:// / https:// connections (broker, callsim). */
#ifndef VB_COMMON_TLS_H
#define VB_COMMON_TLS_H

#include <stddef.h>

#include <openssl/ssl.h>

/* TLS 1.2+ server context from PEM files (the cert file may hold the chain).
 * NULL on error with a message in ERR (ERRLEN bytes, may be NULL). */
SSL_CTX *vb_tls_server_ctx(const char *cert_file, const char *key_file, char *err,
                           size_t errlen);
/* TLS 1.2+ client context. VERIFY: check the peer's chain (and, per
 * connection, its host name: see vb_tls_client_prepare). CA_FILE: PEM bundle,
 * NULL for the system store. NULL on error (logged). */
SSL_CTX *vb_tls_client_ctx(int verify, const char *ca_file);
/* Set SNI and, when the context verifies, the expected host name on SSL. */
int vb_tls_client_prepare(SSL *ssl, const char *host);
/* Free a context made above (NULL is fine). */
void vb_tls_ctx_free(SSL_CTX *ctx);

#endif
