/* Admission for capture: which processes are inside a captured call, and
 * how many calls may still be captured. Called from tracer callbacks on
 * any scheduler thread: lock-free, no allocation.
 *
 * A process's own entry is only ever changed from its own context (its
 * meta trace callbacks), so its depth needs no atomics beyond visibility;
 * entries are claimed with a CAS and never removed during a session (a
 * finished call leaves depth 0). Entries carry the session that claimed
 * them, so a new session needs no clearing: entries of other sessions are
 * free slots. The storage outlives sessions (callbacks may run late). */
#ifndef EFL_CAPTURE_H
#define EFL_CAPTURE_H

#include <stddef.h>
#include <stdint.h>

struct efl_capture_entry {
    uint64_t pid;
    uint32_t session;
    int32_t depth;     /* open calls of the target in this process, or SKIPPING */
};

/* The entry's process is in a call that `every` passed over: its return
 * is awaited (calls of the target inside it are not counted). */
#define EFL_CAPTURE_SKIPPING (-1)

struct efl_capture {
    struct efl_capture_entry *entries;
    size_t cap;          /* power of two, at least twice the budget */
    uint32_t session;
    int64_t budget;      /* atomic: calls that may still be admitted */
    uint32_t every;      /* admit one call in `every` */
    uint64_t seen;       /* atomic: candidate calls so far, for `every` */
    uint32_t active;     /* atomic: admitted calls not returned yet */
    uint32_t completed;  /* atomic: admitted calls returned */
    uint32_t ready;      /* atomic: calls may be admitted (lazy: once the node's call
                          * patterns are in place) */
    uint32_t first_seen; /* atomic: lazy: a call came while not ready */
};

/* Resets the counters for a new session. budget * 2 <= cap. Lazy: no call
 * is admitted until efl_capture_ready(); the calls before are passed over,
 * the first of them told (EFL_CAPTURE_SKIP_FIRST). */
void efl_capture_start(struct efl_capture *c, uint32_t session, uint32_t budget, uint32_t every,
                       int lazy);
void efl_capture_ready(struct efl_capture *c);

enum efl_capture_verdict {
    EFL_CAPTURE_DISCARD,  /* not traced */
    EFL_CAPTURE_TRACE,    /* traced: a newly admitted call (one unit of the
                           * budget), or a recursive call inside one */
    EFL_CAPTURE_SKIP,     /* an outermost call that `every` passes over (or
                           * one before a lazy capture is ready): traced only
                           * so that its return is seen, not recorded */
    EFL_CAPTURE_SKIP_FIRST /* the same, the first call of a lazy capture not
                           * ready: time to put the patterns in place */
};

/* A call of the target by pid (the meta enabled(call) check). Only
 * outermost calls count for `every`: calls inside a skipped one are
 * discarded without counting. */
enum efl_capture_verdict efl_capture_enter(struct efl_capture *c, uint64_t pid);

/* The target returned or raised in pid (meta return_from/exception_from).
 * Returns 1 when that ends a captured call (not a skipped one). */
int efl_capture_leave(struct efl_capture *c, uint64_t pid);

/* Is pid in a call that `every` passed over? */
int efl_capture_skipping(const struct efl_capture *c, uint64_t pid);

/* A process spawned inside a captured call becomes part of it (without
 * taking any budget) until the session ends. Called in the parent's
 * context, before the child runs. */
void efl_capture_adopt(struct efl_capture *c, uint64_t child);

/* Is pid inside a captured call? */
int efl_capture_inside(const struct efl_capture *c, uint64_t pid);

/* Can anything still happen: budget left, or calls in progress? */
int efl_capture_armed(const struct efl_capture *c);

#endif
