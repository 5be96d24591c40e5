/* voxbridge-callsim: WAV reader and streaming writer (see wav.h). */
#include "callsim/wav.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define WAVE_FORMAT_EXTENSIBLE 0xFFFE
#define RIFF_HEADER_BYTES 44u

static uint32_t rd32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint16_t rd16(const uint8_t *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}

static void wr32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static void wr16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

/* The "fmt " chunk: format tag (sub-format for EXTENSIBLE), channels, rate, bits. */
static int parse_fmt(const uint8_t *p, uint32_t size, vb_cs_wav_t *out)
{
    if (size < 16) {
        return -EINVAL;
    }
    unsigned tag = rd16(p);
    out->channels = rd16(p + 2);
    out->rate = rd32(p + 4);
    out->bits = rd16(p + 14);
    if (tag == WAVE_FORMAT_EXTENSIBLE) {
        if (size < 40) {
            return -EINVAL;
        }
        tag = rd16(p + 24); /* first two bytes of the SubFormat GUID */
    }
    if (out->channels == 0 || out->rate == 0) {
        return -EINVAL;
    }
    if (tag == VB_CS_WAV_PCM && out->bits == 16) {
        out->format = VB_CS_WAV_PCM;
    } else if (tag == VB_CS_WAV_ULAW && out->bits == 8) {
        out->format = VB_CS_WAV_ULAW;
    } else {
        return -ENOTSUP;
    }
    return 0;
}

static int take_data(const uint8_t *p, size_t size, vb_cs_wav_t *out)
{
    size_t frame = (size_t)out->channels * (out->bits / 8);
    size -= size % frame;
    out->data = malloc(size ? size : 1);
    if (out->data == NULL) {
        return -ENOMEM;
    }
    memcpy(out->data, p, size);
    out->len = size;
    return 0;
}

int vb_cs_wav_parse(const uint8_t *buf, size_t len, vb_cs_wav_t *out)
{
    memset(out, 0, sizeof(*out));
    if (len < 12 || memcmp(buf, "RIFF", 4) != 0 || memcmp(buf + 8, "WAVE", 4) != 0) {
        return -EINVAL;
    }
    int have_fmt = 0;
    size_t off = 12;
    while (off + 8 <= len) {
        uint32_t size = rd32(buf + off + 4);
        const uint8_t *body = buf + off + 8;
        size_t avail = len - off - 8;
        if (memcmp(buf + off, "fmt ", 4) == 0) {
            int rc = size <= avail ? parse_fmt(body, size, out) : -EINVAL;
            if (rc < 0) {
                return rc;
            }
            have_fmt = 1;
        } else if (memcmp(buf + off, "data", 4) == 0) {
            if (!have_fmt) {
                return -EINVAL;
            }
            /* A streamed file may carry a size of 0 or 0xFFFFFFFF: take what is there. */
            return take_data(body, (size == 0 || size > avail) ? avail : size, out);
        }
        if (size > avail) {
            return -EINVAL;
        }
        off += 8 + (size_t)size + (size & 1);
    }
    return -EINVAL;
}

int vb_cs_wav_read(const char *path, vb_cs_wav_t *out)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        return -errno;
    }
    uint8_t *buf = NULL;
    size_t len = 0, cap = 0;
    int rc = 0;
    for (;;) {
        if (len == cap) {
            cap = cap ? cap * 2 : 65536;
            uint8_t *nb = realloc(buf, cap);
            if (nb == NULL) {
                rc = -ENOMEM;
                break;
            }
            buf = nb;
        }
        size_t n = fread(buf + len, 1, cap - len, f);
        len += n;
        if (n == 0) {
            rc = ferror(f) ? -EIO : 0;
            break;
        }
    }
    fclose(f);
    if (rc == 0) {
        rc = vb_cs_wav_parse(buf, len, out);
    }
    free(buf);
    return rc;
}

void vb_cs_wav_free(vb_cs_wav_t *w)
{
    free(w->data);
    w->data = NULL;
    w->len = 0;
}

static void fill_header(uint8_t *h, unsigned rate, uint64_t samples)
{
    uint64_t bytes = samples * 2;
    uint32_t data = bytes > 0xFFFFFFFFu - 36 ? 0xFFFFFFFFu - 36 : (uint32_t)bytes;
    memcpy(h, "RIFF", 4);
    wr32(h + 4, 36 + data);
    memcpy(h + 8, "WAVEfmt ", 8);
    wr32(h + 16, 16);
    wr16(h + 20, VB_CS_WAV_PCM);
    wr16(h + 22, 1);
    wr32(h + 24, rate);
    wr32(h + 28, rate * 2);
    wr16(h + 32, 2);
    wr16(h + 34, 16);
    memcpy(h + 36, "data", 4);
    wr32(h + 40, data);
}

int vb_cs_wav_writer_open(vb_cs_wav_writer_t *w, const char *path, unsigned rate)
{
    memset(w, 0, sizeof(*w));
    w->rate = rate;
    w->f = fopen(path, "wb");
    if (w->f == NULL) {
        return -errno;
    }
    uint8_t h[RIFF_HEADER_BYTES];
    fill_header(h, rate, 0);
    if (fwrite(h, 1, sizeof(h), w->f) != sizeof(h)) {
        w->error = 1;
    }
    return 0;
}

void vb_cs_wav_writer_write(vb_cs_wav_writer_t *w, const int16_t *pcm, size_t n)
{
    uint8_t le[512];
    while (n > 0 && w->f != NULL) {
        size_t k = n < sizeof(le) / 2 ? n : sizeof(le) / 2;
        for (size_t i = 0; i < k; i++) {
            wr16(le + 2 * i, (uint16_t)pcm[i]);
        }
        if (fwrite(le, 2, k, w->f) != k) {
            w->error = 1;
        }
        w->samples += k;
        pcm += k;
        n -= k;
    }
}

int vb_cs_wav_writer_close(vb_cs_wav_writer_t *w)
{
    if (w->f == NULL) {
        return 0;
    }
    uint8_t h[RIFF_HEADER_BYTES];
    fill_header(h, w->rate, w->samples);
    if (fseek(w->f, 0, SEEK_SET) != 0 || fwrite(h, 1, sizeof(h), w->f) != sizeof(h)) {
        w->error = 1;
    }
    int rc = fclose(w->f) != 0 ? -errno : 0;
    w->f = NULL;
    return w->error ? -EIO : rc;
}
