/* voxbridge-callsim: the caller's lines given as text (--say), spoken with libespeak-ng
 * and resampled to the line's 8 kHz with speexdsp. espeak-ng keeps process-wide state;
 * callsim is single-threaded and synthesises every line once, before the calls start.
 * Run by voxbridge-callsim only (and its unit test). */
#ifndef VB_CALLSIM_SPEAK_H
#define VB_CALLSIM_SPEAK_H

#include <stddef.h>
#include <stdint.h>

#define VB_CS_DEFAULT_VOICE "en-us"
#define VB_CS_DEFAULT_RATE 165 /* words per minute */
#define VB_CS_MIN_RATE 80
#define VB_CS_MAX_RATE 450
#define VB_CS_SAY_MAX 1024 /* bytes of one --say line */

/* Loads espeak-ng (data from its default path) once for the process; later calls do
 * nothing. 0, or -ENOENT when espeak-ng cannot start (its data is missing). */
int vb_cs_speak_init(void);
/* Synthesises TEXT (UTF-8) with VOICE (espeak-ng voice name, NULL for the default) at
 * RATE words per minute (0 for the default); *OUT gets malloc'd 8 kHz mono PCM16, *N its
 * samples, espeak's leading and trailing silence included. Initialises espeak-ng on first
 * use. 0, -EINVAL (empty text, unknown voice), -ENOENT (no espeak-ng), -EIO (synthesis
 * failed) or -ENOMEM. */
int vb_cs_speak(const char *text, const char *voice, int rate, int16_t **out, size_t *n);
/* Unloads espeak-ng (at exit; tests). */
void vb_cs_speak_done(void);

#endif
