/* A call in the media worker: takes the connection from the master, upgrades
 * /twilio/media to a WebSocket, speaks Twilio Media Streams, and records the
 * call's start and end as events for the store. The 20 ms audio pump is in
 * pump.c. Bad carrier input is counted and the call goes on. */
#include "worker/call_int.h"
#include "common/calltoken.h"
#include "common/clock.h"
#include "common/httpd.h"
#include "common/log.h"
#include "common/stats.h"
#include "common/tls.h"
#include "common/ws.h"
#include "worker/dsp.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static SSL_CTX *media_tls;

uint64_t vb_now_ns(void)
{
    return vb_mono_ns();
}

/* Queue an event for the store: {"type":TYPE,"call_id":…,"slot":…,FIELDS}. */
void vb_call_event(vb_call_t *call, const char *type, const char *json_fields)
{
    vb_event_t ev = {.type = 0, .t_ns = vb_wall_ns()};
    int n = snprintf(ev.data, sizeof(ev.data), "{\"type\":\"%s\",\"call_id\":\"%s\",\"slot\":%u,"
                     "\"gen\":%u%s%s}", type, call->call_id, call->slot_idx, call->gen,
                     json_fields[0] ? "," : "", json_fields);
    if (n < 0 || n >= (int)sizeof(ev.data)) {
        vb_log(VB_LOG_ERR, "event %s too large for the ring; dropped", type);
        return;
    }
    ev.len = (uint32_t)n;
    vb_ring_t *r = vb_slot_ring(call->slot, VB_RING_EVENTS_W2S);
    int rc = vb_ring_push(r, &ev, (uint32_t)(offsetof(vb_event_t, data) + (size_t)n + 1));
    if (rc == 1) {
        vb_shm_ring_bell(call->ctx->shm, call->slot_idx, VB_BELL_STORE);
    }
}

static void call_free(vb_call_t *call)
{
    vb_call_pump_stop(call);
    if (call->dsp != NULL) {
        vb_dsp_free(call->dsp);
    }
    free(call);
}

/* The connection is gone: close the record and give the slot back. */
static void call_finish(vb_call_t *call)
{
    vb_worker_t *w = call->w;
    uint32_t slot = call->slot_idx, gen = call->gen;
    int failed = call->failed;
    if (call->started) {
        char f[512];
        vb_slot_t *s = call->slot;
        /* the length on the monotonic clock: a wall-clock step must not move it */
        snprintf(f, sizeof(f),
                 "\"reason\":\"%s\",\"duration_ms\":%llu,\"frames_in\":%llu,"
                 "\"frames_out\":%llu,\"underruns\":%llu,\"late_frames\":%llu,"
                 "\"bad_messages\":%llu",
                 call->end_reason[0] ? call->end_reason : "hangup",
                 (unsigned long long)vb_slot_age_ms(s),
                 (unsigned long long)atomic_load(&s->frames_in),
                 (unsigned long long)atomic_load(&s->frames_out),
                 (unsigned long long)atomic_load(&s->underruns),
                 (unsigned long long)atomic_load(&s->late_frames),
                 (unsigned long long)atomic_load(&s->bad_messages));
        vb_call_event(call, "call.ended", f);
        VB_STAT_INC(calls_ended);
    }
    vb_slot_end(call->slot);
    vb_shm_ring_bell(call->ctx->shm, slot, VB_BELL_BROKER);
    vb_shm_ring_bell(call->ctx->shm, slot, VB_BELL_STORE);
    vb_log(VB_LOG_INFO, "call ended: %s", call->end_reason[0] ? call->end_reason : "hangup");
    call_free(call);
    vb_worker_call_ended(w, slot, gen, failed);
}

/* Text that goes into a JSON record as it is: control characters, quotes and
 * backslashes (and, with ASCII_ONLY, bytes past 0x7e) become REPL. */
static void copy_json_text(char *dst, size_t cap, const char *src, char repl, int ascii_only)
{
    size_t i = 0;
    for (; src[i] != '\0' && i + 1 < cap; i++) {
        unsigned char ch = (unsigned char)src[i];
        int bad = ch < 0x20 || ch == '"' || ch == '\\' || (ascii_only && ch > 0x7e);
        dst[i] = bad ? repl : (char)ch;
    }
    dst[i] = '\0';
}

/* Why the call ended, for the call.ended record. */
static void set_reason(vb_call_t *call, const char *reason)
{
    copy_json_text(call->end_reason, sizeof(call->end_reason), reason, ' ', 0);
}

void vb_call_hangup(vb_call_t *call, int code, const char *reason)
{
    if (call->ws != NULL && !call->closing) {
        call->closing = 1;
        set_reason(call, reason);
        vb_ws_close(call->ws, code, reason);
    }
}

static void count_bad(vb_call_t *call)
{
    atomic_fetch_add_explicit(&call->slot->bad_messages, 1, memory_order_relaxed);
}

static const char *param(json_t *params, const char *name)
{
    const char *v = json_string_value(json_object_get(params, name));
    return v != NULL ? v : "";
}

