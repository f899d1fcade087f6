/* The flusher: one thread that drains every ring into the archive writer. */
#ifndef EFL_FLUSHER_H
#define EFL_FLUSHER_H

#include <stddef.h>
#include <stdint.h>

#include "efl_archive.h"
#include "efl_clock.h"
#include "efl_ring.h"
#include "efl_status.h"

struct efl_flusher;

/* Limits on a run: 0 means none. When one is reached the flusher calls
 * on_limit once (on its own thread) and discards what comes after. */
struct efl_flush_limits {
    uint64_t max_events;
    uint64_t max_bytes;
    /* Longest wait while idle; 0: the default (4 ms). When set, also the
     * wait after a pass while events trickle in (a sampler's ticks). */
    long idle_wait_max_ns;
    void (*on_limit)(void *ctx, unsigned reason);
    void *ctx;
    /* A futex word the flusher sleeps on, 1 while it sleeps (NULL: one of
     * its own). It outlives the flusher: producers call efl_flusher_wake
     * on it, whichever flusher runs. */
    uint32_t *sleeping;
};

struct efl_flush_stats {
    uint64_t events;   /* events written to the archive */
    uint64_t drops;    /* events lost to full rings */
    uint64_t bytes;    /* archive size */
    efl_status status; /* first failure of the writer, if any */
    int error;         /* its errno, for EFL_ERR_IO */
    unsigned stopped;  /* enum efl_stop_reason */
    uint32_t *modules; /* raw atoms of the modules events named; the caller frees */
    size_t nmodules;
    uint64_t *pids;    /* raw pids of the processes events came from; the caller frees */
    size_t npids;
};

/* Starts the thread, which archives the events of `session` and discards
 * any other (left in a reused ring by an earlier session), turning their
 * raw clock readings into nanoseconds with `clock`. The flusher owns the
 * writer from now on, if it starts; the rings stay the caller's and must
 * outlive efl_flusher_stop. */
efl_status efl_flusher_start(struct efl_flusher **f, struct efl_ring *rings, size_t nrings,
                             uint32_t session, const struct efl_clock *clock,
                             const struct efl_flush_limits *limits,
                             struct efl_archive_writer *writer);

/* Recording stopped early for a reason found outside the flusher (a
 * timeout, eflambe:stop()): noted in the archive when it is closed. */
void efl_flusher_note_stop(struct efl_flusher *f, unsigned reason);

/* Any thread, never blocks: wakes the flusher sleeping on the word, if it
 * sleeps (a producer whose ring fills up). One system call per sleep. */
void efl_flusher_wake(uint32_t *sleeping);

/* The caller guarantees no producer will push again. Sets the shutdown
 * flag, wakes the thread, joins it: it first drains every ring empty, then
 * closes the archive. Frees f. */
void efl_flusher_stop(struct efl_flusher *f, struct efl_flush_stats *stats);

#endif
