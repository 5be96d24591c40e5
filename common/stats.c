/* Counters of bad input and faults: see stats.h. Used by every process. */
#include "common/stats.h"

static vb_stats_t local_stats;
vb_stats_t *vb_stats = &local_stats;

static const char *const stat_names[] = {
#define VB_STAT_NAME(name, help) #name,
    VB_STATS_LIST(VB_STAT_NAME)
#undef VB_STAT_NAME
};

static const char *const stat_helps[] = {
#define VB_STAT_HELP(name, help) help,
    VB_STATS_LIST(VB_STAT_HELP)
#undef VB_STAT_HELP
};

void vb_stats_attach(vb_stats_t *block)
{
    vb_stats = block;
}

const char *vb_stats_name(int id)
{
    return stat_names[id];
}

const char *vb_stats_help(int id)
{
    return stat_helps[id];
}
