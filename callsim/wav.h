/* voxbridge-callsim: WAV (RIFF) files, read whole and written as a stream. The reader
 * accepts what callsim plays as caller audio (PCM16 and G.711 mu-law, any rate, mono or
 * stereo as found); the writer produces PCM16 mono for the agent's audio (--out). Run by
 * voxbridge-callsim only; no dependency on the rest of voxbridge. */
#ifndef VB_CALLSIM_WAV_H
#define VB_CALLSIM_WAV_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define VB_CS_WAV_PCM 1  /* WAVE_FORMAT_PCM */
#define VB_CS_WAV_ULAW 7 /* WAVE_FORMAT_MULAW */

typedef struct {
    int format; /* VB_CS_WAV_PCM or VB_CS_WAV_ULAW */
    unsigned channels;
    unsigned rate;
    unsigned bits; /* 16 for PCM, 8 for mu-law */
    uint8_t *data; /* the "data" chunk, malloc'd */
    size_t len;    /* bytes in data, whole sample frames only */
} vb_cs_wav_t;

/* Parses a whole RIFF/WAVE image (BUF, LEN bytes); WAVE_FORMAT_EXTENSIBLE is mapped to its
 * sub-format. Returns 0, -EINVAL for something that is not a WAV file or is truncated,
 * -ENOTSUP for a format other than 16-bit PCM or 8-bit mu-law, -ENOMEM. */
int vb_cs_wav_parse(const uint8_t *buf, size_t len, vb_cs_wav_t *out);
/* Reads and parses PATH; -errno from the file system as well as the above. */
int vb_cs_wav_read(const char *path, vb_cs_wav_t *out);
void vb_cs_wav_free(vb_cs_wav_t *w);

/* A PCM16 mono file being written; the sizes in the header are fixed up on close. */
typedef struct {
    FILE *f;
    uint64_t samples;
    unsigned rate;
    int error; /* a write failed: the file is incomplete */
} vb_cs_wav_writer_t;

/* 0 or -errno. */
int vb_cs_wav_writer_open(vb_cs_wav_writer_t *w, const char *path, unsigned rate);
/* Buffered by stdio; no allocation. */
void vb_cs_wav_writer_write(vb_cs_wav_writer_t *w, const int16_t *pcm, size_t n);
/* Fixes the header and closes; 0 or -errno (-EIO if any write failed). */
int vb_cs_wav_writer_close(vb_cs_wav_writer_t *w);

#endif
