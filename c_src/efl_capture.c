/* Capture admission, lock-free, on any scheduler thread: efl_capture.h. */
#include "efl_capture.h"

/* A slot being claimed: its pid is not written yet. Readers step over it;
 * a session id never takes this value. */
#define CLAIMING UINT32_MAX

static size_t slot_of(uint64_t pid, size_t cap)
{
    return (size_t)((pid * 0x9E3779B97F4A7C15ull) >> 20) & (cap - 1);
}

void efl_capture_start(struct efl_capture *c, uint32_t session, uint32_t budget, uint32_t every,
                       int lazy)
{
    c->session = session;
    c->every = every ? every : 1;
    __atomic_store_n(&c->ready, !lazy, __ATOMIC_RELAXED);
    __atomic_store_n(&c->first_seen, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&c->seen, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&c->active, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&c->completed, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&c->budget, (int64_t)budget, __ATOMIC_SEQ_CST);
}

/* The entry of pid in this session, or NULL. Probing stops at the first
 * slot of another session: entries are never removed, and a process's own
 * entry is claimed before it is ever looked up. */
static struct efl_capture_entry *find(const struct efl_capture *c, uint64_t pid)
{
    for (size_t i = slot_of(pid, c->cap), n = 0; n < c->cap; i = (i + 1) & (c->cap - 1), n++) {
        struct efl_capture_entry *e = &c->entries[i];
        uint32_t owner = __atomic_load_n(&e->session, __ATOMIC_ACQUIRE);
        if (owner == CLAIMING)
            continue;
        if (owner != c->session)
            return NULL;
        if (__atomic_load_n(&e->pid, __ATOMIC_RELAXED) == pid)
            return e;
    }
    return NULL;
}

static struct efl_capture_entry *claim(struct efl_capture *c, uint64_t pid)
{
    for (size_t i = slot_of(pid, c->cap), n = 0; n < c->cap; i = (i + 1) & (c->cap - 1), n++) {
        struct efl_capture_entry *e = &c->entries[i];
        uint32_t owner = __atomic_load_n(&e->session, __ATOMIC_ACQUIRE);
        if (owner == c->session || owner == CLAIMING)
            continue;
        if (__atomic_compare_exchange_n(&e->session, &owner, CLAIMING, 0, __ATOMIC_ACQ_REL,
                                        __ATOMIC_ACQUIRE)) {
            __atomic_store_n(&e->depth, 0, __ATOMIC_RELAXED);
            __atomic_store_n(&e->pid, pid, __ATOMIC_RELAXED);
            /* Publishes pid and depth with the entry. */
            __atomic_store_n(&e->session, c->session, __ATOMIC_RELEASE);
            return e;
        }
    }
    return NULL;
}

/* One unit of the budget, if any is left. */
static int take_budget(struct efl_capture *c)
{
    int64_t left = __atomic_load_n(&c->budget, __ATOMIC_ACQUIRE);
    while (left > 0)
        if (__atomic_compare_exchange_n(&c->budget, &left, left - 1, 0, __ATOMIC_ACQ_REL,
                                        __ATOMIC_ACQUIRE))
            return 1;
    return 0;
}

