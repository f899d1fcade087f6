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
    /* Written by the producer only, read by the consumer: events lost
     * because the ring was full. */
    uint64_t dropped;
};

/* Size in slots is rounded up to a power of two (at least 2); the ring holds
 * one event fewer than its slots (ck_ring keeps one slot empty). The slots
 * are mapped pages that cost memory only once touched. */
bool efl_ring_init(struct efl_ring *r, size_t min_events);
void efl_ring_destroy(struct efl_ring *r);
/* Gives the touched pages back to the system; the memory stays mapped, so a
 * late producer can still write (into fresh zero pages). */
void efl_ring_release_pages(struct efl_ring *r);

/* Producer only. Wait-free: copies the event in, or counts a drop when the
 * ring is full. Never blocks, never allocates. */
static inline bool efl_ring_push(struct efl_ring *r, const struct efl_event *e)
{
    struct efl_event *slot = ck_ring_enqueue_reserve_spsc_efl_event(&r->ring, r->slots);
    if (slot == NULL) {
        __atomic_store_n(&r->dropped, r->dropped + 1, __ATOMIC_RELAXED);
        return false;
    }
    memcpy(slot, e, sizeof *e);
    ck_ring_enqueue_commit_spsc(&r->ring);
    return true;
}

/* Consumer only. Wait-free: moves up to max events into out, oldest first,
 * and returns how many. Events pushed concurrently may or may not be seen. */
size_t efl_ring_drain(struct efl_ring *r, struct efl_event *out, size_t max);

/* Consumer side: drops counted so far (monotonic). */
static inline uint64_t efl_ring_dropped(const struct efl_ring *r)
{
    return __atomic_load_n(&r->dropped, __ATOMIC_RELAXED);
}

#endif