static int copy_safe(char *dst, size_t cap, const char *src)
{
    if (!vb_id_is_safe(src, cap - 1)) {
        return -EINVAL;
    }
    snprintf(dst, cap, "%s", src);
    return 0;
}

/* The `start` message: who the call is for, checked against the webhook's token. */
static int take_identity(vb_call_t *call, const char *json, size_t len)
{
    json_t *root = json_loadb(json, len, 0, NULL);
    json_t *params = json_object_get(json_object_get(root, "start"), "customParameters");
    const char *cid = param(params, "call_id"), *asst = param(params, "assistant");
    const char *asst_id = param(params, "assistant_id"), *rev = param(params, "revision");
    const char *from = param(params, "from"), *to = param(params, "to");
    const char *key = call->ctx->conf->twilio_auth_token;
    vb_slot_t *s = call->slot;
    char ref[160];
    long long revision = strtoll(rev, NULL, 10);
    vb_call_assistant_ref(asst, asst_id, revision, ref, sizeof(ref));
    int ok = vb_call_token_ok(key, cid, ref, from, to, param(params, "token"));
    int rc = ok < 0 ? -ENOMEM : -EACCES;
    if (ok > 0 &&
        copy_safe(s->call_id, sizeof(s->call_id), cid) == 0 &&
        copy_safe(s->assistant, sizeof(s->assistant), asst) == 0 &&
        (asst_id[0] == '\0' || copy_safe(s->assistant_id, sizeof(s->assistant_id), asst_id) == 0)) {
        s->assistant_revision = revision;
        copy_json_text(s->from, sizeof(s->from), from, '_', 1); /* caller ids: ASCII */
        copy_json_text(s->to, sizeof(s->to), to, '_', 1);
        snprintf(call->call_id, sizeof(call->call_id), "%s", cid);
        rc = 0;
    }
    json_decref(root);
    return rc;
}

static void on_start(vb_call_t *call, const char *json, size_t len)
{
    if (call->started) {
        count_bad(call);
        return;
    }
    int rc = take_identity(call, json, len);
    if (rc == -ENOMEM) {
        VB_STAT_INC(rejected_nomem);
        vb_log(VB_LOG_ERR, "stream start: out of memory checking the call token; closing");
        call->failed = 1;
        vb_call_hangup(call, 1011, "server out of memory");
        return;
    }
    if (rc < 0) {
        vb_log(VB_LOG_WARN, "stream start with a missing or wrong call token; closing");
        VB_STAT_INC(mstream_bad_json);
        call->failed = 1;
        vb_call_hangup(call, 1008, "bad call token");
        return;
    }
    vb_slot_t *s = call->slot;
    snprintf(call->stream_sid, sizeof(call->stream_sid), "%s", call->msg.stream_sid);
    snprintf(s->stream_sid, sizeof(s->stream_sid), "%s", call->msg.stream_sid);
    snprintf(s->call_sid, sizeof(s->call_sid), "%s", call->msg.call_sid);
    s->worker_pid = (int32_t)getpid();
    call->broker_epoch = atomic_load_explicit(&s->broker_epoch, memory_order_acquire);
    vb_slot_activate(s);
    call->started = 1;
    vb_log_set_call(call->call_id);
    VB_STAT_INC(calls_started);
    char f[512];
    snprintf(f, sizeof(f), "\"call_sid\":\"%s\",\"stream_sid\":\"%s\",\"assistant\":\"%s\","
             "\"assistant_id\":\"%s\",\"from\":\"%s\",\"to\":\"%s\"", s->call_sid,
             s->stream_sid, s->assistant, s->assistant_id, s->from, s->to);
    vb_call_event(call, "call.started", f);
    vb_shm_ring_bell(call->ctx->shm, call->slot_idx, VB_BELL_BROKER);
    vb_log(VB_LOG_INFO, "call started: assistant %s, stream %s", s->assistant, s->stream_sid);
}

static void on_media(vb_call_t *call)
{
    const vb_ms_msg_t *m = &call->msg;
    if (!call->started || !m->track_inbound) {
        return;
    }
    if (m->payload_len != 160) {
        VB_STAT_INC(mstream_bad_frames);
        count_bad(call);
        return;
    }
    vb_audio_frame_t f;
    int voice = 0;
    vb_dsp_inbound(call->dsp, m->payload, f.pcm, &voice);
    f.seq = call->in_seq++;
    f.flags = voice ? VB_FRAME_VOICE : 0;
    f.t_ns = vb_now_ns();
    vb_slot_t *s = call->slot;
    atomic_fetch_add_explicit(&s->frames_in, 1, memory_order_relaxed);
    vb_shm_push(call->ctx->shm, call->slot_idx, VB_RING_CALLER_AUDIO, &f, sizeof(f));
    vb_call_pump_out(call); /* each inbound frame is also the outbound clock */
}

static void send_ctl(vb_call_t *call, uint32_t type, const char *text)
{
    vb_ctl_msg_t c = {.type = type, .t_ns = vb_now_ns()};
    snprintf(c.text, sizeof(c.text), "%s", text);
    if (vb_ring_push(vb_slot_ring(call->slot, VB_RING_CTL_W2B), &c, sizeof(c)) == 1) {
        vb_shm_ring_bell(call->ctx->shm, call->slot_idx, VB_BELL_BROKER);
    }
}

