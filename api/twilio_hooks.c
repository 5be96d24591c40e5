/* Twilio webhooks in the api worker. /twilio/voice answers an incoming call
 * with TwiML that connects its audio to our media listener; /twilio/status
 * moves a call through its states. Both check X-Twilio-Signature against the
 * public URL first: a mismatch is 403 and a counter. */
#include "api/api.h"
#include "api/db.h"
#include "api/form.h"
#include "api/twilio.h"
#include "common/calltoken.h"
#include "common/httpd.h"
#include "common/log.h"
#include "common/stats.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SEEN_CALLBACKS 4096 /* remembered (CallSid, SequenceNumber) pairs */

/* The full URL Twilio requested: the configured public base plus the target. */
static void public_url_of(const vb_conf_t *conf, const vb_http_req_t *req, char *out, size_t cap)
{
    size_t n = strlen(conf->public_url);
    while (n > 0 && conf->public_url[n - 1] == '/') {
        n--;
    }
    snprintf(out, cap, "%.*s%s", (int)n, conf->public_url, req->target);
}

/* A flood of forged webhooks must not become a flood of log lines (a disk
 * filled by anyone who can reach the port, at tens of thousands a second):
 * the first is logged, then at most one line per BAD_SIG_LOG_S seconds
 * saying how many came meanwhile. The counter counts every one. */
#define BAD_SIG_LOG_S 10

static void log_bad_signature(vb_http_conn_t *c, const vb_http_req_t *req)
{
    static vb_log_limit_t limit;
    unsigned long held;
    if (!vb_log_limit(&limit, 1, BAD_SIG_LOG_S, &held)) {
        return;
    }
    if (held > 0) {
        vb_log(VB_LOG_WARN, "bad X-Twilio-Signature on %s from %s (and %lu more since the last "
               "line, not logged)", req->path, vb_http_conn_peer(c), held);
    } else {
        vb_log(VB_LOG_WARN, "bad X-Twilio-Signature on %s from %s", req->path,
               vb_http_conn_peer(c));
    }
}

/* Short of memory half-way through a webhook: 503, so that Twilio retries
 * (a 403 would say the signature was wrong, and the call would be lost). */
static void refuse_nomem(vb_http_conn_t *c, const char *doing)
{
    VB_STAT_INC(rejected_nomem);
    vb_log(VB_LOG_ERR, "webhook answered 503: out of memory %s", doing);
    vb_api_error(c, 503, "unavailable", "the server is short of memory; retry");
}

/* The parsed form of a request whose signature is good, or NULL after a reply. */
static vb_form_t *signed_form(vb_http_conn_t *c, vb_http_req_t *req, const vb_conf_t *conf)
{
    if (conf->twilio_auth_token[0] == '\0') {
        vb_log(VB_LOG_ERR, "twilio_auth_token is not set: refusing Twilio webhooks");
        VB_STAT_INC(twilio_bad_signatures);
        vb_api_error(c, 403, "forbidden", "webhook signatures cannot be checked");
        return NULL;
    }
    vb_form_t *form = vb_form_parse(req->body, req->body_len);
    if (form == NULL) {
        VB_STAT_INC(http_bad_requests);
        vb_api_error(c, 400, "bad_request", "the body is not a valid form");
        return NULL;
    }
    char url[2048];
    public_url_of(conf, req, url, sizeof(url));
    const char *sig = vb_http_header(req, "X-Twilio-Signature");
    int ok =
        vb_twilio_validate(conf->twilio_auth_token, url, form, req->body, req->body_len, sig);
    if (ok < 0) {
        vb_form_free(form);
        refuse_nomem(c, "checking X-Twilio-Signature");
        return NULL;
    }
    if (!ok) {
        VB_STAT_INC(twilio_bad_signatures);
        log_bad_signature(c, req);
        vb_form_free(form);
        vb_api_error(c, 403, "forbidden", "invalid X-Twilio-Signature");
        return NULL;
    }
    return form;
}

static void reply_twiml(vb_http_conn_t *c, const char *twiml, size_t len)
{
    vb_http_reply(c, 200, "text/xml", twiml, len, NULL);
}

static void answer_unknown(vb_http_conn_t *c, const char *to)
{
    char twiml[512];
    VB_STAT_INC(twilio_unknown_numbers);
    vb_log(VB_LOG_WARN, "call to %s: no assistant answers this number", to);
    size_t n = vb_twiml_say_hangup(twiml, sizeof(twiml),
                                   "Sorry, this number is not in service. Goodbye.");
    reply_twiml(c, twiml, n);
}

static void answer_stream(vb_http_conn_t *c, const vb_conf_t *conf, const vb_assistant_t *a,
                          const char *from, const char *to, const char *call_sid)
{
    char call_id[37], token[VB_CALL_TOKEN_LEN + 1], url[VB_CONF_STR + 32], twiml[2048];
    char ref[160], rev[24];
    vb_call_id_new(call_id);
    snprintf(rev, sizeof(rev), "%lld", a->revision);
    vb_call_assistant_ref(a->name, a->id, a->revision, ref, sizeof(ref));
    if (vb_call_token(conf->twilio_auth_token, call_id, ref, from, to, token) < 0) {
        refuse_nomem(c, "making the stream token");
        return;
    }
    size_t n = strlen(conf->public_media_url);
    while (n > 0 && conf->public_media_url[n - 1] == '/') {
        n--;
    }
    snprintf(url, sizeof(url), "%.*s/twilio/media", (int)n, conf->public_media_url);
    const char *names[] = {"call_id", "assistant", "assistant_id", "revision", "from", "to",
                           "token"};
    const char *values[] = {call_id, a->name, a->id, rev, from, to, token};
    size_t len = vb_twiml_connect_stream_params(twiml, sizeof(twiml), url, names, values, 7);
    if (len == 0) {
        vb_api_error(c, 500, "internal", "TwiML did not fit");
        return;
    }
    vb_log(VB_LOG_INFO, "call %s (%s) from %s to %s: assistant %s", call_id, call_sid, from, to,
           a->name);
    reply_twiml(c, twiml, len);
}

