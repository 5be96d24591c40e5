/* The api worker process: carrier webhooks (/twilio/voice, /twilio/status),
 * health and metrics. Receives connections from the master over its channel;
 * each is an HTTP/1.1 keep-alive connection handled by common/httpd. */
#include "api/api.h"
#include "api/db.h"
#include "api/peers.h"
#include "common/chan.h"
#include "common/httpd.h"
#include "common/log.h"
#include "common/role.h"
#include "common/stats.h"
#include "common/tls.h"

#include <errno.h>
#include <event2/event.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct {
    vb_child_ctx_t *ctx;
    struct event_base *base;
    SSL_CTX *tls;
    int conns;
    int quitting;
} api_t;

static api_t api;

typedef struct {
    const char *method;
    const char *path;
    void (*fn)(vb_http_conn_t *c, vb_http_req_t *req, const vb_child_ctx_t *ctx);
} route_t;

static const route_t routes[] = {
    {"POST", "/twilio/voice", vb_api_twilio_voice},
    {"POST", "/twilio/status", vb_api_twilio_status},
    {"GET", "/health", vb_api_health},
    {"GET", "/health/live", vb_api_health_live},
    {"GET", "/health/ready", vb_api_health_ready},
    {"GET", "/metrics", vb_api_metrics},
};

void vb_api_error(vb_http_conn_t *c, int status, const char *code, const char *message)
{
    char body[512];
    int n = snprintf(body, sizeof(body), "{\"error\":{\"code\":\"%s\",\"message\":\"%s\"}}\n",
                     code, message);
    vb_http_reply(c, status, "application/json", body, (size_t)n, NULL);
}

static void on_request(vb_http_conn_t *c, vb_http_req_t *req, void *arg)
{
    int path_known = 0;
    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
        if (strcmp(req->path, routes[i].path) != 0) {
            continue;
        }
        path_known = 1;
        if (strcmp(req->method, routes[i].method) == 0 ||
            (strcmp(req->method, "HEAD") == 0 && strcmp(routes[i].method, "GET") == 0)) {
            routes[i].fn(c, req, api.ctx);
            return;
        }
    }
    if (path_known) {
        vb_api_error(c, 405, "method_not_allowed", "method not allowed on this path");
    } else {
        vb_api_error(c, 404, "not_found", "no such path");
    }
}

static void maybe_exit(api_t *a)
{
    if (a->quitting && a->conns == 0) {
        event_base_loopexit(a->base, NULL);
    }
}

/* The master counts our connections: tell it one is gone. */
static void tell_closed(api_t *a)
{
    vb_chan_msg_t msg = {.type = VB_CHAN_CLOSED};
    vb_chan_send(a->ctx->chan, &msg, -1);
}

typedef struct {
    uint32_t peer; /* its place in the per-address count (api/peers.h) */
} conn_t;

static void on_conn_close(void *arg)
{
    conn_t *cn = arg;
    vb_peers_give(cn->peer);
    free(cn);
    tell_closed(&api);
    api.conns--;
    maybe_exit(&api);
}

static void refuse_peer(api_t *a, int fd)
{
    static vb_log_limit_t limit;
    VB_STAT_INC(api_rejected_per_ip);
    if (vb_log_limit(&limit, 1, 10, NULL)) {
        vb_log(VB_LOG_WARN, "api connection refused with 503: its address holds %d connections "
               "(api_max_connections_per_ip)", a->ctx->conf->api_max_connections_per_ip);
    }
    vb_http_busy_fd(fd, "too many connections from this address");
    tell_closed(a);
}

/* Address space a request may take (parsing, OpenSSL's HMAC, the reply). */
#define CONN_HEADROOM_BYTES (1u << 20)

/* Short of memory: 503 now (written without allocating) rather than a
 * connection dropped half-way or a wrong answer (a failed HMAC is no
 * "invalid signature"). The worker stays: memory may come back. */
