/* voxbridge-callsim: one call's life as Twilio lives it: the signed voice webhook, the
 * TwiML, the Media Streams WebSocket, the end. The media itself is in stream.c. */
#include "callsim/sim_int.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "api/form.h"
#include "api/twilio.h"
#include "callsim/twiml.h"
#include "common/clock.h"
#include "common/log.h"

#define FORM_BODY_MAX 4096
#define SAY_LOG_MAX 160

int64_t vb_cs_now_us(void)
{
    return (int64_t)(vb_mono_ns() / 1000);
}

/* PREFIX + 32 lowercase hex digits, as Twilio's sids. */
void vb_cs_random_sid(char *out, size_t cap, const char *prefix)
{
    uint8_t r[16];
    if (getrandom(r, sizeof(r), 0) != (ssize_t)sizeof(r)) {
        for (size_t i = 0; i < sizeof(r); i++) {
            r[i] = (uint8_t)rand();
        }
    }
    int n = snprintf(out, cap, "%s", prefix);
    for (size_t i = 0; i < sizeof(r) && (size_t)n + 2 < cap; i++) {
        n += snprintf(out + n, cap - (size_t)n, "%02x", r[i]);
    }
}

void vb_cs_call_log(const vb_cs_call_t *c, int level, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    vb_log(level, "call %d: %s", c->n, msg);
}

int vb_cs_call_init(vb_cs_call_t *c, vb_cs_sim_t *s, int n)
{
    memset(c, 0, sizeof(*c));
    c->sim = s;
    c->n = n;
    vb_cs_random_sid(c->call_sid, sizeof(c->call_sid), "CA");
    vb_cs_random_sid(c->stream_sid, sizeof(c->stream_sid), "MZ");
    return vb_cs_stream_init(c);
}

void vb_cs_call_free(vb_cs_call_t *c)
{
    vb_cs_stream_free(c);
    json_decref(c->custom);
    c->custom = NULL;
}

/* The call is over: record when, close its files, tell the sim. */
static void finish(vb_cs_call_t *c)
{
    if (c->state == VB_CS_DONE) {
        return;
    }
    if (c->state == VB_CS_STREAMING || c->state == VB_CS_CLOSING) {
        vb_cs_sim_streaming(c->sim, c, 0);
    }
    c->state = VB_CS_DONE;
    c->t_end = vb_cs_now_us();
    vb_cs_stream_end(c, c->t_end);
    vb_cs_sim_call_done(c->sim, c);
}

void vb_cs_call_end(vb_cs_call_t *c, vb_cs_result_t result, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->reason, sizeof(c->reason), fmt, ap);
    va_end(ap);
    c->result = result;
    vb_cs_call_log(c, result == VB_CS_FAILED ? VB_LOG_WARN : VB_LOG_NOTICE, "%s", c->reason);
    finish(c);
}

static vb_form_t *webhook_params(const vb_cs_call_t *c)
{
    const vb_cs_opts_t *o = c->sim->o;
    const char *kv[][2] = {
        {"AccountSid", c->sim->account_sid},
        {"ApiVersion", "2010-04-01"},
        {"CallSid", c->call_sid},
        {"CallStatus", "ringing"},
        {"Direction", "inbound"},
        {"From", o->from},
        {"To", o->to},
        {"Called", o->to},
        {"Caller", o->from},
    };
    vb_form_t *f = vb_form_new();
    for (size_t i = 0; f != NULL && i < sizeof(kv) / sizeof(kv[0]); i++) {
        if (vb_form_add(f, kv[i][0], kv[i][1]) < 0) {
            vb_form_free(f);
            f = NULL;
        }
    }
    return f;
}

/* BASE + PATH without a doubled slash. */
static void join_url(char *out, size_t cap, const char *base, const char *path)
{
    size_t n = strlen(base);
    while (n > 0 && base[n - 1] == '/') {
        n--;
    }
    snprintf(out, cap, "%.*s%s", (int)n, base, path);
}

static void on_webhook(int status, const char *body, size_t len, const char *err, void *arg);

