/* The store's spool and its cursor (see spool.h). Crash rules: a record is
 * acknowledged only after fdatasync; the cursor names the file by inode so
 * that a rotation interrupted anywhere either leaves the old file and its
 * fully-applied cursor, or the new file, which a cursor for another inode
 * reads from 0. Run by the store. */
#include "store/spool.h"
#include "common/log.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int mkdir_p(const char *dir)
{
    char path[512];
    snprintf(path, sizeof(path), "%s", dir);
    for (char *p = path + 1; *p != '\0'; p++) {
        if (*p == '/') {
            *p = '\0';
            mkdir(path, 0750);
            *p = '/';
        }
    }
    if (mkdir(path, 0750) < 0 && errno != EEXIST) {
        return -errno;
    }
    return 0;
}

static void path_of(const vb_spool_t *sp, const char *name, char *out, size_t cap)
{
    snprintf(out, cap, "%s/%s", sp->dir, name);
}

static int fsync_dir(const vb_spool_t *sp)
{
    int fd = open(sp->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        return -errno;
    }
    int rc = fsync(fd) < 0 ? -errno : 0;
    close(fd);
    return rc;
}

/* The end of the last whole line at or before SIZE (0 when there is none). */
static uint64_t last_line_end(int fd, uint64_t size)
{
    char buf[4096];
    uint64_t end = size;
    while (end > 0) {
        size_t n = end < sizeof(buf) ? (size_t)end : sizeof(buf);
        if (pread(fd, buf, n, (off_t)(end - n)) != (ssize_t)n) {
            return 0;
        }
        for (size_t i = n; i > 0; i--) {
            if (buf[i - 1] == '\n') {
                return end - n + i;
            }
        }
        end -= n;
    }
    return 0;
}

static int drop_torn_tail(vb_spool_t *sp)
{
    uint64_t end = last_line_end(sp->fd, sp->size);
    if (end == sp->size) {
        return 0;
    }
    vb_log(VB_LOG_WARN, "spool: dropping %" PRIu64 " bytes of a record cut by a crash",
           sp->size - end);
    if (ftruncate(sp->fd, (off_t)end) < 0) {
        return -errno;
    }
    sp->size = end;
    return 0;
}

static int at_line_start(const vb_spool_t *sp, uint64_t off)
{
    char c;
    return off == 0 ||
           (off <= sp->size && pread(sp->fd, &c, 1, (off_t)off - 1) == 1 && c == '\n');
}

static void read_cursor(vb_spool_t *sp)
{
    char path[600], text[64] = "";
    path_of(sp, VB_SPOOL_CURSOR, path, sizeof(path));
    FILE *f = fopen(path, "re");
    if (f == NULL) {
        sp->applied = 0;
        return;
    }
    unsigned long long ino = 0, off = 0;
    int ok = fgets(text, sizeof(text), f) != NULL && sscanf(text, "%llu %llu", &ino, &off) == 2;
    fclose(f);
    if (!ok || ino != sp->ino) {
        sp->applied = 0; /* none, or the file before a rotation: this one is all new */
        return;
    }
    if (!at_line_start(sp, off)) {
        vb_log(VB_LOG_WARN, "spool: cursor %llu is not at a record of %s; replaying it all",
               off, VB_SPOOL_FILE);
        off = 0;
    }
    sp->applied = off;
}

static int open_file(vb_spool_t *sp)
{
    char path[600];
    path_of(sp, VB_SPOOL_FILE, path, sizeof(path));
    sp->fd = open(path, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    struct stat st;
    if (sp->fd < 0 || fstat(sp->fd, &st) < 0) {
        int rc = -errno;
        vb_log(VB_LOG_ERR, "cannot open the spool %s: %s", path, strerror(-rc));
        return rc;
    }
    sp->ino = (uint64_t)st.st_ino;
    sp->size = (uint64_t)st.st_size;
    return 0;
}

int vb_spool_open(vb_spool_t *sp, const char *dir)
{
    memset(sp, 0, sizeof(*sp));
    sp->fd = -1;
    snprintf(sp->dir, sizeof(sp->dir), "%s", dir);
    int rc = mkdir_p(dir);
    if (rc < 0) {
        vb_log(VB_LOG_ERR, "cannot create the spool directory %s: %s", dir, strerror(-rc));
        return rc;
    }
    if ((rc = open_file(sp)) < 0 || (rc = drop_torn_tail(sp)) < 0) {
        vb_spool_close(sp);
        return rc;
    }
    fdatasync(sp->fd);
    sp->synced = sp->size;
    read_cursor(sp);
    return 0;
}

void vb_spool_close(vb_spool_t *sp)
{
    if (sp->fd >= 0) {
        close(sp->fd);
        sp->fd = -1;
    }
}

int vb_spool_append(vb_spool_t *sp, const char *data, size_t len)
{
    size_t done = 0;
    while (done < len) {
        ssize_t n = write(sp->fd, data + done, len - done);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            int rc = n < 0 ? -errno : -EIO;
            if (done > 0 && ftruncate(sp->fd, (off_t)sp->size) < 0) {
                vb_log(VB_LOG_ERR, "spool: cannot undo a partial write: %s", strerror(errno));
            }
            return rc; /* the store logs it, once for a run of failures */
        }
        done += (size_t)n;
    }
    sp->size += len;
    return 0;
}

