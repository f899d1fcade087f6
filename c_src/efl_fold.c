/* The folder (efl_fold.h): archive events in, a profile (efl_profile.h)
 * out. Events are held per ring until a drain pass says every earlier one
 * has been read, then merged by timestamp through a heap and replayed
 * against each process's real stack. Single threaded. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

efl_status efl_folder_new(struct efl_folder **fp, const struct efl_fold_opts *opts)
{
    struct efl_folder *f = calloc(1, sizeof *f);
    EFL_RETURN_ERROR_IF(f == NULL, EFL_ERR_NOMEM);
    f->keep_timeline = opts && opts->timeline;
    f->held_max = opts && opts->held_max ? opts->held_max : EFL_FOLD_HELD_MAX;
    f->name_bytes_max = opts && opts->name_bytes_max ? opts->name_bytes_max : EFL_FOLD_NAME_BYTES_MAX;
    f->collapse = opts && opts->collapse_recursion;
    f->raw_time = opts && opts->raw_time;
    f->max_depth = opts && opts->max_depth > 0 && opts->max_depth < EFL_FOLD_MAX_DEPTH
                       ? opts->max_depth
                       : EFL_FOLD_MAX_DEPTH;
    f->p = calloc(1, sizeof *f->p);
    /* The root node. */
    f->nodes_cap = 1024;
    if (f->p)
        f->p->nodes = calloc(f->nodes_cap, sizeof *f->p->nodes);
    f->last_child = calloc(f->nodes_cap, sizeof *f->last_child);
    if (f->p == NULL || f->p->nodes == NULL || f->last_child == NULL) {
        efl_folder_free(f);
        return EFL_ERR_NOMEM;
    }
    f->p->nnodes = 1;
    *fp = f;
    return EFL_OK;
}

void efl_folder_free(struct efl_folder *f)
{
    if (f == NULL)
        return;
    for (size_t i = 0; i < f->nrings; i++)
        free(f->rings[i].ev);
    free(f->rings);
    free(f->heap);
    for (size_t i = 0; i < f->procs_cap; i++) {
        free(f->procs[i].stack);
        free(f->procs[i].spec);
        free(f->procs[i].log);
        free(f->procs[i].saved.stack);
        free(f->procs[i].slice_log);
    }
    free(f->procs);
    efl_sites_free(f->sites);
    efl_map_free(&f->outcomes);
    free(f->symbol_site);
    free(f->frame_site);
    free(f->last_child);
    efl_map_free(&f->frame_ids);
    efl_map_free(&f->node_ids);
    efl_profile_free(f->p);
    free(f);
}

static efl_status add_name(char ***arr, uint32_t *count, size_t *cap, uint32_t id,
                           const char *s, size_t len)
{
    /* The reader guarantees dense ids; slot 0 stays unused. */
    EFL_RETURN_ERROR_IF(id != *count + 1, EFL_ERR_CORRUPT);
    EFL_GROW(*arr, (size_t)id, *cap);
    char *copy = malloc(len + 1);
    EFL_RETURN_ERROR_IF(copy == NULL, EFL_ERR_NOMEM);
    memcpy(copy, s, len);
    copy[len] = 0;
    (*arr)[id] = copy;
    *count = id;
    return EFL_OK;
}

/* Counts a name's bytes against name_bytes_max. */
static efl_status count_name(struct efl_folder *f, size_t len)
{
    f->name_bytes += len + 1;
    return f->name_bytes > f->name_bytes_max ? EFL_ERR_LIMIT : EFL_OK;
}

static efl_status on_symbol(void *ctx, uint32_t id, const char *s, size_t len)
{
    struct efl_folder *f = ctx;
    EFL_FORWARD_IF_ERROR(count_name(f, len));
    EFL_FORWARD_IF_ERROR(add_name(&f->p->symbols, &f->p->nsymbols, &f->symbols_cap, id, s, len));
    if (f->sites == NULL)
        return EFL_OK;
    EFL_GROW(f->symbol_site, id, f->symbol_site_cap);
    f->symbol_site[id] = efl_sites_name(f->sites, s, len);
    return EFL_OK;
}

/* The archive's site table, read before any event. */
static efl_status on_sites(void *ctx, const void *data, size_t len)
{
    struct efl_folder *f = ctx;
    EFL_RETURN_ERROR_IF(f->sites != NULL || f->p->nsymbols != 0, EFL_ERR_CORRUPT);
    EFL_FORWARD_IF_ERROR(efl_sites_decode(data, len, &f->sites));
    f->p->have_sites = 1;
    return EFL_OK;
}

static efl_status on_process(void *ctx, uint32_t id, const char *s, size_t len)
{
    struct efl_folder *f = ctx;
    EFL_FORWARD_IF_ERROR(count_name(f, len));
    EFL_FORWARD_IF_ERROR(add_name(&f->p->processes, &f->p->nprocesses, &f->processes_cap, id, s, len));
    if (id >= f->procs_cap) {
        size_t cap = f->procs_cap ? f->procs_cap * 2 : 64;
        struct proc_state *procs = realloc(f->procs, cap * sizeof *procs);
        EFL_RETURN_ERROR_IF(procs == NULL, EFL_ERR_NOMEM);
        memset(procs + f->procs_cap, 0, (cap - f->procs_cap) * sizeof *procs);
        f->procs = procs;
        f->procs_cap = cap;
    }
    return EFL_OK;
}

static efl_status intern_frame(struct efl_folder *f, const struct efl_frame *fr, uint32_t *id);

static efl_status fold_ready(struct efl_folder *f, uint64_t limit);
static efl_status queue_ring(struct efl_folder *f, uint32_t ring);

static void note_first(struct proc_state *ps, uint64_t ts)
{
    if (!ps->has_first || ts < ps->first_ts)
        ps->first_ts = ts;
    ps->has_first = 1;
}

static void note_followed(struct proc_state *ps, uint64_t ts)
{
    if (!ps->has_follow || ts < ps->follow_ts)
        ps->follow_ts = ts;
    ps->has_follow = 1;
}

/* Traced only because a followed call called it. */
static int followed_only(const struct proc_state *ps)
{
    return ps->has_follow && (!ps->has_first || ps->first_ts >= ps->follow_ts);
}

