/* Unit tests for voxbridge-callsim's pure parts: WAV reader/writer, caller audio, the
 * playout/mark model, gap and round-trip statistics, TwiML reading and option parsing.
 * Run by `make check`. */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "callsim/audio.h"
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
    assert_int_equal(a.len, 960); /* 800 + 100 ms pause = 1600, no: see below */
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
    assert_int_equal(vb_cs_wav_parse(b1, make_wav(b1, 1, 1, 8000, 16, 0, t1, sizeof(t1)), &w[0]),
                     0);
    assert_int_equal(vb_cs_wav_parse(b2, make_wav(b2, 1, 1, 8000, 16, 0, t2, sizeof(t2)), &w[1]),
                     0);
    vb_cs_audio_t a;
    assert_int_equal(vb_cs_audio_from_wavs(&a, w, 2, 50, -36.0), 0);
    /* 2000 + 400 + 1200 + 400 = 4000 samples = 25 frames. */
    assert_int_equal(a.len, 4000);
    assert_int_equal(a.nturns, 2);
    assert_in_range(a.onsets[0], 800, 840);
    assert_int_equal(a.onsets[1], 2400);
    assert_int_equal(vb_cs_audio_frames(&a), 25);
    assert_int_equal(vb_cs_audio_turn_in(&a, 5, 0), (int)a.onsets[0] - 800);
    assert_int_equal(vb_cs_audio_turn_in(&a, 6, 0), -1);
    assert_int_equal(vb_cs_audio_turn_in(&a, 15, 0), 0);
    assert_int_equal(vb_cs_audio_turn_in(&a, 15 + 25, 0), -1); /* past the end */
    assert_int_equal(vb_cs_audio_turn_in(&a, 15 + 25, 1), 0);  /* looping */
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
    assert_int_equal(vb_cs_audio_tone(&a, 3), 0);
    assert_int_equal(a.len, 24000);
    assert_int_equal(a.nturns, 3);
    assert_int_equal(a.onsets[1], 8000);
    assert_int_equal(a.onsets[2], 16000);
    assert_int_equal(vb_cs_audio_turn_in(&a, 50, 0), 0);
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

    /* A signal between the thresholds never re-arms the detector. */
    vb_cs_onset_init(&o, -36.0, 200);
    memset(pcm, 0, sizeof(pcm));
    sine(pcm, 2400, 800, 8000, 6000);
    sine(pcm + 2400, 8000, 800, 8000, 400); /* about -41 dBFS RMS */
    sine(pcm + 10400, 2400, 800, 8000, 6000);
    assert_int_equal(feed_all(&o, pcm, 12800, at, 8), 1);
    assert_int_equal(at[0], 0);
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
    assert_true(o.duration_s == 0);

    const char *a2[] = {"--url", "https://a", "--public-url", "https://pub", "--token", "t",
                        "--to", "+1", "--from", "+2", "--wav", "x.wav", "--wav", "y.wav",
                        "--pause-ms", "0", "--out", "o.wav", "--calls", "50",
                        "--duration", "2.5", "--ramp-ms", "5", "--timeout", "60",
                        "--dtmf", "12#", "--insecure", "--quiet", "--per-call", NULL};
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_wav_roundtrip),
        cmocka_unit_test(test_wav_formats),
        cmocka_unit_test(test_audio_resample),
        cmocka_unit_test(test_audio_ulaw_passthrough),
        cmocka_unit_test(test_audio_wav_turns),
        cmocka_unit_test(test_audio_tone),
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
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
