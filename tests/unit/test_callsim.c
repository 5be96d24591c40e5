/* Unit tests for voxbridge-callsim's pure parts: WAV reader/writer, caller audio, speech
 * synthesis, the conversation's turn scheduler, the playout/mark model, gap and round-trip
 * statistics, TwiML reading and option parsing; and whole runs against a fake server
 * (echo, clear, hang-up, a conversation). Run by `make check`. */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/event.h>
#include <jansson.h>
#include <sys/socket.h>

#include "api/form.h"
#include "api/twilio.h"
#include "callsim/audio.h"
#include "callsim/conv.h"
#include "callsim/sim.h"
#include "callsim/speak.h"
#include "common/httpd.h"
#include "common/log.h"
#include "common/tls.h"
#include "common/ws.h"
#include "tests/unit/net_testutil.h"
#include "worker/mstream.h"
#include "callsim/options.h"
#include "callsim/playout.h"
#include "callsim/stats.h"
#include "callsim/twiml.h"
#include "callsim/wav.h"
#include "common/g711.h"

/* ---- helpers ------------------------------------------------------------ */

static void put16(uint8_t *p, unsigned v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static void put32(uint8_t *p, uint32_t v)
{
    put16(p, v & 0xFFFF);
    put16(p + 2, v >> 16);
}

/* A WAV image in BUF: fmt (TAG, CH, RATE, BITS; EXT: WAVE_FORMAT_EXTENSIBLE), an odd
 * "LIST" chunk, then DATA. Returns its size. */
static size_t make_wav(uint8_t *buf, unsigned tag, unsigned ch, unsigned rate, unsigned bits,
                       int ext, const void *data, size_t len)
{
    size_t fmt_len = ext ? 40 : 16, off = 12;
    memcpy(buf, "RIFF", 4);
    memcpy(buf + 8, "WAVE", 4);
    memcpy(buf + off, "fmt ", 4);
    put32(buf + off + 4, (uint32_t)fmt_len);
    memset(buf + off + 8, 0, fmt_len);
    put16(buf + off + 8, ext ? 0xFFFE : tag);
    put16(buf + off + 10, ch);
    put32(buf + off + 12, rate);
    put32(buf + off + 16, rate * ch * bits / 8);
    put16(buf + off + 20, ch * bits / 8);
    put16(buf + off + 22, bits);
    if (ext) {
        put16(buf + off + 32, tag);
    }
    off += 8 + fmt_len;
    memcpy(buf + off, "LIST\x03\0\0\0abc\0", 12); /* odd size: one pad byte */
    off += 12;
    memcpy(buf + off, "data", 4);
    put32(buf + off + 4, (uint32_t)len);
    memcpy(buf + off + 8, data, len);
    off += 8 + len;
    put32(buf + 4, (uint32_t)(off - 8));
    return off;
}

static void sine(int16_t *pcm, size_t n, double hz, unsigned rate, double amp)
{
    for (size_t i = 0; i < n; i++) {
        pcm[i] = (int16_t)lrint(amp * sin(2 * M_PI * hz * (double)i / rate));
    }
}

static size_t zero_crossings(const int16_t *pcm, size_t n)
{
    size_t z = 0;
    for (size_t i = 1; i < n; i++) {
        z += (pcm[i - 1] < 0) != (pcm[i] < 0);
    }
    return z;
}

static double rms(const int16_t *pcm, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++) {
        s += (double)pcm[i] * pcm[i];
    }
    return sqrt(s / (double)n);
}

/* ---- WAV -------------------------------------------------------------------- */

static void test_wav_roundtrip(void **state)
{
    char path[] = "/tmp/test_callsim_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    int16_t pcm[1000];
    sine(pcm, 1000, 440, 8000, 12000);
    vb_cs_wav_writer_t w;
    assert_int_equal(vb_cs_wav_writer_open(&w, path, 8000), 0);
    vb_cs_wav_writer_write(&w, pcm, 300);
    vb_cs_wav_writer_write(&w, pcm + 300, 700);
    assert_int_equal(vb_cs_wav_writer_close(&w), 0);

    vb_cs_wav_t r;
    assert_int_equal(vb_cs_wav_read(path, &r), 0);
    assert_int_equal(r.format, VB_CS_WAV_PCM);
    assert_int_equal(r.rate, 8000);
    assert_int_equal(r.channels, 1);
    assert_int_equal(r.len, sizeof(pcm));
    for (int i = 0; i < 1000; i++) {
        assert_int_equal((int16_t)(r.data[2 * i] | r.data[2 * i + 1] << 8), pcm[i]);
    }
    vb_cs_wav_free(&r);
    unlink(path);
    assert_int_equal(vb_cs_wav_read(path, &r), -ENOENT);
}

static void test_wav_formats(void **state)
{
    static uint8_t buf[4096];
    uint8_t ulaw[321];
    memset(ulaw, 0x55, sizeof(ulaw));
    vb_cs_wav_t w;
    size_t n = make_wav(buf, 7, 1, 8000, 8, 0, ulaw, sizeof(ulaw));
    assert_int_equal(vb_cs_wav_parse(buf, n, &w), 0);
    assert_int_equal(w.format, VB_CS_WAV_ULAW);
    assert_int_equal(w.len, 321);
    vb_cs_wav_free(&w);

    /* Extensible PCM, stereo: the odd trailing byte is not a whole frame. */
    n = make_wav(buf, 1, 2, 16000, 16, 1, ulaw, 7);
    assert_int_equal(vb_cs_wav_parse(buf, n, &w), 0);
    assert_int_equal(w.format, VB_CS_WAV_PCM);
    assert_int_equal(w.channels, 2);
    assert_int_equal(w.rate, 16000);
    assert_int_equal(w.len, 4);
    vb_cs_wav_free(&w);

    n = make_wav(buf, 1, 1, 8000, 8, 0, ulaw, 10); /* 8-bit PCM */
    assert_int_equal(vb_cs_wav_parse(buf, n, &w), -ENOTSUP);
    n = make_wav(buf, 3, 1, 8000, 32, 0, ulaw, 8); /* float */
    assert_int_equal(vb_cs_wav_parse(buf, n, &w), -ENOTSUP);
    assert_int_equal(vb_cs_wav_parse((const uint8_t *)"RIFF\0\0\0\0WAVX", 12, &w), -EINVAL);
    n = make_wav(buf, 7, 1, 8000, 8, 0, ulaw, 100);
    assert_int_equal(vb_cs_wav_parse(buf, 30, &w), -EINVAL); /* cut inside fmt */
    /* A data size past the end (streamed file) takes what is there. */
    put32(buf + n - 100 - 4, 0xFFFFFFFFu);
    assert_int_equal(vb_cs_wav_parse(buf, n - 50, &w), 0);
    assert_int_equal(w.len, 50);
    vb_cs_wav_free(&w);
}

/* ---- caller audio ----------------------------------------------------------- */

static void test_audio_resample(void **state)
{
    static int16_t pcm16k[16000];
    static uint8_t buf[sizeof(pcm16k) + 256];
    sine(pcm16k, 16000, 1000, 16000, 10000);
    size_t n = make_wav(buf, 1, 1, 16000, 16, 0, pcm16k, sizeof(pcm16k));
    vb_cs_wav_t w;
    assert_int_equal(vb_cs_wav_parse(buf, n, &w), 0);
    int16_t *out;
    size_t outn;
    assert_int_equal(vb_cs_audio_to_8k(&w, &out, &outn), 0);
    assert_in_range(outn, 7950, 8050);
    /* 1 kHz for one second: about 2000 zero crossings; level kept. */
    assert_in_range(zero_crossings(out + 100, 7800), 1940, 1960);
    assert_in_range((long)rms(out + 100, 7800), 6800, 7300);
    free(out);
    vb_cs_wav_free(&w);
}

static void test_audio_ulaw_passthrough(void **state)
{
    static uint8_t buf[2048];
    int16_t pcm[800];
    uint8_t ulaw[800];
    sine(pcm, 800, 300, 8000, 8000);
    vb_ulaw_encode(pcm, 800, ulaw);
    size_t n = make_wav(buf, 7, 1, 8000, 8, 0, ulaw, sizeof(ulaw));
    vb_cs_wav_t w;
    assert_int_equal(vb_cs_wav_parse(buf, n, &w), 0);
    vb_cs_audio_t a;
    assert_int_equal(vb_cs_audio_from_wavs(&a, &w, 1, 100, -36.0), 0);
    assert_int_equal(a.len, 1600); /* 800 samples + 100 ms pause */
    int16_t back[800], want[800];
    vb_ulaw_decode(a.ulaw, 800, back);
    vb_ulaw_decode(ulaw, 800, want);
    assert_memory_equal(back, want, sizeof(want));
    assert_int_equal(a.ulaw[900], VB_ULAW_SILENCE);
    vb_cs_audio_free(&a);
    vb_cs_wav_free(&w);
}

static void test_audio_wav_turns(void **state)
{
    static uint8_t b1[8192], b2[8192];
    int16_t t1[2000], t2[1200];
    sine(t1, 2000, 500, 8000, 8000);
    memset(t1, 0, 800 * sizeof(int16_t)); /* speech starts 100 ms in */
    sine(t2, 1200, 700, 8000, 8000);
    vb_cs_wav_t w[2];
    assert_int_equal(
        vb_cs_wav_parse(b1, make_wav(b1, 1, 1, 8000, 16, 0, t1, sizeof(t1)), &w[0]), 0);
    assert_int_equal(
        vb_cs_wav_parse(b2, make_wav(b2, 1, 1, 8000, 16, 0, t2, sizeof(t2)), &w[1]), 0);
    vb_cs_audio_t a;
    assert_int_equal(vb_cs_audio_from_wavs(&a, w, 2, 50, -36.0), 0);
    /* 2000 + 400 + 1200 + 400 = 4000 samples = 25 frames. */
    assert_int_equal(a.len, 4000);
    assert_int_equal(a.nturns, 2);
    assert_in_range(a.onsets[0], 800, 840);
    assert_in_range(a.onsets[1], 2400, 2402);
    assert_int_equal(vb_cs_audio_frames(&a), 25);
    assert_int_equal(vb_cs_audio_turn_in(&a, 5, 0), (int)a.onsets[0] - 800);
    assert_int_equal(vb_cs_audio_turn_in(&a, 6, 0), -1);
    assert_int_equal(vb_cs_audio_turn_in(&a, 15, 0), (int)a.onsets[1] - 2400);
    assert_int_equal(vb_cs_audio_turn_in(&a, 15 + 25, 0), -1); /* past the end */
    assert_int_equal(vb_cs_audio_turn_in(&a, 15 + 25, 1), (int)a.onsets[1] - 2400);
    int16_t dec[160];
    vb_ulaw_decode(vb_cs_audio_frame(&a, 16, 0), 160, dec);
    assert_true(rms(dec, 160) > 4000);
    vb_ulaw_decode(vb_cs_audio_frame(&a, 24, 0), 160, dec); /* in the pause */
    assert_true(rms(dec, 160) < 10);
    assert_int_equal(vb_cs_audio_frame(&a, 30, 0)[0], VB_ULAW_SILENCE);
    assert_ptr_equal(vb_cs_audio_frame(&a, 16 + 25, 1), vb_cs_audio_frame(&a, 16, 0));
    vb_cs_audio_free(&a);
    vb_cs_wav_free(&w[0]);
    vb_cs_wav_free(&w[1]);
}

