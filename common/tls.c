/* OpenSSL contexts: see tls.h. Used by the api and media workers (server) and
 * by the broker and callsim (client). */
#include "common/tls.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "common/log.h"

static void ssl_error(char *err, size_t errlen, const char *what, const char *file)
{
    unsigned long e = ERR_get_error();
    char buf[256];
    ERR_error_string_n(e, buf, sizeof(buf));
    ERR_clear_error();
    if (err != NULL && errlen > 0) {
        size_t l;
        snprintf(err, errlen, "%s %s", what, file ? file : "");
        l = strlen(err);
        snprintf(err + l, errlen - l, ": %s", e ? buf : "unknown error");
    }
}

SSL_CTX *vb_tls_server_ctx(const char *cert_file, const char *key_file, char *err,
                           size_t errlen)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL) {
        ssl_error(err, errlen, "SSL_CTX_new", NULL);
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
                                 SSL_OP_CIPHER_SERVER_PREFERENCE);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    if (SSL_CTX_use_certificate_chain_file(ctx, cert_file) != 1) {
        ssl_error(err, errlen, "cannot load certificate", cert_file);
        SSL_CTX_free(ctx);
        return NULL;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, key_file, SSL_FILETYPE_PEM) != 1) {
        ssl_error(err, errlen, "cannot load private key", key_file);
        SSL_CTX_free(ctx);
        return NULL;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        ssl_error(err, errlen, "private key does not match certificate", key_file);
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

SSL_CTX *vb_tls_client_ctx(int verify, const char *ca_file)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (ctx == NULL) {
        vb_log(VB_LOG_ERR, "tls: SSL_CTX_new failed");
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    if (!verify) {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
        return ctx;
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    int ok = ca_file ? SSL_CTX_load_verify_locations(ctx, ca_file, NULL)
                     : SSL_CTX_set_default_verify_paths(ctx);
    if (ok != 1) {
        char buf[256];
        ssl_error(buf, sizeof(buf), "cannot load CA file", ca_file ? ca_file : "(system)");
        vb_log(VB_LOG_ERR, "tls: %s", buf);
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

int vb_tls_client_prepare(SSL *ssl, const char *host)
{
    /* SNI is for names, not literal addresses (RFC 6066 3). */
    int is_ip = strspn(host, "0123456789.") == strlen(host) || strchr(host, ':') != NULL;
    if (!is_ip && SSL_set_tlsext_host_name(ssl, host) != 1) {
        return -EINVAL;
    }
    if (SSL_get_verify_mode(ssl) & SSL_VERIFY_PEER) {
        X509_VERIFY_PARAM *vp = SSL_get0_param(ssl);
        X509_VERIFY_PARAM_set_hostflags(vp, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        int ok = is_ip ? X509_VERIFY_PARAM_set1_ip_asc(vp, host) : SSL_set1_host(ssl, host);
        if (ok != 1) {
            return -EINVAL;
        }
    }
    return 0;
}

void vb_tls_ctx_free(SSL_CTX *ctx)
{
    SSL_CTX_free(ctx);
}