static efl_status on_event(void *ctx, uint32_t ring, const struct efl_record *r)
{
    struct efl_folder *f = ctx;
    if (ring >= f->nrings) {
        /* Doubling: an archive may name its rings one by one. */
        size_t n = f->nrings * 2 > (size_t)ring + 1 ? f->nrings * 2 : (size_t)ring + 1;
        struct ring_events *rings = realloc(f->rings, n * sizeof *rings);
        EFL_RETURN_ERROR_IF(rings == NULL, EFL_ERR_NOMEM);
        memset(rings + f->nrings, 0, (n - f->nrings) * sizeof *rings);
        f->rings = rings;
        f->nrings = n;
    }
    if (f->held >= f->held_max) {
        EFL_FORWARD_IF_ERROR(fold_ready(f, UINT64_MAX));
        f->p->early_folds++;
    }
    struct ring_events *re = &f->rings[ring];
    /* Stamps of two threads may disagree by a little: a process's events
     * never come before the spawn that created it, or it would be a
     * process of its own (the child's read after the spawn are moved up to
     * it; the spawn read after the child's first event, down, as far as
     * its ring's order allows). */
    uint64_t ts = r->ts;
    if (r->pid < f->procs_cap && f->procs[r->pid].born_ts > ts)
        ts = f->procs[r->pid].born_ts;
    if (r->kind == EFL_EV_SPAWN && r->mod < f->procs_cap && r->mod != r->pid) {
        struct proc_state *child = &f->procs[r->mod];
        uint64_t floor = re->n > re->pos ? re->ev[re->n - 1].ts : 0;
        if (child->has_first && child->first_ts < ts)
            ts = child->first_ts > floor ? child->first_ts : floor;
        if (child->born_ts == 0)
            child->born_ts = ts;
    }
    /* Folded events make room before the array grows. */
    if (re->n == re->cap && re->pos * 2 >= re->n && re->pos > 0) {
        memmove(re->ev, re->ev + re->pos, (re->n - re->pos) * sizeof *re->ev);
        re->n -= re->pos;
        re->pos = 0;
    }
    EFL_GROW(re->ev, re->n, re->cap);
    struct held_event *e = &re->ev[re->n];
    e->ts = ts;
    e->pid_kind = r->pid << 4 | r->kind;
    e->frame = NO_FRAME;
    if (r->kind >= EFL_EV_SPAWN && (efl_event_names_process(r->kind) || r->kind == EFL_EV_LOST)) {
        e->frame = r->mod; /* the other process's id; the events lost */
    } else if (r->kind == EFL_EV_IN || r->kind == EFL_EV_OUT) {
        e->frame = (uint32_t)r->cpu; /* enough for a slice's CPU time; 0: not known */
    } else if (r->mod != 0) {
        struct efl_frame fr = {.kind = EFL_FRAME_MFA, .a = r->mod, .b = r->fun, .arity = r->arity};
        uint32_t frame;
        EFL_FORWARD_IF_ERROR(intern_frame(f, &fr, &frame));
        e->frame = frame + 1;
    }
    re->n++;
    f->held++;
    f->p->events++;
    /* A process with a root call among the events counts only inside its
     * profiled calls (events of it before the call are then left out). */
    if (r->kind == EFL_EV_ROOT_CALL && r->pid < f->procs_cap)
        f->procs[r->pid].scoped = 1;
    /* Known as soon as read: a process's own events may be folded before
     * the followed call that switched its tracing on (it served others
     * first), or before the spawn that created it. */
    if (r->pid < f->procs_cap)
        note_first(&f->procs[r->pid], ts);
    if (r->kind >= EFL_EV_FOLLOW_CALL && r->kind <= EFL_EV_FOLLOW_END) {
        if (r->kind == EFL_EV_FOLLOW_CALL && r->mod < f->procs_cap && r->mod != r->pid)
            note_followed(&f->procs[r->mod], r->ts);
        /* (A take naming the process itself grafts nothing: no caller.) */
        if (r->kind == EFL_EV_FOLLOW_TAKE && r->pid < f->procs_cap) {
            note_followed(&f->procs[r->pid], r->ts);
            if (f->procs[r->pid].take_caller == 0 && r->mod != r->pid)
                f->procs[r->pid].take_caller = r->mod;
        }
    }
    return re->queued ? EFL_OK : queue_ring(f, ring);
}

static efl_status on_version(void *ctx, unsigned major, unsigned minor)
{
    struct efl_folder *f = ctx;
    (void)minor;
    f->receives = major >= 3;
    return EFL_OK;
}

static efl_status on_meta(void *ctx, const char *line, size_t len)
{
    struct efl_folder *f = ctx;
    if (len == 11 && memcmp(line, "mode=sample", 11) == 0)
        f->sampled = 1;
    if (!f->raw_time)
        (void)efl_cost_note_line(&f->cost, line, len);
    size_t have = f->p->meta ? strlen(f->p->meta) : 0;
    char *meta = realloc(f->p->meta, have + len + 2);
    EFL_RETURN_ERROR_IF(meta == NULL, EFL_ERR_NOMEM);
    memcpy(meta + have, line, len);
    meta[have + len] = '\n';
    meta[have + len + 1] = 0;
    f->p->meta = meta;
    return EFL_OK;
}

/* A drain pass began at ts: what was recorded before the pass before it is
 * all here (a producer's commit may lag its clock reading by up to a pass),
 * so it can be folded, and the memory it held reused. */
static efl_status on_pass(void *ctx, uint64_t ts)
{
    struct efl_folder *f = ctx;
    uint64_t watermark = f->passes[0];
    int ready = f->npasses >= 2;
    f->passes[0] = f->passes[1];
    f->passes[1] = ts;
    f->npasses++;
    return ready ? fold_ready(f, watermark) : EFL_OK;
}

/* Drops are counted by the flusher per ring; the LOST events say whose. */
static efl_status on_drops(void *ctx, uint32_t ring, uint64_t count)
{
    struct efl_folder *f = ctx;
    (void)ring;
    f->p->drops += count;
    return EFL_OK;
}

struct efl_archive_visitor efl_folder_visitor(struct efl_folder *f)
{
    struct efl_archive_visitor v = {
        .ctx = f,
        .version = on_version,
        .meta = on_meta,
        .symbol = on_symbol,
        .process = on_process,
        .event = on_event,
        .drops = on_drops,
        .pass = on_pass,
        .sites = on_sites,
    };
    return v;
}

/* ---- interning ------------------------------------------------------ */

static uint64_t frame_key(const struct efl_frame *fr)
{
    switch (fr->kind) {
    case EFL_FRAME_MFA:
        return (uint64_t)fr->a << 32 | (uint64_t)fr->b << 8 | fr->arity;
    case EFL_FRAME_PROCESS:
        return 1ull << 63 | fr->a;
    case EFL_FRAME_WINDOW:
        return 1ull << 61 | fr->a;
    case EFL_FRAME_DROPPED:
        return 1ull << 60 | fr->a;
    default:
        return 1ull << 62 | fr->kind;
    }
}

/* A new MFA frame: its function id in the site table, and whether it is
 * error_handler:undefined_function/3. */
static efl_status note_frame_site(struct efl_folder *f, uint32_t frame)
{
    const struct efl_frame *fr = &f->p->frames[frame];
    const char *mod = f->p->symbols[fr->a], *fun = f->p->symbols[fr->b];
    if (fr->arity == 3 && strcmp(mod, "error_handler") == 0 && strcmp(fun, "undefined_function") == 0)
        f->undefined_function = frame + 1;
    if ((fr->arity == 2 || fr->arity == 3) && strcmp(mod, "erlang") == 0 && strcmp(fun, "send") == 0)
        f->send_bif[fr->arity - 2] = frame + 1;
    if (f->sites == NULL)
        return EFL_OK;
    EFL_GROW(f->frame_site, frame, f->frame_site_cap);
    f->frame_site[frame] = efl_sites_function(f->sites, f->symbol_site[fr->a],
                                              f->symbol_site[fr->b], fr->arity);
    return EFL_OK;
}

static struct pair_cached *pair_slot(struct pair_cached *cache, uint64_t key)
{
    return &cache[((key + 1) * 0x9E3779B97F4A7C15ull) >> (64 - FRAME_CACHE_BITS)];
}

static efl_status intern_frame(struct efl_folder *f, const struct efl_frame *fr, uint32_t *id)
{
    uint64_t key = frame_key(fr);
    struct pair_cached *c = pair_slot(f->frame_cache, key);
    if (c->key == key + 1) {
        *id = c->val;
        return EFL_OK;
    }
    *id = efl_map_get(&f->frame_ids, key);
    if (*id == EFL_MAP_NONE) {
        struct efl_profile *p = f->p;
        EFL_GROW(p->frames, p->nframes, f->frames_cap);
        *id = p->nframes++;
        p->frames[*id] = *fr;
        EFL_FORWARD_IF_ERROR(efl_map_put(&f->frame_ids, key, *id));
        if (fr->kind == EFL_FRAME_MFA)
            EFL_FORWARD_IF_ERROR(note_frame_site(f, *id));
    }
    *c = (struct pair_cached){key + 1, *id};
    return EFL_OK;
}

