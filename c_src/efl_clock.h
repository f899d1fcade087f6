/* The tracer's clock: nanoseconds on CLOCK_MONOTONIC's time line. Where the
 * kernel itself keeps time with the TSC (clocksource "tsc": it found the
 * TSC invariant and in sync across cores, and watches it), the TSC is read
 * directly and scaled, which costs half of a vDSO clock_gettime or less.
 * Elsewhere clock_gettime(CLOCK_MONOTONIC) is used: a guest whose kernel
 * runs on kvm-clock with tsc=unstable was seen with one thread's TSC stamp
 * 27 us behind another's, though its CPU flags declared the TSC reliable. */
#ifndef EFL_CLOCK_H
#define EFL_CLOCK_H

#include <stdint.h>
#include <time.h>

#if defined(__x86_64__)
#include <x86intrin.h>
#endif

struct efl_clock {
    int use_tsc;
    int64_t tsc0;     /* TSC at the base */
    int64_t ns0;      /* CLOCK_MONOTONIC at the base */
    uint64_t mult;    /* nanoseconds per TSC tick, << 32 */
};

static inline int64_t efl_monotonic_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

/* Measures the TSC rate over about 20 ms (once, at load). */
void efl_clock_calibrate(struct efl_clock *c);
/* Moves the base to now, so drift between the TSC and CLOCK_MONOTONIC
 * never builds up over a node's life (at each session start). */
void efl_clock_rebase(struct efl_clock *c);

/* The raw reading, cheap enough for every trace event: TSC ticks or
 * nanoseconds. Convert with efl_clock_to_ns, off the hot path. */
static inline uint64_t efl_clock_read(const struct efl_clock *c)
{
#if defined(__x86_64__)
    if (c->use_tsc)
        return __rdtsc();
#endif
    (void)c;
    return (uint64_t)efl_monotonic_ns();
}

static inline uint64_t efl_clock_to_ns(const struct efl_clock *c, uint64_t raw)
{
    if (!c->use_tsc)
        return raw;
    int64_t d = (int64_t)raw - c->tsc0;
    return (uint64_t)(c->ns0 + (int64_t)(((__int128)d * (__int128)c->mult) >> 32));
}

/* How many raw readings (ticks) make a duration of ns nanoseconds. */
static inline uint64_t efl_clock_ticks(const struct efl_clock *c, uint64_t ns)
{
    return c->use_tsc ? (uint64_t)(((unsigned __int128)ns << 32) / c->mult) : ns;
}

#endif
