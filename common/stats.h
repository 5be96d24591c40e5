/* Counters of bad input and faults, shared by every process. The master puts
 * the block in shared memory before forking (vb_stats_attach); until then (and
 * in unit tests) they count into a process-local block. /metrics prints them. */
#ifndef VB_COMMON_STATS_H
#define VB_COMMON_STATS_H

#include <stdatomic.h>
#include <stdint.h>

/* X(name, help). Add new counters at the end of their group. */
#define VB_STATS_LIST(X)                                                                     \
    X(http_requests, "HTTP requests parsed")                                                 \
    X(http_bad_requests, "HTTP requests rejected as malformed (400)")                        \
    X(http_too_large, "HTTP requests rejected for size (413/431)")                           \
    X(http_timeouts, "HTTP connections closed for sending too slowly (408)")                 \
    X(ws_protocol_errors, "WebSocket connections closed for a protocol error (1002)")        \
    X(ws_too_big, "WebSocket messages over ws_max_message_bytes (1009)")                     \
    X(tls_handshake_errors, "TLS handshakes that failed")                                    \
    X(twilio_bad_signatures, "Twilio webhooks rejected for their signature (403)")           \
    X(twilio_unknown_numbers, "calls to a number no assistant answers")                      \
    X(twilio_status_callbacks, "Twilio status callbacks accepted")                           \
    X(twilio_status_duplicates, "Twilio status callbacks seen before (idempotent)")          \
    X(mstream_bad_json, "Media Streams messages that were not valid JSON")                   \
    X(mstream_bad_base64, "Media Streams payloads that were not valid base64")               \
    X(mstream_unknown_events, "Media Streams messages with an unknown event")                \
    X(mstream_bad_frames, "Media Streams media frames of a wrong size")                      \
    X(calls_started, "media calls started")                                                  \
    X(calls_ended, "media calls ended")                                                      \
    X(calls_rejected_busy, "media connections refused with 503: pool at its maximum")        \
    X(api_rejected_busy, "api connections refused with 503: every api worker at its cap")    \
    X(api_rejected_per_ip, "api connections refused with 503: their address at its cap")      \
    X(calls_failed, "calls ended by a crash of their worker")                                \
    X(worker_crashes, "child processes that died abnormally")                                \
    X(broker_restarts, "AI broker processes restarted")                                      \
    X(watchdog_kills, "brokers or stores killed because their loop stopped running")        \
    X(ring_drops, "ring messages dropped because the ring was full")                         \
    X(spool_write_errors, "spool writes or fsyncs that failed (records kept and retried)")  \
    X(log_write_errors, "log lines that could not be written (a full disk)")                 \
    X(config_reloads, "successful config reloads")                                           \
    X(config_reload_errors, "config reloads refused because the file was broken")            \
    X(chan_bad_packets, "master-child channel packets dropped as malformed or unexpected")   \
    X(chan_lost_fds, "connections lost in the hand-over: the child had no free descriptor")  \
    X(accept_no_fds, "connections the master answered 503: it had no free descriptor")      \
    X(rejected_nomem, "connections refused with 503: the process was short of memory")     \
    X(busy_lingering, "connections refused with 503 and held until the client stopped sending")

enum {
#define VB_STAT_ENUM(name, help) VB_STAT_##name,
    VB_STATS_LIST(VB_STAT_ENUM)
#undef VB_STAT_ENUM
        VB_STAT__COUNT
};

typedef struct {
    _Atomic uint64_t v[VB_STAT__COUNT];
} vb_stats_t;

extern vb_stats_t *vb_stats;

/* Use BLOCK (in shared memory) from now on. */
void vb_stats_attach(vb_stats_t *block);
const char *vb_stats_name(int id);
const char *vb_stats_help(int id);

#define VB_STAT_INC(id) atomic_fetch_add_explicit(&vb_stats->v[VB_STAT_##id], 1, memory_order_relaxed)
#define VB_STAT_ADD(id, n)                                                                   \
    atomic_fetch_add_explicit(&vb_stats->v[VB_STAT_##id], (n), memory_order_relaxed)
#define VB_STAT_GET(id) atomic_load_explicit(&vb_stats->v[VB_STAT_##id], memory_order_relaxed)

#endif