static efl_status child(struct efl_folder *f, uint32_t parent, uint32_t frame, uint32_t *id)
{
    struct last_child *last = &f->last_child[parent];
    if (last->node != 0 && last->frame == frame) {
        *id = last->node;
        return EFL_OK;
    }
    uint64_t key = (uint64_t)parent << 32 | frame;
    struct pair_cached *c = pair_slot(f->child_cache, key);
    if (c->key == key + 1) {
        *id = c->val;
        *last = (struct last_child){frame, *id};
        return EFL_OK;
    }
    *id = efl_map_get(&f->node_ids, key);
    if (*id == EFL_MAP_NONE) {
        struct efl_profile *p = f->p;
        if (p->nnodes >= f->nodes_cap) {
            size_t cap = f->nodes_cap * 2;
            struct efl_node *nodes = realloc(p->nodes, cap * sizeof *nodes);
            struct last_child *lc = realloc(f->last_child, cap * sizeof *lc);
            if (nodes)
                p->nodes = nodes;
            if (lc)
                f->last_child = lc;
            EFL_RETURN_ERROR_IF(nodes == NULL || lc == NULL, EFL_ERR_NOMEM);
            f->nodes_cap = cap;
        }
        *id = p->nnodes++;
        p->nodes[*id] = (struct efl_node){parent, frame, p->nodes[parent].depth + 1, 0};
        f->last_child[*id] = (struct last_child){0, 0};
        EFL_FORWARD_IF_ERROR(efl_map_put(&f->node_ids, key, *id));
        last = &f->last_child[parent];
    }
    *c = (struct pair_cached){key + 1, *id};
    *last = (struct last_child){frame, *id};
    return EFL_OK;
}

static efl_status child_kind(struct efl_folder *f, uint32_t parent, uint8_t kind, uint32_t a,
                             uint32_t *id)
{
    struct efl_frame fr = {.kind = kind, .a = a};
    uint32_t frame;
    EFL_FORWARD_IF_ERROR(intern_frame(f, &fr, &frame));
    return child(f, parent, frame, id);
}

/* ---- folding -------------------------------------------------------- */

/* The process node whose tree the process's stacks are in now. */
static uint32_t owner_of(const struct proc_state *ps)
{
    return ps->caller ? ps->graft_owner : ps->proc_node;
}

/* The node its stacks start from now. */
static uint32_t base_of(const struct proc_state *ps)
{
    return ps->caller ? ps->graft_base : ps->proc_node;
}

/* The process whose timeline shows its stacks now (itself, or the caller
 * it is grafted under): the one whose clock its time advances. */
static struct proc_state *owner_proc(struct efl_folder *f, struct proc_state *ps)
{
    if (ps->caller == 0)
        return ps;
    uint32_t pid = f->p->frames[f->p->nodes[ps->graft_owner].frame].a;
    return pid < f->procs_cap ? &f->procs[pid] : ps;
}

/* The node on top for a process: its stack, with a gc or sleep frame when
 * it is not running; its process node when nothing is known. */
static efl_status on_top(struct efl_folder *f, const struct proc_state *ps, uint32_t *node)
{
    *node = ps->node;
    if (ps->node == ps->proc_node || ps->node == 0)
        return EFL_OK;
    if (ps->gc)
        return child_kind(f, ps->node, EFL_FRAME_GC, 0, node);
    if (ps->out && ps->wait == WAIT_QUEUED) {
        if (ps->wait_server != 0)
            EFL_FORWARD_IF_ERROR(child_kind(f, ps->node, EFL_FRAME_PROCESS, ps->wait_server, node));
        return child_kind(f, *node, EFL_FRAME_QUEUED, 0, node);
    }
    if (ps->out)
        return child_kind(f, ps->node, EFL_FRAME_SLEEP, 0, node);
    return EFL_OK;
}

/* Timeline: records a change of what is on top. */
static efl_status note_change(struct efl_folder *f, struct proc_state *ps, uint64_t ts)
{
    uint32_t node;
    /* A caller whose request a followed process works on: that one's
     * stacks are on its time line meanwhile. */
    if (owner_of(ps) == 0 || ps->wait == WAIT_SERVED)
        return EFL_OK;
    EFL_FORWARD_IF_ERROR(on_top(f, ps, &node));
    if (node == ps->shown)
        return EFL_OK;
    struct efl_profile *p = f->p;
    struct proc_state *owner = owner_proc(f, ps);
    if (!owner->clock_set) {
        owner->clock = ts;
        owner->clock_set = 1;
    }
    EFL_GROW(p->timeline, p->ntimeline, f->timeline_cap);
    p->timeline[p->ntimeline++] = (struct efl_change){owner->clock, owner_of(ps), node};
    ps->shown = node;
    if (ps->out && !ps->gc && ps->wait == WAIT_NONE)
        ps->off_change = p->ntimeline;
    return EFL_OK;
}

static efl_status hold_credit(struct efl_folder *f, struct proc_state *ps, uint32_t node, uint64_t ns);

static efl_status log_slice(struct proc_state *ps, uint32_t node, uint64_t ns)
{
    if (ps->nslice > 0 && ps->slice_log[ps->nslice - 1].node == node) {
        ps->slice_log[ps->nslice - 1].ns += ns;
        return EFL_OK;
    }
    EFL_GROW(ps->slice_log, ps->nslice, ps->slice_cap);
    ps->slice_log[ps->nslice++] = (struct credit){node, ns};
    return EFL_OK;
}

/* Credits the time since the process's previous event to the stack that was
 * on top during it, with a gc or sleep frame when it was not running, less
 * what tracing cost the process meanwhile (`cost`, at most all of it). */
static efl_status credit_less(struct efl_folder *f, struct proc_state *ps, uint64_t ts,
                              uint64_t cost)
{
    /* While a followed process works on its request, that process's time
     * stands for this one's. */
    if (ps->seen && ps->node != ps->proc_node && ps->node != 0 && ts > ps->last_ts &&
        ps->wait != WAIT_SERVED) {
        uint32_t node;
        EFL_FORWARD_IF_ERROR(on_top(f, ps, &node));
        /* Scheduled out, it pays the switch's cost only; running, what
         * it owes too. */
        uint64_t ns = ts - ps->last_ts, paid;
        if (ps->out && !ps->gc) {
            paid = cost < ns ? cost : ns;
        } else {
            uint64_t owed = ps->owed + cost;
            paid = owed < ns ? owed : ns;
            owed -= paid;
            ps->owed = (uint32_t)(owed < f->cost.owed_max ? owed : f->cost.owed_max);
        }
        ns -= paid;
        f->p->compensated_ns += paid;
        f->p->total_ns += ns;
        owner_proc(f, ps)->clock += ns;
        if (ps->out && !ps->gc && ps->wait == WAIT_NONE && f->receives) {
            /* Waiting or runnable: its next event after this one says. */
            ps->off_ns += ns;
            ps->off_node = ps->node;
            ps->off_held = 1;
        } else {
            f->p->nodes[node].self_ns += ns;
            if (ps->nspec > 0 && ns > 0)
                EFL_FORWARD_IF_ERROR(hold_credit(f, ps, node, ns));
            if (ps->in_slice && !ps->out && ns > 0)
                EFL_FORWARD_IF_ERROR(log_slice(ps, node, ns));
        }
    }
    if (ts > ps->last_ts || !ps->seen)
        ps->last_ts = ts;
    ps->seen = 1;
    return EFL_OK;
}

/* Time off the CPU, held since the process was scheduled in, goes to a
 * sleep frame (it waited in a receive: its first event is a RECEIVE) or a
 * runnable one (it was ready to run: preempted, or yielding). */
static efl_status settle_off_cpu(struct efl_folder *f, struct proc_state *ps, int waited)
{
    if (!ps->off_held)
        return EFL_OK;
    ps->off_held = 0;
    uint64_t ns = ps->off_ns;
    ps->off_ns = 0;
    uint32_t node;
    EFL_FORWARD_IF_ERROR(child_kind(f, ps->off_node, waited ? EFL_FRAME_SLEEP : EFL_FRAME_RUNNABLE,
                                    0, &node));
    f->p->nodes[node].self_ns += ns;
    if (ps->nspec > 0 && ns > 0)
        EFL_FORWARD_IF_ERROR(hold_credit(f, ps, node, ns));
    /* The timeline drew a sleep frame from the scheduling out on. */
    if (!waited && ps->off_change != 0 && ps->off_change <= f->p->ntimeline &&
        f->p->timeline[ps->off_change - 1].proc == owner_of(ps))
        f->p->timeline[ps->off_change - 1].node = node;
    ps->off_change = 0;
    return EFL_OK;
}

