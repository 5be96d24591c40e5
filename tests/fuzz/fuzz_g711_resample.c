/* libFuzzer target: common/g711 and worker/dsp size invariants. The input drives a call:
 * the first byte picks the options, then each chunk of 160 bytes is one inbound mu-law
 * frame and, reused as PCM, one outbound frame. Every call must fill exactly 320 samples
 * or 160 bytes and say voice 0 or 1; mu-law round trips stay within the codec's bound. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/g711.h"
#include "worker/dsp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 160 * 200) {
        return 0;
    }
    vb_dsp_opts_t o = {data[0] & 1, (data[0] >> 1) & 1, (data[0] >> 2) & 1, (data[0] >> 3) & 1};
    vb_dsp_t *d = vb_dsp_new(&o);
    if (d == NULL) {
        abort();
    }
    data++;
    size--;
    for (size_t off = 0; off + 160 <= size; off += 160) {
        int16_t pcm[320 + 4];
        uint8_t u[160 + 4];
        pcm[320] = pcm[321] = 0x7A7A;
        u[160] = u[161] = 0xA7;
        int voice = -1;
        if (vb_dsp_inbound(d, data + off, pcm, &voice) != 0 || (voice != 0 && voice != 1) ||
            pcm[320] != 0x7A7A || pcm[321] != 0x7A7A) {
            abort();
        }
        int16_t agent[320];
        for (int i = 0; i < 320; i++) {
            agent[i] = (int16_t)(data[off + i % 160] << 8 | data[off + (i * 7) % 160]);
        }
        if (vb_dsp_outbound(d, agent, u) != 0 || u[160] != 0xA7 || u[161] != 0xA7) {
            abort();
        }
        if (data[off] == 0xFF) {
            vb_dsp_reset(d);
        }
    }
    /* G.711: decode/encode is the identity on codes but negative zero. */
    for (size_t i = 0; i < size; i++) {
        uint8_t c = data[i];
        uint8_t back = vb_pcm_to_ulaw(vb_ulaw_to_pcm(c));
        if (back != (c == 0x7F ? 0xFF : c)) {
            abort();
        }
    }
    vb_dsp_free(d);
    return 0;
}
