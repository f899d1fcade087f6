/* The flusher: one plain thread per session that drains every ring into the
 * archive writer (efl_flusher.h says who calls what). Part of the library:
 * the C tests run it without a VM. */
#define _GNU_SOURCE /* pthread_setname_np */
#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "efl_flusher.h"

#define DRAIN_BATCH 4096
/* Timestamps are kept to 16 ns. The clock resolves fractions of a
 * nanosecond, but below ~16 ns its bits are noise: an event costs ~130 ns
 * and outputs are in microseconds. Noise does not compress; dropping it
 * takes archives from 1.1-2.0 to 0.8-1.3 bytes per event. */
#define TS_GRAIN_MASK (~(uint64_t)15)
/* While there is nothing to drain, the wait doubles from 0.25 ms up to
 * 4 ms: few wake-ups of an idle flusher (each one takes a CPU from a busy
 * scheduler). A burst does not wait for the end of a sleep: a producer
 * whose ring fills up wakes the flusher (efl_flusher_wake). Anything
 * drained resets the wait. A session whose events come slowly (sampling)
 * may allow a longer wait (next_wait). */
#define IDLE_WAIT_MIN_NS 250000L
#define IDLE_WAIT_MAX_NS 4000000L
/* ...but end a zstd frame only now and then: small frames compress badly. */
#define FRAME_INTERVAL_NS 250000000LL

struct efl_flusher {
    struct efl_ring *rings;
    size_t nrings;
    uint32_t session;
    struct efl_clock clock;
    uint64_t *seen_drops;
    struct efl_event *batch;
    struct efl_archive_writer *writer;
    struct efl_flush_stats stats;
    struct efl_flush_limits limits;
    unsigned stop_reason;  /* atomic: set by efl_flusher_note_stop or a limit */
    pthread_t tid;
    uint32_t *sleeping;    /* futex word: limits.sleeping or own_word */
    uint32_t own_word;
    int shutdown;          /* atomic */
};

static long futex(uint32_t *word, int op, uint32_t val, const struct timespec *timeout)
{
    return syscall(SYS_futex, word, op, val, timeout, NULL, 0);
}

void efl_flusher_wake(uint32_t *sleeping)
{
    if (__atomic_load_n(sleeping, __ATOMIC_RELAXED) &&
        __atomic_exchange_n(sleeping, 0, __ATOMIC_SEQ_CST))
        futex(sleeping, FUTEX_WAKE_PRIVATE, 1, NULL);
}

/* Sleeps wait_ns, or until woken. A wake between the flag and the wait
 * makes the wait return at once (the word is no longer 1). */
static void sleep_until_woken(struct efl_flusher *f, long wait_ns)
{
    struct timespec t = {wait_ns / 1000000000L, wait_ns % 1000000000L};
    __atomic_store_n(f->sleeping, 1, __ATOMIC_SEQ_CST);
    if (!__atomic_load_n(&f->shutdown, __ATOMIC_SEQ_CST))
        futex(f->sleeping, FUTEX_WAIT_PRIVATE, 1, &t);
    __atomic_store_n(f->sleeping, 0, __ATOMIC_SEQ_CST);
}

/* Keeps this session's events, in order, with their time in nanoseconds
 * (to the grain above). */
static size_t own_events(struct efl_flusher *f, size_t n)
{
    size_t kept = 0;
    for (size_t i = 0; i < n; i++) {
        if (f->batch[i].session == f->session) {
            f->batch[kept] = f->batch[i];
            f->batch[kept].ts = efl_clock_to_ns(&f->clock, f->batch[i].ts) & TS_GRAIN_MASK;
            kept++;
        }
    }
    return kept;
}

/* Keeps the writer's first failure, and for an I/O error its errno
 * (ENOSPC says more than "cannot write"). */
static void keep(struct efl_flusher *f, efl_status s)
{
    if (s != EFL_OK && f->stats.status == EFL_OK) {
        f->stats.status = s;
        f->stats.error = s == EFL_ERR_IO ? errno : 0;
    }
}