/* The slice that ends at ts (scheduled out, the thread's CPU time then
 * `cpu`): the part of its wall time the thread did not run comes out of
 * what the slice credited, in proportion, into an [os preempted] frame on
 * top of the stack it ends with (as sleep and runnable are). */
static efl_status end_slice(struct efl_folder *f, struct proc_state *ps, uint64_t ts, uint32_t cpu)
{
    if (!ps->in_slice)
        return EFL_OK;
    ps->in_slice = 0;
    uint64_t wall = ts - ps->slice_ts, ran = (uint32_t)(cpu - ps->slice_cpu), credited = 0;
    if (cpu == 0 || ts < ps->slice_ts || wall >= UINT32_MAX || ran >= wall)
        return EFL_OK;
    for (size_t i = 0; i < ps->nslice; i++)
        credited += ps->slice_log[i].ns;
    uint64_t stolen = wall - ran < credited ? wall - ran : credited, taken = 0;
    if (stolen == 0)
        return EFL_OK;
    struct efl_node *nodes = f->p->nodes;
    for (size_t i = 0; i < ps->nslice; i++) {
        uint64_t t = (uint64_t)((unsigned __int128)ps->slice_log[i].ns * stolen / credited);
        /* (A guess of the meantime may have moved it elsewhere since.) */
        if (t > nodes[ps->slice_log[i].node].self_ns)
            t = nodes[ps->slice_log[i].node].self_ns;
        nodes[ps->slice_log[i].node].self_ns -= t;
        taken += t;
    }
    for (size_t i = ps->slice_spec; i < ps->nlog; i++)
        ps->log[i].ns -= (uint64_t)((unsigned __int128)ps->log[i].ns * stolen / credited);
    uint32_t os;
    EFL_FORWARD_IF_ERROR(child_kind(f, ps->node != 0 ? ps->node : base_of(ps), EFL_FRAME_OS, 0, &os));
    f->p->nodes[os].self_ns += taken;
    f->p->os_ns += taken;
    return EFL_OK;
}

static void begin_slice(struct efl_folder *f, struct proc_state *ps, uint64_t ts, uint32_t cpu)
{
    ps->in_slice = cpu != 0 && !f->raw_time;
    ps->slice_ts = ts;
    ps->slice_cpu = cpu;
    ps->nslice = 0;
    ps->slice_spec = ps->nlog;
}

/* Credits the time up to ts for another process's event (a graft begins
 * or ends): the interval's tracing cost comes out of what follows. */
static efl_status credit(struct efl_folder *f, struct proc_state *ps, uint64_t ts)
{
    return credit_less(f, ps, ts, 0);
}

static struct stack_entry *top_entry(struct proc_state *ps)
{
    return &ps->stack[ps->depth - 1];
}

/* The lowest entry a return may pop to: the [dropped] base after lost
 * events, the process base otherwise. */
static uint32_t floor_index(const struct proc_state *ps)
{
    return ps->resync != 0 && ps->depth > 1 && ps->stack[1].node == ps->resync ? 1 : 0;
}

/* ---- calls of unknown kind ------------------------------------------ */

static void settle_all(struct efl_folder *f, struct proc_state *ps)
{
    ps->slice_spec = 0;
    ps->nspec = 0;
    f->credits -= ps->nlog;
    ps->nlog = 0;
}

static efl_status hold_credit(struct efl_folder *f, struct proc_state *ps, uint32_t node, uint64_t ns)
{
    /* (Not into an entry of before the slice: end_slice scales the slice's.) */
    if (ps->nlog > ps->spec[ps->nspec - 1].log_start && ps->log[ps->nlog - 1].node == node &&
        (!ps->in_slice || ps->nlog > ps->slice_spec)) {
        ps->log[ps->nlog - 1].ns += ns;
        return EFL_OK;
    }
    if (f->credits >= CREDITS_MAX) {
        /* Too much held: the guesses stand. */
        settle_all(f, ps);
        return EFL_OK;
    }
    EFL_GROW(ps->log, ps->nlog, ps->log_cap);
    ps->log[ps->nlog++] = (struct credit){node, ns};
    f->credits++;
    return EFL_OK;
}

static efl_status speculate(struct efl_folder *f, struct proc_state *ps)
{
    EFL_GROW(ps->spec, ps->nspec, ps->spec_cap);
    ps->spec[ps->nspec++] = (struct speculation){ps->depth - 1, ps->stack[ps->depth - 2].node,
                                                 ps->stack[ps->depth - 2].frame,
                                                 ps->stack[ps->depth - 1].frame, ps->nlog,
                                                 f->p->ntimeline};
    return EFL_OK;
}

/* The node of the same stack as n without `out` (one of its ancestors); n
 * itself when out is not among them. */
static efl_status without(struct efl_folder *f, struct efl_map *memo, uint32_t n, uint32_t out,
                          uint32_t *result)
{
    const struct efl_node *nodes = f->p->nodes;
    if (nodes[n].depth <= nodes[out].depth) {
        *result = n;
        return EFL_OK;
    }
    uint32_t known = efl_map_get(memo, n);
    if (known != EFL_MAP_NONE) {
        *result = known;
        return EFL_OK;
    }
    uint32_t parent = nodes[n].parent, frame = nodes[n].frame;
    if (parent == out) {
        *result = nodes[out].parent;
    } else {
        EFL_FORWARD_IF_ERROR(without(f, memo, parent, out, result));
        if (*result == parent) {
            *result = n; /* not under out */
            return efl_map_put(memo, n, n);
        }
    }
    EFL_FORWARD_IF_ERROR(child(f, *result, frame, result));
    return efl_map_put(memo, n, *result);
}

/* The guessed call was a tail call: what was credited since it began, and
 * the process's timeline since then, go to stacks without its caller. */
static efl_status retract(struct efl_folder *f, struct proc_state *ps, const struct speculation *s)
{
    struct efl_map memo = {0};
    efl_status st = EFL_OK;
    for (size_t i = s->log_start; st == EFL_OK && i < ps->nlog; i++) {
        uint32_t m;
        st = without(f, &memo, ps->log[i].node, s->caller_node, &m);
        if (st == EFL_OK && m != ps->log[i].node) {
            /* (Never below zero, whatever an archive makes of the log.) */
            if (ps->log[i].ns > f->p->nodes[ps->log[i].node].self_ns)
                ps->log[i].ns = f->p->nodes[ps->log[i].node].self_ns;
            f->p->nodes[ps->log[i].node].self_ns -= ps->log[i].ns;
            f->p->nodes[m].self_ns += ps->log[i].ns;
            ps->log[i].node = m;
        }
    }
    struct efl_profile *p = f->p;
    for (size_t i = s->timeline_start; st == EFL_OK && i < p->ntimeline; i++)
        if (p->timeline[i].proc == ps->proc_node)
            st = without(f, &memo, p->timeline[i].node, s->caller_node, &p->timeline[i].node);
    if (st == EFL_OK && ps->shown != 0)
        st = without(f, &memo, ps->shown, s->caller_node, &ps->shown);
    efl_map_free(&memo);
    return st;
}

/* Counts how a call of this (caller, callee) pair turned out, for the
 * calls of the pair a return cannot decide (see mostly_tail). */
static efl_status learn(struct efl_folder *f, const struct speculation *s, int tail)
{
    uint64_t key = (uint64_t)s->caller_frame << 32 | s->callee_frame;
    uint32_t seen = efl_map_get(&f->outcomes, key);
    if (seen == EFL_MAP_NONE)
        seen = 0;
    uint32_t tails = seen >> 16, bodies = seen & 0xFFFF;
    if (tails < 0x7FFF && bodies < 0xFFFF) {
        tails += (uint32_t)tail;
        bodies += (uint32_t)!tail;
    }
    return efl_map_put(&f->outcomes, key, tails << 16 | bodies);
}