static void test_audio_tone(void **state)
{
    vb_cs_audio_t a;
    assert_int_equal(vb_cs_audio_tone(&a, 3, -36.0), 0);
    assert_int_equal(a.len, 24000);
    assert_int_equal(a.nturns, 3);
    /* The 5 ms fade-in: the onset is in the first or second 5 ms window. */
    assert_in_range(a.onsets[0], 0, 40);
    assert_int_equal(a.onsets[1], 8000 + a.onsets[0]);
    assert_int_equal(a.onsets[2], 16000 + a.onsets[0]);
    assert_int_equal(vb_cs_audio_turn_in(&a, 50, 0), (int)a.onsets[0]);
    assert_int_equal(vb_cs_audio_turn_in(&a, 51, 0), -1);

    int16_t pcm[24000];
    vb_ulaw_decode(a.ulaw, a.len, pcm);
    int peak = 0;
    for (int i = 0; i < 2400; i++) {
        peak = abs(pcm[i]) > peak ? abs(pcm[i]) : peak;
    }
    /* -12 dBFS peak is 8225; mu-law quantisation costs a few percent. */
    assert_in_range(peak, 7700, 8700);
    assert_true(rms(pcm + 2400, 5600) < 1.0); /* silence between bursts */
    /* Speech-band: crosses zero far more often than a 300 Hz tone would. */
    assert_true(zero_crossings(pcm + 100, 2200) > 300);
    vb_cs_audio_free(&a);
}

static void test_audio_pcm_turns(void **state)
{
    /* Two turns: 100 ms of silence then 300 ms of tone then 50 ms of silence; 250 ms. */
    int16_t t1[3600] = {0}, t2[2000];
    sine(t1 + 800, 2400, 500, 8000, 8000);
    sine(t2, 2000, 700, 8000, 8000);
    int16_t *pcm[2] = {t1, t2};
    size_t len[2] = {3600, 2000};
    vb_cs_audio_t a;
    assert_int_equal(vb_cs_audio_from_pcm(&a, pcm, len, 2, 100, -36.0), 0);
    assert_int_equal(a.nturns, 2);
    assert_int_equal(a.starts[0], 0);
    assert_int_equal(a.lens[0], 3600);
    assert_int_equal(a.starts[1], 3600 + 800);
    assert_int_equal(a.lens[1], 2000);
    assert_in_range(a.onsets[0], 800, 840);
    assert_in_range(a.ends[0], 3160, 3240); /* speech ends 50 ms before the turn does */
    assert_in_range(a.onsets[1], a.starts[1], a.starts[1] + 2);
    assert_int_equal(a.ends[1], a.starts[1] + 2000);
    /* A turn's own frames: 3600 samples are 23 frames, the last padded with silence. */
    assert_int_equal(vb_cs_audio_turn_frames(&a, 0), 23);
    assert_int_equal(vb_cs_audio_turn_frames(&a, 1), 13);
    assert_int_equal(vb_cs_audio_turn_frames(&a, 2), 0);
    uint8_t f[160];
    int16_t dec[160];
    vb_cs_audio_turn_frame(&a, 1, 12, f); /* samples 1920..1999 then silence */
    vb_ulaw_decode(f, 160, dec);
    assert_true(rms(dec, 80) > 4000);
    assert_true(rms(dec + 80, 80) < 1.0);
    vb_cs_audio_turn_frame(&a, 1, 0, f);
    assert_memory_equal(f, a.ulaw + a.starts[1], 160);
    vb_cs_audio_turn_frame(&a, 1, 13, f);
    assert_int_equal(f[0], VB_ULAW_SILENCE);
    assert_int_equal(f[159], VB_ULAW_SILENCE);
    vb_cs_audio_free(&a);
    len[1] = 0;
    assert_int_equal(vb_cs_audio_from_pcm(&a, pcm, len, 2, 100, -36.0), -EINVAL);
}

/* ---- speech synthesis ------------------------------------------------------- */

static void test_speak(void **state)
{
    int16_t *pcm, *fast, *longer;
    size_t n, nf, nl;
    int rc = vb_cs_speak("what are your opening hours", NULL, 0, &pcm, &n);
    if (rc == -ENOENT) {
        skip(); /* espeak-ng's data is not installed */
    }
    assert_int_equal(rc, 0);
    /* Five words at 165 words a minute, plus espeak's own pauses: 1 to 3 s at 8 kHz. */
    assert_in_range(n, 8000, 24000);
    assert_true(rms(pcm, n) > 500);
    /* The line's band: a 22.05 kHz voice resampled to 8 kHz is still speech, not a hum. */
    assert_true(zero_crossings(pcm, n) > n / 40);
    vb_cs_audio_t a;
    int16_t *turns[1] = {pcm};
    assert_int_equal(vb_cs_audio_from_pcm(&a, turns, &n, 1, 0, -36.0), 0);
    assert_true(a.onsets[0] < 2400);             /* speech within 300 ms of the start */
    assert_true(a.ends[0] > a.onsets[0] + 4000); /* and at least 0.5 s of it */
    assert_true(a.ends[0] <= n);
    vb_cs_audio_free(&a);

    assert_int_equal(vb_cs_speak("what are your opening hours", "en-us", 330, &fast, &nf), 0);
    assert_true(nf < n * 3 / 4); /* twice as fast: clearly shorter */
    assert_int_equal(vb_cs_speak("what are your opening hours on a saturday in december",
                                 "en-us", 165, &longer, &nl),
                     0);
    assert_true(nl > n * 3 / 2);
    int16_t *x = NULL;
    size_t nx = 0;
    assert_int_equal(vb_cs_speak(" ", NULL, 0, &x, &nx), -EINVAL);
    assert_int_equal(vb_cs_speak("hello", "no-such-voice-xyz", 0, &x, &nx), -EINVAL);
    assert_null(x);
    free(pcm);
    free(fast);
    free(longer);
    vb_cs_speak_done();
}

/* ---- the conversation's turn scheduler --------------------------------------- */

/* A scripted agent: it speaks a greeting, then answers each caller line DELAY samples
 * after its end of speech with LEN samples of audio (a line in SILENT_TURN gets no
 * answer). The caller's frames are checked against what the agent is doing. */
typedef struct {
    vb_cs_conv_t c;
    vb_cs_audio_t a;
    int64_t greet_len, delay, len;
    int silent_turn;
    int64_t say_from, say_to; /* agent audio being played, [from, to) */
    int64_t last_sound;
    size_t answered;
    int talked_over; /* the caller spoke while the agent's audio played */
    int64_t first_frame[8];
} script_t;

static void script_audio(script_t *sc, size_t nturns, int16_t **pcm, size_t *len)
{
    for (size_t t = 0; t < nturns; t++) {
        len[t] = 4000; /* 100 ms silence, 300 ms speech, 100 ms silence */
        pcm[t] = calloc(len[t], sizeof(int16_t));
        sine(pcm[t] + 800, 2400, 400, 8000, 8000);
    }
    assert_int_equal(vb_cs_audio_from_pcm(&sc->a, pcm, len, nturns, 0, -36.0), 0);
}

/* Runs the call to NOW_MAX (or the end of the conversation) and returns when it ended. */
static int64_t script_run(script_t *sc, int64_t now_max)
{
    int64_t now = 0;
    for (; now < now_max && !vb_cs_conv_over(&sc->c); now += VB_CS_FRAME) {
        /* the agent: start an answer once a line's end of speech is DELAY old */
        size_t spoken = vb_cs_conv_spoken(&sc->c);
        if (spoken > sc->answered && !sc->c.speaking) {
            const vb_cs_turn_rec_t *r = &sc->c.rec[spoken - 1];
            if ((int)spoken - 1 == sc->silent_turn) {
                sc->answered = spoken;
            } else if (now >= r->end + sc->delay) {
                sc->answered = spoken;
                sc->say_from = now;
                sc->say_to = now + sc->len;
                vb_cs_conv_onset(&sc->c, now);
            }
        }
        if (now >= sc->say_from && now < sc->say_to) {
            sc->last_sound = now + VB_CS_FRAME;
        }
        int queued = now < sc->say_to; /* the whole answer sits in the queue */
        int64_t onset;
        size_t before = vb_cs_conv_spoken(&sc->c);
        const uint8_t *f = vb_cs_conv_next(&sc->c, now, sc->last_sound, queued, &onset);
        if (vb_cs_conv_spoken(&sc->c) > before) {
            sc->first_frame[before] = now;
        }
        int16_t dec[160];
        vb_ulaw_decode(f, 160, dec);
        if (rms(dec, 160) > 100 && now < sc->say_to) {
            sc->talked_over = 1;
        }
    }
    return now;
}

static void script_free(script_t *sc, int16_t **pcm, size_t n)
{
    vb_cs_conv_free(&sc->c);
    vb_cs_audio_free(&sc->a);
    for (size_t t = 0; t < n; t++) {
        free(pcm[t]);
    }
}