int vb_spool_sync(vb_spool_t *sp)
{
    if (sp->synced == sp->size) {
        return 0;
    }
    if (fdatasync(sp->fd) < 0) {
        return -errno; /* the store logs it, once for a run of failures */
    }
    sp->synced = sp->size;
    return 0;
}

int vb_spool_rollback(vb_spool_t *sp)
{
    if (sp->size == sp->synced) {
        return 0;
    }
    if (ftruncate(sp->fd, (off_t)sp->synced) < 0) {
        int rc = -errno;
        vb_log(VB_LOG_ERR, "spool: cannot drop %" PRIu64 " unsynced bytes: %s",
               sp->size - sp->synced, strerror(-rc));
        return rc; /* they stay: written again, they are records twice (harmless) */
    }
    sp->size = sp->synced;
    return 0;
}

ssize_t vb_spool_read(vb_spool_t *sp, uint64_t off, char *buf, size_t cap)
{
    if (off >= sp->synced || cap == 0) {
        return 0;
    }
    size_t want = sp->synced - off < cap ? (size_t)(sp->synced - off) : cap;
    ssize_t n = pread(sp->fd, buf, want, (off_t)off);
    if (n < 0) {
        return -errno;
    }
    for (ssize_t i = n; i > 0; i--) {
        if (buf[i - 1] == '\n') {
            return i;
        }
    }
    return n == (ssize_t)cap ? n : 0; /* one line longer than CAP, or nothing whole yet */
}

static int write_cursor(vb_spool_t *sp, uint64_t ino, uint64_t off)
{
    char path[600], tmp[620], text[64];
    path_of(sp, VB_SPOOL_CURSOR, path, sizeof(path));
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    int n = snprintf(text, sizeof(text), "%" PRIu64 " %" PRIu64 "\n", ino, off);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    if (fd < 0) {
        return -errno;
    }
    int rc = 0;
    if (write(fd, text, (size_t)n) != n || fdatasync(fd) < 0) {
        rc = errno ? -errno : -EIO;
    }
    close(fd);
    if (rc == 0 && rename(tmp, path) < 0) {
        rc = -errno;
    }
    if (rc < 0) {
        vb_log(VB_LOG_ERR, "spool: cannot save the cursor %s: %s", path, strerror(-rc));
    }
    return rc;
}

int vb_spool_set_applied(vb_spool_t *sp, uint64_t off)
{
    int rc = write_cursor(sp, sp->ino, off);
    if (rc == 0) {
        sp->applied = off;
    }
    return rc;
}

int vb_spool_rotate(vb_spool_t *sp, uint64_t threshold)
{
    if (sp->applied != sp->size || sp->synced != sp->size || sp->size < threshold ||
        sp->size == 0) {
        return 0;
    }
    char path[600], old[620];
    path_of(sp, VB_SPOOL_FILE, path, sizeof(path));
    snprintf(old, sizeof(old), "%s.1", path);
    if (rename(path, old) < 0) {
        int rc = -errno;
        vb_log(VB_LOG_ERR, "spool: cannot rotate %s: %s", path, strerror(-rc));
        return rc;
    }
    int oldfd = sp->fd;
    uint64_t oldsize = sp->size;
    int rc = open_file(sp);
    if (rc < 0) {
        sp->fd = oldfd; /* keep appending to the renamed file rather than lose records */
        return rc;
    }
    close(oldfd);
    sp->synced = sp->applied = 0;
    fsync_dir(sp);
    rc = vb_spool_set_applied(sp, 0);
    fsync_dir(sp);
    vb_log(VB_LOG_INFO, "spool: rotated %s (%" PRIu64 " bytes, all applied)", path, oldsize);
    return rc < 0 ? rc : 1;
}
