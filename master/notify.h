/* sd_notify for the master (see notify.c). */
#ifndef VB_MASTER_NOTIFY_H
#define VB_MASTER_NOTIFY_H

int vb_notify(const char *state);

#endif