static void test_conv_waits_for_the_agent(void **state)
{
    static script_t sc;
    int16_t *pcm[3];
    size_t len[3];
    memset(&sc, 0, sizeof(sc));
    script_audio(&sc, 3, pcm, len);
    vb_cs_conv_opts_t o = {.pause_ms = 800, .gap_ms = 600, .wait_ms = 3000, .tail_ms = 2000};
    assert_int_equal(vb_cs_conv_init(&sc.c, &sc.a, &o), 0);
    sc.delay = 8 * 700; /* the agent answers 700 ms after the caller stops */
    sc.len = 8 * 1500;
    sc.silent_turn = -1;
    /* A greeting from 0 to 2 s. */
    vb_cs_conv_onset(&sc.c, 0);
    sc.say_from = 0;
    sc.say_to = sc.last_sound = 16000;
    int64_t end = script_run(&sc, 8 * 60000);
    assert_true(vb_cs_conv_over(&sc.c));
    assert_false(sc.talked_over);
    assert_int_equal(vb_cs_conv_spoken(&sc.c), 3);
    assert_int_equal(vb_cs_conv_unanswered(&sc.c), 0);
    /* The first line starts once the greeting is over and 600 ms quiet. */
    assert_in_range(sc.first_frame[0], 16000 + 4800, 16000 + 4800 + 160);
    assert_int_equal(sc.c.rec[0].sent, sc.first_frame[0]);
    assert_in_range(sc.c.rec[0].start, sc.first_frame[0] + 800, sc.first_frame[0] + 840);
    assert_in_range(sc.c.rec[0].end, sc.first_frame[0] + 3160, sc.first_frame[0] + 3240);
    for (size_t t = 0; t < 3; t++) {
        /* each answer came 700 ms after the end of speech (to the next frame slot) */
        assert_in_range(vb_cs_conv_reply(&sc.c, t), 5600, 5600 + 160);
    }
    /* The next line: after the answer (1.5 s) and 600 ms of quiet. */
    int64_t ans_end = sc.c.rec[0].reply + 12000;
    assert_in_range(sc.first_frame[1], ans_end + 4800, ans_end + 4800 + 160);
    /* After the last answer, 2 s of quiet and the caller hangs up. */
    int64_t last_end = sc.c.rec[2].reply + 12000;
    assert_in_range(end, last_end + 16000, last_end + 16000 + 320);
    script_free(&sc, pcm, 3);
}

static void test_conv_no_greeting_and_no_answer(void **state)
{
    static script_t sc;
    int16_t *pcm[3];
    size_t len[3];
    memset(&sc, 0, sizeof(sc));
    script_audio(&sc, 3, pcm, len);
    vb_cs_conv_opts_t o = {.pause_ms = 800, .gap_ms = 600, .wait_ms = 3000, .tail_ms = 2000};
    assert_int_equal(vb_cs_conv_init(&sc.c, &sc.a, &o), 0);
    sc.delay = 8 * 300;
    sc.len = 8 * 1000;
    sc.silent_turn = 1; /* the second line gets no answer */
    sc.last_sound = -1;
    script_run(&sc, 8 * 60000);
    assert_true(vb_cs_conv_over(&sc.c));
    /* Nobody spoke first: the caller did, --pause-ms in. */
    assert_int_equal(sc.first_frame[0], 6400);
    assert_int_equal(vb_cs_conv_unanswered(&sc.c), 1);
    assert_true(vb_cs_conv_reply(&sc.c, 0) >= 0);
    assert_int_equal(vb_cs_conv_reply(&sc.c, 1), -1);
    assert_true(vb_cs_conv_reply(&sc.c, 2) >= 0);
    /* The unanswered line: the third one follows it --wait-ms after its audio ended. */
    int64_t end1 = sc.first_frame[1] + 4000;
    assert_in_range(sc.first_frame[2], end1 + 24000, end1 + 24000 + 160);
    assert_false(sc.talked_over);
    script_free(&sc, pcm, 3);
}

static void test_conv_echo_and_held_audio(void **state)
{
    static script_t sc;
    int16_t *pcm[1];
    size_t len[1];
    memset(&sc, 0, sizeof(sc));
    script_audio(&sc, 1, pcm, len);
    vb_cs_conv_opts_t o = {.pause_ms = 0, .gap_ms = 600, .wait_ms = 3000, .tail_ms = 1000};
    assert_int_equal(vb_cs_conv_init(&sc.c, &sc.a, &o), 0);
    int64_t onset;
    /* Sound waiting in the playout queue holds the caller back, however long ago the
     * agent was last heard. */
    for (int64_t now = 0; now < 8000; now += 160) {
        vb_cs_conv_next(&sc.c, now, -1, 1, &onset);
        assert_int_equal(vb_cs_conv_spoken(&sc.c), 0);
    }
    /* Queue drained: the line starts at once (no greeting was heard, --pause-ms 0). */
    int64_t now = 8000;
    vb_cs_conv_next(&sc.c, now, -1, 0, &onset);
    assert_int_equal(vb_cs_conv_spoken(&sc.c), 1);
    /* An echo: agent audio starting while the caller still speaks answers the line with
     * a reply time of 0. An onset before the line's speech began does not count. */
    for (now += 160; now < 8000 + 4000; now += 160) {
        if (now == 8000 + 480) {
            vb_cs_conv_onset(&sc.c, now); /* before the speech start at +800 */
            assert_int_equal(sc.c.rec[0].reply, -1);
        }
        if (now == 8000 + 1600) {
            vb_cs_conv_onset(&sc.c, now);
        }
        vb_cs_conv_next(&sc.c, now, now, 0, &onset);
        if (now == 8000 + 800) {
            assert_int_equal(onset, 8000 + 800 + 0 * 160 + (sc.a.onsets[0] - 800));
        }
    }
    assert_int_equal(sc.c.rec[0].reply, 8000 + 1600);
    assert_int_equal(vb_cs_conv_reply(&sc.c, 0), 0);
    /* Quiet for the tail: over. */
    int64_t quiet_from = now;
    while (!vb_cs_conv_over(&sc.c) && now < quiet_from + 16000) {
        vb_cs_conv_next(&sc.c, now, quiet_from, 0, &onset);
        now += 160;
    }
    assert_true(vb_cs_conv_over(&sc.c));
    assert_in_range(now - quiet_from, 8000, 8000 + 320);
    script_free(&sc, pcm, 1);
}

/* ---- playout -------------------------------------------------------------- */

typedef struct {
    int16_t heard[65536];
    size_t nheard;
    char marks[16][32];
    size_t mark_at[16]; /* samples heard when the mark was answered */
    int nmarks;
} sink_t;

static void sink_audio(const int16_t *pcm, size_t n, void *arg)
{
    sink_t *s = arg;
    assert_true(n > 0);
    for (size_t i = 0; i < n; i++) {
        if (s->nheard < 65536) {
            s->heard[s->nheard] = pcm[i];
        }
        s->nheard++;
    }
}

static void sink_mark(const char *name, void *arg)
{
    sink_t *s = arg;
    snprintf(s->marks[s->nmarks], 32, "%s", name);
    s->mark_at[s->nmarks++] = s->nheard;
}

static void ramp_fill(int16_t *pcm, size_t n, int start)
{
    for (size_t i = 0; i < n; i++) {
        pcm[i] = (int16_t)(start + (int)i);
    }
}

static vb_cs_playout_t *new_playout(sink_t *s)
{
    static vb_cs_playout_t p;
    vb_cs_playout_cb_t cb = {.on_audio = sink_audio, .on_mark = sink_mark, .arg = s};
    memset(s, 0, sizeof(*s));
    assert_int_equal(vb_cs_playout_init(&p, &cb), 0);
    return &p;
}

static void test_playout_marks(void **state)
{
    static sink_t s;
    vb_cs_playout_t *p = new_playout(&s);
    int16_t a[800];
    ramp_fill(a, 800, 1);

    vb_cs_playout_advance(p, 80); /* 10 ms of silence first */
    assert_int_equal(vb_cs_playout_push(p, 80, a, 800), 0);
    assert_int_equal(vb_cs_playout_mark(p, 80, "m1"), 0);
    assert_int_equal(s.nmarks, 0);
    vb_cs_playout_advance(p, 480);
    assert_int_equal(s.nheard, 480);
    assert_int_equal(s.heard[79], 0);
    assert_int_equal(s.heard[80], 1);
    assert_int_equal(s.heard[479], 400);
    assert_int_equal(vb_cs_playout_queued(p), 400);
    assert_int_equal(s.nmarks, 0);
    vb_cs_playout_advance(p, 2000);
    assert_int_equal(s.nmarks, 1);
    assert_string_equal(s.marks[0], "m1");
    assert_int_equal(s.mark_at[0], 880); /* exactly when its audio finished */
    assert_int_equal(s.nheard, 2000);
    assert_int_equal(s.heard[879], 800);
    assert_int_equal(s.heard[880], 0);
    assert_int_equal(p->empty_at, 880);

    /* Nothing queued: a mark comes straight back. */
    assert_int_equal(vb_cs_playout_mark(p, 2100, "now"), 0);
    assert_int_equal(s.nmarks, 2);
    assert_int_equal(s.mark_at[1], 2100);
    vb_cs_playout_free(p);
}

static void test_playout_clear(void **state)
{
    static sink_t s;
    vb_cs_playout_t *p = new_playout(&s);
    int16_t a[1600];
    ramp_fill(a, 1600, 1);
    vb_cs_playout_push(p, 0, a, 800);
    vb_cs_playout_mark(p, 0, "a");
    vb_cs_playout_push(p, 10, a + 800, 800);
    vb_cs_playout_mark(p, 10, "b");
    vb_cs_playout_advance(p, 900);
    assert_int_equal(s.nmarks, 1);
    assert_int_equal(vb_cs_playout_clear(p, 1000), 1);
    assert_int_equal(s.nmarks, 2);
    assert_string_equal(s.marks[1], "b");
    assert_int_equal(s.mark_at[1], 1000);
    assert_int_equal(vb_cs_playout_queued(p), 0);
    assert_int_equal(p->empty_at, 1000);
    vb_cs_playout_advance(p, 1200);
    assert_int_equal(s.heard[999], 1000);
    assert_int_equal(s.heard[1000], 0); /* the rest was dropped */
    assert_int_equal(vb_cs_playout_clear(p, 1300), 0);
    vb_cs_playout_free(p);
}

