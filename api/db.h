/* The api worker's database: which assistant answers a called number, and the
 * carrier's status callbacks, through one non-blocking PostgreSQL connection
 * on the worker's loop (common/pg.c). Without database_url the config file's
 * assistants and numbers answer, as before. */
#ifndef VB_API_DB_H
#define VB_API_DB_H

#include "api/form.h"
#include "common/conf.h"
#include "common/role.h"

struct event_base;

/* Connects in the background when database_url is set (call once, from
 * vb_api_main, after the event_base exists). 0 or -ENOMEM. */
int vb_api_db_init(const vb_conf_t *conf, struct event_base *base);
/* Closes the connection; pending lookups finish with an error first. */
void vb_api_db_close(void);

/* The assistant answering calls to TO. DONE(ARG, A, ERR) runs once:
 *   A != NULL, ERR 0   found (in the database, else in the config file);
 *   A == NULL, ERR 0   no assistant answers TO;
 *   A == NULL, ERR < 0 the database failed (-ETIMEDOUT, -ECONNREFUSED...) and
 *                      the config file does not know TO either: answer 503.
 * A is valid during the call only (copy what you keep). DONE runs before this
 * returns when there is no database (config file), later otherwise. Returns 0
 * when DONE will run (or ran), -errno when it will not. */
int vb_api_db_lookup_number(const vb_child_ctx_t *ctx, const char *to,
                            void (*done)(void *arg, const vb_assistant_t *a, int err),
                            void *arg);

/* Stores a status callback (its form: CallSid, CallStatus, SequenceNumber,
 * To, From... all kept as JSON) in call_status_events once per (CallSid,
 * SequenceNumber), and moves calls.status forward (never back: callbacks come
 * out of order). DONE(ARG, ERR, STORED) runs later: STORED 1 the first time,
 * 0 for a repeat. Returns 0 when DONE will run; -ENOTCONN without a database,
 * -EINVAL without CallSid/CallStatus, -ENOMEM (DONE will not run). */
int vb_api_db_call_status(const vb_child_ctx_t *ctx, const vb_form_t *form,
                          void (*done)(void *arg, int err, int stored), void *arg);

#endif
