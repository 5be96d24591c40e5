/* Logging for every role: see log.h. Writes whole lines with one write(2) so
 * that records from many processes sharing stderr do not interleave. */
#include "common/log.h"

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

void vb_log(int level, const char *fmt, ...)
{
    if (level > log_level) {
        return;
    }
    int saved = errno;
    char line[2048];
    int n = log_path[0] != '\0' ? file_prefix(line, sizeof(line), level)
                                 : snprintf(line, sizeof(line), "<%d>%s[%d]: ", level, log_role,
                                            (int)getpid());
    if (log_call[0] != '\0') {
        n += snprintf(line + n, sizeof(line) - (size_t)n, "call=%s ", log_call);
    }
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
    va_end(ap);
    n = (m < 0) ? n : n + m;
    if (n > (int)sizeof(line) - 2) {
        n = (int)sizeof(line) - 2;
    }
    line[n++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, (size_t)n);
    (void)w;
    errno = saved;
}
