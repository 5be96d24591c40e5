/* The store's live state in Redis: the set of active calls
 * (voxbridge:calls:active), a hash per call (voxbridge:call:<id>, with a TTL
 * as a safety net), and every record published on voxbridge:events for
 * dashboards. Best effort: Redis being down or slow never holds the store up;
 * when it comes back the calls still up in our slots are added again and the
 * calls that ended meanwhile removed. Store only. */
#ifndef VB_STORE_LIVE_H
#define VB_STORE_LIVE_H

#include <stddef.h>

#include "shm/shm.h"
#include "store/records.h"

#define VB_LIVE_ACTIVE_KEY "voxbridge:calls:active"
#define VB_LIVE_CALL_PREFIX "voxbridge:call:"
#define VB_LIVE_EVENTS_CHANNEL "voxbridge:events"
#define VB_LIVE_CALL_TTL_S 3600 /* refreshed while the call is up */

struct event_base;
typedef struct vb_live vb_live_t;

/* SHM: the slots whose calls are re-announced after a reconnect. NULL + errno. */
vb_live_t *vb_live_new(struct event_base *base, const char *redis_url, vb_shm_t *shm);
void vb_live_free(vb_live_t *l);

/* A record that was just written to the spool (LINE, LEN bytes without '\n'). */
void vb_live_record(vb_live_t *l, const vb_rec_t *rec, const char *line, size_t len);

#endif
