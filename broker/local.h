/* The `local` conversation engine (vb_engine_local, declared in engine.h): the
 * assistant's intents answered with the offline voice, no key and no network.
 * What it does on a call is described in local.c and docs/voice.md. These are
 * its process-wide settings, for the broker and the tests. Run by the broker. */
#ifndef VB_BROKER_LOCAL_H
#define VB_BROKER_LOCAL_H

#include "broker/stt_local.h"

#define VB_LOCAL_BARGE_IN_MS 300 /* caller speech over the agent that interrupts it */
#define VB_LOCAL_HANGUP_TAIL_MS                                                                \
    500 /* after the goodbye left the ring: carrier buffer + margin */
#define VB_LOCAL_FALLBACK "Sorry, I did not catch that. Could you say it another way?"

/* Options of the recognition service, taken when the first local call starts it
 * (later calls have no effect). Default: the installed model, open model on. */
void vb_local_configure(const vb_stt_opts_t *stt_opts);

/* Start the synthesis and recognition services now rather than at the first
 * local call, so that call's greeting does not wait for the models to load. */
void vb_local_prepare(void);
/* Stop the synthesis and recognition threads (tests; a broker just exits). Every
 * local call must have been detached. */
void vb_local_shutdown(void);

#endif
