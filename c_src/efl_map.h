/* Open-addressing hash map from a 64-bit key to a 32-bit value, for the id
 * tables of the archive writer and the folder. Grows at 50% load. */
#ifndef EFL_MAP_H
#define EFL_MAP_H

#include <stddef.h>
#include <stdint.h>

#include "efl_status.h"

#define EFL_MAP_NONE UINT32_MAX

/* Key and value side by side: a lookup touches one cache line. */
struct efl_map_slot {
    uint64_t key;
    uint32_t val;     /* EFL_MAP_NONE marks an empty slot */
};

struct efl_map {
    struct efl_map_slot *slots;
    size_t cap;       /* power of two */
    size_t count;
};

void efl_map_free(struct efl_map *m);
/* EFL_MAP_NONE when absent. */
uint32_t efl_map_get(const struct efl_map *m, uint64_t key);
/* val must not be EFL_MAP_NONE. */
efl_status efl_map_put(struct efl_map *m, uint64_t key, uint32_t val);

#endif
