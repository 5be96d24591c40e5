/* Logging for every role: one line per record on stderr with the sd-daemon
 * "<N>" priority prefix, the role, the pid and the call id when there is one. */
#ifndef VB_COMMON_LOG_H
#define VB_COMMON_LOG_H

#include <stdlib.h>

enum {
    VB_LOG_ERR = 3,
    VB_LOG_WARN = 4,
    VB_LOG_NOTICE = 5,
    VB_LOG_INFO = 6,
    VB_LOG_DEBUG = 7,
};

void vb_log_init(const char *role);
void vb_log_set_level(int level);
int vb_log_level_parse(const char *name); /* -1 when unknown */
/* The call this process serves now, or NULL; copied. */
void vb_log_set_call(const char *call_id);
/* Reopen stderr on the log file given at start (SIGUSR1); no-op without one. */
int vb_log_reopen(void);
int vb_log_open_file(const char *path);

void vb_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* A line that may repeat as fast as bad input comes (a refusal per connection,
 * a forged webhook): its first BURST times are written, then at most one per
 * PERIOD_S seconds of the monotonic clock (a wall-clock step must not silence
 * it), and the rest only counted. One static vb_log_limit_t per call site. */
typedef struct {
    unsigned long long last_ns;
    unsigned long written, held;
} vb_log_limit_t;
/* 1 when the line may be written now; *HELD (may be NULL) then gets how many
 * were held back since the last one written. */
int vb_log_limit(vb_log_limit_t *l, unsigned burst, unsigned period_s, unsigned long *held);

#define VB_ASSERT(cond)                                                                      \
    do {                                                                                     \
        if (!(cond)) {                                                                       \
            vb_log(VB_LOG_ERR, "assertion failed: %s (%s:%d)", #cond, __FILE__, __LINE__);   \
            abort();                                                                         \
        }                                                                                    \
    } while (0)

#endif
