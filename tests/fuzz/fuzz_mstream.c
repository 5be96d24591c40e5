/* libFuzzer target: Twilio Media Streams messages (worker/mstream). Checks that the hand
 * scanner never reads past the input, that whatever jansson accepts it accepts with the
 * same result (a differential test against vb_ms_parse_jansson), and that an accepted
 * media message rebuilds into one that parses back to the same payload. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "worker/mstream.h"

static vb_ms_msg_t a, b;

static void same(const vb_ms_msg_t *x, const vb_ms_msg_t *y)
{
    if (x->event != y->event || strcmp(x->stream_sid, y->stream_sid) != 0 ||
        strcmp(x->call_sid, y->call_sid) != 0 || strcmp(x->account_sid, y->account_sid) != 0 ||
        strcmp(x->call_id, y->call_id) != 0 || strcmp(x->mark_name, y->mark_name) != 0 ||
        strcmp(x->digit, y->digit) != 0 || x->seq != y->seq || x->chunk != y->chunk ||
        x->timestamp_ms != y->timestamp_ms || x->track_inbound != y->track_inbound ||
        x->payload_len != y->payload_len ||
        memcmp(x->payload, y->payload, x->payload_len) != 0) {
        abort();
    }
}

/* Inputs on which the two parsers are compared. The hand scanner nests up to 64 levels,
 * jansson up to 2048. jansson (2.14) also lets some NUL bytes through: its reader takes a
 * NUL in its buffer as "refill", so {"a":1<NUL>} loads; the hand scanner refuses every
 * NUL, inside strings or out, as JSON requires. */
static int comparable(const uint8_t *d, size_t n)
{
    size_t open = 0;
    for (size_t i = 0; i < n; i++) {
        open += d[i] == '{' || d[i] == '[';
        if (d[i] == '\0') {
            return 0;
        }
    }
    return open < 60;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* A copy of exactly SIZE bytes, so ASan catches any read past the end. */
    char *buf = malloc(size ? size : 1);
    if (buf == NULL) {
        return 0;
    }
    memcpy(buf, data, size);
    int rc = vb_ms_parse(buf, size, &a);
    int rc2 = vb_ms_parse_jansson(buf, size, &b);
    if (rc2 != -VB_MS_EBADJSON && comparable(data, size)) {
        if (rc != rc2) {
            abort();
        }
        if (rc == 0) {
            same(&a, &b);
        }
    }
    if (rc == 0 && a.payload_len > VB_MS_MAX_PAYLOAD) {
        abort();
    }
    if (rc == 0 && a.event == VB_MS_MEDIA) {
        static char out[VB_MS_MEDIA_MSG_CAP(VB_MS_MAX_PAYLOAD)];
        size_t n = vb_ms_build_media_in(out, sizeof(out), a.seq, a.stream_sid, a.chunk,
                                        a.timestamp_ms, a.payload, a.payload_len);
        if (n == 0 || vb_ms_parse(out, n, &b) != 0 || b.payload_len != a.payload_len ||
            memcmp(a.payload, b.payload, a.payload_len) != 0 || b.seq != a.seq) {
            abort();
        }
    }
    free(buf);
    return 0;
}
