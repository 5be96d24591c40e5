/* The store's spool, STATE_DIR/spool/events.jsonl: every call record, one JSON
 * object per line, appended and fsync'd before the store lets go of a slot.
 * With a database it is also the write-ahead log of what goes there: the
 * cursor file (events.cursor: "<inode> <offset>") says how far it has been
 * applied, is replaced atomically after each applied batch, and is where a
 * restarted store resumes. Once everything is applied and the file is large,
 * it is rotated to events.jsonl.1 (one old generation is kept). Store only. */
#ifndef VB_STORE_SPOOL_H
#define VB_STORE_SPOOL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define VB_SPOOL_FILE "events.jsonl"
#define VB_SPOOL_CURSOR "events.cursor"
#define VB_SPOOL_ROTATE_BYTES (8u << 20) /* rotate once applied and this large */

typedef struct {
    char dir[512];
    int fd;           /* events.jsonl, read and append */
    uint64_t ino;     /* its inode: a cursor for another file means "from 0" */
    uint64_t size;    /* bytes written */
    uint64_t synced;  /* bytes known to be on disk */
    uint64_t applied; /* the cursor: bytes applied to the database */
} vb_spool_t;

/* Creates DIR if needed, opens the spool, drops a torn last line (a write cut
 * by a crash: never acknowledged), reads the cursor (0 when it is missing,
 * belongs to an older file or is not at a line boundary). 0 or -errno. */
int vb_spool_open(vb_spool_t *sp, const char *dir);
void vb_spool_close(vb_spool_t *sp);

/* Appends LEN bytes (whole lines, ending in '\n'). 0 or -errno (nothing or a
 * part was written: the spool is then truncated back to where it was). */
int vb_spool_append(vb_spool_t *sp, const char *data, size_t len);
/* fdatasync when anything was written since the last one. 0 or -errno. */
int vb_spool_sync(vb_spool_t *sp);
/* After a failed fdatasync: truncates the spool back to what is known to be on
 * disk, so that the caller writes those records again rather than trusting
 * pages the kernel may have dropped (a later fdatasync would not say so).
 * 0 or -errno. */
int vb_spool_rollback(vb_spool_t *sp);

/* Reads whole lines from OFF up to what is synced into BUF. Returns the bytes
 * (ending in '\n'), 0 when there is nothing more, -errno. A line longer than
 * CAP is returned cut at CAP bytes without its '\n' (the caller skips it as
 * broken). */
ssize_t vb_spool_read(vb_spool_t *sp, uint64_t off, char *buf, size_t cap);

/* Records that everything before OFF is applied: writes the cursor file
 * (temporary file, fdatasync, rename). 0 or -errno. */
int vb_spool_set_applied(vb_spool_t *sp, uint64_t off);

/* When everything is applied and the file holds at least THRESHOLD bytes:
 * events.jsonl -> events.jsonl.1, a new empty events.jsonl, cursor at its
 * start. 1 rotated, 0 not needed, -errno. */
int vb_spool_rotate(vb_spool_t *sp, uint64_t threshold);

#endif
