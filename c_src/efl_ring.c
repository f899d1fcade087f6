#include <stdlib.h>

#include "efl_ring.h"

bool efl_ring_init(struct efl_ring *r, size_t min_events)
{
    size_t size = 2;
    while (size < min_events + 1) {
        if (size > (SIZE_MAX >> 1) || size >= (1u << 30))
            return false;
        size <<= 1;
    }
    /* calloc: large rings come from mmap, so pages a quiet thread never
     * touches cost no memory. */
    r->slots = calloc(size, sizeof *r->slots);
    if (r->slots == NULL)
        return false;
    ck_ring_init(&r->ring, (unsigned)size);
    r->dropped = 0;
    return true;
}

void efl_ring_destroy(struct efl_ring *r)
{
    free(r->slots);
    r->slots = NULL;
}

size_t efl_ring_drain(struct efl_ring *r, struct efl_event *out, size_t max)
{
    size_t n = 0;
    while (n < max && ck_ring_dequeue_spsc_efl_event(&r->ring, r->slots, &out[n]))
        n++;
    return n;
}