static void test_playout_gap_and_growth(void **state)
{
    static sink_t s;
    static int16_t big[40000];
    vb_cs_playout_t *p = new_playout(&s);
    int16_t a[160];
    ramp_fill(a, 160, 100);
    vb_cs_playout_push(p, 0, a, 160);
    vb_cs_playout_push(p, 1000, a, 160); /* arrived 105 ms late: silence between */
    vb_cs_playout_advance(p, 1200);
    assert_int_equal(s.heard[159], 259);
    assert_int_equal(s.heard[160], 0);
    assert_int_equal(s.heard[999], 0);
    assert_int_equal(s.heard[1000], 100);
    assert_int_equal(s.heard[1159], 259);
    assert_int_equal(p->empty_at, 1160);

    /* More than the initial 2 s at once, then more after a partial play: order kept
     * across the growth and the wrap. */
    for (int i = 0; i < 40000; i++) {
        big[i] = (int16_t)(i % 30000);
    }
    vb_cs_playout_push(p, 1200, big, 20000);
    vb_cs_playout_advance(p, 1200 + 15000);
    vb_cs_playout_push(p, 1200 + 15000, big + 20000, 20000);
    vb_cs_playout_advance(p, 1200 + 40000);
    for (int i = 0; i < 40000; i++) {
        if (s.heard[1200 + i] != big[i]) {
            fail_msg("sample %d: %d != %d", i, s.heard[1200 + i], big[i]);
        }
    }
    assert_int_equal(s.nheard, 41200);
    vb_cs_playout_free(p);
}

static void test_playout_limit(void **state)
{
    static sink_t s;
    vb_cs_playout_t *p = new_playout(&s);
    int16_t *a = calloc(VB_CS_PLAYOUT_MAX, sizeof(*a));
    assert_non_null(a);
    assert_int_equal(vb_cs_playout_push(p, 0, a, VB_CS_PLAYOUT_MAX - 10), 0);
    assert_int_equal(vb_cs_playout_push(p, 0, a, 50), -ENOBUFS);
    assert_int_equal(p->dropped, 40);
    assert_int_equal(vb_cs_playout_queued(p), VB_CS_PLAYOUT_MAX);
    free(a);
    vb_cs_playout_free(p);
}

/* ---- statistics ------------------------------------------------------------- */

static void test_rx_gaps(void **state)
{
    vb_cs_rx_t rx;
    vb_cs_rx_init(&rx);
    /* Paced 20 ms frames with the queue ahead: no gaps. */
    for (int i = 0; i < 10; i++) {
        vb_cs_rx_media(&rx, VB_CS_SAMPLES(20 * i), 800, -1);
    }
    assert_int_equal(rx.messages, 10);
    assert_int_equal(rx.gaps_over, 0);
    assert_int_equal(rx.max_gap, VB_CS_SAMPLES(20));
    /* 60 ms while the queue still plays: a gap, not late. */
    vb_cs_rx_media(&rx, VB_CS_SAMPLES(240), 160, -1);
    assert_int_equal(rx.gaps_over, 1);
    assert_int_equal(rx.max_gap, VB_CS_SAMPLES(60));
    assert_int_equal(rx.late, 0);
    /* The queue ran dry 30 ms ago: late, and the 90 ms gap counts. */
    vb_cs_rx_media(&rx, VB_CS_SAMPLES(330), 0, VB_CS_SAMPLES(300));
    assert_int_equal(rx.late, 1);
    assert_int_equal(rx.underrun_samples, VB_CS_SAMPLES(30));
    assert_int_equal(rx.gaps_over, 2);
    assert_int_equal(rx.max_gap, VB_CS_SAMPLES(90));
    /* Dry for 2 ms only: clock jitter. */
    vb_cs_rx_media(&rx, VB_CS_SAMPLES(352), 0, VB_CS_SAMPLES(350));
    assert_int_equal(rx.late, 1);
    /* Two seconds of silence: a new utterance, no gap. */
    vb_cs_rx_media(&rx, VB_CS_SAMPLES(2500), 0, VB_CS_SAMPLES(372));
    assert_int_equal(rx.gaps_over, 2);
    assert_int_equal(rx.late, 1);
    assert_int_equal(rx.max_gap, VB_CS_SAMPLES(90));
    /* After a clear the next audio starts afresh. */
    vb_cs_rx_clear(&rx);
    vb_cs_rx_media(&rx, VB_CS_SAMPLES(2600), 0, VB_CS_SAMPLES(2590));
    assert_int_equal(rx.late, 1);
    assert_int_equal(rx.gaps_over, 2);
    assert_int_equal(rx.messages, 15);
    /* Lateness of the 12 messages inside utterances: 10 on time, 2 ms, 30 ms. */
    uint64_t hist[VB_CS_LATENESS_BUCKETS] = {0};
    vb_cs_lateness_add(hist, &rx);
    assert_true(vb_cs_lateness_pct(hist, 50) == 0);
    assert_true(vb_cs_lateness_pct(hist, 90) == 2);
    assert_true(vb_cs_lateness_pct(hist, 99) == 30);
    /* 400 ms dry (still the same utterance) lands in the open last bucket. */
    vb_cs_rx_media(&rx, VB_CS_SAMPLES(3000), 0, VB_CS_SAMPLES(2600));
    memset(hist, 0, sizeof(hist));
    vb_cs_lateness_add(hist, &rx);
    assert_true(vb_cs_lateness_pct(hist, 100) == VB_CS_LATENESS_BUCKETS - 1);
    uint64_t empty[VB_CS_LATENESS_BUCKETS] = {0};
    assert_true(vb_cs_lateness_pct(empty, 99) == 0);
}

static size_t feed_all(vb_cs_onset_t *o, const int16_t *pcm, size_t n, int64_t *at, size_t cap)
{
    size_t found = 0;
    for (size_t off = 0; off < n; off += 100) { /* odd chunking on purpose */
        size_t k = n - off < 100 ? n - off : 100;
        found += vb_cs_onset_feed(o, pcm + off, k, at + found, cap - found);
    }
    return found;
}

static void test_onset(void **state)
{
    static int16_t pcm[8000 * 3];
    vb_cs_onset_t o;
    int64_t at[8];
    vb_cs_onset_init(&o, -36.0, 200);
    /* 0.5 s silence, 0.3 s tone, 0.1 s gap, 0.3 s tone, 0.5 s low noise, tone. */
    sine(pcm + 4000, 2400, 800, 8000, 6000);
    sine(pcm + 7200, 2400, 800, 8000, 6000);
    for (int i = 9600; i < 13600; i++) {
        pcm[i] = (int16_t)((i % 2) ? 30 : -30); /* about -61 dBFS: quiet */
    }
    sine(pcm + 13600, 2400, 800, 8000, 6000);
    size_t n = feed_all(&o, pcm, 16000, at, 8);
    assert_int_equal(n, 2);
    assert_in_range(at[0], 4000, 4040);
    assert_in_range(at[1], 13600, 13640);

    /* Sample-accurate whatever the window alignment (4013 is mid-window). */
    vb_cs_onset_init(&o, -36.0, 200);
    memset(pcm, 0, sizeof(pcm));
    sine(pcm + 4013, 2400, 800, 8000, 6000);
    assert_int_equal(feed_all(&o, pcm, 8000, at, 8), 1);
    assert_int_equal(at[0], 4014); /* sin(0) is 0; the next sample is loud */

    /* A signal between the thresholds never re-arms the detector. */
    vb_cs_onset_init(&o, -36.0, 200);
    memset(pcm, 0, sizeof(pcm));
    sine(pcm, 2400, 800, 8000, 6000);
    sine(pcm + 2400, 8000, 800, 8000, 400); /* about -41 dBFS RMS */
    sine(pcm + 10400, 2400, 800, 8000, 6000);
    assert_int_equal(feed_all(&o, pcm, 12800, at, 8), 1);
    assert_int_equal(at[0], 1);
}

static void test_rtt(void **state)
{
    vb_cs_rtt_t r;
    vb_cs_rtt_init(&r, 0);
    assert_int_equal(vb_cs_rtt_onset(&r, 100), 0); /* before any turn */
    vb_cs_rtt_turn(&r, 0);
    vb_cs_rtt_turn(&r, 8000);
    assert_int_equal(vb_cs_rtt_onset(&r, 4000), 1);
    assert_int_equal(vb_cs_rtt_onset(&r, 4100), 0); /* a second onset of the same reply */
    assert_int_equal(vb_cs_rtt_onset(&r, 12000), 1);
    vb_cs_rtt_turn(&r, 16000);
    vb_cs_rtt_turn(&r, 24000);
    vb_cs_rtt_turn(&r, 32000);
    assert_int_equal(vb_cs_rtt_onset(&r, 26000), 1); /* answers 24000; 16000 unanswered */
    assert_int_equal(r.unanswered, 1);
    assert_int_equal(r.n, 1);
    assert_int_equal(r.lat.n, 3);
    assert_true(r.lat.v[0] == 500.0);
    assert_true(r.lat.v[1] == 500.0);
    assert_true(r.lat.v[2] == 250.0);
    vb_cs_rtt_free(&r);

    /* An immediate echo may be detected a little before the turn: a round trip of 0. */
    vb_cs_rtt_init(&r, 0);
    vb_cs_rtt_turn(&r, 1000);
    assert_int_equal(vb_cs_rtt_onset(&r, 1000 - VB_CS_ONSET_WIN - 1), 0);
    assert_int_equal(vb_cs_rtt_onset(&r, 1000 - VB_CS_ONSET_WIN), 1);
    assert_true(r.lat.v[0] == 0.0);
    vb_cs_rtt_free(&r);

    vb_cs_rtt_init(&r, 1); /* skip a greeting */
    vb_cs_rtt_turn(&r, 0);
    assert_int_equal(vb_cs_rtt_onset(&r, 800), 0);
    assert_int_equal(vb_cs_rtt_onset(&r, 4000), 1);
    assert_true(r.lat.v[0] == 500.0);
    vb_cs_rtt_free(&r);
}

static void test_percentiles(void **state)
{
    vb_cs_lat_t l = {0}, all = {0};
    assert_true(vb_cs_lat_pct(&l, 50) == 0.0);
    assert_true(vb_cs_lat_max(&l) == 0.0);
    for (int i = 100; i >= 1; i--) {
        assert_int_equal(vb_cs_lat_add(&l, i), 0);
    }
    assert_true(vb_cs_lat_pct(&l, 50) == 50.0);
    assert_true(vb_cs_lat_pct(&l, 99) == 99.0);
    assert_true(vb_cs_lat_pct(&l, 100) == 100.0);
    assert_true(vb_cs_lat_max(&l) == 100.0);
    assert_int_equal(vb_cs_lat_merge(&all, &l), 0);
    vb_cs_lat_add(&all, 1000);
    assert_true(vb_cs_lat_pct(&all, 99) == 100.0);
    assert_true(vb_cs_lat_max(&all) == 1000.0);
    vb_cs_lat_free(&l);
    vb_cs_lat_add(&l, 7);
    assert_true(vb_cs_lat_pct(&l, 99) == 7.0);
    vb_cs_lat_free(&l);
    vb_cs_lat_free(&all);
}