enum efl_capture_verdict efl_capture_enter(struct efl_capture *c, uint64_t pid)
{
    struct efl_capture_entry *e = find(c, pid);
    int32_t depth = e != NULL ? __atomic_load_n(&e->depth, __ATOMIC_RELAXED) : 0;
    if (depth > 0) {
        __atomic_store_n(&e->depth, depth + 1, __ATOMIC_RELAXED);
        return EFL_CAPTURE_TRACE;
    }
    if (depth == EFL_CAPTURE_SKIPPING)
        return EFL_CAPTURE_DISCARD;
    if (__atomic_load_n(&c->budget, __ATOMIC_ACQUIRE) <= 0)
        return EFL_CAPTURE_DISCARD;
    /* Lazy and not ready: the node's call patterns are not in place, so
     * this call could not be recorded from its entry; followed to its
     * return, as `every` does, the first of them told. */
    if (!__atomic_load_n(&c->ready, __ATOMIC_ACQUIRE)) {
        if (e == NULL && (e = claim(c, pid)) == NULL)
            return EFL_CAPTURE_DISCARD;
        __atomic_store_n(&e->depth, EFL_CAPTURE_SKIPPING, __ATOMIC_RELAXED);
        return __atomic_exchange_n(&c->first_seen, 1, __ATOMIC_ACQ_REL) ? EFL_CAPTURE_SKIP
                                                                          : EFL_CAPTURE_SKIP_FIRST;
    }
    /* One outermost call in `every`, from the first. A skipped call is
     * followed to its return (one entry), so that the calls it makes of
     * the target are not counted as calls. */
    int take = c->every <= 1 || __atomic_fetch_add(&c->seen, 1, __ATOMIC_RELAXED) % c->every == 0;
    /* No slot: more processes than the table holds, which only skipped
     * calls can bring (it holds twice the budget): not captured. */
    if (e == NULL && (e = claim(c, pid)) == NULL)
        return EFL_CAPTURE_DISCARD;
    if (!take) {
        __atomic_store_n(&e->depth, EFL_CAPTURE_SKIPPING, __ATOMIC_RELAXED);
        return EFL_CAPTURE_SKIP;
    }
    if (!take_budget(c))
        return EFL_CAPTURE_DISCARD;
    __atomic_fetch_add(&c->active, 1, __ATOMIC_RELAXED);
    __atomic_store_n(&e->depth, 1, __ATOMIC_RELAXED);
    return EFL_CAPTURE_TRACE;
}

void efl_capture_ready(struct efl_capture *c)
{
    __atomic_store_n(&c->ready, 1, __ATOMIC_RELEASE);
}

int efl_capture_leave(struct efl_capture *c, uint64_t pid)
{
    struct efl_capture_entry *e = find(c, pid);
    if (e == NULL)
        return 0;
    int32_t depth = __atomic_load_n(&e->depth, __ATOMIC_RELAXED);
    if (depth == EFL_CAPTURE_SKIPPING) {
        __atomic_store_n(&e->depth, 0, __ATOMIC_RELAXED);
        return 0;
    }
    if (depth <= 0)
        return 0;
    __atomic_store_n(&e->depth, depth - 1, __ATOMIC_RELAXED);
    if (depth > 1)
        return 0;
    __atomic_fetch_add(&c->completed, 1, __ATOMIC_RELAXED);
    __atomic_fetch_sub(&c->active, 1, __ATOMIC_RELEASE);
    return 1;
}

int efl_capture_skipping(const struct efl_capture *c, uint64_t pid)
{
    const struct efl_capture_entry *e = find(c, pid);
    return e != NULL && __atomic_load_n(&e->depth, __ATOMIC_RELAXED) == EFL_CAPTURE_SKIPPING;
}

void efl_capture_adopt(struct efl_capture *c, uint64_t child)
{
    struct efl_capture_entry *e = find(c, child);
    if (e == NULL)
        e = claim(c, child);
    /* No slot: the table holds twice the budget, children may overflow
     * it; the child is then left out. */
    if (e != NULL && __atomic_load_n(&e->depth, __ATOMIC_RELAXED) == 0)
        __atomic_store_n(&e->depth, 1, __ATOMIC_RELAXED);
}

int efl_capture_inside(const struct efl_capture *c, uint64_t pid)
{
    const struct efl_capture_entry *e = find(c, pid);
    return e != NULL && __atomic_load_n(&e->depth, __ATOMIC_RELAXED) > 0;
}

int efl_capture_armed(const struct efl_capture *c)
{
    return __atomic_load_n(&c->budget, __ATOMIC_ACQUIRE) > 0 ||
           __atomic_load_n(&c->active, __ATOMIC_ACQUIRE) > 0;
}