/* Did calls of this pair that could be told apart turn out tail calls
 * more often than body calls? */
static int mostly_tail(const struct efl_folder *f, const struct speculation *s)
{
    uint32_t seen = efl_map_get(&f->outcomes, (uint64_t)s->caller_frame << 32 | s->callee_frame);
    return seen != EFL_MAP_NONE && seen >> 16 > (seen & 0xFFFF);
}

/* The stack shrank to `top` (an index): the guesses it popped are
 * settled, innermost first. Landing below the caller: a tail call, its
 * time moved from under the caller. Landing on the caller: a body call,
 * unless the caller's caller is the same function (then the return cannot
 * tell): what the pair's other calls showed decides, and a tail call takes
 * the caller's frame off too. */
static efl_status settle_popped(struct efl_folder *f, struct proc_state *ps, uint32_t top)
{
    while (ps->nspec > 0 && ps->spec[ps->nspec - 1].index > top) {
        struct speculation s = ps->spec[--ps->nspec];
        int tail = top != s.index - 1;
        int undecided = !tail && top >= 1 && top - 1 > floor_index(ps) &&
                        ps->stack[top].frame == ps->stack[top - 1].frame;
        if (!undecided) {
            EFL_FORWARD_IF_ERROR(learn(f, &s, tail));
        } else if (mostly_tail(f, &s)) {
            tail = 1;
            f->stack_entries--;
            ps->depth--;
            ps->node = top_entry(ps)->node;
            top--;
        }
        if (tail) {
            f->p->tail_resolved++;
            EFL_FORWARD_IF_ERROR(retract(f, ps, &s));
        }
    }
    if (ps->nspec == 0)
        settle_all(f, ps);
    return EFL_OK;
}

/* ---- the real stack of a process -----------------------------------
 * A body call pushes a frame; a tail call replaces the caller's frame;
 * return_to pops one frame, to the function it names. The trace shows body
 * and tail calls alike: the site table (the modules' code) tells which. */

/* Empties the stack down to a base node (the process, or a [dropped] node). */
static efl_status reset_stack(struct efl_folder *f, struct proc_state *ps, uint32_t base)
{
    EFL_GROW(ps->stack, 1, ps->cap); /* room for a [dropped] base too */
    settle_all(f, ps);
    f->stack_entries -= ps->depth;
    ps->depth = 1;
    f->stack_entries++;
    ps->overflow = 0;
    ps->stack[0] = (struct stack_entry){base, NO_ENTRY_FRAME, 0, 0};
    ps->node = base;
    return EFL_OK;
}

static efl_status push(struct efl_folder *f, struct proc_state *ps, uint32_t frame, int guessed)
{
    if (ps->depth >= EFL_FOLD_STACK_MAX || f->stack_entries >= STACK_ENTRIES_MAX) {
        ps->overflow++;
        ps->overflow_frame = frame;
        f->p->cut_frames++;
        return EFL_OK;
    }
    EFL_GROW(ps->stack, ps->depth, ps->cap);
    uint32_t node = ps->node;
    const struct efl_node *nodes = f->p->nodes;
    if (nodes[node].depth - nodes[owner_of(ps)].depth >= f->max_depth)
        f->p->cut_frames++; /* past the cap: shares the node at the cap */
    else
        EFL_FORWARD_IF_ERROR(child(f, node, frame, &node));
    ps->stack[ps->depth++] = (struct stack_entry){node, frame, 0, (uint8_t)guessed};
    f->stack_entries++;
    ps->node = node;
    return EFL_OK;
}

/* The top frame becomes `frame`: a tail call. */
static efl_status replace_top(struct efl_folder *f, struct proc_state *ps, uint32_t frame)
{
    struct stack_entry *top = top_entry(ps);
    const struct stack_entry *below = top - 1;
    if (top->node != below->node)
        EFL_FORWARD_IF_ERROR(child(f, below->node, frame, &top->node));
    *top = (struct stack_entry){top->node, frame, 0, 0};
    ps->node = top->node;
    return EFL_OK;
}

static int is_undefined_function(const struct efl_folder *f, uint32_t frame)
{
    return f->undefined_function == frame + 1;
}

/* How the function of entry `caller` called `frame`: a set of
 * EFL_CALL_BODY and EFL_CALL_TAIL, 0 when nothing says. */
static unsigned call_kind(struct efl_folder *f, const struct stack_entry *caller, uint32_t frame)
{
    if (f->sites == NULL || caller->frame == NO_ENTRY_FRAME)
        return 0;
    uint64_t key = (uint64_t)caller->frame << 32 | frame;
    struct pair_cached *c = pair_slot(f->kind_cache, key);
    if (c->key == key + 1)
        return c->val;
    uint32_t callee = f->frame_site[frame], site = f->frame_site[caller->frame];
    unsigned kind = is_undefined_function(f, frame) ? efl_sites_kind(f->sites, site, 0, 1)
                                                    : efl_sites_kind(f->sites, site, callee, 0);
    *c = (struct pair_cached){key + 1, kind};
    return kind;
}

/* Past EFL_FOLD_STACK_MAX the stack is only counted: a tail call
 * replaces the frame on top, any other call adds one. */
static void on_call_past_max(struct efl_folder *f, struct proc_state *ps, uint32_t frame)
{
    const struct stack_entry caller = {0, ps->overflow_frame, 0, 0};
    if (f->sampled || call_kind(f, &caller, frame) != EFL_CALL_TAIL) {
        ps->overflow++;
        f->p->cut_frames++;
    }
    ps->overflow_frame = frame;
}

static efl_status on_call(struct efl_folder *f, struct proc_state *ps, uint32_t frame)
{
    f->p->calls++;
    if (ps->overflow > 0) {
        on_call_past_max(f, ps, frame);
        return EFL_OK;
    }
    struct stack_entry *top = top_entry(ps);
    if (ps->depth == 1 || ps->depth == floor_index(ps) + 1)
        return push(f, ps, frame, 0);
    unsigned kind = f->sampled ? EFL_CALL_BODY : call_kind(f, top, frame);
    if (kind == 0 || kind == (EFL_CALL_BODY | EFL_CALL_TAIL))
        f->p->guessed_calls++;
    /* Self-recursion: a tail call changes nothing; a call of unknown kind
     * (a list comprehension with a filter), or any with {recursion,
     * collapse}, stays in the frame, which counts the returns to come. */
    if (top->frame == frame && (kind != EFL_CALL_BODY || f->collapse)) {
        if (kind != EFL_CALL_TAIL)
            top->merged++;
        return EFL_OK;
    }
    if (kind == EFL_CALL_TAIL) {
        /* The top frame holds self-calls of unknown kind: the tail call
         * replaces the last of them, if it was a body call. */
        if (top->merged > 0) {
            top->merged--;
            return push(f, ps, frame, 1);
        }
        return replace_top(f, ps, frame);
    }
    uint32_t before = ps->depth;
    EFL_FORWARD_IF_ERROR(push(f, ps, frame, kind != EFL_CALL_BODY));
    /* Not known to be a body call: drawn as one until its return tells. */
    if (kind != EFL_CALL_BODY && ps->depth > before && ps->depth >= 3 &&
        ps->depth - 2 > floor_index(ps) && f->sites != NULL)
        EFL_FORWARD_IF_ERROR(speculate(f, ps));
    return EFL_OK;
}

/* return_to: the top frame returned into `frame`. Exact stacks pop one
 * frame and find `frame` below; otherwise (frames of guessed kind that were
 * tail calls, a caught exception, excluded functions) pop down to the
 * nearest `frame`. If it is not on the stack, the process returned below
 * where its stack began: for a profiled process, out of the profiled call;
 * for another (tracing began in the middle of it, or events were lost),
 * the frame becomes the base of its stack. */
