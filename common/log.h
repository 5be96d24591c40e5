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

#define VB_ASSERT(cond)                                                                      \
    do {                                                                                     \
        if (!(cond)) {                                                                       \
            vb_log(VB_LOG_ERR, "assertion failed: %s (%s:%d)", #cond, __FILE__, __LINE__);   \
            abort();                                                                         \
        }                                                                                    \
    } while (0)

#endif
