/* The folder's state, shared by its parts (efl_fold.h is its interface):
 *   efl_fold.c         reads an archive, holds each ring's events until a drain
 *                      pass lets them be merged by timestamp, and hands each event
 *                      to its process's state
 *   efl_fold_stack.c   frames and nodes; each process's real stack (body and tail
 *                      calls; a call of unknown kind drawn as a body call until its
 *                      return says)
 *   efl_fold_time.c    the time between a process's events, to the stack on top:
 *                      tracing cost out, time off the CPU told apart (sleep,
 *                      runnable), the OS's time out ([os preempted]), the timeline
 *   efl_fold_follow.c  followed calls: a server's stacks grafted under its caller's
 *                      waiting frame
 * Single threaded; no dependency on erl_nif.h. */
#ifndef EFL_FOLDER_H
#define EFL_FOLDER_H

#include <stddef.h>
#include <stdint.h>

#include "efl_cost.h"
#include "efl_fold.h"
#include "efl_map.h"
#include "efl_sites.h"

/* An event as the folder keeps it until the rings are merged: 16 bytes,
 * its function already interned as a frame. */
struct held_event {
    uint64_t ts;
    uint32_t pid_kind;  /* process id << 4 | kind (ids < 2^24, kinds < 16) */
    uint32_t frame;     /* frame index + 1; 0: none */
};

#define HELD_PID(e) ((e)->pid_kind >> 4)
#define HELD_KIND(e) ((e)->pid_kind & 0xF)
#define NO_FRAME 0

_Static_assert(EFL_EV_KIND_END <= 16, "event kinds must fit in 4 bits");
/* Kinds that are not a process's own events come last (checks test ranges). */
_Static_assert(EFL_EV_LOST == EFL_EV_SPAWN + 1 && EFL_EV_FOLLOW_CALL == EFL_EV_LOST + 1 &&
               EFL_EV_FOLLOW_END + 1 == EFL_EV_RECEIVE,
               "SPAWN, LOST and the FOLLOW kinds come together, before RECEIVE");

struct ring_events {
    struct held_event *ev;
    size_t n, cap, pos;  /* ev[pos..n) are held */
    int queued;          /* in the merge heap (it holds events) */
};

/* One frame of a process's real stack. Its tree node is the stack up to
 * here; frames past the depth cap share the node of the frame at the cap. */
struct stack_entry {
    uint32_t node;
    uint32_t frame;    /* frame index, or NO_ENTRY_FRAME for a base */
    uint32_t merged;   /* self-calls folded into this frame (collapsed, or
                                                             * of unknown kind): returns to come inside it */
    uint8_t guessed;   /* pushed as a body call without the table's word */
};

#define NO_ENTRY_FRAME UINT32_MAX

/* A call that may have been a tail call: entry `index` was pushed over its
 * caller's entry. The return that pops it tells: landing on the caller
 * means a body call; landing lower means it had replaced the caller, and
 * the time credited meanwhile moves to stacks without the caller's node. */
struct speculation {
    uint32_t index;
    uint32_t caller_node;   /* the node a tail call would take out */
    uint32_t caller_frame, callee_frame;
    size_t log_start;
    size_t timeline_start;
};

struct credit {
    uint32_t node;
    uint64_t ns;
};

/* A process's stack set aside while it works on a followed request. */
struct saved_stack {
    struct stack_entry *stack;
    uint32_t depth, cap, node, resync, overflow_frame;
    uint64_t overflow;
};

/* A process waiting in a followed call (wait): */
enum {
    WAIT_NONE,
    WAIT_QUEUED,   /* the server has not taken the request up: [queued] */
    WAIT_SERVED,   /* the server works on it: its stacks stand for the caller's time */
    WAIT_ANSWERED  /* the server is done: sleep, until the caller runs on */
};