/* ---- TwiML ---------------------------------------------------------------- */

static void test_twiml_stream(void **state)
{
    const char *x = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                    "<Response>\n  <Connect>\n"
                    "    <Stream url=\"wss://vb.example:8443/twilio/media?a=1&amp;b=2\">\n"
                    "      <Parameter name=\"call_id\" value=\"c-123\"/>\n"
                    "      <Parameter name='token' value='x&lt;y&#38;z'/>\n"
                    "    </Stream>\n  </Connect>\n</Response>\n";
    vb_cs_twiml_t t;
    assert_int_equal(vb_cs_twiml_parse(x, strlen(x), &t), 0);
    assert_int_equal(t.kind, VB_CS_TWIML_STREAM);
    assert_string_equal(t.url, "wss://vb.example:8443/twilio/media?a=1&b=2");
    assert_int_equal(t.nparams, 2);
    assert_string_equal(vb_cs_twiml_param(&t, "call_id"), "c-123");
    assert_string_equal(vb_cs_twiml_param(&t, "token"), "x<y&z");
    assert_null(vb_cs_twiml_param(&t, "nope"));
    assert_string_equal(t.verbs, "Connect");

    const char *y = "<Response><Connect><Stream url=\"ws://h/m\"/></Connect></Response>";
    assert_int_equal(vb_cs_twiml_parse(y, strlen(y), &t), 0);
    assert_int_equal(t.kind, VB_CS_TWIML_STREAM);
    assert_string_equal(t.url, "ws://h/m");
    assert_int_equal(t.nparams, 0);
}

static void test_twiml_other(void **state)
{
    vb_cs_twiml_t t;
    const char *x = "<?xml version=\"1.0\"?><Response><Say voice=\"alice\">Sorry, "
                    "this number is not in service &amp; never was.</Say><Hangup/></Response>";
    assert_int_equal(vb_cs_twiml_parse(x, strlen(x), &t), 0);
    assert_int_equal(t.kind, VB_CS_TWIML_HANGUP);
    assert_string_equal(t.say, "Sorry, this number is not in service & never was.");
    assert_string_equal(t.verbs, "Say Hangup");

    const char *r = "<Response><Reject reason=\"busy\"/></Response>";
    assert_int_equal(vb_cs_twiml_parse(r, strlen(r), &t), 0);
    assert_int_equal(t.kind, VB_CS_TWIML_HANGUP);
    assert_string_equal(t.verbs, "Reject");

    /* A one-way <Start><Stream> does not give callsim a bidirectional stream. */
    const char *s = "<Response><Start><Stream url=\"wss://x/y\"/></Start><Pause/></Response>";
    assert_int_equal(vb_cs_twiml_parse(s, strlen(s), &t), 0);
    assert_int_equal(t.kind, VB_CS_TWIML_HANGUP);

    const char *bad[] = {"", "{\"error\":1}", "<html><body>502</body></html>",
                         "<Response><Connect><Stream></Stream></Connect></Response>",
                         "<Response><Say>cut"
                         "<"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(vb_cs_twiml_parse(bad[i], strlen(bad[i]), &t), -EINVAL);
    }
}

/* ---- options -------------------------------------------------------------- */

static int parse(vb_cs_opts_t *o, const char *const *args)
{
    char *argv[64];
    int argc = 0;
    argv[argc++] = "voxbridge-callsim";
    for (; *args != NULL; args++) {
        argv[argc++] = (char *)*args;
    }
    argv[argc] = NULL;
    FILE *null = fopen("/dev/null", "w");
    int rc = vb_cs_opts_parse(o, argc, argv, null, null);
    fclose(null);
    return rc;
}

static void test_options(void **state)
{
    vb_cs_opts_t o;
    setenv("TWILIO_AUTH_TOKEN", "envtok", 1);
    const char *a1[] = {"--url", "http://127.0.0.1:8080", NULL};
    assert_int_equal(parse(&o, a1), 0);
    assert_string_equal(o.token, "envtok");
    assert_string_equal(o.public_url, "http://127.0.0.1:8080");
    assert_int_equal(o.calls, 1);
    assert_int_equal(o.pause_ms, 800);
    assert_int_equal(o.ramp_ms, 20);
    assert_int_equal(o.phases, 1);
    assert_int_equal(o.tail_ms, 0);
    assert_true(o.duration_s == 0);
    const char *a0[] = {"--url", "http://a", "--phases", "10", "--tail-ms", "200", NULL};
    assert_int_equal(parse(&o, a0), 0);
    assert_int_equal(o.phases, 10);
    assert_int_equal(o.tail_ms, 200);
    const char *a0bad[] = {"--url", "http://a", "--phases", "21", NULL};
    assert_int_not_equal(parse(&o, a0bad), 0);

    const char *a2[] = {"--url",      "https://a", "--public-url", "https://pub", "--token",
                        "t",          "--to",      "+1",           "--from",      "+2",
                        "--wav",      "x.wav",     "--wav",        "y.wav",       "--pause-ms",
                        "0",          "--out",     "o.wav",        "--calls",     "50",
                        "--duration", "2.5",       "--ramp-ms",    "5",           "--timeout",
                        "60",         "--dtmf",    "12#",          "--insecure",  "--quiet",
                        "--per-call", NULL};
    assert_int_equal(parse(&o, a2), 0);
    assert_string_equal(o.token, "t");
    assert_string_equal(o.public_url, "https://pub");
    assert_int_equal(o.nwavs, 2);
    assert_string_equal(o.wavs[1], "y.wav");
    assert_int_equal(o.calls, 50);
    assert_true(o.duration_s == 2.5);
    assert_true(o.timeout_s == 60);
    assert_int_equal(o.pause_ms, 0);
    assert_int_equal(o.ramp_ms, 5);
    assert_string_equal(o.dtmf, "12#");
    assert_true(o.insecure && o.quiet && o.per_call);

    assert_int_equal(o.nlines, 2);
    assert_false(vb_cs_opts_conversation(&o)); /* --duration: a fixed timeline */

    /* Lines as text and WAV, in the order given; a conversation without --duration. */
    const char *a3[] = {"--url",    "http://a", "--say",     "hello there", "--wav",  "x.wav",
                        "--say",    "goodbye",  "--voice",   "en-gb",       "--rate", "200",
                        "--gap-ms", "300",      "--wait-ms", "5000",        NULL};
    assert_int_equal(parse(&o, a3), 0);
    assert_int_equal(o.nlines, 3);
    assert_int_equal(o.nwavs, 1);
    assert_true(o.lines[0].is_say && !o.lines[1].is_say && o.lines[2].is_say);
    assert_string_equal(o.lines[0].arg, "hello there");
    assert_string_equal(o.lines[1].arg, "x.wav");
    assert_string_equal(o.lines[2].arg, "goodbye");
    assert_string_equal(o.voice, "en-gb");
    assert_int_equal(o.rate, 200);
    assert_int_equal(o.gap_ms, 300);
    assert_int_equal(o.wait_ms, 5000);
    assert_true(vb_cs_opts_conversation(&o));
    assert_int_equal(parse(&o, a1), 0);
    assert_string_equal(o.voice, "en-us");
    assert_int_equal(o.rate, 165);
    assert_int_equal(o.gap_ms, 600);
    assert_int_equal(o.wait_ms, 8000);
    assert_false(vb_cs_opts_conversation(&o)); /* the test signal */
    const char *bad8[] = {"--url", "http://a", "--say", "  ", NULL};
    assert_int_equal(parse(&o, bad8), -EINVAL);
    const char *bad9[] = {"--url", "http://a", "--rate", "20", NULL};
    assert_int_equal(parse(&o, bad9), -EINVAL);
    const char *bad10[] = {"--url", "http://a", "--voice", "", NULL};
    assert_int_equal(parse(&o, bad10), -EINVAL);

    const char *help[] = {"--help", NULL};
    assert_int_equal(parse(&o, help), 1);
    const char *bad1[] = {"--calls", "2", NULL};
    assert_int_equal(parse(&o, bad1), -EINVAL);
    const char *bad2[] = {"--url", "http://a", "--calls", "0", NULL};
    assert_int_equal(parse(&o, bad2), -EINVAL);
    const char *bad3[] = {"--url", "http://a", "--duration", "x", NULL};
    assert_int_equal(parse(&o, bad3), -EINVAL);
    const char *bad4[] = {"--url", "ftp://a", NULL};
    assert_int_equal(parse(&o, bad4), -EINVAL);
    const char *bad5[] = {"--url", "http://a", "--dtmf", "12x", NULL};
    assert_int_equal(parse(&o, bad5), -EINVAL);
    const char *bad6[] = {"--url", "http://a", "--bogus", NULL};
    assert_int_equal(parse(&o, bad6), -EINVAL);
    const char *bad7[] = {"--url", "http://a", "stray", NULL};
    assert_int_equal(parse(&o, bad7), -EINVAL);
    unsetenv("TWILIO_AUTH_TOKEN");
}

/* ---- a fake voxbridge on loopback, and whole runs against it ----------------- */

enum {
    MODE_ECHO = 1, /* echo every frame back; a mark after every 25th */
    MODE_REJECT,   /* <Say>..</Say><Hangup/> */
    MODE_500,
    MODE_CLEAR,  /* 2 s of audio and a mark at frame 10, clear at frame 20 */
    MODE_HANGUP, /* the server closes (1000) at frame 30 */
    MODE_STALL,  /* the webhook is never answered */
    MODE_TALK,   /* a greeting, an answer after each caller line, hangs up after the 3rd */
};

#define SRV_MAX 8
#define TOKEN "test-token-0123"

typedef struct srv srv_t;

typedef struct {
    srv_t *srv;
    vb_ws_t *ws;
    int mode, open;
    int connected, starts, media, dtmfs, stops, seq_errors, bad;
    uint32_t last_seq;
    char call_id[64], stream_sid[48], call_sid[48], token[64], dtmf[16];
    char marks_back[16][64];
    int64_t mark_back_us[16], mark_sent_us[16], clear_us;
    int nmarks_back, nmarks_sent;
    int close_code;
    /* MODE_TALK */
    int in_speech, quiet_run, lines, talked_over, close_at;
    int64_t agent_until_us;
} sconn_t;

