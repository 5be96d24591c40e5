/* voxbridge-callsim: libcurl multi on libevent (see http.h). The usual socket/timer
 * callback pair: libcurl says which sockets to watch and when to wake it; each wake-up
 * calls curl_multi_socket_action and collects finished transfers. */
#include "callsim/http.h"

#include <curl/curl.h>
#include <errno.h>
#include <event2/event.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"

#define RESPONSE_MAX (1024 * 1024)

struct vb_cs_http {
    struct event_base *base;
    CURLM *multi;
    struct event *timer;
    int running;
    int insecure;
    const char *ca_file;
    int timeout_ms;
    struct request *reqs; /* in flight */
};

typedef struct request {
    struct request *next, **pprev;
    vb_cs_http_t *h;
    CURL *easy;
    struct curl_slist *headers;
    char *body; /* the request body (copied) */
    char *resp;
    size_t len, cap;
    char err[CURL_ERROR_SIZE];
    vb_cs_http_done_fn done;
    void *arg;
} request_t;

typedef struct {
    struct event *ev;
} sock_t;

static void check_done(vb_cs_http_t *h);

static void on_sock_event(evutil_socket_t fd, short what, void *arg)
{
    vb_cs_http_t *h = arg;
    int flags =
        ((what & EV_READ) ? CURL_CSELECT_IN : 0) | ((what & EV_WRITE) ? CURL_CSELECT_OUT : 0);
    curl_multi_socket_action(h->multi, fd, flags, &h->running);
    check_done(h);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    vb_cs_http_t *h = arg;
    curl_multi_socket_action(h->multi, CURL_SOCKET_TIMEOUT, 0, &h->running);
    check_done(h);
}

static int sock_cb(CURL *e, curl_socket_t s, int what, void *userp, void *socketp)
{
    vb_cs_http_t *h = userp;
    sock_t *sk = socketp;
    if (what == CURL_POLL_REMOVE) {
        if (sk != NULL) {
            event_free(sk->ev);
            free(sk);
        }
        curl_multi_assign(h->multi, s, NULL);
        return 0;
    }
    if (sk == NULL) {
        sk = calloc(1, sizeof(*sk));
        if (sk == NULL) {
            return -1;
        }
        curl_multi_assign(h->multi, s, sk);
    } else {
        event_free(sk->ev);
    }
    short ev = EV_PERSIST | ((what & CURL_POLL_IN) ? EV_READ : 0) |
               ((what & CURL_POLL_OUT) ? EV_WRITE : 0);
    sk->ev = event_new(h->base, s, ev, on_sock_event, h);
    event_add(sk->ev, NULL);
    return 0;
}

static int timer_cb(CURLM *m, long timeout_ms, void *userp)
{
    vb_cs_http_t *h = userp;
    if (timeout_ms < 0) {
        evtimer_del(h->timer);
        return 0;
    }
    struct timeval tv = {.tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000};
    evtimer_add(h->timer, &tv);
    return 0;
}

vb_cs_http_t *vb_cs_http_new(struct event_base *base, int insecure, const char *ca_file,
                             int timeout_ms)
{
    static int global_done;
    if (!global_done) {
        curl_global_init(CURL_GLOBAL_DEFAULT);
        global_done = 1;
    }
    vb_cs_http_t *h = calloc(1, sizeof(*h));
    if (h == NULL) {
        return NULL;
    }
    h->base = base;
    h->insecure = insecure;
    h->ca_file = ca_file;
    h->timeout_ms = timeout_ms;
    h->multi = curl_multi_init();
    h->timer = evtimer_new(base, on_timer, h);
    if (h->multi == NULL || h->timer == NULL) {
        vb_log(VB_LOG_ERR, "cannot set up libcurl multi");
        vb_cs_http_free(h);
        return NULL;
    }
    curl_multi_setopt(h->multi, CURLMOPT_SOCKETFUNCTION, sock_cb);
    curl_multi_setopt(h->multi, CURLMOPT_SOCKETDATA, h);
    curl_multi_setopt(h->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
    curl_multi_setopt(h->multi, CURLMOPT_TIMERDATA, h);
    return h;
}

static size_t write_cb(char *data, size_t size, size_t nmemb, void *userp)
{
    request_t *r = userp;
    size_t n = size * nmemb;
    if (r->len + n + 1 > RESPONSE_MAX) {
        return 0; /* aborts the transfer: CURLE_WRITE_ERROR */
    }
    if (r->len + n + 1 > r->cap) {
        size_t cap = r->cap ? r->cap : 4096;
        while (cap < r->len + n + 1) {
            cap *= 2;
        }
        char *nb = realloc(r->resp, cap);
        if (nb == NULL) {
            return 0;
        }
        r->resp = nb;
        r->cap = cap;
    }
    memcpy(r->resp + r->len, data, n);
    r->len += n;
    r->resp[r->len] = '\0';
    return n;
}

static void request_free(request_t *r)
{
    if (r->pprev != NULL) {
        *r->pprev = r->next;
        if (r->next != NULL) {
            r->next->pprev = r->pprev;
        }
    }
    if (r->easy != NULL) {
        curl_multi_remove_handle(r->h->multi, r->easy);
        curl_easy_cleanup(r->easy);
    }
    curl_slist_free_all(r->headers);
    free(r->body);
    free(r->resp);
    free(r);
}

static void finish(request_t *r, CURLcode rc)
{
    long status = 0;
    if (rc == CURLE_OK) {
        curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);
    } else if (r->err[0] == '\0') {
        snprintf(r->err, sizeof(r->err), "%s", curl_easy_strerror(rc));
    }
    r->done((int)status, r->resp ? r->resp : "", r->len, rc == CURLE_OK ? NULL : r->err,
            r->arg);
    request_free(r);
}