struct proc_state {
    uint32_t node;       /* current stack (the top entry's node); 0 before the process is seen */
    uint32_t shown;      /* timeline: the node last recorded as on top */
    uint32_t proc_node;  /* the process's own node, its stacks' base */
    uint32_t window;     /* index of its open window, if scoped */
    uint64_t last_ts;
    uint32_t root_depth; /* open profiled calls (meta call minus return) */
    uint8_t seen, out, gc;
    uint8_t scoped;      /* has root events: only time inside them counts */
    uint32_t resync;     /* after lost events: the [dropped] node its stack hangs on */
    struct stack_entry *stack; /* [0]: the base (process or [dropped] node) */
    uint32_t depth, cap; /* entries in use, allocated */
    uint64_t overflow;   /* frames past EFL_FOLD_STACK_MAX, only counted... */
    uint32_t overflow_frame; /* ...and the frame on top of them */
    /* Calls of unknown kind, drawn as body calls until their return says
     * (innermost last), and the time credited since the first began. */
    struct speculation *spec;
    uint32_t nspec, spec_cap;
    struct credit *log;
    size_t nlog, log_cap;
    /* Following calls into other processes. A process's stacks are grafted
     * under its caller's waiting frame while it works on a followed
     * request. One that is traced only because a followed call called it
     * (no event of it before: first_ts >= follow_ts) counts only then. */
    uint8_t has_first, has_follow;
    uint64_t first_ts, follow_ts; /* its first event read; the first call of it read */
    uint64_t born_ts;      /* the spawn that created it, read: none of its events is older */
    uint8_t adopted;       /* spawned inside a profiled call: its time counts */
    uint8_t wait;          /* WAIT_*, as a caller */
    uint32_t wait_server;  /* the process it called; 0: one spawned for the call (erpc's) */
    uint32_t take_caller;  /* the caller of the first request it took up (read ahead) */
    uint8_t wait_slept;    /* it was scheduled out since its wait began */
    uint32_t served_by;    /* the process grafted under it, while WAIT_SERVED */
    uint32_t wait_depth;   /* its stack's depth in the call: returning below ends the wait */
    uint32_t caller;       /* while grafted: the caller's process id; 0 otherwise */
    uint32_t graft_owner;  /* while grafted: the process node whose tree it is in */
    uint32_t graft_base;   /* while grafted: its stacks' base, under the caller's frame */
    uint32_t graft_level;  /* while grafted: 1 under a profiled process, 2 under a grafted one... */
    uint32_t last_call;    /* the frame it last called, + 1: a graft starts from it */
    /* As the owner of a timeline, the time credited to its stacks so far:
     * the timeline's clock, so that it adds up as the weights do. */
    uint64_t clock;
    uint8_t clock_set;
    uint8_t last_kind;     /* of its last event folded: what the interval since cost */
    uint32_t owed;         /* tracing cost its intervals could not pay yet, ns */
    /* Scheduled out and in again: whether it waited in a receive or for a
     * scheduler meanwhile is known at its next event (a RECEIVE: it
     * waited); until then the time is held here, with its stack. */
    uint64_t off_ns;
    uint32_t off_node;
    uint8_t off_held;
    size_t off_change;     /* timeline: the change its scheduling out made, + 1 */
    /* Scheduled in (a slice), on a thread whose CPU time was read then:
     * at the slice's end, what of its wall time the thread did not run
     * was the OS's (another program, the flusher...), and is taken out of
     * what the slice credited, in proportion (slice_log). */
    uint8_t in_slice;
    uint32_t slice_cpu;    /* the thread's CPU time at the slice's start, ns (low bits) */
    uint64_t slice_ts;
    struct credit *slice_log;
    size_t nslice, slice_cap;
    size_t slice_spec; /* its speculation log's entries from here on are the slice's */
    struct saved_stack saved;
};

/* Frames are looked up once per event: a direct-mapped cache in front of
 * the map, indexed by a multiplicative hash of the frame key. */
#define FRAME_CACHE_BITS 12
#define FRAME_CACHE (1u << FRAME_CACHE_BITS)

struct efl_folder {
    struct efl_profile *p;
    size_t symbols_cap, processes_cap, frames_cap, nodes_cap, windows_cap, timeline_cap;
    int keep_timeline;
    uint32_t max_depth;
    struct ring_events *rings;
    size_t nrings;
    /* The rings that hold events, as a binary heap by their oldest event
     * (ties: lower ring first): merging costs a log of the rings per run
     * of events, whatever the archive's number of rings and passes. */
    uint32_t *heap;
    size_t nheap, heap_cap;
    uint64_t held, held_max;     /* events held, all rings */
    uint64_t name_bytes, name_bytes_max; /* symbol and process names */
    size_t procs_cap;
    uint64_t passes[2];         /* start times of the last two drain passes */
    unsigned npasses;
    struct efl_map frame_ids;   /* frame key -> frame index */
    struct efl_map node_ids;    /* (parent << 32 | frame) -> node index */
    /* In front of the maps: each node's last child (a loop calls the same
     * function again and again)... */
    struct last_child { uint32_t frame, node; } *last_child;
    /* ...and direct-mapped caches of frames, of nodes ((parent, frame) ->
     * node) and of the site table's word ((caller frame, callee frame) ->
     * kind). Keys are stored plus one: 0 marks an empty entry. */
    struct pair_cached { uint64_t key; uint32_t val; } frame_cache[FRAME_CACHE],
        child_cache[FRAME_CACHE], kind_cache[FRAME_CACHE];
    struct proc_state *procs;
    /* Telling body calls from tail calls: the archive's site table, each
     * symbol's name id in it, and each frame's function id in it. */
    struct efl_sites *sites;
    uint32_t *symbol_site, symbol_site_cap;
    uint32_t *frame_site, frame_site_cap;
    uint32_t undefined_function; /* frame of error_handler:undefined_function/3, + 1 */
    uint32_t send_bif[2];        /* frames of erlang:send/2 and /3, + 1: a plain
                                  * request sent through them waits in their caller */
    int collapse;                /* {recursion, collapse} */
    int raw_time;                /* keep the tracing cost in the frames' time */
    struct efl_cost cost;        /* what tracing cost each interval (the header's) */
    int sampled;                 /* a sampling run: each call event is a real frame */
    int receives;                /* RECEIVE events are recorded (archive version 3): time off
                                  * the CPU is told apart, waiting or runnable */
    uint64_t stack_entries;      /* in use by all processes, bounded */
    uint64_t credits;            /* held by all speculations, bounded */
    /* What the returns of calls of unknown kind showed, per (caller frame,
     * callee frame): tail calls in the high 16 bits, body calls low. */
    struct efl_map outcomes;
};