struct srv {
    struct event_base *base;
    int lfd, port, tls_on;
    struct event *lev;
    SSL_CTX *tls;
    int modes[SRV_MAX];
    int webhooks, bad_sigs, ws_sig_ok;
    char from[SRV_MAX][32], to[SRV_MAX][32], direction[SRV_MAX][16];
    sconn_t conns[SRV_MAX];
    int nconns, open;
    int http_open; /* HTTP connections not yet closed or upgraded */
    vb_http_conn_t *stalled;
};

static int64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void srv_url(const srv_t *srv, int ws, const char *path, char *out, size_t cap)
{
    snprintf(out, cap, "%s://127.0.0.1:%d%s",
             ws ? (srv->tls_on ? "wss" : "ws") : (srv->tls_on ? "https" : "http"), srv->port,
             path);
}

static void ws_send_text(sconn_t *sc, const char *buf, size_t n)
{
    assert_true(n > 0);
    assert_int_equal(vb_ws_send(sc->ws, 1, buf, n), 0);
}

static void srv_on_start(sconn_t *sc, const uint8_t *data, size_t len, const vb_ms_msg_t *m)
{
    sc->starts++;
    snprintf(sc->call_id, sizeof(sc->call_id), "%s", m->call_id);
    snprintf(sc->stream_sid, sizeof(sc->stream_sid), "%s", m->stream_sid);
    snprintf(sc->call_sid, sizeof(sc->call_sid), "%s", m->call_sid);
    json_t *j = json_loadb((const char *)data, len, 0, NULL);
    const char *tok = json_string_value(json_object_get(
        json_object_get(json_object_get(j, "start"), "customParameters"), "token"));
    snprintf(sc->token, sizeof(sc->token), "%s", tok ? tok : "");
    json_decref(j);
}

/* MODE_TALK: plays MS of the test tone to the caller (then a mark). */
static void talk_say(sconn_t *sc, int ms)
{
    static char buf[VB_MS_MEDIA_MSG_CAP(16000)];
    static int16_t pcm[8000];
    static uint8_t ulaw[8000];
    size_t n = (size_t)ms * 8;
    vb_cs_audio_tone_fill(pcm, n, -12.0);
    vb_ulaw_encode(pcm, n, ulaw);
    ws_send_text(sc, buf, vb_ms_build_media(buf, sizeof(buf), sc->stream_sid, ulaw, n));
    ws_send_text(sc, buf, vb_ms_build_mark(buf, sizeof(buf), sc->stream_sid, "said"));
    sc->agent_until_us = mono_us() + ms * 1000;
}

/* MODE_TALK: a caller line ends after 200 ms of quiet; the agent answers it at once. It
 * notes any caller speech while its own audio is still playing at the caller's end. */
static void talk_on_media(sconn_t *sc, const vb_ms_msg_t *m)
{
    int16_t pcm[160];
    if (sc->media == 1) {
        talk_say(sc, 600); /* the greeting */
    }
    vb_ulaw_decode(m->payload, 160, pcm);
    int loud = rms(pcm, 160) > 500;
    if (loud && mono_us() < sc->agent_until_us - 30000) {
        sc->talked_over++;
    }
    sc->quiet_run = loud ? 0 : sc->quiet_run + 1;
    sc->in_speech |= loud;
    if (sc->in_speech && sc->quiet_run == 10) {
        sc->in_speech = 0;
        sc->lines++;
        talk_say(sc, 500);
        if (sc->lines == 3) {
            sc->close_at = sc->media + 40; /* its goodbye plays out, then it hangs up */
        }
    }
    if (sc->media == sc->close_at) {
        vb_ws_close(sc->ws, 1000, "goodbye");
    }
}

static void srv_on_media(sconn_t *sc, const vb_ms_msg_t *m)
{
    static char buf[VB_MS_MEDIA_MSG_CAP(16000)];
    static uint8_t tone[16000];
    sc->media++;
    if (m->chunk != (uint32_t)sc->media || m->timestamp_ms != (uint32_t)(sc->media - 1) * 20 ||
        m->payload_len != 160 || !m->track_inbound) {
        sc->bad++;
    }
    if (sc->mode == MODE_ECHO) {
        ws_send_text(
            sc, buf,
            vb_ms_build_media(buf, sizeof(buf), sc->stream_sid, m->payload, m->payload_len));
        if (sc->media % 25 == 0 && sc->nmarks_sent < 16) {
            char name[16];
            snprintf(name, sizeof(name), "m%d", sc->media);
            sc->mark_sent_us[sc->nmarks_sent++] = mono_us();
            ws_send_text(sc, buf, vb_ms_build_mark(buf, sizeof(buf), sc->stream_sid, name));
        }
    } else if (sc->mode == MODE_CLEAR && sc->media == 10) {
        int16_t pcm[16000];
        vb_cs_audio_tone_fill(pcm, 16000, -12.0);
        vb_ulaw_encode(pcm, 16000, tone); /* more than VB_MS_MAX_PAYLOAD in one message */
        ws_send_text(sc, buf, vb_ms_build_media(buf, sizeof(buf), sc->stream_sid, tone, 16000));
        sc->mark_sent_us[sc->nmarks_sent++] = mono_us();
        ws_send_text(sc, buf, vb_ms_build_mark(buf, sizeof(buf), sc->stream_sid, "long"));
    } else if (sc->mode == MODE_CLEAR && sc->media == 20) {
        sc->clear_us = mono_us();
        ws_send_text(sc, buf, vb_ms_build_clear(buf, sizeof(buf), sc->stream_sid));
    } else if (sc->mode == MODE_HANGUP && sc->media == 30) {
        vb_ws_close(sc->ws, 1000, "bye");
    } else if (sc->mode == MODE_TALK) {
        talk_on_media(sc, m);
    }
}

static void srv_ws_message(vb_ws_t *ws, int is_text, const uint8_t *data, size_t len, void *arg)
{
    static vb_ms_msg_t m;
    sconn_t *sc = arg;
    if (!is_text || vb_ms_parse((const char *)data, len, &m) != 0) {
        sc->bad++;
        return;
    }
    if (m.event != VB_MS_CONNECTED) {
        sc->seq_errors += m.seq != sc->last_seq + 1;
        sc->last_seq = m.seq;
    }
    switch (m.event) {
    case VB_MS_CONNECTED:
        sc->connected++;
        break;
    case VB_MS_START:
        srv_on_start(sc, data, len, &m);
        break;
    case VB_MS_MEDIA:
        srv_on_media(sc, &m);
        break;
    case VB_MS_MARK:
        if (sc->nmarks_back < 16) {
            sc->mark_back_us[sc->nmarks_back] = mono_us();
            snprintf(sc->marks_back[sc->nmarks_back], 64, "%s", m.mark_name);
        }
        sc->nmarks_back++;
        break;
    case VB_MS_DTMF:
        strncat(sc->dtmf, m.digit, sizeof(sc->dtmf) - strlen(sc->dtmf) - 1);
        sc->dtmfs++;
        break;
    case VB_MS_STOP:
        sc->stops++;
        break;
    default:
        sc->bad++;
    }
}

static void srv_ws_close(vb_ws_t *ws, int code, const char *reason, void *arg)
{
    sconn_t *sc = arg;
    sc->open = 0;
    sc->close_code = code;
    sc->srv->open--;
}

static const vb_ws_callbacks_t srv_ws_cb = {
    .on_message = srv_ws_message,
    .on_close = srv_ws_close,
};

static void srv_media(srv_t *srv, vb_http_conn_t *c, vb_http_req_t *req)
{
    char url[128];
    srv_url(srv, 1, "/twilio/media", url, sizeof(url));
    srv->ws_sig_ok += vb_twilio_validate(TOKEN, url, NULL, NULL, 0,
                                         vb_http_header(req, "X-Twilio-Signature"));
    assert_true(srv->nconns < SRV_MAX);
    sconn_t *sc = &srv->conns[srv->nconns];
    memset(sc, 0, sizeof(*sc));
    sc->srv = srv;
    /* The stream's mode is the one of the webhook with the same index. */
    sc->mode = srv->modes[srv->nconns++];
    struct bufferevent *bev = vb_http_conn_detach(c);
    assert_non_null(bev);
    srv->http_open--;
    sc->ws = vb_ws_server_new(bev, req, 0, &srv_ws_cb, sc);
    assert_non_null(sc->ws);
    sc->open = 1;
    srv->open++;
}

static void srv_voice(srv_t *srv, vb_http_conn_t *c, vb_http_req_t *req)
{
    char url[128], twiml[1024];
    srv_url(srv, 0, "/twilio/voice", url, sizeof(url));
    vb_form_t *f = vb_form_parse(req->body, req->body_len);
    assert_non_null(f);
    int n = srv->webhooks++;
    if (!vb_twilio_validate(TOKEN, url, f, NULL, 0,
                            vb_http_header(req, "X-Twilio-Signature"))) {
        srv->bad_sigs++;
        vb_form_free(f);
        vb_http_reply(c, 403, "text/plain", "bad signature", 13, NULL);
        return;
    }
    snprintf(srv->from[n], 32, "%s", vb_form_get(f, "From"));
    snprintf(srv->to[n], 32, "%s", vb_form_get(f, "To"));
    snprintf(srv->direction[n], 16, "%s", vb_form_get(f, "Direction"));
    vb_form_free(f);
    if (srv->modes[n] == MODE_STALL) {
        srv->stalled = c;
        return;
    }
    if (srv->modes[n] == MODE_500) {
        vb_http_reply(c, 500, "text/plain", "oops", 4, NULL);
        return;
    }
    size_t len;
    if (srv->modes[n] == MODE_REJECT) {
        len = vb_twiml_say_hangup(twiml, sizeof(twiml), "Not in service");
    } else {
        char cid[16], wsurl[128];
        snprintf(cid, sizeof(cid), "cid-%d", n + 1);
        srv_url(srv, 1, "/twilio/media", wsurl, sizeof(wsurl));
        const char *names[] = {"call_id", "token"}, *values[] = {cid, "tok&<1>"};
        len = vb_twiml_connect_stream_params(twiml, sizeof(twiml), wsurl, names, values, 2);
    }
    vb_http_reply(c, 200, "text/xml", twiml, len, NULL);
}