void vb_cs_call_start(vb_cs_call_t *c)
{
    const vb_cs_opts_t *o = c->sim->o;
    char url[2048], signed_url[2048], body[FORM_BODY_MAX], sig[64], sig_hdr[128];
    c->state = VB_CS_WEBHOOK;
    c->t_start = vb_cs_now_us();
    join_url(url, sizeof(url), o->url, "/twilio/voice");
    join_url(signed_url, sizeof(signed_url), o->public_url, "/twilio/voice");
    vb_form_t *f = webhook_params(c);
    int ok = f != NULL && vb_form_encode(f, body, sizeof(body)) > 0 &&
             vb_twilio_sign(o->token ? o->token : "", signed_url, f, sig) == 0;
    vb_form_free(f);
    if (!ok) {
        vb_cs_call_end(c, VB_CS_FAILED, "cannot build the webhook request");
        return;
    }
    snprintf(sig_hdr, sizeof(sig_hdr), "X-Twilio-Signature: %s", sig);
    const char *headers[] = {"Content-Type: application/x-www-form-urlencoded", sig_hdr,
                             "Accept: */*", "Cache-Control: max-age=259200", NULL};
    vb_cs_call_log(c, VB_LOG_INFO, "POST %s CallSid=%s", url, c->call_sid);
    int rc = vb_cs_http_post(c->sim->http, url, body, headers, on_webhook, c);
    if (rc < 0) {
        vb_cs_call_end(c, VB_CS_FAILED, "cannot start the webhook request: %s", strerror(-rc));
    }
}

/* Keeps the <Parameter>s other than call_id for the start message's customParameters. */
static void keep_params(vb_cs_call_t *c, const vb_cs_twiml_t *t)
{
    const char *id = vb_cs_twiml_param(t, "call_id");
    snprintf(c->call_id, sizeof(c->call_id), "%s", id ? id : "");
    if (t->nparams == (id != NULL)) {
        return;
    }
    c->custom = json_object();
    for (int i = 0; c->custom != NULL && i < t->nparams; i++) {
        json_object_set_new(c->custom, t->params[i].name, json_string(t->params[i].value));
    }
}

static void open_ws(vb_cs_call_t *c, const char *url);

static void on_twiml(vb_cs_call_t *c, const char *body, size_t len)
{
    vb_cs_twiml_t *t = malloc(sizeof(*t));
    if (t == NULL) {
        vb_cs_call_end(c, VB_CS_FAILED, "out of memory");
        return;
    }
    int rc = vb_cs_twiml_parse(body, len, t);
    if (rc < 0) {
        vb_cs_call_end(c, VB_CS_FAILED, "webhook answer is not usable TwiML: %.*s", SAY_LOG_MAX,
                       body);
    } else if (t->kind == VB_CS_TWIML_HANGUP) {
        vb_cs_call_end(c, VB_CS_REJECTED, "rejected: %.*s", SAY_LOG_MAX,
                       t->say[0]     ? t->say
                       : t->verbs[0] ? t->verbs
                                     : "empty <Response>");
    } else {
        vb_cs_call_log(c, VB_LOG_INFO, "TwiML: Connect/Stream url=%s call_id=%s", t->url,
                       vb_cs_twiml_param(t, "call_id") ? vb_cs_twiml_param(t, "call_id") : "-");
        keep_params(c, t);
        open_ws(c, t->url);
    }
    free(t);
}

static void on_webhook(int status, const char *body, size_t len, const char *err, void *arg)
{
    vb_cs_call_t *c = arg;
    if (c->state != VB_CS_WEBHOOK) {
        return;
    }
    c->t_webhook = vb_cs_now_us();
    c->http_status = status;
    if (status == 0) {
        vb_cs_call_end(c, VB_CS_FAILED, "webhook failed: %s", err ? err : "no response");
        return;
    }
    vb_cs_call_log(c, VB_LOG_INFO, "webhook HTTP %d in %.1f ms", status,
                   (double)(c->t_webhook - c->t_start) / 1000.0);
    if (status != 200) {
        vb_cs_call_end(c, VB_CS_FAILED, "webhook HTTP %d: %.*s", status, SAY_LOG_MAX, body);
        return;
    }
    on_twiml(c, body, len);
}

