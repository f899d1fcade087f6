/* A bounded single-producer single-consumer ring of efl_event records, built
 * on ck_ring. One ring per scheduler thread: the thread's tracer callbacks are
 * the only producer, the flusher thread is the only consumer. */
#ifndef EFL_RING_H
#define EFL_RING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <ck_ring.h>

#include "efl_event.h"

CK_RING_PROTOTYPE(efl_event, efl_event)

struct efl_ring {
    ck_ring_t ring;
    struct efl_event *slots;
    size_t bytes;
    /* Producer only: a consumer position known to be reached. Reading the
     * real one (c_head, written by the consumer) only when the ring looks
     * full keeps its cache line from bouncing between cores per event. */
    unsigned seen_consumer;
    /* Written by the producer only, read by the consumer: events lost
     * because the ring was full. */
    uint64_t dropped;
    /* Producer only: losses not yet reported in the ring, and whose (a raw
     * pid; 0 when several processes lost events). */
    uint32_t unreported;
    uint64_t unreported_pid;
};

/* Size in slots is rounded up to a power of two (at least 2); the ring holds
 * one event fewer than its slots (ck_ring keeps one slot empty). The slots
 * are mapped pages that cost memory only once touched. */
bool efl_ring_init(struct efl_ring *r, size_t min_events);
/* Empties the ring and makes it hold min_events (rounded up as above), if
 * its pages have room; false if not. No producer or consumer may run. */
bool efl_ring_resize(struct efl_ring *r, size_t min_events);
void efl_ring_destroy(struct efl_ring *r);
/* Gives the touched pages back to the system; the memory stays mapped, so a
 * late producer can still write (into fresh zero pages). */
void efl_ring_release_pages(struct efl_ring *r);

/* Producer only. Wait-free: the slot to fill next, or NULL (and a counted
 * drop) when the ring is full. Never blocks, never allocates. */
static inline struct efl_event *efl_ring_reserve(struct efl_ring *r)
{
    const unsigned mask = r->ring.mask;
    unsigned producer = r->ring.p_tail;
    /* Full when the next slot is the consumer's (ck keeps one slot free). */
    if (((producer + 1) & mask) == (r->seen_consumer & mask)) {
        r->seen_consumer = ck_pr_load_uint(&r->ring.c_head);
        if (((producer + 1) & mask) == (r->seen_consumer & mask)) {
            __atomic_store_n(&r->dropped, r->dropped + 1, __ATOMIC_RELAXED);
            return NULL;
        }
    }
    return &r->slots[producer & mask];
}

/* Producer only: is the ring more than a quarter full? The consumer's
 * position is read again only when the last one known says so. */
static inline bool efl_ring_filling(struct efl_ring *r)
{
    const unsigned mask = r->ring.mask, producer = r->ring.p_tail;
    if (((producer - r->seen_consumer) & mask) <= mask / 4)
        return false;
    r->seen_consumer = ck_pr_load_uint(&r->ring.c_head);
    return ((producer - r->seen_consumer) & mask) > mask / 4;
}

/* Producer only: publishes the reserved slot to the consumer. */
static inline void efl_ring_commit(struct efl_ring *r)
{
    ck_ring_enqueue_commit_spsc(&r->ring);
}

/* Producer only: counts an event of `pid` that could not be written. */
static inline void efl_ring_lose(struct efl_ring *r, uint64_t pid)
{
    if (r->unreported == 0)
        r->unreported_pid = pid;
    else if (r->unreported_pid != pid)
        r->unreported_pid = 0;
    if (r->unreported < UINT32_MAX)
        r->unreported++;
}

/* Producer only, before writing an event: if events were lost since the
 * last one, writes a LOST marker first (when it fits), so the folder knows
 * which process's stack to resynchronise. Returns false if events are still
 * unreported (the ring is still full). */
static inline bool efl_ring_report_losses(struct efl_ring *r, uint64_t ts, uint32_t session)
{
    if (r->unreported == 0)
        return true;
    struct efl_event *e = efl_ring_reserve(r);
    if (e == NULL)
        return false;
    memset(e, 0, sizeof *e);
    e->ts = ts;
    e->pid = r->unreported_pid;
    e->mod = r->unreported;
    e->kind = EFL_EV_LOST;
    e->session = session;
    efl_ring_commit(r);
    r->unreported = 0;
    return true;
}

/* Producer only: reserve, copy, commit. */
static inline bool efl_ring_push(struct efl_ring *r, const struct efl_event *e)
{
    struct efl_event *slot = efl_ring_reserve(r);
    if (slot == NULL)
        return false;
    memcpy(slot, e, sizeof *e);
    efl_ring_commit(r);
    return true;
}

/* Consumer only. Wait-free: moves up to max events into out, oldest first,
 * and returns how many; the slots are handed back to the producer once per
 * call, not per event. Events pushed concurrently may or may not be seen. */
size_t efl_ring_drain(struct efl_ring *r, struct efl_event *out, size_t max);

/* Consumer side: drops counted so far (monotonic). */
static inline uint64_t efl_ring_dropped(const struct efl_ring *r)
{
    return __atomic_load_n(&r->dropped, __ATOMIC_RELAXED);
}

#endif