static efl_status on_return(struct efl_folder *f, struct proc_state *ps, uint32_t frame)
{
    f->p->returns++;
    if (ps->overflow > 0) {
        ps->overflow--;
        ps->overflow_frame = frame;
        return EFL_OK;
    }
    uint32_t floor = floor_index(ps);
    if (ps->depth > floor + 1) {
        struct stack_entry *top = top_entry(ps);
        if (top->merged > 0 && top->frame == frame) {
            top->merged--;
            return EFL_OK;
        }
        for (uint32_t i = ps->depth - 1; i > floor; i--) {
            if (ps->stack[i - 1].frame == frame) {
                /* Each frame popped beyond the top needs a call of
                 * unknown kind that was a tail call to explain it. */
                uint32_t guessed = 0;
                for (uint32_t j = i; j < ps->depth; j++)
                    guessed += ps->stack[j].guessed;
                if (guessed < ps->depth - 1 - i)
                    f->p->repaired_returns++;
                f->stack_entries -= ps->depth - i;
                ps->depth = i;
                ps->node = top_entry(ps)->node;
                return settle_popped(f, ps, i - 1);
            }
        }
        /* A return into a deeper call of the top function, whose frames
         * were not seen: it stays on top. */
        if (top->frame == frame) {
            f->p->repaired_returns++;
            return EFL_OK;
        }
    }
    /* Returned below every frame: each call of unknown kind with a caller
     * under it was a tail call (a body call returns to its caller). */
    EFL_FORWARD_IF_ERROR(settle_popped(f, ps, floor));
    /* After lost events, the stack below is unknown: what comes back
     * hangs on the [dropped] frame, and a profiled call goes on. */
    if (floor == 1) {
        f->stack_entries -= ps->depth - 2;
        ps->depth = 2;
        ps->node = ps->stack[1].node;
        return push(f, ps, frame, 0);
    }
    EFL_FORWARD_IF_ERROR(reset_stack(f, ps, base_of(ps)));
    return ps->scoped && !ps->caller ? EFL_OK : push(f, ps, frame, 0);
}

/* A profiled call begins: a window of its own, the process's stacks under it. */
static efl_status open_window(struct efl_folder *f, struct proc_state *ps,
                              const struct held_event *e)
{
    struct efl_profile *p = f->p;
    EFL_GROW(p->windows, p->nwindows, f->windows_cap);
    uint32_t w = p->nwindows++;
    struct efl_window *win = &p->windows[w];
    *win = (struct efl_window){.pid = HELD_PID(e), .start_ns = e->ts, .end_ns = e->ts};
    EFL_FORWARD_IF_ERROR(child_kind(f, 0, EFL_FRAME_WINDOW, w, &win->node));
    EFL_FORWARD_IF_ERROR(child_kind(f, win->node, EFL_FRAME_PROCESS, HELD_PID(e), &ps->proc_node));
    ps->window = w;
    EFL_FORWARD_IF_ERROR(reset_stack(f, ps, ps->proc_node));
    ps->out = ps->gc = 0;
    if (e->frame != NO_FRAME)
        EFL_FORWARD_IF_ERROR(push(f, ps, e->frame - 1, 0));
    return EFL_OK;
}

/* ---- following calls into other processes --------------------------
 *
 * A caller in a followed call waits [queued] until the server takes its
 * request up; then the server's stacks, from its process frame under the
 * caller's waiting frame, stand for the caller's time, until the server
 * is done with it (or the caller stops waiting: an answer, a timeout, the
 * server's death). The server's own stack is set aside meanwhile. */

/* Followed calls inside followed calls are grafted this deep at most; a
 * deeper one stays a wait (a ring of servers calling each other would
 * otherwise grow without end). */
#define FOLLOW_DEPTH_MAX 16

/* Does the process's time count now (else its events are only followed)? */
static int counts(const struct proc_state *ps)
{
    if (ps->caller)
        return 1;
    return ps->proc_node != 0 && (!ps->scoped || ps->root_depth > 0);
}

static efl_status note_change(struct efl_folder *f, struct proc_state *ps, uint64_t ts);

static efl_status ungraft(struct efl_folder *f, struct proc_state *s, uint32_t sid, uint64_t ts)
{
    if (s->caller == 0)
        return EFL_OK;
    /* Its own state first: an archive may make a ring of grafts, which
     * the recursion below then meets ungrafted. */
    uint32_t cid = s->caller, served = s->wait == WAIT_SERVED ? s->served_by : 0;
    s->wait = WAIT_NONE;
    settle_all(f, s);
    f->stack_entries -= s->depth;
    /* What it did meanwhile goes on in its own stack (a process that
     * counts on its own too): the graft began with the frame on top of it. */
    struct stack_entry *graft_stack = s->stack;
    uint32_t graft_depth = s->depth;
    s->stack = s->saved.stack;
    s->depth = s->saved.depth;
    s->cap = s->saved.cap;
    s->node = s->saved.node;
    s->resync = s->saved.resync;
    s->overflow = s->saved.overflow;
    s->overflow_frame = s->saved.overflow_frame;
    s->saved = (struct saved_stack){0};
    s->caller = s->graft_owner = s->graft_base = s->graft_level = 0;
    efl_status st = EFL_OK;
    if (s->depth > 1 && s->overflow == 0 && graft_depth > 1 &&
        top_entry(s)->frame == graft_stack[1].frame) {
        f->stack_entries--;
        s->depth--;
        s->node = top_entry(s)->node;
        for (uint32_t i = 1; st == EFL_OK && i < graft_depth; i++)
            if (graft_stack[i].frame != NO_ENTRY_FRAME)
                st = push(f, s, graft_stack[i].frame, 0);
    }
    free(graft_stack);
    EFL_FORWARD_IF_ERROR(st);
    /* What it waited for in turn ends with it. */
    if (served != 0 && served < f->procs_cap)
        EFL_FORWARD_IF_ERROR(ungraft(f, &f->procs[served], served, ts));
    struct proc_state *c = &f->procs[cid];
    if (c->wait == WAIT_SERVED && c->served_by == sid) {
        /* Time is credited when the next event comes, to the stack on top
         * meanwhile: up to here the caller was served. */
        EFL_FORWARD_IF_ERROR(credit(f, c, ts));
        c->wait = WAIT_ANSWERED;
        c->served_by = 0;
        c->shown = 0;
        if (f->keep_timeline)
            EFL_FORWARD_IF_ERROR(note_change(f, c, ts));
    }
    return EFL_OK;
}

/* Server s (process sid) takes up the request of caller cid, which waits
 * for it (or for a process spawned for the call). A profiled process is
 * never grafted: its stacks are its call's. */
static efl_status graft(struct efl_folder *f, struct proc_state *s, uint32_t sid, uint32_t cid,
                        uint64_t ts)
{
    if (cid == 0 || cid >= f->procs_cap || cid == sid || s->scoped)
        return EFL_OK;
    struct proc_state *c = &f->procs[cid];
    if (!counts(c) || c->wait == WAIT_NONE || c->node == 0 || c->graft_level >= FOLLOW_DEPTH_MAX ||
        (c->wait_server != 0 && c->wait_server != sid))
        return EFL_OK;
    EFL_FORWARD_IF_ERROR(ungraft(f, s, sid, ts));
    /* Up to here the caller waited [queued]. */
    EFL_FORWARD_IF_ERROR(credit(f, c, ts));
    /* Under the frame that waits (the caller may not be back from its
     * send yet: the request can be taken before). */
    uint32_t base, waiting = c->wait_depth >= 1 && c->wait_depth <= c->depth
                                 ? c->stack[c->wait_depth - 1].node
                                 : c->node;
    EFL_FORWARD_IF_ERROR(child_kind(f, waiting, EFL_FRAME_PROCESS, sid, &base));
    settle_all(f, s);
    s->saved = (struct saved_stack){s->stack, s->depth, s->cap, s->node, s->resync,
                                    s->overflow_frame, s->overflow};
    s->stack = NULL;
    s->depth = s->cap = 0;
    s->overflow = 0;
    s->resync = 0;
    s->caller = cid;
    s->graft_owner = owner_of(c);
    s->graft_base = base;
    s->graft_level = c->graft_level + 1;
    EFL_FORWARD_IF_ERROR(reset_stack(f, s, base));
    /* The function that took the request up was called just before. */
    if (s->last_call != 0)
        EFL_FORWARD_IF_ERROR(push(f, s, s->last_call - 1, 0));
    c->wait = WAIT_SERVED;
    c->served_by = sid;
    s->shown = 0;
    return EFL_OK;
}