static void count_parse_error(vb_call_t *call, int rc)
{
    count_bad(call);
    if (rc == -VB_MS_EFIELD || rc == -VB_MS_EFORMAT) {
        VB_STAT_INC(mstream_bad_frames); /* vb_ms_count_error leaves these to us */
    } else {
        vb_ms_count_error(rc);
    }
}

static void on_ws_message(vb_ws_t *ws, int is_text, const uint8_t *data, size_t len, void *arg)
{
    vb_call_t *call = arg;
    int rc = is_text ? vb_ms_parse((const char *)data, len, &call->msg) : -VB_MS_EBADJSON;
    if (rc < 0) {
        count_parse_error(call, rc);
        return;
    }
    switch (call->msg.event) {
    case VB_MS_START:
        on_start(call, (const char *)data, len);
        break;
    case VB_MS_MEDIA:
        on_media(call);
        break;
    case VB_MS_MARK:
        vb_call_on_mark(call, call->msg.mark_name);
        break;
    case VB_MS_DTMF:
        send_ctl(call, VB_CTL_DTMF, call->msg.digit);
        break;
    case VB_MS_STOP:
        vb_call_hangup(call, 1000, "carrier stopped the stream");
        break;
    default:
        break;
    }
}

static void on_ws_close(vb_ws_t *ws, int code, const char *reason, void *arg)
{
    vb_call_t *call = arg;
    call->ws = NULL;
    if (!call->closing) {
        set_reason(call, code == 1000 ? "carrier closed the stream" : "connection lost");
        call->failed = code != 1000 && code != 1001;
    }
    call_finish(call);
}

static const vb_ws_callbacks_t ws_callbacks = {
    .on_message = on_ws_message,
    .on_close = on_ws_close,
};

static void on_request(vb_http_conn_t *c, vb_http_req_t *req, void *arg)
{
    vb_call_t *call = arg;
    if (strcmp(req->path, "/twilio/media") != 0 ||
        !vb_http_header_has_token(req, "Upgrade", "websocket")) {
        static const char body[] = "{\"error\":{\"code\":\"not_found\",\"message\":"
                                   "\"the media listener serves /twilio/media only\"}}\n";
        vb_http_reply(c, 404, "application/json", body, sizeof(body) - 1,
                      "Connection: close\r\n");
        return;
    }
    if (vb_call_pump_start(call) < 0) {
        vb_http_reply(c, 500, "text/plain", "", 0, "Connection: close\r\n");
        return;
    }
    call->ws = vb_ws_accept(c, req, (size_t)call->ctx->conf->ws_max_message_bytes,
                            &ws_callbacks, call);
    call->http = NULL;
    if (call->ws == NULL) {
        set_reason(call, "bad WebSocket handshake");
        call_finish(call);
    }
}

static void on_http_close(void *arg)
{
    vb_call_t *call = arg;
    call->http = NULL;
    set_reason(call, "not a media stream");
    call_finish(call);
}

static SSL_CTX *tls_for(const vb_conf_t *conf)
{
    if (conf->listen_media_tls_cert[0] == '\0' || media_tls != NULL) {
        return media_tls;
    }
    char err[256];
    media_tls = vb_tls_server_ctx(conf->listen_media_tls_cert, conf->listen_media_tls_key, err,
                                  sizeof(err));
    if (media_tls == NULL) {
        vb_log(VB_LOG_ERR, "media TLS: %s", err);
    }
    return media_tls;
}

vb_call_t *vb_call_new(vb_worker_t *w, int fd, uint32_t slot, uint32_t gen)
{
    const vb_child_ctx_t *ctx = vb_worker_ctx(w);
    const vb_conf_t *conf = ctx->conf;
    vb_call_t *call = calloc(1, sizeof(*call));
    if (call == NULL || slot >= vb_shm_nslots(ctx->shm)) {
        free(call);
        close(fd);
        return NULL;
    }
    call->w = w;
    call->ctx = ctx;
    call->slot_idx = slot;
    call->gen = gen;
    call->slot = vb_shm_slot(ctx->shm, slot);
    snprintf(call->call_id, sizeof(call->call_id), "slot%u-%u", slot, gen);
    vb_http_limits_t lim = {.max_header_bytes = (size_t)conf->http_max_header_bytes,
                            .max_body_bytes = 0,
                            .request_timeout_s = conf->http_request_timeout,
                            .idle_timeout_s = conf->http_request_timeout};
    SSL_CTX *tls = tls_for(conf);
    if (conf->listen_media_tls_cert[0] != '\0' && tls == NULL) {
        call_free(call);
        close(fd);
        return NULL;
    }
    call->http = vb_http_conn_new(vb_worker_base(w), fd, tls, &lim, on_request, on_http_close, call);
    if (call->http == NULL) {
        call_free(call);
        return NULL;
    }
    return call;
}
