/* Assistants for the AI broker, from PostgreSQL when database_url is set (the
 * config file's otherwise): looked up by id or name without blocking the
 * broker's loop, and cached by (id, revision). Every change to an assistant
 * row bumps its revision (a trigger); the api worker hands the current
 * revision to the call, so the next call loads the new settings without a
 * restart while running calls keep the copy they started with.
 * Also the row -> vb_assistant_t mapping shared with the api workers. */
#ifndef VB_BROKER_ASSISTANTS_H
#define VB_BROKER_ASSISTANTS_H

#include <libpq-fe.h>

#include "common/conf.h"

struct event_base;

/* The columns vb_assistant_from_row() reads, in order, of "assistants a". */
#define VB_ASSISTANT_COLUMNS                                                                   \
    "a.id, a.name, a.revision, a.mode, a.first_message, a.fallback, a.voice, a.language,"      \
    " a.rate, a.echo_delay_ms, a.intents::text, a.barge_in_ms, a.end_silence_ms"

/* Row ROW of RES (VB_ASSISTANT_COLUMNS) into OUT. 0, or -E2BIG when the
 * intents do not fit (OUT then has none: "[]"). */
int vb_assistant_from_row(const PGresult *res, int row, vb_assistant_t *out);

/* The assistant ASSISTANT_ID_OR_NAME (a UUID is looked up by id, anything else
 * by name), at least at REVISION (<= 0: unknown, use a copy loaded in the last
 * second or load it). Returns
 *   0        OUT holds a copy;
 *   -EAGAIN  a load is in flight on BASE: call again (e.g. on the next tick);
 *   -ENOENT  no such assistant, in the database or in the config file;
 *   -EIO     the database did not answer and there is no copy to fall back on
 *            (an older cached copy, or the config file's assistant of that
 *            name, is returned with 0 instead, and logged).
 * Without database_url this is the config file's assistant by name, at once.
 * One connection per process, made on first use on BASE. */
int vb_assistants_get(const vb_conf_t *conf, struct event_base *base,
                      const char *assistant_id_or_name, long long revision,
                      vb_assistant_t *out);

/* Drops the cache and the connection (process exit, tests). */
void vb_assistants_shutdown(void);

#endif
