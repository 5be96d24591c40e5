/* The clocks every process reads. Intervals, timeouts, pacing and heartbeats
 * use the monotonic clock, which a wall-clock step (NTP, an operator) does
 * not move; the wall clock only stamps records for people and PostgreSQL. */
#ifndef VB_COMMON_CLOCK_H
#define VB_COMMON_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline uint64_t vb_clock_ns(clockid_t clock)
{
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static inline uint64_t vb_mono_ns(void)
{
    return vb_clock_ns(CLOCK_MONOTONIC);
}

static inline uint64_t vb_mono_ms(void)
{
    return vb_mono_ns() / 1000000u;
}

static inline uint64_t vb_wall_ns(void)
{
    return vb_clock_ns(CLOCK_REALTIME);
}

#endif
