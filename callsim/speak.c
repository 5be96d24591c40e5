/* voxbridge-callsim: text to caller speech with libespeak-ng (see speak.h). espeak-ng runs
 * synchronously here: espeak_Synth returns when the callback has had every sample. */
#include "callsim/speak.h"

#include <errno.h>
#include <espeak-ng/speak_lib.h>
#include <stdlib.h>
#include <string.h>

#include "callsim/audio.h"
#include "common/log.h"

#define ESPEAK_BUF_MS 200

/* What the callback collects: espeak's samples at its own rate. */
static struct {
    int rate; /* espeak's sample rate; 0 before init, -1 when it failed */
    int16_t *pcm;
    size_t n, cap;
    int oom;
} sp;

static int on_synth(short *wav, int n, espeak_EVENT *events)
{
    (void)events;
    if (wav == NULL || n <= 0 || sp.oom) {
        return 0;
    }
    if (sp.n + (size_t)n > sp.cap) {
        size_t cap = sp.cap ? sp.cap : 22050;
        while (cap < sp.n + (size_t)n) {
            cap *= 2;
        }
        int16_t *p = realloc(sp.pcm, cap * sizeof(*p));
        if (p == NULL) {
            sp.oom = 1;
            return 1; /* stop */
        }
        sp.pcm = p;
        sp.cap = cap;
    }
    memcpy(sp.pcm + sp.n, wav, (size_t)n * sizeof(*wav));
    sp.n += (size_t)n;
    return 0;
}

int vb_cs_speak_init(void)
{
    if (sp.rate == 0) {
        sp.rate = espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, ESPEAK_BUF_MS, NULL, 0);
        if (sp.rate <= 0) {
            sp.rate = -1;
            vb_log(VB_LOG_ERR, "espeak-ng cannot start (is espeak-ng-data installed?)");
        } else {
            espeak_SetSynthCallback(on_synth);
        }
    }
    return sp.rate > 0 ? 0 : -ENOENT;
}

void vb_cs_speak_done(void)
{
    if (sp.rate > 0) {
        espeak_Terminate();
    }
    free(sp.pcm);
    memset(&sp, 0, sizeof(sp));
}

static int set_voice(const char *voice, int rate)
{
    const char *v = voice != NULL && voice[0] != '\0' ? voice : VB_CS_DEFAULT_VOICE;
    if (espeak_SetVoiceByName(v) != EE_OK) {
        vb_log(VB_LOG_ERR, "espeak-ng has no voice '%s' (espeak-ng --voices lists them)", v);
        return -EINVAL;
    }
    rate = rate > 0 ? rate : VB_CS_DEFAULT_RATE;
    rate = rate < VB_CS_MIN_RATE   ? VB_CS_MIN_RATE
           : rate > VB_CS_MAX_RATE ? VB_CS_MAX_RATE
                                   : rate;
    espeak_SetParameter(espeakRATE, rate, 0);
    return 0;
}

int vb_cs_speak(const char *text, const char *voice, int rate, int16_t **out, size_t *n)
{
    if (text == NULL || text[strspn(text, " \t\r\n")] == '\0') {
        return -EINVAL;
    }
    int rc = vb_cs_speak_init();
    if (rc == 0) {
        rc = set_voice(voice, rate);
    }
    if (rc < 0) {
        return rc;
    }
    sp.n = 0;
    sp.oom = 0;
    espeak_ERROR e =
        espeak_Synth(text, strlen(text) + 1, 0, POS_CHARACTER, 0, espeakCHARS_UTF8, NULL, NULL);
    if (e == EE_OK) {
        e = espeak_Synchronize();
    }
    if (sp.oom) {
        return -ENOMEM;
    }
    if (e != EE_OK || sp.n == 0) {
        vb_log(VB_LOG_ERR, "espeak-ng could not speak \"%s\" (%d)", text, (int)e);
        return -EIO;
    }
    return vb_cs_audio_resample(sp.pcm, sp.n, (unsigned)sp.rate, out, n);
}