/* The caller is no longer waiting (it returned out of the call, or runs
 * its own code again). */
static efl_status end_wait(struct efl_folder *f, struct proc_state *c, uint64_t ts)
{
    if (c->wait == WAIT_SERVED && c->served_by < f->procs_cap) {
        /* Its server's work up to here was for it. */
        struct proc_state *s = &f->procs[c->served_by];
        EFL_FORWARD_IF_ERROR(credit(f, s, ts));
        EFL_FORWARD_IF_ERROR(ungraft(f, s, c->served_by, ts));
    }
    c->wait = WAIT_NONE;
    return EFL_OK;
}

/* A followed process between requests counts nowhere: it keeps only its
 * state (running or not, the function it called last) for the next. */
static efl_status between_requests(struct efl_folder *f, struct proc_state *ps,
                                   const struct held_event *e)
{
    switch (HELD_KIND(e)) {
    case EFL_EV_IN: ps->out = 0; break;
    case EFL_EV_OUT: ps->out = 1; break;
    case EFL_EV_GC_START: ps->gc = 1; break;
    case EFL_EV_GC_END: ps->gc = 0; break;
    case EFL_EV_CALL: ps->last_call = e->frame; break;
    default: break;
    }
    if (e->ts > ps->last_ts || !ps->seen)
        ps->last_ts = e->ts;
    ps->seen = 1;
    if (HELD_KIND(e) == EFL_EV_FOLLOW_TAKE)
        return graft(f, ps, HELD_PID(e), e->frame, e->ts);
    return EFL_OK;
}

static efl_status apply_event(struct efl_folder *f, struct proc_state *ps, const struct held_event *e);

/* A process spawned inside a profiled call: its stacks go under that
 * call's window, beside its parent's. */
static efl_status adopt(struct efl_folder *f, const struct proc_state *parent, uint32_t child_pid)
{
    if (child_pid == 0 || child_pid > f->p->nprocesses || !parent->scoped || parent->root_depth == 0)
        return EFL_OK;
    struct proc_state *child = &f->procs[child_pid];
    if (child->proc_node != 0 || child->scoped)
        return EFL_OK;
    uint32_t window = f->p->windows[parent->window].node;
    EFL_FORWARD_IF_ERROR(child_kind(f, window, EFL_FRAME_PROCESS, child_pid, &child->proc_node));
    child->adopted = 1;
    return reset_stack(f, child, child->proc_node);
}

static efl_status fold_event(struct efl_folder *f, const struct held_event *e)
{
    if (HELD_KIND(e) == EFL_EV_LOST && HELD_PID(e) == 0) {
        f->p->drops_unattributed += e->frame;
        return EFL_OK;
    }
    struct proc_state *ps = &f->procs[HELD_PID(e)];
    f->p->end_ns = e->ts;
    EFL_FORWARD_IF_ERROR(apply_event(f, ps, e));
    if (f->keep_timeline)
        EFL_FORWARD_IF_ERROR(note_change(f, ps, e->ts));
    return EFL_OK;
}

static efl_status apply_event(struct efl_folder *f, struct proc_state *ps, const struct held_event *e)
{
    unsigned kind = HELD_KIND(e);
    int follow_event = kind >= EFL_EV_FOLLOW_CALL && kind <= EFL_EV_FOLLOW_END;
    /* Born while its first request's caller waited on a call that named
     * no process (erpc's): spawned for it, followed from its birth. (Its
     * take is read before its birth is folded, but for a take that comes
     * a whole drain pass later: then its birth is a process of its own.) */
    if (__builtin_expect(ps->take_caller != 0, 0) && ps->proc_node == 0 && ps->caller == 0 &&
        !ps->scoped && !ps->adopted && ps->take_caller < f->procs_cap &&
        f->procs[ps->take_caller].wait == WAIT_QUEUED && f->procs[ps->take_caller].wait_server == 0)
        note_followed(ps, ps->first_ts);
    /* A process traced only because a followed call called it, between
     * requests: only what a graft needs. A process seen only through a
     * followed call's steps is nobody the profile shows (a process that got
     * the call's token from a message). */
    if (__builtin_expect(ps->has_follow || follow_event, 0) && ps->caller == 0 && !ps->scoped &&
        !ps->adopted && (followed_only(ps) || (follow_event && ps->proc_node == 0)))
        return followed_only(ps) ? between_requests(f, ps, e) : EFL_OK;
    if (ps->proc_node == 0 && !ps->scoped && ps->caller == 0) {
        EFL_FORWARD_IF_ERROR(child_kind(f, 0, EFL_FRAME_PROCESS, HELD_PID(e), &ps->proc_node));
        EFL_FORWARD_IF_ERROR(reset_stack(f, ps, ps->proc_node));
    }
    /* A profiled process counts only inside the profiled call. */
    if (ps->scoped && ps->root_depth == 0 && kind != EFL_EV_ROOT_CALL && ps->caller == 0)
        return EFL_OK;
    EFL_FORWARD_IF_ERROR(credit_less(f, ps, e->ts, efl_cost_between(&f->cost, ps->last_kind, kind)));
    ps->last_kind = (uint8_t)kind;
    /* Its first event since it was scheduled in says how it spent the
     * time out: taking a message (or a timeout) from its queue, it had
     * waited for one; so had one killed meanwhile (woken to exit). */
    if (ps->off_held && !ps->out)
        EFL_FORWARD_IF_ERROR(settle_off_cpu(f, ps, kind == EFL_EV_RECEIVE ||
                                                       kind == EFL_EV_ROOT_EXCEPTION));
    /* Running its own code again once it slept in the wait (woken by an
     * answer sent before the server was done, or by something else): it
     * no longer waits. (Before it slept, its code is the call's own: the
     * return from the send may come after the server took the request.) */
    if (ps->wait == WAIT_SERVED && ps->wait_slept &&
        (kind == EFL_EV_CALL || kind == EFL_EV_RETURN_TO))
        EFL_FORWARD_IF_ERROR(end_wait(f, ps, e->ts));

    if (ps->scoped && ps->root_depth > 0)
        f->p->windows[ps->window].end_ns = e->ts;
    switch (kind) {
    case EFL_EV_ROOT_CALL:
        if (ps->root_depth++ == 0) {
            ps->resync = 0;
            EFL_FORWARD_IF_ERROR(open_window(f, ps, e));
        }
        break;
    case EFL_EV_ROOT_RETURN:
    case EFL_EV_ROOT_EXCEPTION:
        EFL_FORWARD_IF_ERROR(end_wait(f, ps, e->ts));
        if (ps->root_depth > 0 && --ps->root_depth == 0) {
            EFL_FORWARD_IF_ERROR(reset_stack(f, ps, ps->proc_node));
            f->p->windows[ps->window].ended = (uint8_t)kind;
        }
        break;
    case EFL_EV_CALL:
        ps->last_call = e->frame;
        if (e->frame != NO_FRAME)
            EFL_FORWARD_IF_ERROR(on_call(f, ps, e->frame - 1));
        break;
    case EFL_EV_RETURN_TO:
        /* Into untraced code: below every frame. */
        if (e->frame == NO_FRAME && ps->depth > 0)
            EFL_FORWARD_IF_ERROR(settle_popped(f, ps, floor_index(ps)));
        if (e->frame == NO_FRAME)
            EFL_FORWARD_IF_ERROR(reset_stack(f, ps, base_of(ps)));
        else
            EFL_FORWARD_IF_ERROR(on_return(f, ps, e->frame - 1));
        break;
    case EFL_EV_IN:
        ps->out = 0;
        begin_slice(f, ps, e->ts, e->frame);
        break;
    case EFL_EV_OUT:
        EFL_FORWARD_IF_ERROR(end_slice(f, ps, e->ts, e->frame));
        ps->out = 1;
        if (ps->wait != WAIT_NONE)
            ps->wait_slept = 1;
        break;
    case EFL_EV_GC_START:
        ps->gc = 1;
        break;
    case EFL_EV_GC_END:
        ps->gc = 0;
        break;
    case EFL_EV_SPAWN:
        EFL_FORWARD_IF_ERROR(adopt(f, ps, e->frame));
        break;
    case EFL_EV_FOLLOW_CALL:
        /* Naming itself: the process that serves it is spawned later
         * (erpc's), and unknown meanwhile. */
        if (e->frame != 0 && e->frame < f->procs_cap) {
            ps->wait = WAIT_QUEUED;
            ps->wait_server = e->frame != HELD_PID(e) ? e->frame : 0;
            ps->wait_depth = ps->depth;
            ps->wait_slept = ps->out;
            /* Sent through erlang:send/2,3: its caller waits. */
            if (ps->depth > 1 && top_entry(ps)->frame != NO_ENTRY_FRAME &&
                (top_entry(ps)->frame + 1 == f->send_bif[0] ||
                 top_entry(ps)->frame + 1 == f->send_bif[1]))
                ps->wait_depth--;
        }
        break;
    case EFL_EV_FOLLOW_TAKE:
        EFL_FORWARD_IF_ERROR(graft(f, ps, HELD_PID(e), e->frame, e->ts));
        break;
    case EFL_EV_FOLLOW_END:
        EFL_FORWARD_IF_ERROR(ungraft(f, ps, HELD_PID(e), e->ts));
        break;
    case EFL_EV_LOST:
        /* Its stack is no longer known: say so, and start again from a
         * [dropped N events] frame. Its slice's credits are unknown too. */
        ps->in_slice = 0;
        if (ps->scoped && ps->root_depth > 0)
            f->p->windows[ps->window].lossy = 1;
        if (ps->node != 0 && base_of(ps) != 0) {
            EFL_FORWARD_IF_ERROR(child_kind(f, base_of(ps), EFL_FRAME_DROPPED, e->frame, &ps->resync));
            EFL_FORWARD_IF_ERROR(reset_stack(f, ps, base_of(ps)));
            ps->stack[1] = (struct stack_entry){ps->resync, NO_ENTRY_FRAME, 0, 0};
            ps->depth = 2;
            f->stack_entries++;
            ps->node = ps->resync;
        }
        break;
    default:
        break;
    }
    /* Returned out of the call it waited in. */
    if (ps->wait != WAIT_NONE && ps->depth < ps->wait_depth)
        EFL_FORWARD_IF_ERROR(end_wait(f, ps, e->ts));
    return EFL_OK;
}

