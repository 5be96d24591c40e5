/* voxbridge-callsim: places simulated Twilio calls against a voxbridge server and prints
 * what happened (stderr) and a one-line JSON summary (stdout, last line). The test tool
 * and load generator; see docs/callsim.md. */
#include <errno.h>
#include <event2/event.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "callsim/audio.h"
#include "callsim/options.h"
#include "callsim/sim.h"
#include "callsim/speak.h"
#include "callsim/wav.h"
#include "common/log.h"

/* Line I of the options as 8 kHz PCM: a WAV file converted, or a text spoken. */
static int load_line(const vb_cs_opts_t *o, int i, int16_t **pcm, size_t *n)
{
    const vb_cs_line_t *l = &o->lines[i];
    if (l->is_say) {
        int rc = vb_cs_speak(l->arg, o->voice, o->rate, pcm, n);
        if (rc < 0 && rc != -ENOENT && rc != -EINVAL) {
            vb_log(VB_LOG_ERR, "cannot speak \"%s\": %s", l->arg, strerror(-rc));
        }
        return rc;
    }
    vb_cs_wav_t w;
    int rc = vb_cs_wav_read(l->arg, &w);
    if (rc < 0) {
        vb_log(VB_LOG_ERR, "%s: %s", l->arg,
               rc == -ENOTSUP  ? "not 16-bit PCM or 8-bit mu-law"
               : rc == -EINVAL ? "not a WAV file"
                               : strerror(-rc));
        return rc;
    }
    rc = vb_cs_audio_to_8k(&w, pcm, n);
    vb_cs_wav_free(&w);
    if (rc < 0) {
        vb_log(VB_LOG_ERR, "%s: %s", l->arg,
               rc == -EINVAL ? "the WAV file holds no audio" : strerror(-rc));
    }
    return rc;
}

static int load_lines(const vb_cs_opts_t *o, vb_cs_audio_t *a)
{
    int16_t *pcm[VB_CS_MAX_WAVS] = {0};
    size_t len[VB_CS_MAX_WAVS] = {0};
    int rc = 0;
    for (int i = 0; rc == 0 && i < o->nlines; i++) {
        rc = load_line(o, i, &pcm[i], &len[i]);
    }
    if (rc == 0) {
        rc = vb_cs_audio_from_pcm(a, pcm, len, (size_t)o->nlines, o->pause_ms, o->onset_dbfs);
        if (rc < 0) {
            vb_log(VB_LOG_ERR, "cannot prepare the caller audio: %s", strerror(-rc));
        }
    }
    for (int i = 0; i < o->nlines; i++) {
        free(pcm[i]);
    }
    vb_cs_speak_done();
    return rc;
}

static int load_audio(const vb_cs_opts_t *o, vb_cs_audio_t *a)
{
    if (o->nlines > 0) {
        return load_lines(o, a);
    }
    /* With --duration the tone repeats, so one period is enough. */
    int rc = vb_cs_audio_tone(a, o->duration_s > 0 ? 1 : o->bursts, o->onset_dbfs);
    if (rc < 0) {
        vb_log(VB_LOG_ERR, "cannot make the test signal: %s", strerror(-rc));
    }
    return rc;
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    vb_cs_sim_stop(arg, sig == SIGINT ? "interrupted" : "terminated");
}

static struct event_base *make_base(void)
{
    /* Precise timers: the 20 ms tick must not drift with a coarse clock. */
    struct event_config *cfg = event_config_new();
    if (cfg == NULL) {
        return NULL;
    }
    event_config_set_flag(cfg, EVENT_BASE_FLAG_PRECISE_TIMER);
    struct event_base *base = event_base_new_with_config(cfg);
    event_config_free(cfg);
    return base;
}

static void on_drain_limit(evutil_socket_t fd, short what, void *arg)
{
    *(int *)arg = 1;
}

/* WebSockets that closed may still be flushing and waiting for the peer's FIN on the
 * loop: give them up to a second so that nothing is left half-done at exit. */
static void drain(struct event_base *base)
{
    int expired = 0;
    struct event *limit = evtimer_new(base, on_drain_limit, &expired);
    struct timeval tv = {.tv_sec = 1};
    if (limit == NULL) {
        return;
    }
    evtimer_add(limit, &tv);
    while (!expired && event_base_get_num_events(base, EVENT_BASE_COUNT_ADDED) > 1) {
        event_base_loop(base, EVLOOP_ONCE);
    }
    event_free(limit);
}

/* Runs the calls; returns the exit status. */
static int run(const vb_cs_opts_t *o, const vb_cs_audio_t *audio)
{
    struct event_base *base = make_base();
    vb_cs_sim_t *s = base ? vb_cs_sim_new(base, o, audio) : NULL;
    if (s == NULL || vb_cs_sim_start(s) < 0) {
        vb_log(VB_LOG_ERR, "cannot start the run");
        vb_cs_sim_free(s);
        if (base != NULL) {
            event_base_free(base);
        }
        return 1;
    }
    struct event *sigint = evsignal_new(base, SIGINT, on_signal, s);
    struct event *sigterm = evsignal_new(base, SIGTERM, on_signal, s);
    event_add(sigint, NULL);
    event_add(sigterm, NULL);
    event_base_dispatch(base);
    json_t *sum = vb_cs_sim_summary(s);
    char *line = sum ? json_dumps(sum, JSON_COMPACT | JSON_REAL_PRECISION(10)) : NULL;
    printf("%s\n", line ? line : "{}");
    fflush(stdout);
    int status = (line != NULL && vb_cs_sim_ok(s)) ? 0 : 1;
    free(line);
    json_decref(sum);
    event_free(sigint);
    event_free(sigterm);
    vb_cs_sim_free(s);
    drain(base);
    event_base_free(base);
    return status;
}

int main(int argc, char **argv)
{
    vb_cs_opts_t o;
    vb_log_init("callsim");
    int rc = vb_cs_opts_parse(&o, argc, argv, stdout, stderr);
    if (rc != 0) {
        return rc > 0 ? 0 : 2;
    }
    if (o.quiet) {
        vb_log_set_level(VB_LOG_WARN);
    }
    if (o.token == NULL || o.token[0] == '\0') {
        vb_log(VB_LOG_WARN, "no --token or TWILIO_AUTH_TOKEN: webhooks are signed with an "
                            "empty token and a real server will refuse them");
    }
    signal(SIGPIPE, SIG_IGN);
    vb_cs_audio_t audio;
    if (load_audio(&o, &audio) < 0) {
        return 2;
    }
    int status = run(&o, &audio);
    vb_cs_audio_free(&audio);
    return status;
}