/* Writes what a ring holds now. After a writer failure the events are
 * still drained, and discarded, so producers keep their rings free. */
static size_t drain_ring(struct efl_flusher *f, size_t i)
{
    size_t total = 0, n;
    do {
        n = efl_ring_drain(&f->rings[i], f->batch, DRAIN_BATCH);
        size_t kept = own_events(f, n);
        /* Past a limit, events that were already on their way are dropped. */
        if (f->stats.stopped != EFL_STOP_NONE)
            kept = 0;
        total += kept;
        if (kept > 0 && f->stats.status == EFL_OK)
            keep(f, efl_archive_writer_events(f->writer, (uint32_t)i, f->batch, kept));
    } while (n == DRAIN_BATCH);
    uint64_t dropped = efl_ring_dropped(&f->rings[i]);
    if (dropped > f->seen_drops[i]) {
        f->stats.drops += dropped - f->seen_drops[i];
        if (f->stats.status == EFL_OK)
            keep(f, efl_archive_writer_drops(f->writer, (uint32_t)i,
                                                       dropped - f->seen_drops[i]));
        f->seen_drops[i] = dropped;
    }
    return total;
}

static void check_limits(struct efl_flusher *f)
{
    if (f->stats.stopped != EFL_STOP_NONE || f->writer == NULL)
        return;
    unsigned reason = EFL_STOP_NONE;
    if (f->limits.max_events && f->stats.events >= f->limits.max_events)
        reason = EFL_STOP_MAX_EVENTS;
    else if (f->limits.max_bytes && efl_archive_writer_bytes(f->writer) +
                                            efl_archive_writer_frame_bytes(f->writer) >=
                                        f->limits.max_bytes)
        reason = EFL_STOP_MAX_BYTES;
    if (reason == EFL_STOP_NONE)
        return;
    f->stats.stopped = reason;
    __atomic_store_n(&f->stop_reason, reason, __ATOMIC_RELAXED);
    if (f->limits.on_limit)
        f->limits.on_limit(f->limits.ctx, reason);
}

void efl_flusher_note_stop(struct efl_flusher *f, unsigned reason)
{
    unsigned none = EFL_STOP_NONE;
    __atomic_compare_exchange_n(&f->stop_reason, &none, reason, 0, __ATOMIC_RELAXED, __ATOMIC_RELAXED);
}

/* The wait before the next pass (0: at once), after one that drained
 * `drained` events gathered over `interval_ns`. Nothing drained: the wait
 * doubles up to the longest. Events drained: the next pass comes at once
 * (small passes keep the archive quick to fold), except in a session that
 * set its own longest wait (a sampler's, whose events come a tick at a
 * time) while they come slowly: a ring would take more than four such
 * waits to fill at this rate, taken as all in one ring. Then the flusher
 * sleeps the longest instead of waking up several times a tick. */
static long next_wait(const struct efl_flusher *f, long wait, size_t drained,
                      int64_t interval_ns)
{
    long max = f->limits.idle_wait_max_ns > 0 ? f->limits.idle_wait_max_ns : IDLE_WAIT_MAX_NS;
    if (drained == 0)
        return wait < IDLE_WAIT_MIN_NS ? IDLE_WAIT_MIN_NS : wait * 2 < max ? wait * 2 : max;
    if (f->limits.idle_wait_max_ns <= 0)
        return 0;
    unsigned capacity = UINT_MAX;
    for (size_t i = 0; i < f->nrings; i++)
        capacity = f->rings[i].ring.mask < capacity ? f->rings[i].ring.mask : capacity;
    double fill_ns = (double)capacity * (double)interval_ns / (double)drained;
    return fill_ns > 4.0 * (double)max ? max : 0;
}

