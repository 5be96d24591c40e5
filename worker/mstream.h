/* Twilio Media Streams messages (JSON text frames), both directions. The media worker
 * parses what Twilio sends (50 media messages a second per call) and builds media, mark
 * and clear; voxbridge-callsim, playing Twilio, builds the inbound side and parses the
 * outbound one. Parsing allocates nothing; builders write into caller buffers. */
#ifndef VB_WORKER_MSTREAM_H
#define VB_WORKER_MSTREAM_H

#include <stddef.h>
#include <stdint.h>

/* Largest decoded payload accepted in one message: 1 s of 8 kHz mu-law. */
#define VB_MS_MAX_PAYLOAD 8000
/* What Twilio sends per media message: 20 ms of 8 kHz mu-law. */
#define VB_MS_FRAME_BYTES 160

typedef enum {
    VB_MS_CONNECTED,
    VB_MS_START,
    VB_MS_MEDIA,
    VB_MS_MARK,
    VB_MS_DTMF,
    VB_MS_STOP,
    VB_MS_CLEAR, /* server -> Twilio only: parsed for callsim */
} vb_ms_event_t;

/* Error codes, returned negated by vb_ms_parse. Chosen above the errno range. */
enum {
    VB_MS_EBADJSON = 1001, /* not JSON: syntax, bad UTF-8, bad escape, trailing bytes */
    VB_MS_EBASE64 = 1002,  /* media.payload is not strict base64 */
    VB_MS_EUNKNOWN = 1003, /* "event" names no event we know: ignore the message */
    VB_MS_EFIELD = 1004,   /* a required field is missing, of the wrong type or too long */
    VB_MS_EFORMAT = 1005,  /* start.mediaFormat is not audio/x-mulaw, 8000 Hz, 1 channel */
    VB_MS_ESIZE = 1006,    /* media.payload decodes to 0 or more than VB_MS_MAX_PAYLOAD */
};

typedef struct {
    vb_ms_event_t event;
    char stream_sid[48], call_sid[48], account_sid[48];
    char call_id[64]; /* start.customParameters.call_id; "" when absent */
    char mark_name[64];
    char digit[4];
    uint32_t seq, chunk, timestamp_ms; /* 0 when absent */
    /* media: 1 for track "inbound" or no track, 0 for "outbound"; start: 1 when tracks
     * lists "inbound" or is absent. */
    int track_inbound;
    uint8_t payload[VB_MS_MAX_PAYLOAD]; /* media: decoded mu-law */
    size_t payload_len;
} vb_ms_msg_t;

/* Parses one message of LEN bytes (need not be NUL-terminated) into OUT. Returns 0 or
 * -VB_MS_E*. Accepted: connected; start (accountSid, callSid, streamSid required, the
 * latter in "start" or at the top level; mediaFormat required and checked); media
 * (payload required, 1..VB_MS_MAX_PAYLOAD bytes; track, chunk, timestamp optional);
 * mark (name); dtmf (digit, 1-3 characters); stop; clear. sequenceNumber, chunk and
 * timestamp may be decimal strings (as Twilio sends them) or integers. Sids longer than
 * 47 bytes, names and call ids longer than 63 are -VB_MS_EFIELD.
 * Counting is left to the caller: see vb_ms_count_error. A media payload that is not
 * VB_MS_FRAME_BYTES long is accepted; the caller re-frames it and may count it. */
int vb_ms_parse(const char *json, size_t len, vb_ms_msg_t *out);

/* The same, through jansson: the reference the hand parser is checked against by
 * tests/fuzz/fuzz_mstream.c, and the baseline of tests/bench/bench_dsp.c. */
int vb_ms_parse_jansson(const char *json, size_t len, vb_ms_msg_t *out);

/* Bumps the counter that matches a vb_ms_parse result: EBADJSON -> mstream_bad_json,
 * EBASE64 -> mstream_bad_base64, EUNKNOWN -> mstream_unknown_events, ESIZE ->
 * mstream_bad_frames. Nothing for 0, EFIELD and EFORMAT. */
void vb_ms_count_error(int rc);
const char *vb_ms_strerror(int rc);

/* Builders. Each writes one NUL-terminated JSON message into OUT and returns its length,
 * or 0 when CAP is too small. Strings are JSON-escaped. Buffer sizes: a media message
 * needs VB_MS_MEDIA_MSG_CAP(n) bytes. */
#define VB_MS_MEDIA_MSG_CAP(n) (4 * (((size_t)(n) + 2) / 3) + 512)

/* Server -> Twilio. */
size_t vb_ms_build_media(char *out, size_t cap, const char *stream_sid, const uint8_t *ulaw,
                         size_t n);
size_t vb_ms_build_mark(char *out, size_t cap, const char *stream_sid, const char *name);
size_t vb_ms_build_clear(char *out, size_t cap, const char *stream_sid);

/* Twilio -> server (callsim). Sequence numbers, chunks and timestamps go out as strings,
 * as Twilio sends them; start has tracks ["inbound"] and the mu-law 8000/1 mediaFormat. */
size_t vb_ms_build_connected(char *out, size_t cap);
size_t vb_ms_build_start(char *out, size_t cap, uint32_t seq, const char *stream_sid,
                         const char *account_sid, const char *call_sid, const char *call_id);
size_t vb_ms_build_media_in(char *out, size_t cap, uint32_t seq, const char *stream_sid,
                            uint32_t chunk, uint32_t timestamp_ms, const uint8_t *ulaw,
                            size_t n);
size_t vb_ms_build_mark_in(char *out, size_t cap, uint32_t seq, const char *stream_sid,
                           const char *name);
size_t vb_ms_build_dtmf(char *out, size_t cap, uint32_t seq, const char *stream_sid,
                        const char *digit);
size_t vb_ms_build_stop(char *out, size_t cap, uint32_t seq, const char *stream_sid,
                        const char *account_sid, const char *call_sid);

#endif
