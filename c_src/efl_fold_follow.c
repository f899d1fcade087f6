/* The folder's followed calls (efl_folder.h). A caller in a followed
 * call waits [queued] until the server takes its request up; then the
 * server's stacks, from its process frame under the caller's waiting frame,
 * stand for the caller's time, until the server is done with it (or the
 * caller stops waiting: an answer, a timeout, the server's death). The
 * server's own stack is set aside meanwhile. */
#include <stdlib.h>

#include "efl_folder.h"

void efl_fold_note_first(struct proc_state *ps, uint64_t ts)
{
    if (!ps->has_first || ts < ps->first_ts)
        ps->first_ts = ts;
    ps->has_first = 1;
}

void efl_fold_note_followed(struct proc_state *ps, uint64_t ts)
{
    if (!ps->has_follow || ts < ps->follow_ts)
        ps->follow_ts = ts;
    ps->has_follow = 1;
}

efl_status efl_fold_ungraft(struct efl_folder *f, struct proc_state *s, uint32_t sid, uint64_t ts)
{
    if (s->caller == 0)
        return EFL_OK;
    /* Its own state first: an archive may make a ring of grafts, which
     * the recursion below then meets ungrafted. */
    uint32_t cid = s->caller, served = s->wait == WAIT_SERVED ? s->served_by : 0;
    s->wait = WAIT_NONE;
    efl_fold_settle_all(f, s);
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
                st = efl_fold_push(f, s, graft_stack[i].frame, 0);
    }
    free(graft_stack);
    EFL_FORWARD_IF_ERROR(st);
    /* What it waited for in turn ends with it. */
    if (served != 0 && served < f->procs_cap)
        EFL_FORWARD_IF_ERROR(efl_fold_ungraft(f, &f->procs[served], served, ts));
    struct proc_state *c = &f->procs[cid];
    if (c->wait == WAIT_SERVED && c->served_by == sid) {
        /* Time is credited when the next event comes, to the stack on top
         * meanwhile: up to here the caller was served. */
        EFL_FORWARD_IF_ERROR(efl_fold_credit(f, c, ts));
        c->wait = WAIT_ANSWERED;
        c->served_by = 0;
        c->shown = 0;
        if (f->keep_timeline)
            EFL_FORWARD_IF_ERROR(efl_fold_note_change(f, c, ts));
    }
    return EFL_OK;
}

/* Server s (process sid) takes up the request of caller cid, which waits
 * for it (or for a process spawned for the call). A profiled process is
 * never grafted: its stacks are its call's. */
efl_status efl_fold_graft(struct efl_folder *f, struct proc_state *s, uint32_t sid, uint32_t cid,
                          uint64_t ts)
{
    if (cid == 0 || cid >= f->procs_cap || cid == sid || s->scoped)
        return EFL_OK;
    struct proc_state *c = &f->procs[cid];
    if (!counts(c) || c->wait == WAIT_NONE || c->node == 0 || c->graft_level >= FOLLOW_DEPTH_MAX ||
        (c->wait_server != 0 && c->wait_server != sid))
        return EFL_OK;
    EFL_FORWARD_IF_ERROR(efl_fold_ungraft(f, s, sid, ts));
    /* Up to here the caller waited [queued]. */
    EFL_FORWARD_IF_ERROR(efl_fold_credit(f, c, ts));
    /* Under the frame that waits (the caller may not be back from its
     * send yet: the request can be taken before). */
    uint32_t base, waiting = c->wait_depth >= 1 && c->wait_depth <= c->depth
                                 ? c->stack[c->wait_depth - 1].node
                                 : c->node;
    EFL_FORWARD_IF_ERROR(efl_fold_child_kind(f, waiting, EFL_FRAME_PROCESS, sid, &base));
    efl_fold_settle_all(f, s);
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
    EFL_FORWARD_IF_ERROR(efl_fold_reset_stack(f, s, base));
    /* The function that took the request up was called just before. */
    if (s->last_call != 0)
        EFL_FORWARD_IF_ERROR(efl_fold_push(f, s, s->last_call - 1, 0));
    c->wait = WAIT_SERVED;
    c->served_by = sid;
    s->shown = 0;
    return EFL_OK;
}

/* The caller is no longer waiting (it returned out of the call, or runs
 * its own code again). */
efl_status efl_fold_end_wait(struct efl_folder *f, struct proc_state *c, uint64_t ts)
{
    if (c->wait == WAIT_SERVED && c->served_by < f->procs_cap) {
        /* Its server's work up to here was for it. */
        struct proc_state *s = &f->procs[c->served_by];
        EFL_FORWARD_IF_ERROR(efl_fold_credit(f, s, ts));
        EFL_FORWARD_IF_ERROR(efl_fold_ungraft(f, s, c->served_by, ts));
    }
    c->wait = WAIT_NONE;
    return EFL_OK;
}

/* A followed process between requests counts nowhere: it keeps only its
 * state (running or not, the function it called last) for the next. */
efl_status efl_fold_between_requests(struct efl_folder *f, struct proc_state *ps,
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
        return efl_fold_graft(f, ps, HELD_PID(e), e->frame, e->ts);
    return EFL_OK;
}
