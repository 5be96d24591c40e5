/* Helpers for the HTTP and WebSocket tests: see net_testutil.h. */
#include "tests/unit/net_testutil.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

int nt_listen(int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof(sin);
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0 || listen(fd, 64) < 0 ||
        getsockname(fd, (struct sockaddr *)&sin, &sl) < 0) {
        close(fd);
        return -1;
    }
    *port = ntohs(sin.sin_port);
    return fd;
}

int nt_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET,
                              .sin_port = htons((uint16_t)port),
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (connect(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

int nt_accept(int lfd)
{
    return accept(lfd, NULL, NULL);
}

void nt_write(int fd, const void *s, size_t len)
{
    const char *p = s;
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return;
        }
        p += n;
        len -= (size_t)n;
    }
}

void nt_write_str(int fd, const char *s)
{
    nt_write(fd, s, strlen(s));
}

static long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
}

int nt_wait(struct event_base *base, int (*cond)(void *arg), void *arg, int timeout_ms)
{
    /* A short persistent tick makes each EVLOOP_ONCE return soon, so the
     * condition is checked often; the loop itself never sleeps blindly. */
    struct event *tick = event_new(base, -1, EV_PERSIST, tick_cb, NULL);
    struct timeval tv = {0, 2000};
    event_add(tick, &tv);
    long deadline = now_ms() + timeout_ms;
    int rc = -1;
    while (now_ms() < deadline) {
        if (cond(arg)) {
            rc = 0;
            break;
        }
        event_base_loop(base, EVLOOP_ONCE);
    }
    if (rc < 0 && cond(arg)) {
        rc = 0;
    }
    event_free(tick);
    return rc;
}

static int flag_cond(void *arg)
{
    return *(volatile int *)arg != 0;
}

int nt_wait_flag(struct event_base *base, volatile int *flag, int timeout_ms)
{
    return nt_wait(base, flag_cond, (void *)flag, timeout_ms);
}

void nt_reader_init(nt_reader_t *r, int fd)
{
    memset(r, 0, sizeof(*r));
    r->fd = fd;
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
}

static int reader_cond(void *arg)
{
    nt_reader_t *r = arg;
    while (!r->eof && r->len < sizeof(r->buf) - 1) {
        ssize_t n = recv(r->fd, r->buf + r->len, sizeof(r->buf) - 1 - r->len, 0);
        if (n > 0) {
            r->len += (size_t)n;
            r->buf[r->len] = '\0';
        } else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
            r->eof = 1;
        } else {
            break;
        }
    }
    if (r->needle != NULL) {
        return memmem(r->buf, r->len, r->needle, strlen(r->needle)) != NULL;
    }
    if (r->want > 0) {
        return r->len >= r->want;
    }
    return r->eof;
}

int nt_read_until(struct event_base *base, nt_reader_t *r, const char *needle, size_t want,
                  int timeout_ms)
{
    r->needle = needle;
    r->want = want;
    return nt_wait(base, reader_cond, r, timeout_ms);
}

int nt_count(const nt_reader_t *r, const char *needle)
{
    int n = 0;
    const char *p = r->buf, *end = r->buf + r->len;
    size_t nl = strlen(needle);
    while ((p = memmem(p, (size_t)(end - p), needle, nl)) != NULL) {
        n++;
        p += nl;
    }
    return n;
}

static int add_ext(X509 *x, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);
    X509_EXTENSION *ex = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    if (ex == NULL) {
        return -1;
    }
    X509_add_ext(x, ex, -1);
    X509_EXTENSION_free(ex);
    return 0;
}

int nt_make_cert(const char **cert_file, const char **key_file)
{
    static char dir[64], cert[96], key[96];
    snprintf(dir, sizeof(dir), "/tmp/vbnet.XXXXXX");
    if (mkdtemp(dir) == NULL) {
        return -1;
    }
    snprintf(cert, sizeof(cert), "%s/cert.pem", dir);
    snprintf(key, sizeof(key), "%s/key.pem", dir);
    EVP_PKEY *pk = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), -3600);
    X509_gmtime_adj(X509_getm_notAfter(x), 86400);
    X509_set_pubkey(x, pk);
    X509_NAME *name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"localhost", -1,
                               -1, 0);
    X509_set_issuer_name(x, name);
    add_ext(x, NID_subject_alt_name, "IP:127.0.0.1,DNS:localhost");
    add_ext(x, NID_basic_constraints, "critical,CA:TRUE");
    X509_sign(x, pk, EVP_sha256());
    FILE *f = fopen(cert, "w");
    PEM_write_X509(f, x);
    fclose(f);
    f = fopen(key, "w");
    PEM_write_PrivateKey(f, pk, NULL, NULL, 0, NULL, NULL);
    fclose(f);
    X509_free(x);
    EVP_PKEY_free(pk);
    *cert_file = cert;
    *key_file = key;
    return 0;
}

size_t nt_ws_frame(uint8_t *out, int fin, int opcode, int mask, const void *data, size_t len)
{
    size_t n = 0;
    const uint8_t m[4] = {0x12, 0x34, 0x56, 0x78};
    out[n++] = (uint8_t)((fin ? 0x80 : 0) | (opcode & 0x0f));
    uint8_t mbit = mask ? 0x80 : 0;
    if (len < 126) {
        out[n++] = (uint8_t)(mbit | len);
    } else if (len < 65536) {
        out[n++] = mbit | 126;
        out[n++] = (uint8_t)(len >> 8);
        out[n++] = (uint8_t)len;
    } else {
        out[n++] = mbit | 127;
        for (int i = 7; i >= 0; i--) {
            out[n++] = (uint8_t)((uint64_t)len >> (8 * i));
        }
    }
    if (mask) {
        memcpy(out + n, m, 4);
        n += 4;
    }
    for (size_t i = 0; i < len; i++) {
        out[n + i] = ((const uint8_t *)data)[i] ^ (mask ? m[i % 4] : 0);
    }
    return n + len;
}

int nt_ws_handshake(struct event_base *base, nt_reader_t *r, const char *path)
{
    char req[512];
    snprintf(req, sizeof(req),
             "GET %s HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
             "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
             path);
    nt_write_str(r->fd, req);
    if (nt_read_until(base, r, "\r\n\r\n", 0, 3000) < 0 ||
        strstr(r->buf, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=") == NULL) {
        return -1;
    }
    /* Keep only what came after the head. */
    char *end = strstr(r->buf, "\r\n\r\n") + 4;
    size_t rest = r->len - (size_t)(end - r->buf);
    memmove(r->buf, end, rest);
    r->len = rest;
    r->buf[rest] = '\0';
    return 0;
}
