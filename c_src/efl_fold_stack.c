/* The folder's frames, nodes and each process's real stack (efl_folder.h).
 * A body call pushes a frame, a tail call replaces the caller's, a return
 * pops one, to the function it names; the site table (the modules' code)
 * tells body from tail calls, and a call it cannot decide is drawn as a
 * body call until its return says, its time moved if it was a tail call. */
#include <stdlib.h>
#include <string.h>

#include "efl_folder.h"

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

efl_status efl_fold_intern_frame(struct efl_folder *f, const struct efl_frame *fr, uint32_t *id)
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
        p->nodes[*id] = (struct efl_node){parent, frame, p->nodes[parent].depth + 1, 0, 0};
        f->last_child[*id] = (struct last_child){0, 0};
        EFL_FORWARD_IF_ERROR(efl_map_put(&f->node_ids, key, *id));
        last = &f->last_child[parent];
    }
    *c = (struct pair_cached){key + 1, *id};
    *last = (struct last_child){frame, *id};
    return EFL_OK;
}

efl_status efl_fold_child_kind(struct efl_folder *f, uint32_t parent, uint8_t kind, uint32_t a,
                               uint32_t *id)
{
    struct efl_frame fr = {.kind = kind, .a = a};
    uint32_t frame;
    EFL_FORWARD_IF_ERROR(efl_fold_intern_frame(f, &fr, &frame));
    return child(f, parent, frame, id);
}

/* ---- calls of unknown kind ------------------------------------------ */

void efl_fold_settle_all(struct efl_folder *f, struct proc_state *ps)
{
    ps->slice_spec = 0;
    ps->nspec = 0;
    f->credits -= ps->nlog;
    ps->nlog = 0;
}

efl_status efl_fold_hold_credit(struct efl_folder *f, struct proc_state *ps, uint32_t node, uint64_t ns)
{
    /* (Not into an entry of before the slice: end_slice scales the slice's.) */
    if (ps->nlog > ps->spec[ps->nspec - 1].log_start && ps->log[ps->nlog - 1].node == node &&
        (!ps->in_slice || ps->nlog > ps->slice_spec)) {
        ps->log[ps->nlog - 1].ns += ns;
        return EFL_OK;
    }
    if (f->credits >= CREDITS_MAX) {
        /* Too much held: the guesses stand. */
        efl_fold_settle_all(f, ps);
        return EFL_OK;
    }
    EFL_GROW(ps->log, ps->nlog, ps->log_cap);
    ps->log[ps->nlog++] = (struct credit){node, ns};
    f->credits++;
    return EFL_OK;
}

/* A grafted server's time is its callers' too: a guess of theirs that
 * turns out a tail call moves it as well (the graft hangs under the
 * guessed frame: gen:do_for_proc/2's fun, calling by name). */
efl_status efl_fold_hold_credit_all(struct efl_folder *f, struct proc_state *ps, uint32_t node,
                                    uint64_t ns)
{
    if (ns == 0)
        return EFL_OK;
    if (ps->nspec > 0)
        EFL_FORWARD_IF_ERROR(efl_fold_hold_credit(f, ps, node, ns));
    uint32_t cid = ps->caller;
    for (int level = 0; cid != 0 && cid < f->procs_cap && level < FOLLOW_DEPTH_MAX; level++) {
        struct proc_state *c = &f->procs[cid];
        if (c->nspec > 0)
            EFL_FORWARD_IF_ERROR(efl_fold_hold_credit(f, c, node, ns));
        cid = c->caller;
    }
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
efl_status efl_fold_settle_popped(struct efl_folder *f, struct proc_state *ps, uint32_t top)
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
        efl_fold_settle_all(f, ps);
    return EFL_OK;
}

/* ---- the real stack of a process -----------------------------------
 * A body call pushes a frame; a tail call replaces the caller's frame;
 * return_to pops one frame, to the function it names. The trace shows body
 * and tail calls alike: the site table (the modules' code) tells which. */

/* Empties the stack down to a base node (the process, or a [dropped] node). */
efl_status efl_fold_reset_stack(struct efl_folder *f, struct proc_state *ps, uint32_t base)
{
    EFL_GROW(ps->stack, 1, ps->cap); /* room for a [dropped] base too */
    efl_fold_settle_all(f, ps);
    f->stack_entries -= ps->depth;
    ps->depth = 1;
    f->stack_entries++;
    ps->overflow = 0;
    ps->stack[0] = (struct stack_entry){base, NO_ENTRY_FRAME, 0, 0};
    ps->node = base;
    return EFL_OK;
}

efl_status efl_fold_push(struct efl_folder *f, struct proc_state *ps, uint32_t frame, int guessed)
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

static efl_status on_call(struct efl_folder *f, struct proc_state *ps, uint32_t frame);

efl_status efl_fold_on_call(struct efl_folder *f, struct proc_state *ps, uint32_t frame)
{
    f->p->calls++;
    if (ps->overflow > 0) {
        on_call_past_max(f, ps, frame);
        return EFL_OK;
    }
    EFL_FORWARD_IF_ERROR(on_call(f, ps, frame));
    /* Where the call is drawn: its count (a call cut at the maximum depth
     * counts at the cap, as its time does). */
    if (ps->overflow == 0)
        f->p->nodes[ps->node].calls++;
    return EFL_OK;
}

static efl_status on_call(struct efl_folder *f, struct proc_state *ps, uint32_t frame)
{
    struct stack_entry *top = top_entry(ps);
    if (ps->depth == 1 || ps->depth == floor_index(ps) + 1)
        return efl_fold_push(f, ps, frame, 0);
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
            return efl_fold_push(f, ps, frame, 1);
        }
        return replace_top(f, ps, frame);
    }
    uint32_t before = ps->depth;
    EFL_FORWARD_IF_ERROR(efl_fold_push(f, ps, frame, kind != EFL_CALL_BODY));
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
efl_status efl_fold_on_return(struct efl_folder *f, struct proc_state *ps, uint32_t frame)
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
                return efl_fold_settle_popped(f, ps, i - 1);
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
    EFL_FORWARD_IF_ERROR(efl_fold_settle_popped(f, ps, floor));
    /* After lost events, the stack below is unknown: what comes back
     * hangs on the [dropped] frame, and a profiled call goes on. */
    if (floor == 1) {
        f->stack_entries -= ps->depth - 2;
        ps->depth = 2;
        ps->node = ps->stack[1].node;
        return efl_fold_push(f, ps, frame, 0);
    }
    EFL_FORWARD_IF_ERROR(efl_fold_reset_stack(f, ps, base_of(ps)));
    return ps->scoped && !ps->caller ? EFL_OK : efl_fold_push(f, ps, frame, 0);
}
