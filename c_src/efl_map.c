/* Open-addressing hash map, 64-bit keys to 32-bit values: efl_map.h. */
#include <stdlib.h>

#include "efl_map.h"

static size_t slot_of(uint64_t key, size_t cap)
{
    /* Fibonacci hashing: raw term values differ mostly in their high bits. */
    key ^= key >> 29;
    return (size_t)((key * 0x9E3779B97F4A7C15ull) >> 17) & (cap - 1);
}

void efl_map_free(struct efl_map *m)
{
    free(m->slots);
    m->slots = NULL;
    m->cap = m->count = 0;
}

uint32_t efl_map_get(const struct efl_map *m, uint64_t key)
{
    if (m->cap == 0)
        return EFL_MAP_NONE;
    for (size_t i = slot_of(key, m->cap);; i = (i + 1) & (m->cap - 1)) {
        const struct efl_map_slot *s = &m->slots[i];
        if (s->val == EFL_MAP_NONE)
            return EFL_MAP_NONE;
        if (s->key == key)
            return s->val;
    }
}

static void insert(struct efl_map_slot *slots, size_t cap, uint64_t key, uint32_t val)
{
    size_t i = slot_of(key, cap);
    while (slots[i].val != EFL_MAP_NONE && slots[i].key != key)
        i = (i + 1) & (cap - 1);
    slots[i] = (struct efl_map_slot){key, val};
}

static efl_status grow(struct efl_map *m)
{
    size_t cap = m->cap ? m->cap * 2 : 64;
    struct efl_map_slot *slots = malloc(cap * sizeof *slots);
    EFL_RETURN_ERROR_IF(slots == NULL, EFL_ERR_NOMEM);
    for (size_t i = 0; i < cap; i++)
        slots[i].val = EFL_MAP_NONE;
    for (size_t i = 0; i < m->cap; i++)
        if (m->slots[i].val != EFL_MAP_NONE)
            insert(slots, cap, m->slots[i].key, m->slots[i].val);
    free(m->slots);
    m->slots = slots;
    m->cap = cap;
    return EFL_OK;
}

efl_status efl_map_put(struct efl_map *m, uint64_t key, uint32_t val)
{
    if ((m->count + 1) * 2 > m->cap)
        EFL_FORWARD_IF_ERROR(grow(m));
    size_t before = efl_map_get(m, key) == EFL_MAP_NONE;
    insert(m->slots, m->cap, key, val);
    m->count += before;
    return EFL_OK;
}