static void *run(void *arg)
{
    struct efl_flusher *f = arg;
    int64_t frame_start = efl_monotonic_ns();
    long wait = 0;
    int64_t last_pass = efl_clock_to_ns(&f->clock, efl_clock_read(&f->clock));
    for (;;) {
        int stopping = __atomic_load_n(&f->shutdown, __ATOMIC_SEQ_CST);

        /* Anything recorded before this instant is drained by this pass or,
         * if its producer was just about to commit, by the next one. */
        uint64_t pass_start = efl_clock_to_ns(&f->clock, efl_clock_read(&f->clock));
        size_t drained = 0;
        for (size_t i = 0; i < f->nrings; i++)
            drained += drain_ring(f, i);
        f->stats.events += drained;
        if (drained > 0 && f->stats.status == EFL_OK)
            keep(f, efl_archive_writer_pass(f->writer, pass_start));
        check_limits(f);

        int64_t now = efl_monotonic_ns();
        if (now - frame_start >= FRAME_INTERVAL_NS) {
            if (f->stats.status == EFL_OK)
                keep(f, efl_archive_writer_end_frame(f->writer));
            frame_start = now;
        }
        /* Producers stopped before shutdown was set: a pass that found
         * nothing after it means every ring is empty for good. */
        if (stopping && drained == 0)
            break;
        wait = next_wait(f, wait, drained, (int64_t)pass_start - last_pass);
        last_pass = (int64_t)pass_start;
        if (wait > 0)
            sleep_until_woken(f, wait);
    }
    f->stats.stopped = __atomic_load_n(&f->stop_reason, __ATOMIC_RELAXED);
    if (f->stats.status == EFL_OK && f->stats.stopped != EFL_STOP_NONE)
        keep(f, efl_archive_writer_stopped(f->writer, f->stats.stopped));
    efl_archive_writer_take_modules(f->writer, &f->stats.modules, &f->stats.nmodules);
    efl_archive_writer_take_pids(f->writer, &f->stats.pids, &f->stats.npids);
    if (f->stats.status == EFL_OK) {
        keep(f, efl_archive_writer_close(f->writer, &f->stats.bytes));
    } else {
        efl_archive_writer_abort(f->writer);
    }
    f->writer = NULL;
    return NULL;
}

static void flusher_free(struct efl_flusher *f)
{
    free(f->seen_drops);
    free(f->batch);
    free(f);
}

efl_status efl_flusher_start(struct efl_flusher **fp, struct efl_ring *rings, size_t nrings,
                             uint32_t session, const struct efl_clock *clock,
                             const struct efl_flush_limits *limits,
                             struct efl_archive_writer *writer)
{
    struct efl_flusher *f = calloc(1, sizeof *f);
    EFL_RETURN_ERROR_IF(f == NULL, EFL_ERR_NOMEM);
    f->rings = rings;
    f->nrings = nrings;
    f->session = session;
    f->clock = *clock;
    if (limits)
        f->limits = *limits;
    f->writer = writer;
    f->seen_drops = calloc(nrings, sizeof *f->seen_drops);
    f->batch = malloc(DRAIN_BATCH * sizeof *f->batch);
    f->sleeping = f->limits.sleeping ? f->limits.sleeping : &f->own_word;
    if (f->seen_drops == NULL || f->batch == NULL) {
        flusher_free(f);
        return EFL_ERR_NOMEM;
    }
    /* Drops are counted per ring over its whole life: start from here. */
    for (size_t i = 0; i < nrings; i++)
        f->seen_drops[i] = efl_ring_dropped(&rings[i]);
    if (pthread_create(&f->tid, NULL, run, f) != 0) {
        flusher_free(f);
        return EFL_ERR_NOMEM;
    }
    pthread_setname_np(f->tid, "eflambe_flusher");
    *fp = f;
    return EFL_OK;
}

void efl_flusher_stop(struct efl_flusher *f, struct efl_flush_stats *stats)
{
    __atomic_store_n(&f->shutdown, 1, __ATOMIC_SEQ_CST);
    efl_flusher_wake(f->sleeping);
    pthread_join(f->tid, NULL);
    *stats = f->stats;
    flusher_free(f);
}