static void check_done(vb_cs_http_t *h)
{
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(h->multi, &left)) != NULL) {
        if (msg->msg != CURLMSG_DONE) {
            continue;
        }
        request_t *r = NULL;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&r);
        finish(r, msg->data.result);
    }
}

static int setup_easy(request_t *r, const char *url)
{
    vb_cs_http_t *h = r->h;
    CURL *e = r->easy;
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, r->body);
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, (long)strlen(r->body));
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, r->headers);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, write_cb);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, r->err);
    curl_easy_setopt(e, CURLOPT_PRIVATE, r);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)h->timeout_ms);
    curl_easy_setopt(e, CURLOPT_USERAGENT, "TwilioProxy/1.1");
    if (h->insecure) {
        curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 0L);
        curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 0L);
    } else if (h->ca_file != NULL) {
        curl_easy_setopt(e, CURLOPT_CAINFO, h->ca_file);
    }
    return curl_multi_add_handle(h->multi, e) == CURLM_OK ? 0 : -EINVAL;
}

int vb_cs_http_post(vb_cs_http_t *h, const char *url, const char *body,
                    const char *const *headers, vb_cs_http_done_fn done, void *arg)
{
    request_t *r = calloc(1, sizeof(*r));
    if (r == NULL) {
        return -ENOMEM;
    }
    r->h = h;
    r->next = h->reqs;
    r->pprev = &h->reqs;
    if (h->reqs != NULL) {
        h->reqs->pprev = &r->next;
    }
    h->reqs = r;
    r->done = done;
    r->arg = arg;
    r->body = strdup(body);
    r->easy = curl_easy_init();
    int rc = (r->body == NULL || r->easy == NULL) ? -ENOMEM : 0;
    for (size_t i = 0; rc == 0 && headers != NULL && headers[i] != NULL; i++) {
        struct curl_slist *l = curl_slist_append(r->headers, headers[i]);
        if (l == NULL) {
            rc = -ENOMEM;
        }
        r->headers = l ? l : r->headers;
    }
    if (rc == 0) {
        /* libcurl would otherwise send "Expect: 100-continue" for large bodies. */
        struct curl_slist *l = curl_slist_append(r->headers, "Expect:");
        r->headers = l ? l : r->headers;
        rc = setup_easy(r, url);
    }
    if (rc < 0) {
        CURL *e = r->easy;
        r->easy = NULL;
        curl_easy_cleanup(e);
        request_free(r);
    }
    return rc;
}

int vb_cs_http_pending(const vb_cs_http_t *h)
{
    int n = 0;
    for (const request_t *r = h->reqs; r != NULL; r = r->next) {
        n++;
    }
    return n;
}

void vb_cs_http_free(vb_cs_http_t *h)
{
    if (h == NULL) {
        return;
    }
    while (h->reqs != NULL) {
        request_free(h->reqs);
    }
    if (h->multi != NULL) {
        curl_multi_cleanup(h->multi);
    }
    if (h->timer != NULL) {
        event_free(h->timer);
    }
    free(h);
}
