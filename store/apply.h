/* The store's applier: reads the spool from its cursor and applies the records
 * to PostgreSQL in batches, one transaction per batch, in spool order, then
 * moves the cursor. While the database is away records wait in the spool; a
 * batch is retried with backoff until it goes through. A record PostgreSQL
 * refuses for its data (SQLSTATE class 22/23) is copied to
 * spool/rejected.jsonl and passed over, so it cannot hold back the others.
 * Store only. */
#ifndef VB_STORE_APPLY_H
#define VB_STORE_APPLY_H

#include "store/spool.h"

struct event_base;
typedef struct vb_apply vb_apply_t;

/* SP stays owned by the caller and must outlive the applier. NULL + errno. */
vb_apply_t *vb_apply_new(struct event_base *base, const char *conninfo, vb_spool_t *sp);
void vb_apply_free(vb_apply_t *a);

/* New records are on disk: apply them now unless a batch is in flight or a
 * retry is waiting (they are picked up then). */
void vb_apply_kick(vb_apply_t *a);
/* 1 when everything synced has been applied and nothing is in flight. */
int vb_apply_idle(const vb_apply_t *a);

#endif