static void srv_handler(vb_http_conn_t *c, vb_http_req_t *req, void *arg)
{
    srv_t *srv = arg;
    if (strcmp(req->method, "POST") == 0 && strcmp(req->path, "/twilio/voice") == 0) {
        srv_voice(srv, c, req);
    } else if (strcmp(req->path, "/twilio/media") == 0) {
        srv_media(srv, c, req);
    } else {
        vb_http_reply(c, 404, "text/plain", "no", 2, NULL);
    }
}

static void srv_conn_closed(void *arg)
{
    ((srv_t *)arg)->http_open--;
}

static void srv_accept(evutil_socket_t lfd, short what, void *arg)
{
    srv_t *srv = arg;
    int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0 &&
        vb_http_conn_new(srv->base, fd, srv->tls, NULL, srv_handler, srv_conn_closed, srv)) {
        srv->http_open++;
    }
}

static srv_t *srv_start(int tls_on)
{
    static srv_t srv;
    memset(&srv, 0, sizeof(srv));
    struct event_config *cfg = event_config_new();
    event_config_set_flag(cfg, EVENT_BASE_FLAG_PRECISE_TIMER);
    srv.base = event_base_new_with_config(cfg);
    event_config_free(cfg);
    srv.lfd = nt_listen(&srv.port);
    assert_true(srv.lfd >= 0);
    srv.tls_on = tls_on;
    if (tls_on) {
        const char *cert, *key;
        assert_int_equal(nt_make_cert(&cert, &key), 0);
        srv.tls = vb_tls_server_ctx(cert, key, NULL, 0);
        assert_non_null(srv.tls);
    }
    srv.lev = event_new(srv.base, srv.lfd, EV_READ | EV_PERSIST, srv_accept, &srv);
    event_add(srv.lev, NULL);
    return &srv;
}

static void srv_stop(srv_t *srv)
{
    event_free(srv->lev);
    close(srv->lfd);
    vb_tls_ctx_free(srv->tls);
    event_base_free(srv->base);
}

static int sim_finished(void *arg)
{
    return vb_cs_sim_finished(arg);
}

static int srv_idle(void *arg)
{
    return ((srv_t *)arg)->open == 0;
}

static int srv_http_idle(void *arg)
{
    return ((srv_t *)arg)->http_open == 0;
}

static void base_opts(vb_cs_opts_t *o, const srv_t *srv, char *url, size_t cap)
{
    srv_url(srv, 0, "", url, cap);
    const char *args[] = {"--url", url, "--token", TOKEN, "--quiet", NULL};
    assert_int_equal(parse(o, args), 0);
}

/* Runs the calls of O with the caller audio AUDIO against SRV; returns the summary and
 * sets *OK. */
static json_t *run_sim_audio(srv_t *srv, const vb_cs_opts_t *o, vb_cs_audio_t *audio, int *ok)
{
    vb_cs_sim_t *s = vb_cs_sim_new(srv->base, o, audio);
    assert_non_null(s);
    assert_int_equal(vb_cs_sim_start(s), 0);
    assert_int_equal(nt_wait(srv->base, sim_finished, s, 30000), 0);
    assert_int_equal(nt_wait(srv->base, srv_idle, srv, 5000), 0);
    json_t *sum = vb_cs_sim_summary(s);
    *ok = vb_cs_sim_ok(s);
    vb_cs_sim_free(s); /* closes libcurl's kept-alive connections */
    if (srv->stalled != NULL) {
        vb_http_conn_close(srv->stalled);
        srv->stalled = NULL;
    }
    assert_int_equal(nt_wait(srv->base, srv_http_idle, srv, 5000), 0);
    assert_non_null(sum);
    return sum;
}

/* The same with the test signal. */
static json_t *run_sim(srv_t *srv, const vb_cs_opts_t *o, int *ok)
{
    vb_cs_audio_t audio;
    assert_int_equal(vb_cs_audio_tone(&audio, o->duration_s > 0 ? 1 : o->bursts, o->onset_dbfs),
                     0);
    json_t *sum = run_sim_audio(srv, o, &audio, ok);
    vb_cs_audio_free(&audio);
    return sum;
}

static json_int_t jint(json_t *o, const char *path)
{
    char key[64];
    snprintf(key, sizeof(key), "%s", path);
    json_t *v = o;
    for (char *save = NULL, *k = strtok_r(key, ".", &save); k; k = strtok_r(NULL, ".", &save)) {
        v = json_is_array(v) ? json_array_get(v, (size_t)atoi(k)) : json_object_get(v, k);
    }
    if (v == NULL) {
        fail_msg("no %s in the summary", path);
    }
    return json_is_real(v) ? (json_int_t)json_real_value(v) : json_integer_value(v);
}

/* What the caller heard: 2.5 s with the three echoed bursts in it, 1 s apart. */
static void check_heard(const char *path)
{
    vb_cs_wav_t w;
    vb_cs_onset_t o;
    int64_t at[8];
    assert_int_equal(vb_cs_wav_read(path, &w), 0);
    assert_int_equal(w.rate, 8000);
    assert_in_range(w.len / 2, 19000, 21000);
    vb_cs_onset_init(&o, -36.0, 200);
    assert_int_equal(vb_cs_onset_feed(&o, (const int16_t *)w.data, w.len / 2, at, 8), 3);
    assert_in_range(at[0], 0, 1600);
    assert_in_range(at[1] - at[0], 7800, 8200);
    assert_in_range(at[2] - at[1], 7800, 8200);
    vb_cs_wav_free(&w);
}

static void test_run_echo(void **state)
{
    srv_t *srv = srv_start(0);
    srv->modes[0] = MODE_ECHO;
    vb_cs_opts_t o;
    char url[128], out[] = "/tmp/test_callsim_out_XXXXXX.wav";
    base_opts(&o, srv, url, sizeof(url));
    int fd = mkstemps(out, 4);
    close(fd);
    o.duration_s = 2.5;
    o.dtmf = "1w2";
    o.out = out;
    int ok;
    json_t *sum = run_sim(srv, &o, &ok);
    assert_true(ok);
    assert_int_equal(jint(sum, "calls"), 1);
    assert_int_equal(jint(sum, "answered"), 1);
    assert_int_equal(jint(sum, "frames_sent"), 125);
    /* The echo of the last frames may arrive after the hang-up. */
    assert_in_range(jint(sum, "frames_received"), 115, 125);
    assert_int_equal(jint(sum, "close_codes.1000"), 1);
    assert_int_equal(jint(sum, "http_status.200"), 1);
    assert_int_equal(jint(sum, "clears"), 0);
    assert_in_range(jint(sum, "marks_answered"), 4, 5);
    /* Bursts at 0, 1 and 2 s come straight back. */
    assert_int_equal(jint(sum, "rtt_ms.n"), 3);
    /* Loopback echo: only the timer jitter of a loaded test machine in it. */
    assert_in_range(jint(sum, "rtt_ms.max"), 0, 200);
    assert_int_equal(jint(sum, "per_call.0.unanswered_turns"), 0);
    assert_int_equal(jint(sum, "per_call.0.bad_messages"), 0);
    assert_string_equal(json_string_value(json_object_get(
                            json_array_get(json_object_get(sum, "per_call"), 0), "call_id")),
                        "cid-1");

    sconn_t *sc = &srv->conns[0];
    assert_int_equal(srv->webhooks, 1);
    assert_int_equal(srv->bad_sigs, 0);
    assert_int_equal(srv->ws_sig_ok, 1);
    assert_string_equal(srv->to[0], VB_CS_DEFAULT_TO);
    assert_string_equal(srv->direction[0], "inbound");
    assert_int_equal(sc->connected, 1);
    assert_int_equal(sc->starts, 1);
    assert_int_equal(sc->media, 125);
    assert_int_equal(sc->stops, 1);
    assert_int_equal(sc->seq_errors, 0);
    assert_int_equal(sc->bad, 0);
    assert_string_equal(sc->call_id, "cid-1");
    assert_string_equal(sc->token, "tok&<1>");
    assert_memory_equal(sc->stream_sid, "MZ", 2);
    assert_int_equal(strlen(sc->stream_sid), 34);
    assert_memory_equal(sc->call_sid, "CA", 2);
    assert_string_equal(sc->dtmf, "12");
    assert_int_equal(sc->close_code, 1000);
    /* Each mark came back once its 20 ms of echo had played, in order. */
    for (int i = 0; i < sc->nmarks_back; i++) {
        char want[16];
        snprintf(want, sizeof(want), "m%d", 25 * (i + 1));
        assert_string_equal(sc->marks_back[i], want);
        assert_in_range(sc->mark_back_us[i] - sc->mark_sent_us[i], 0, 300000);
    }

    check_heard(out);
    unlink(out);
    json_decref(sum);
    srv_stop(srv);
}

static double jreal(json_t *o, const char *path)
{
    char key[64];
    snprintf(key, sizeof(key), "%s", path);
    json_t *v = o;
    for (char *save = NULL, *k = strtok_r(key, ".", &save); k; k = strtok_r(NULL, ".", &save)) {
        v = json_is_array(v) ? json_array_get(v, (size_t)atoi(k)) : json_object_get(v, k);
    }
    if (!json_is_number(v)) {
        fail_msg("no number at %s in the summary", path);
    }
    return json_number_value(v);
}

/* A conversation: the caller waits out the greeting and each answer, never talks over
 * the agent, and the agent hangs up after the last answer. */