/* A /twilio/voice request waiting for its number's assistant (api/db.c). */
typedef struct {
    vb_http_conn_t *c;
    const vb_child_ctx_t *ctx;
    char to[64], from[64], sid[64];
} voice_req_t;

static void on_voice_assistant(void *arg, const vb_assistant_t *a, int err)
{
    voice_req_t *v = arg;
    if (err < 0) {
        vb_api_error(v->c, 503, "unavailable", "the database is unavailable");
    } else if (a == NULL) {
        answer_unknown(v->c, v->to);
    } else {
        answer_stream(v->c, v->ctx->conf, a, v->from, v->to, v->sid);
    }
    free(v);
}

void vb_api_twilio_voice(vb_http_conn_t *c, vb_http_req_t *req, const vb_child_ctx_t *ctx)
{
    vb_form_t *form = signed_form(c, req, ctx->conf);
    if (form == NULL) {
        return;
    }
    const char *to = vb_form_get(form, "To"), *from = vb_form_get(form, "From");
    const char *sid = vb_form_get(form, "CallSid");
    voice_req_t *v = NULL;
    if (to == NULL || from == NULL || sid == NULL) {
        vb_api_error(c, 400, "bad_request", "To, From and CallSid are required");
    } else if ((v = calloc(1, sizeof(*v))) == NULL) {
        vb_api_error(c, 500, "internal", "out of memory");
    } else {
        *v = (voice_req_t){.c = c, .ctx = ctx};
        snprintf(v->to, sizeof(v->to), "%s", to);
        snprintf(v->from, sizeof(v->from), "%s", from);
        snprintf(v->sid, sizeof(v->sid), "%s", sid);
        if (vb_api_db_lookup_number(ctx, v->to, on_voice_assistant, v) < 0) {
            free(v);
            vb_api_error(c, 500, "internal", "cannot look the number up");
        }
    }
    vb_form_free(form);
}

/* Twilio retries and reorders callbacks: each (CallSid, SequenceNumber) is
 * acted on once. This worker remembers the last SEEN_CALLBACKS it handled. */
static int seen_before(const char *call_sid, const char *seq)
{
    static uint64_t seen[SEEN_CALLBACKS];
    static unsigned next;
    uint64_t h = 1469598103934665603ull;
    for (const char *p = call_sid; *p; p++) {
        h = (h ^ (unsigned char)*p) * 1099511628211ull;
    }
    h = (h ^ '#') * 1099511628211ull;
    for (const char *p = seq; *p; p++) {
        h = (h ^ (unsigned char)*p) * 1099511628211ull;
    }
    h |= 1; /* 0 marks an empty entry */
    for (unsigned i = 0; i < SEEN_CALLBACKS; i++) {
        if (seen[i] == h) {
            return 1;
        }
    }
    seen[next++ % SEEN_CALLBACKS] = h;
    return 0;
}

static void on_status_stored(void *arg, int err, int stored)
{
    vb_http_conn_t *c = arg;
    if (err < 0) {
        vb_api_error(c, 503, "unavailable", "the database is unavailable");
        return;
    }
    if (stored) {
        VB_STAT_INC(twilio_status_callbacks);
    } else {
        VB_STAT_INC(twilio_status_duplicates);
    }
    vb_http_reply(c, 204, NULL, "", 0, NULL);
}

void vb_api_twilio_status(vb_http_conn_t *c, vb_http_req_t *req, const vb_child_ctx_t *ctx)
{
    vb_form_t *form = signed_form(c, req, ctx->conf);
    if (form == NULL) {
        return;
    }
    const char *sid = vb_form_get(form, "CallSid"), *status = vb_form_get(form, "CallStatus");
    const char *seq = vb_form_get(form, "SequenceNumber");
    if (sid == NULL || status == NULL) {
        vb_api_error(c, 400, "bad_request", "CallSid and CallStatus are required");
    } else if (vb_api_db_call_status(ctx, form, on_status_stored, c) == 0) {
        vb_log(VB_LOG_INFO, "call %s is %s (sequence %s)", sid, status, seq ? seq : "-");
    } else if (seen_before(sid, seq ? seq : "")) {
        VB_STAT_INC(twilio_status_duplicates);
        vb_http_reply(c, 204, NULL, "", 0, NULL);
    } else {
        VB_STAT_INC(twilio_status_callbacks);
        vb_log(VB_LOG_INFO, "call %s is %s (sequence %s)", sid, status, seq ? seq : "-");
        vb_http_reply(c, 204, NULL, "", 0, NULL);
    }
    vb_form_free(form);
}
