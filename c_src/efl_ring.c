/* Ring set-up, resizing and the consumer's drain; the producer's side is
 * inline in efl_ring.h. */
#include <sys/mman.h>

#include "efl_ring.h"

/* Slots for min_events: a power of two above it, or 0 past 2^30. */
static size_t slots_for(size_t min_events)
{
    size_t size = 2;
    while (size < min_events + 1) {
        if (size >= (1u << 30))
            return 0;
        size <<= 1;
    }
    return size;
}

static void reset(struct efl_ring *r, size_t slots)
{
    ck_ring_init(&r->ring, (unsigned)slots);
    r->seen_consumer = 0;
    r->dropped = 0;
    r->unreported = 0;
    r->unreported_pid = 0;
}

bool efl_ring_init(struct efl_ring *r, size_t min_events)
{
    size_t size = slots_for(min_events);
    if (size == 0)
        return false;
    r->bytes = size * sizeof *r->slots;
    void *p = mmap(NULL, r->bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return false;
    r->slots = p;
    reset(r, size);
    return true;
}

bool efl_ring_resize(struct efl_ring *r, size_t min_events)
{
    size_t size = slots_for(min_events);
    if (size == 0 || size * sizeof *r->slots > r->bytes)
        return false;
    reset(r, size);
    return true;
}

void efl_ring_destroy(struct efl_ring *r)
{
    if (r->slots != NULL)
        munmap(r->slots, r->bytes);
    r->slots = NULL;
}

void efl_ring_release_pages(struct efl_ring *r)
{
    madvise(r->slots, r->bytes, MADV_DONTNEED);
}

size_t efl_ring_drain(struct efl_ring *r, struct efl_event *out, size_t max)
{
    const unsigned mask = r->ring.mask;
    unsigned consumer = r->ring.c_head;
    unsigned producer = ck_pr_load_uint(&r->ring.p_tail);
    size_t n = (producer - consumer) & mask;
    if (n > max)
        n = max;
    if (n == 0)
        return 0;
    /* The slots up to p_tail were written before p_tail was published. */
    ck_pr_fence_load();
    for (size_t i = 0; i < n; i++)
        out[i] = r->slots[(consumer + i) & mask];
    /* Done reading the slots before the producer may reuse them. */
    ck_pr_fence_store_atomic();
    ck_pr_store_uint(&r->ring.c_head, consumer + (unsigned)n);
    return n;
}