static void test_run_conversation(void **state)
{
    srv_t *srv = srv_start(0);
    srv->modes[0] = MODE_TALK;
    vb_cs_opts_t o;
    char url[128];
    base_opts(&o, srv, url, sizeof(url));
    o.nlines = 3;
    for (int i = 0; i < 3; i++) {
        static const char *texts[] = {"first", "second.wav", "third"};
        o.lines[i] = (vb_cs_line_t){.is_say = i != 1, .arg = texts[i]};
    }
    o.gap_ms = 300;
    static script_t sc; /* its caller audio: 100 ms quiet, 300 ms tone, 100 ms quiet */
    int16_t *pcm[3];
    size_t len[3];
    memset(&sc, 0, sizeof(sc));
    script_audio(&sc, 3, pcm, len);
    int ok;
    json_t *sum = run_sim_audio(srv, &o, &sc.a, &ok);
    assert_true(ok);
    sconn_t *c = &srv->conns[0];
    assert_int_equal(c->lines, 3);
    assert_int_equal(c->talked_over, 0);
    assert_int_equal(c->close_code, 1000);
    assert_int_equal(jint(sum, "clean"), 1);
    assert_int_equal(jint(sum, "agent_hangups"), 1);
    assert_true(json_is_true(
        json_object_get(json_array_get(json_object_get(sum, "per_call"), 0), "agent_hung_up")));
    assert_int_equal(jint(sum, "unanswered_turns"), 0);
    assert_int_equal(jint(sum, "reply_ms.n"), 3);
    /* The caller heard the whole greeting before its first line. */
    assert_int_equal(jint(sum, "per_call.0.greeting_ms"), 600);
    /* It hung up 40 frames after the last line ended (plus the 200 ms it waited). */
    assert_in_range(jreal(sum, "per_call.0.agent_hangup_ms") -
                        jreal(sum, "per_call.0.turns.2.end_ms"),
                    900, 1400);
    assert_in_range(jint(sum, "per_call.0.agent_first_audio_ms"), 0, 100);
    json_t *turns =
        json_object_get(json_array_get(json_object_get(sum, "per_call"), 0), "turns");
    assert_int_equal(json_array_size(turns), 3);
    assert_string_equal(json_string_value(json_object_get(json_array_get(turns, 2), "text")),
                        "third");
    assert_string_equal(json_string_value(json_object_get(json_array_get(turns, 1), "wav")),
                        "second.wav");
    /* The first line after the 600 ms greeting and 300 ms of quiet (+ its 100 ms lead-in). */
    assert_in_range(jreal(sum, "per_call.0.turns.0.start_ms"), 990, 1300);
    double prev_end = 0;
    for (int i = 0; i < 3; i++) {
        char k[64];
        snprintf(k, sizeof(k), "per_call.0.turns.%d.start_ms", i);
        double start = jreal(sum, k);
        snprintf(k, sizeof(k), "per_call.0.turns.%d.end_ms", i);
        double end = jreal(sum, k);
        snprintf(k, sizeof(k), "per_call.0.turns.%d.reply_ms", i);
        double reply = jreal(sum, k);
        assert_in_range(end - start, 280, 330);
        /* the server answers after 200 ms of quiet, to the frame */
        assert_in_range(reply, 180, 400);
        /* the next line: after the 500 ms answer, 300 ms of quiet and its lead-in */
        if (i > 0) {
            assert_in_range(start - prev_end, 500 + 300 + 100 - 20, 1300);
        }
        prev_end = end + reply;
    }
    json_decref(sum);
    script_free(&sc, pcm, 0);
    for (int i = 0; i < 3; i++) {
        free(pcm[i]);
    }
    srv_stop(srv);
}

static void test_run_clear(void **state)
{
    srv_t *srv = srv_start(0);
    srv->modes[0] = MODE_CLEAR;
    vb_cs_opts_t o;
    char url[128];
    base_opts(&o, srv, url, sizeof(url));
    o.duration_s = 1.0;
    int ok;
    json_t *sum = run_sim(srv, &o, &ok);
    assert_true(ok);
    assert_int_equal(jint(sum, "clears"), 1);
    assert_int_equal(jint(sum, "frames_received"), 1);
    assert_int_equal(jint(sum, "per_call.0.audio_ms_received"), 2000);
    assert_int_equal(jint(sum, "marks_answered"), 1);
    sconn_t *sc = &srv->conns[0];
    /* 2 s of audio were queued at frame 10: "long" comes back at the clear, not before. */
    assert_int_equal(sc->nmarks_back, 1);
    assert_string_equal(sc->marks_back[0], "long");
    assert_true(sc->clear_us > 0);
    assert_in_range(sc->mark_back_us[0] - sc->clear_us, 0, 100000);
    assert_in_range(sc->mark_back_us[0] - sc->mark_sent_us[0], 150000, 600000);
    json_decref(sum);
    srv_stop(srv);
}

static void test_run_mixed(void **state)
{
    srv_t *srv = srv_start(0);
    srv->modes[0] = MODE_HANGUP;
    srv->modes[1] = MODE_REJECT;
    srv->modes[2] = MODE_500;
    vb_cs_opts_t o;
    char url[128];
    base_opts(&o, srv, url, sizeof(url));
    o.calls = 3;
    o.ramp_ms = 50; /* keep the webhooks in order */
    o.duration_s = 2.0;
    int ok;
    json_t *sum = run_sim(srv, &o, &ok);
    assert_false(ok);
    assert_int_equal(jint(sum, "calls"), 3);
    assert_int_equal(jint(sum, "answered"), 1);
    assert_int_equal(jint(sum, "rejected"), 1);
    assert_int_equal(jint(sum, "failed"), 1);
    assert_int_equal(jint(sum, "clean"), 1);
    assert_int_equal(jint(sum, "http_status.200"), 2);
    assert_int_equal(jint(sum, "http_status.500"), 1);
    assert_int_equal(jint(sum, "close_codes.1000"), 1);
    /* The server hung up call 1 after 30 frames. */
    assert_true(json_is_true(
        json_object_get(json_array_get(json_object_get(sum, "per_call"), 0), "server_closed")));
    assert_in_range(jint(sum, "per_call.0.frames_sent"), 30, 40);
    const char *reason = json_string_value(
        json_object_get(json_array_get(json_object_get(sum, "per_call"), 1), "reason"));
    assert_string_equal(reason, "rejected: Not in service");
    assert_int_equal(jint(sum, "per_call.2.http_status"), 500);
    json_decref(sum);
    srv_stop(srv);
}

static void test_run_bad_token(void **state)
{
    srv_t *srv = srv_start(0);
    srv->modes[0] = MODE_ECHO;
    vb_cs_opts_t o;
    char url[128];
    base_opts(&o, srv, url, sizeof(url));
    o.token = "wrong";
    int ok;
    json_t *sum = run_sim(srv, &o, &ok);
    assert_false(ok);
    assert_int_equal(srv->bad_sigs, 1);
    assert_int_equal(jint(sum, "failed"), 1);
    assert_int_equal(jint(sum, "http_status.403"), 1);
    json_decref(sum);
    srv_stop(srv);
}

static void test_run_tls(void **state)
{
    srv_t *srv = srv_start(1);
    srv->modes[0] = MODE_ECHO;
    vb_cs_opts_t o;
    char url[128];
    base_opts(&o, srv, url, sizeof(url));
    o.duration_s = 0.6;
    o.insecure = 1;
    int ok;
    json_t *sum = run_sim(srv, &o, &ok);
    assert_true(ok);
    assert_int_equal(jint(sum, "frames_sent"), 30);
    assert_int_equal(srv->conns[0].media, 30);
    assert_int_equal(srv->ws_sig_ok, 1);
    json_decref(sum);

    /* Verification on and no CA for the self-signed certificate: the webhook fails. */
    o.insecure = 0;
    sum = run_sim(srv, &o, &ok);
    assert_false(ok);
    assert_int_equal(jint(sum, "failed"), 1);
    assert_int_equal(jint(sum, "http_status.0"), 1);
    json_decref(sum);
    srv_stop(srv);
}

static void test_run_timeout(void **state)
{
    srv_t *srv = srv_start(0);
    srv->modes[0] = MODE_ECHO;
    srv->modes[1] = MODE_STALL;
    vb_cs_opts_t o;
    char url[128];
    base_opts(&o, srv, url, sizeof(url));
    o.calls = 2;
    o.ramp_ms = 50;
    o.duration_s = 5;
    o.timeout_s = 0.8;
    int ok;
    int64_t t = mono_us();
    json_t *sum = run_sim(srv, &o, &ok);
    assert_in_range(mono_us() - t, 700000, 3000000);
    assert_false(ok);
    assert_true(json_is_true(json_object_get(sum, "timed_out")));
    assert_int_equal(jint(sum, "answered"), 1);
    assert_int_equal(jint(sum, "failed"), 1);
    assert_int_equal(jint(sum, "close_codes.1001"), 1);
    assert_int_equal(jint(sum, "http_status.0"), 1);
    assert_in_range(jint(sum, "frames_sent"), 20, 50);
    assert_int_equal(srv->conns[0].stops, 1);
    assert_int_equal(srv->conns[0].close_code, 1001);
    const char *reason = json_string_value(
        json_object_get(json_array_get(json_object_get(sum, "per_call"), 1), "reason"));
    assert_string_equal(reason, "timeout waiting for the webhook");
    json_decref(sum);
    srv_stop(srv);
}

static void test_out_path(void **state)
{
    char b[64];
    vb_cs_sim_out_path("out.wav", 3, 1, b, sizeof(b));
    assert_string_equal(b, "out.wav");
    vb_cs_sim_out_path("out.wav", 3, 5, b, sizeof(b));
    assert_string_equal(b, "out-3.wav");
    vb_cs_sim_out_path("/tmp/a.b/out", 12, 20, b, sizeof(b));
    assert_string_equal(b, "/tmp/a.b/out-12");
    vb_cs_sim_out_path(".hidden", 2, 2, b, sizeof(b));
    assert_string_equal(b, ".hidden-2");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_wav_roundtrip),
        cmocka_unit_test(test_wav_formats),
        cmocka_unit_test(test_audio_resample),
        cmocka_unit_test(test_audio_ulaw_passthrough),
        cmocka_unit_test(test_audio_wav_turns),
        cmocka_unit_test(test_audio_tone),
        cmocka_unit_test(test_audio_pcm_turns),
        cmocka_unit_test(test_speak),
        cmocka_unit_test(test_conv_waits_for_the_agent),
        cmocka_unit_test(test_conv_no_greeting_and_no_answer),
        cmocka_unit_test(test_conv_echo_and_held_audio),
        cmocka_unit_test(test_playout_marks),
        cmocka_unit_test(test_playout_clear),
        cmocka_unit_test(test_playout_gap_and_growth),
        cmocka_unit_test(test_playout_limit),
        cmocka_unit_test(test_rx_gaps),
        cmocka_unit_test(test_onset),
        cmocka_unit_test(test_rtt),
        cmocka_unit_test(test_percentiles),
        cmocka_unit_test(test_twiml_stream),
        cmocka_unit_test(test_twiml_other),
        cmocka_unit_test(test_options),
        cmocka_unit_test(test_out_path),
        cmocka_unit_test(test_run_conversation),
        cmocka_unit_test(test_run_echo),
        cmocka_unit_test(test_run_clear),
        cmocka_unit_test(test_run_mixed),
        cmocka_unit_test(test_run_bad_token),
        cmocka_unit_test(test_run_tls),
        cmocka_unit_test(test_run_timeout),
    };
    vb_log_init("test_callsim");
    return cmocka_run_group_tests(tests, NULL, NULL);
}