/* A real stack deeper than EFL_FOLD_STACK_MAX, or all stacks together
 * holding more entries (16 bytes each), is only counted past it: memory
 * stays bounded whatever an archive says. Real Erlang stacks rarely pass
 * 100,000 frames. */
#define STACK_ENTRIES_MAX (1u << 22)
/* Credits held for calls of unknown kind (16 bytes each), all processes
 * together: past this, the open guesses of the process being credited
 * stand as body calls. */
#define CREDITS_MAX (1u << 22)

/* Traced only because a followed call called it. */
static inline int followed_only(const struct proc_state *ps)
{
    return ps->has_follow && (!ps->has_first || ps->first_ts >= ps->follow_ts);
}

/* The process node whose tree the process's stacks are in now. */
static inline uint32_t owner_of(const struct proc_state *ps)
{
    return ps->caller ? ps->graft_owner : ps->proc_node;
}

/* The node its stacks start from now. */
static inline uint32_t base_of(const struct proc_state *ps)
{
    return ps->caller ? ps->graft_base : ps->proc_node;
}

static inline struct stack_entry *top_entry(struct proc_state *ps)
{
    return &ps->stack[ps->depth - 1];
}

/* The lowest entry a return may pop to: the [dropped] base after lost
 * events, the process base otherwise. */
static inline uint32_t floor_index(const struct proc_state *ps)
{
    return ps->resync != 0 && ps->depth > 1 && ps->stack[1].node == ps->resync ? 1 : 0;
}

/* Followed calls inside followed calls are grafted this deep at most; a
 * deeper one stays a wait (a ring of servers calling each other would
 * otherwise grow without end). */
#define FOLLOW_DEPTH_MAX 16

/* Does the process's time count now (else its events are only followed)? */
static inline int counts(const struct proc_state *ps)
{
    if (ps->caller)
        return 1;
    return ps->proc_node != 0 && (!ps->scoped || ps->root_depth > 0);
}

/* efl_fold_stack.c */
efl_status efl_fold_intern_frame(struct efl_folder *f, const struct efl_frame *fr, uint32_t *id);
efl_status efl_fold_child_kind(struct efl_folder *f, uint32_t parent, uint8_t kind, uint32_t a,
                               uint32_t *id);
void efl_fold_settle_all(struct efl_folder *f, struct proc_state *ps);
efl_status efl_fold_hold_credit(struct efl_folder *f, struct proc_state *ps, uint32_t node, uint64_t ns);
/* The same for a process's time, and its callers' where it is grafted. */
efl_status efl_fold_hold_credit_all(struct efl_folder *f, struct proc_state *ps, uint32_t node,
                                    uint64_t ns);
efl_status efl_fold_settle_popped(struct efl_folder *f, struct proc_state *ps, uint32_t top);
efl_status efl_fold_reset_stack(struct efl_folder *f, struct proc_state *ps, uint32_t base);
efl_status efl_fold_push(struct efl_folder *f, struct proc_state *ps, uint32_t frame, int guessed);
efl_status efl_fold_on_call(struct efl_folder *f, struct proc_state *ps, uint32_t frame);
efl_status efl_fold_on_return(struct efl_folder *f, struct proc_state *ps, uint32_t frame);

/* efl_fold_time.c */
efl_status efl_fold_note_change(struct efl_folder *f, struct proc_state *ps, uint64_t ts);
efl_status efl_fold_credit_less(struct efl_folder *f, struct proc_state *ps, uint64_t ts,
                                uint64_t cost);
efl_status efl_fold_settle_off_cpu(struct efl_folder *f, struct proc_state *ps, int waited);
efl_status efl_fold_end_slice(struct efl_folder *f, struct proc_state *ps, uint64_t ts, uint32_t cpu);
void efl_fold_begin_slice(struct proc_state *ps, uint64_t ts, uint32_t cpu);
efl_status efl_fold_credit(struct efl_folder *f, struct proc_state *ps, uint64_t ts);

/* efl_fold_follow.c */
void efl_fold_note_first(struct proc_state *ps, uint64_t ts);
void efl_fold_note_followed(struct proc_state *ps, uint64_t ts);
efl_status efl_fold_ungraft(struct efl_folder *f, struct proc_state *s, uint32_t sid, uint64_t ts);
efl_status efl_fold_graft(struct efl_folder *f, struct proc_state *s, uint32_t sid, uint32_t cid,
                          uint64_t ts);
efl_status efl_fold_end_wait(struct efl_folder *f, struct proc_state *c, uint64_t ts);
efl_status efl_fold_between_requests(struct efl_folder *f, struct proc_state *ps,
                                     const struct held_event *e);

#endif