static void refuse_nomem(api_t *a, int fd)
{
    static vb_log_limit_t limit;
    VB_STAT_INC(rejected_nomem);
    if (vb_log_limit(&limit, 1, 10, NULL)) {
        vb_log(VB_LOG_ERR, "api connection refused with 503: out of memory (cannot map %u KB)",
               CONN_HEADROOM_BYTES / 1024);
    }
    vb_http_busy_fd(fd, "the api worker is out of memory");
    tell_closed(a);
}

static void on_conn(api_t *a, int fd)
{
    const vb_conf_t *conf = a->ctx->conf;
    vb_http_limits_t lim = {.max_header_bytes = (size_t)conf->http_max_header_bytes,
                            .max_body_bytes = (size_t)conf->http_max_body_bytes,
                            .request_timeout_s = conf->http_request_timeout,
                            .idle_timeout_s = conf->http_idle_timeout};
    uint32_t peer;
    if (!vb_memory_headroom(CONN_HEADROOM_BYTES)) {
        refuse_nomem(a, fd);
        return;
    }
    if (vb_peers_take(fd, (uint32_t)conf->api_max_connections_per_ip, &peer) < 0) {
        refuse_peer(a, fd);
        return;
    }
    conn_t *cn = malloc(sizeof(*cn));
    if (cn != NULL) {
        cn->peer = peer;
    }
    if (cn == NULL || vb_http_conn_new(a->base, fd, a->tls, &lim, on_request, on_conn_close,
                                       cn) == NULL) {
        vb_peers_give(peer);
        if (cn == NULL) {
            close(fd);
        }
        free(cn);
        tell_closed(a);
        return;
    }
    a->conns++;
}

static void on_chan(evutil_socket_t fd, short what, void *arg)
{
    api_t *a = arg;
    vb_chan_msg_t msg;
    int passed, rc;
    while ((rc = vb_chan_recv(fd, &msg, &passed)) == 0 || rc == -EPROTO || rc == -EMFILE) {
        if (rc == -EMFILE) {
            tell_closed(a); /* the master counted a connection that never came */
            continue;
        }
        if (rc < 0) {
            continue; /* malformed: counted and logged */
        }
        if (msg.type == VB_CHAN_CONN && passed >= 0 && msg.listener == VB_LISTENER_API) {
            on_conn(a, passed);
            continue;
        }
        if (passed >= 0) {
            close(passed);
        }
        if (msg.type == VB_CHAN_QUIT) {
            a->quitting = 1;
        } else if (msg.type == VB_CHAN_REOPEN_LOGS) {
            vb_log_reopen();
        } else {
            vb_chan_bad("a message api workers do not take", (ssize_t)sizeof(msg));
        }
    }
    if (rc == -EPIPE) {
        a->quitting = 1;
        event_del(event_base_get_running_event(a->base));
    }
    maybe_exit(a);
}

static int setup_tls(api_t *a)
{
    const vb_conf_t *conf = a->ctx->conf;
    if (conf->listen_api_tls_cert[0] == '\0') {
        return 0;
    }
    char err[256];
    a->tls = vb_tls_server_ctx(conf->listen_api_tls_cert, conf->listen_api_tls_key, err,
                               sizeof(err));
    if (a->tls == NULL) {
        vb_log(VB_LOG_ERR, "api TLS: %s", err);
        return -1;
    }
    return 0;
}

int vb_api_main(vb_child_ctx_t *ctx)
{
    api_t *a = &api;
    a->ctx = ctx;
    signal(SIGPIPE, SIG_IGN);
    a->base = event_base_new();
    if (a->base == NULL) {
        return VB_EXIT_CLEAN;
    }
    if (setup_tls(a) < 0) {
        return VB_EXIT_CONFIG;
    }
    event_add(event_new(a->base, ctx->chan, EV_READ | EV_PERSIST, on_chan, a), NULL);
    if (vb_api_db_init(ctx->conf, a->base) < 0) {
        return VB_EXIT_CLEAN;
    }
    event_base_dispatch(a->base);
    vb_api_db_close();
    return VB_EXIT_OK;
}