/* Each ring is in time order (one thread, a monotonic clock); the rings
 * holding events are merged by always taking the oldest head, through the
 * heap. Ties go to the lower ring so the result does not depend on
 * anything but the archive. */
static int older(const struct efl_folder *f, uint32_t a, uint32_t b)
{
    const struct ring_events *x = &f->rings[a], *y = &f->rings[b];
    uint64_t tx = x->ev[x->pos].ts, ty = y->ev[y->pos].ts;
    return tx != ty ? tx < ty : a < b;
}

static void sift_down(struct efl_folder *f, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < f->nheap && older(f, f->heap[l], f->heap[m]))
            m = l;
        if (r < f->nheap && older(f, f->heap[r], f->heap[m]))
            m = r;
        if (m == i)
            return;
        uint32_t t = f->heap[i];
        f->heap[i] = f->heap[m];
        f->heap[m] = t;
        i = m;
    }
}

/* A ring that now holds events joins the heap. */
static efl_status queue_ring(struct efl_folder *f, uint32_t ring)
{
    EFL_GROW(f->heap, f->nheap, f->heap_cap);
    size_t i = f->nheap++;
    for (; i > 0 && older(f, ring, f->heap[(i - 1) / 2]); i = (i - 1) / 2)
        f->heap[i] = f->heap[(i - 1) / 2];
    f->heap[i] = ring;
    f->rings[ring].queued = 1;
    return EFL_OK;
}

/* Folds the held events older than limit, then lets them go. */
static efl_status fold_ready(struct efl_folder *f, uint64_t limit)
{
    while (f->nheap > 0) {
        struct ring_events *best = &f->rings[f->heap[0]];
        if (best->ev[best->pos].ts >= limit)
            return EFL_OK;
        /* Take the whole run that stays older than every other head (the
         * next oldest is a child of the top). */
        uint64_t until = limit;
        for (size_t c = 1; c <= 2 && c < f->nheap; c++) {
            const struct ring_events *re = &f->rings[f->heap[c]];
            if (re->ev[re->pos].ts < until)
                until = re->ev[re->pos].ts;
        }
        size_t from = best->pos;
        do {
            EFL_FORWARD_IF_ERROR(fold_event(f, &best->ev[best->pos]));
            best->pos++;
        } while (best->pos < best->n && best->ev[best->pos].ts < until);
        f->held -= best->pos - from;
        if (best->pos == best->n) {
            best->n = best->pos = 0;
            best->queued = 0;
            f->heap[0] = f->heap[--f->nheap];
        }
        sift_down(f, 0);
    }
    return EFL_OK;
}

efl_status efl_folder_finish(struct efl_folder *f, struct efl_profile **out)
{
    efl_status s = fold_ready(f, UINT64_MAX);
    /* Out when recording stopped: nothing says it was ready to run. */
    for (size_t i = 0; s == EFL_OK && i < f->procs_cap; i++)
        s = settle_off_cpu(f, &f->procs[i], 1);
    /* A profiled call still open at the end whose events were lost most
     * likely ended among them: the tracer counts an end even when its
     * event is lost. */
    for (uint32_t i = 0; s == EFL_OK && i < f->p->nwindows; i++)
        if (f->p->windows[i].ended == 0 && f->p->windows[i].lossy)
            f->p->windows[i].ended = EFL_EV_LOST;
    if (s == EFL_OK) {
        *out = f->p;
        f->p = NULL;
    }
    efl_folder_free(f);
    return s;
}

/* Reads with the file or the memory reader, then folds. */
static efl_status fold_from(const char *path, const void *data, size_t len,
                            const struct efl_fold_opts *opts, struct efl_profile **out)
{
    struct efl_folder *f;
    EFL_FORWARD_IF_ERROR(efl_folder_new(&f, opts));
    struct efl_archive_visitor v = efl_folder_visitor(f);
    struct efl_archive_summary sum;
    efl_status s = path ? efl_archive_read_file(path, &v, &sum)
                        : efl_archive_read_mem(data, len, &v, &sum);
    if (s != EFL_OK) {
        efl_folder_free(f);
        return s;
    }
    f->p->truncated = sum.truncated;
    f->p->stopped = sum.stopped;
    return efl_folder_finish(f, out);
}

efl_status efl_fold_archive(const char *path, const struct efl_fold_opts *opts,
                            struct efl_profile **out)
{
    return fold_from(path, NULL, 0, opts, out);
}

efl_status efl_fold_archive_mem(const void *data, size_t len, const struct efl_fold_opts *opts,
                                struct efl_profile **out)
{
    return fold_from(NULL, data, len, opts, out);
}