static void on_ws_open(vb_ws_t *ws, void *arg)
{
    vb_cs_call_t *c = arg;
    c->t_open = vb_cs_now_us();
    c->state = VB_CS_STREAMING;
    c->result = VB_CS_ANSWERED;
    vb_cs_call_log(c, VB_LOG_INFO, "stream open in %.1f ms (streamSid %s)",
                   (double)(c->t_open - c->t_webhook) / 1000.0, c->stream_sid);
    vb_cs_sim_streaming(c->sim, c, 1);
    vb_cs_stream_open(c, c->t_open);
}

static void on_ws_message(vb_ws_t *ws, int is_text, const uint8_t *data, size_t len, void *arg)
{
    vb_cs_stream_message(arg, is_text, data, len, vb_cs_now_us());
}

static void on_ws_close(vb_ws_t *ws, int code, const char *reason, void *arg)
{
    vb_cs_call_t *c = arg;
    c->ws = NULL;
    c->close_code = code;
    snprintf(c->close_reason, sizeof(c->close_reason), "%s", reason ? reason : "");
    if (c->state == VB_CS_CONNECTING) {
        vb_cs_call_end(c, VB_CS_FAILED, "stream did not open: %d %s", code, c->close_reason);
        return;
    }
    c->server_closed = c->state == VB_CS_STREAMING;
    vb_cs_call_log(c, code == 1000 ? VB_LOG_INFO : VB_LOG_WARN, "stream closed by %s: %d %s",
                   c->server_closed ? "the server" : "us", code, c->close_reason);
    finish(c);
}

static const vb_ws_callbacks_t ws_cb = {
    .on_open = on_ws_open,
    .on_message = on_ws_message,
    .on_close = on_ws_close,
};

static void open_ws(vb_cs_call_t *c, const char *url)
{
    vb_cs_sim_t *s = c->sim;
    char sig[64], hdr[128];
    SSL_CTX *tls = NULL;
    if (strncmp(url, "wss://", 6) == 0) {
        tls = vb_cs_sim_tls(s);
        if (tls == NULL) {
            vb_cs_call_end(c, VB_CS_FAILED, "no TLS context for %s", url);
            return;
        }
    }
    /* Twilio signs the WebSocket handshake too: the URL alone, no parameters. */
    hdr[0] = '\0';
    if (vb_twilio_sign(s->o->token ? s->o->token : "", url, NULL, sig) == 0) {
        snprintf(hdr, sizeof(hdr), "X-Twilio-Signature: %s\r\n", sig);
    }
    c->state = VB_CS_CONNECTING;
    c->ws = vb_ws_client_new(s->base, url, tls, hdr, 0, &ws_cb, c);
    if (c->ws == NULL) {
        vb_cs_call_end(c, VB_CS_FAILED, "cannot open stream url %s: %s", url, strerror(errno));
    }
}

void vb_cs_call_timeout(vb_cs_call_t *c, const char *why)
{
    if (c->state == VB_CS_DONE) {
        return;
    }
    c->timed_out = 1;
    if (c->state == VB_CS_IDLE || c->state == VB_CS_WEBHOOK) {
        vb_cs_call_end(c, VB_CS_FAILED, "%s %s", why,
                       c->state == VB_CS_IDLE ? "before the call started"
                                              : "waiting for the webhook");
        return;
    }
    if (c->state == VB_CS_CONNECTING) {
        snprintf(c->reason, sizeof(c->reason), "%s opening the stream", why);
        c->result = VB_CS_FAILED;
    } else {
        snprintf(c->reason, sizeof(c->reason), "%s", why);
    }
    vb_cs_call_log(c, VB_LOG_WARN, "%s", c->reason);
    if (c->state == VB_CS_STREAMING) {
        vb_cs_stream_hang_up(c, 1001, why);
    } else if (c->ws != NULL) {
        vb_ws_close(c->ws, 1001, why); /* -EPIPE if already closing: fine */
    }
}
