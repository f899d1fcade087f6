/* The folder (efl_fold.h): archive events in, a profile (efl_profile.h)
 * out. Events are held per ring until a drain pass says every earlier one
 * has been read, then merged by timestamp through a heap and handed to
 * their process's state (efl_folder.h names the parts that keep it). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "efl_folder.h"

static efl_status fold_ready(struct efl_folder *f, uint64_t limit);
static efl_status queue_ring(struct efl_folder *f, uint32_t ring);
static efl_status apply_event(struct efl_folder *f, struct proc_state *ps, const struct held_event *e);

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
        EFL_FORWARD_IF_ERROR(efl_fold_intern_frame(f, &fr, &frame));
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
        efl_fold_note_first(&f->procs[r->pid], ts);
    if (r->kind >= EFL_EV_FOLLOW_CALL && r->kind <= EFL_EV_FOLLOW_END) {
        if (r->kind == EFL_EV_FOLLOW_CALL && r->mod < f->procs_cap && r->mod != r->pid)
            efl_fold_note_followed(&f->procs[r->mod], r->ts);
        /* (A take naming the process itself grafts nothing: no caller.) */
        if (r->kind == EFL_EV_FOLLOW_TAKE && r->pid < f->procs_cap) {
            efl_fold_note_followed(&f->procs[r->pid], r->ts);
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

/* A profiled call begins: a window of its own, the process's stacks under it. */
static efl_status open_window(struct efl_folder *f, struct proc_state *ps,
                              const struct held_event *e)
{
    struct efl_profile *p = f->p;
    EFL_GROW(p->windows, p->nwindows, f->windows_cap);
    uint32_t w = p->nwindows++;
    struct efl_window *win = &p->windows[w];
    *win = (struct efl_window){.pid = HELD_PID(e), .start_ns = e->ts, .end_ns = e->ts};
    EFL_FORWARD_IF_ERROR(efl_fold_child_kind(f, 0, EFL_FRAME_WINDOW, w, &win->node));
    EFL_FORWARD_IF_ERROR(efl_fold_child_kind(f, win->node, EFL_FRAME_PROCESS, HELD_PID(e), &ps->proc_node));
    ps->window = w;
    EFL_FORWARD_IF_ERROR(efl_fold_reset_stack(f, ps, ps->proc_node));
    ps->out = ps->gc = 0;
    if (e->frame != NO_FRAME)
        EFL_FORWARD_IF_ERROR(efl_fold_push(f, ps, e->frame - 1, 0));
    return EFL_OK;
}

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
    EFL_FORWARD_IF_ERROR(efl_fold_child_kind(f, window, EFL_FRAME_PROCESS, child_pid, &child->proc_node));
    child->adopted = 1;
    return efl_fold_reset_stack(f, child, child->proc_node);
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
        EFL_FORWARD_IF_ERROR(efl_fold_note_change(f, ps, e->ts));
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
        efl_fold_note_followed(ps, ps->first_ts);
    /* A process traced only because a followed call called it, between
     * requests: only what a graft needs. A process seen only through a
     * followed call's steps is nobody the profile shows (a process that got
     * the call's token from a message). */
    if (__builtin_expect(ps->has_follow || follow_event, 0) && ps->caller == 0 && !ps->scoped &&
        !ps->adopted && (followed_only(ps) || (follow_event && ps->proc_node == 0)))
        return followed_only(ps) ? efl_fold_between_requests(f, ps, e) : EFL_OK;
    if (ps->proc_node == 0 && !ps->scoped && ps->caller == 0) {
        EFL_FORWARD_IF_ERROR(efl_fold_child_kind(f, 0, EFL_FRAME_PROCESS, HELD_PID(e), &ps->proc_node));
        EFL_FORWARD_IF_ERROR(efl_fold_reset_stack(f, ps, ps->proc_node));
    }
    /* A profiled process counts only inside the profiled call. */
    if (ps->scoped && ps->root_depth == 0 && kind != EFL_EV_ROOT_CALL && ps->caller == 0)
        return EFL_OK;
    EFL_FORWARD_IF_ERROR(efl_fold_credit_less(f, ps, e->ts, efl_cost_between(&f->cost, ps->last_kind, kind)));
    ps->last_kind = (uint8_t)kind;
    /* Its first event since it was scheduled in says how it spent the
     * time out: taking a message (or a timeout) from its queue, it had
     * waited for one; so had one killed meanwhile (woken to exit). */
    if (ps->off_held && !ps->out)
        EFL_FORWARD_IF_ERROR(efl_fold_settle_off_cpu(f, ps, kind == EFL_EV_RECEIVE ||
                                                       kind == EFL_EV_ROOT_EXCEPTION));
    /* Running its own code again once it slept in the wait (woken by an
     * answer sent before the server was done, or by something else): it
     * no longer waits. (Before it slept, its code is the call's own: the
     * return from the send may come after the server took the request.) */
    if (ps->wait == WAIT_SERVED && ps->wait_slept &&
        (kind == EFL_EV_CALL || kind == EFL_EV_RETURN_TO))
        EFL_FORWARD_IF_ERROR(efl_fold_end_wait(f, ps, e->ts));

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
        EFL_FORWARD_IF_ERROR(efl_fold_end_wait(f, ps, e->ts));
        if (ps->root_depth > 0 && --ps->root_depth == 0) {
            EFL_FORWARD_IF_ERROR(efl_fold_reset_stack(f, ps, ps->proc_node));
            f->p->windows[ps->window].ended = (uint8_t)kind;
        }
        break;
    case EFL_EV_CALL:
        ps->last_call = e->frame;
        if (e->frame != NO_FRAME)
            EFL_FORWARD_IF_ERROR(efl_fold_on_call(f, ps, e->frame - 1));
        break;
    case EFL_EV_RETURN_TO:
        /* Into untraced code: below every frame. */
        if (e->frame == NO_FRAME && ps->depth > 0)
            EFL_FORWARD_IF_ERROR(efl_fold_settle_popped(f, ps, floor_index(ps)));
        if (e->frame == NO_FRAME)
            EFL_FORWARD_IF_ERROR(efl_fold_reset_stack(f, ps, base_of(ps)));
        else
            EFL_FORWARD_IF_ERROR(efl_fold_on_return(f, ps, e->frame - 1));
        break;
    case EFL_EV_IN:
        ps->out = 0;
        efl_fold_begin_slice(ps, e->ts, e->frame);
        break;
    case EFL_EV_OUT:
        EFL_FORWARD_IF_ERROR(efl_fold_end_slice(f, ps, e->ts, e->frame));
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
        EFL_FORWARD_IF_ERROR(efl_fold_graft(f, ps, HELD_PID(e), e->frame, e->ts));
        break;
    case EFL_EV_FOLLOW_END:
        EFL_FORWARD_IF_ERROR(efl_fold_ungraft(f, ps, HELD_PID(e), e->ts));
        break;
    case EFL_EV_LOST:
        /* Its stack is no longer known: say so, and start again from a
         * [dropped N events] frame. Its slice's credits are unknown too. */
        ps->in_slice = 0;
        if (ps->scoped && ps->root_depth > 0)
            f->p->windows[ps->window].lossy = 1;
        if (ps->node != 0 && base_of(ps) != 0) {
            EFL_FORWARD_IF_ERROR(efl_fold_child_kind(f, base_of(ps), EFL_FRAME_DROPPED, e->frame, &ps->resync));
            EFL_FORWARD_IF_ERROR(efl_fold_reset_stack(f, ps, base_of(ps)));
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
        EFL_FORWARD_IF_ERROR(efl_fold_end_wait(f, ps, e->ts));
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

/* The site table's first lines and files of the profile's functions,
 * and what its processes are called, for the outputs that name them
 * (pprof). */
static efl_status note_lines(struct efl_folder *f)
{
    struct efl_profile *p = f->p;
    p->frame_line = calloc((size_t)p->nframes + 1, sizeof *p->frame_line);
    p->frame_file = calloc((size_t)p->nframes + 1, sizeof *p->frame_file);
    EFL_RETURN_ERROR_IF(p->frame_line == NULL || p->frame_file == NULL, EFL_ERR_NOMEM);
    struct efl_map seen = {0}; /* the table's file name (its address) -> index + 1 */
    size_t cap = 0;
    efl_status s = EFL_OK;
    for (uint32_t i = 0; s == EFL_OK && i < p->nframes && i < f->frame_site_cap; i++) {
        const char *file;
        if (p->frames[i].kind != EFL_FRAME_MFA)
            continue;
        p->frame_line[i] = efl_sites_line(f->sites, f->frame_site[i], &file);
        if (file == NULL)
            continue;
        uint32_t k = efl_map_get(&seen, (uint64_t)(uintptr_t)file);
        if (k == EFL_MAP_NONE) {
            if (p->nfiles >= cap) {
                size_t ncap = cap ? cap * 2 : 64;
                char **grown = realloc(p->files, ncap * sizeof *grown);
                if (grown == NULL) {
                    s = EFL_ERR_NOMEM;
                    break;
                }
                p->files = grown;
                cap = ncap;
            }
            if ((p->files[p->nfiles] = strdup(file)) == NULL) {
                s = EFL_ERR_NOMEM;
                break;
            }
            k = ++p->nfiles;
            s = efl_map_put(&seen, (uint64_t)(uintptr_t)file, k);
        }
        p->frame_file[i] = k;
    }
    efl_map_free(&seen);
    if (s != EFL_OK)
        return s;
    /* What the processes are called, where the table says. */
    p->process_labels = calloc((size_t)p->nprocesses + 1, sizeof *p->process_labels);
    EFL_RETURN_ERROR_IF(p->process_labels == NULL, EFL_ERR_NOMEM);
    for (uint32_t i = 1; i <= p->nprocesses; i++) {
        const char *label = efl_sites_process(f->sites, p->processes[i]);
        EFL_RETURN_ERROR_IF(label != NULL && (p->process_labels[i] = strdup(label)) == NULL,
                            EFL_ERR_NOMEM);
    }
    return EFL_OK;
}

efl_status efl_folder_finish(struct efl_folder *f, struct efl_profile **out)
{
    efl_status s = fold_ready(f, UINT64_MAX);
    /* Out when recording stopped: nothing says it was ready to run. */
    for (size_t i = 0; s == EFL_OK && i < f->procs_cap; i++)
        s = efl_fold_settle_off_cpu(f, &f->procs[i], 1);
    /* A profiled call still open at the end whose events were lost most
     * likely ended among them: the tracer counts an end even when its
     * event is lost. */
    for (uint32_t i = 0; s == EFL_OK && i < f->p->nwindows; i++)
        if (f->p->windows[i].ended == 0 && f->p->windows[i].lossy)
            f->p->windows[i].ended = EFL_EV_LOST;
    if (s == EFL_OK && f->sites != NULL)
        s = note_lines(f);
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
