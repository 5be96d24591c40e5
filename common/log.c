/* Logging for every role: see log.h. Writes whole lines with one write(2) so
 * that records from many processes sharing stderr do not interleave. */
#include "common/log.h"
#include "common/clock.h"
#include "common/stats.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

static char log_role[16] = "voxbridge";
static char log_call[64];
static int log_level = VB_LOG_INFO;
static char log_path[512];
/* Lines that could not be written since the last one that was (a full disk),
 * the error, and whether the last write stopped mid-line. */
static unsigned long log_lost;
static int log_lost_err;
static int log_torn;

void vb_log_init(const char *role)
{
    snprintf(log_role, sizeof(log_role), "%s", role);
    log_call[0] = '\0';
}

void vb_log_set_level(int level)
{
    log_level = level;
}

int vb_log_level_parse(const char *name)
{
    static const struct {
        const char *name;
        int level;
    } levels[] = {{"error", VB_LOG_ERR},   {"warn", VB_LOG_WARN},   {"notice", VB_LOG_NOTICE},
                  {"info", VB_LOG_INFO},   {"debug", VB_LOG_DEBUG}};
    for (size_t i = 0; i < sizeof(levels) / sizeof(levels[0]); i++) {
        if (strcasecmp(name, levels[i].name) == 0) {
            return levels[i].level;
        }
    }
    return -1;
}

void vb_log_set_call(const char *call_id)
{
    snprintf(log_call, sizeof(log_call), "%s", call_id ? call_id : "");
}

int vb_log_open_file(const char *path)
{
    snprintf(log_path, sizeof(log_path), "%s", path);
    return vb_log_reopen();
}

int vb_log_reopen(void)
{
    if (log_path[0] == '\0') {
        return 0;
    }
    int fd = open(log_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    if (fd < 0) {
        int err = errno;
        vb_log(VB_LOG_ERR, "cannot open log file %s: %s", log_path, strerror(err));
        return -err;
    }
    dup2(fd, STDERR_FILENO);
    close(fd);
    return 0;
}

/* A log file has no journal to stamp it: "2026-12-01T08:46:24.730Z info master[92]: ". */
static int file_prefix(char *out, size_t cap, int level)
{
    static const char *const names[] = {"emerg", "alert", "crit", "error", "warn",
                                        "notice", "info", "debug"};
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    char when[32];
    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
    return snprintf(out, cap, "%s.%03ldZ %s %s[%d]: ", when, ts.tv_nsec / 1000000L,
                    names[level & 7], log_role, (int)getpid());
}

static int line_prefix(char *out, size_t cap, int level)
{
    int n = log_path[0] != '\0'
                ? file_prefix(out, cap, level)
                : snprintf(out, cap, "<%d>%s[%d]: ", level, log_role, (int)getpid());
    if (log_call[0] != '\0') {
        n += snprintf(out + n, cap - (size_t)n, "call=%s ", log_call);
    }
    return n;
}

/* One line, one write(2). 0, or -errno when it did not go out whole (a full
 * disk); a short write leaves part of a line the next one must not be glued to. */
static int write_line(const char *line, size_t len)
{
    ssize_t w = write(STDERR_FILENO, line, len);
    if (w == (ssize_t)len) {
        log_torn = 0;
        return 0;
    }
    log_torn = log_torn || w > 0;
    return w < 0 ? -errno : -ENOSPC;
}

/* Once lines can be written again, the log says how many it is missing and
 * why, so that the gap shows where an operator looks. */
static void report_lost(void)
{
    char line[512];
    int n = 0;
    if (log_torn) {
        line[n++] = '\n';
    }
    n += line_prefix(line + n, sizeof(line) - (size_t)n, VB_LOG_WARN);
    n += snprintf(line + n, sizeof(line) - (size_t)n,
                  "log: %lu lines of this process could not be written: %s\n", log_lost,
                  strerror(log_lost_err));
    if (n < (int)sizeof(line) && write_line(line, (size_t)n) == 0) {
        log_lost = 0;
    }
}

void vb_log(int level, const char *fmt, ...)
{
    if (level > log_level) {
        return;
    }
    int saved = errno;
    if (log_lost > 0) {
        report_lost();
    }
    char line[2048];
    int n = line_prefix(line, sizeof(line), level);
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
    va_end(ap);
    n = (m < 0) ? n : n + m;
    if (n > (int)sizeof(line) - 2) {
        n = (int)sizeof(line) - 2;
    }
    line[n++] = '\n';
    int rc = write_line(line, (size_t)n);
    if (rc < 0) {
        log_lost++;
        log_lost_err = -rc;
        VB_STAT_INC(log_write_errors);
    }
    errno = saved;
}

int vb_log_limit(vb_log_limit_t *l, unsigned burst, unsigned period_s, unsigned long *held)
{
    unsigned long long now = vb_mono_ns();
    if (l->written >= burst && l->written > 0 &&
        now - l->last_ns < (unsigned long long)period_s * 1000000000ull) {
        l->held++;
        return 0;
    }
    if (held != NULL) {
        *held = l->held;
    }
    l->held = 0;
    l->written++;
    l->last_ns = now;
    return 1;
}
