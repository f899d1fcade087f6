/* The folder's time (efl_folder.h): the time between a process's events
 * goes to the stack that was on top meanwhile, less what tracing cost the
 * process (efl_cost.h); time off the CPU goes to sleep (it waited in a
 * receive) or runnable (it was ready to run), as its first event after it
 * was scheduled in says; the part of a slice its scheduler thread did not
 * run goes to [os preempted]; each owner's timeline advances by the time
 * credited, so that it adds up as the weights do. */
#include <stdlib.h>

#include "efl_folder.h"

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
        return efl_fold_child_kind(f, ps->node, EFL_FRAME_GC, 0, node);
    if (ps->out && ps->wait == WAIT_QUEUED) {
        if (ps->wait_server != 0)
            EFL_FORWARD_IF_ERROR(efl_fold_child_kind(f, ps->node, EFL_FRAME_PROCESS, ps->wait_server, node));
        return efl_fold_child_kind(f, *node, EFL_FRAME_QUEUED, 0, node);
    }
    if (ps->out)
        return efl_fold_child_kind(f, ps->node, EFL_FRAME_SLEEP, 0, node);
    return EFL_OK;
}

/* Timeline: records a change of what is on top. */
efl_status efl_fold_note_change(struct efl_folder *f, struct proc_state *ps, uint64_t ts)
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
efl_status efl_fold_credit_less(struct efl_folder *f, struct proc_state *ps, uint64_t ts,
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
            EFL_FORWARD_IF_ERROR(efl_fold_hold_credit_all(f, ps, node, ns));
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
efl_status efl_fold_settle_off_cpu(struct efl_folder *f, struct proc_state *ps, int waited)
{
    if (!ps->off_held)
        return EFL_OK;
    ps->off_held = 0;
    uint64_t ns = ps->off_ns;
    ps->off_ns = 0;
    uint32_t node;
    EFL_FORWARD_IF_ERROR(efl_fold_child_kind(f, ps->off_node, waited ? EFL_FRAME_SLEEP : EFL_FRAME_RUNNABLE,
                                    0, &node));
    f->p->nodes[node].self_ns += ns;
    EFL_FORWARD_IF_ERROR(efl_fold_hold_credit_all(f, ps, node, ns));
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
efl_status efl_fold_end_slice(struct efl_folder *f, struct proc_state *ps, uint64_t ts, uint32_t cpu)
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
    /* The held credits of the slice lose as much, except the time off the
     * CPU before it (settled at its first event, held with it): the slice
     * did not scale that. */
    for (size_t i = ps->slice_spec; i < ps->nlog; i++) {
        uint8_t kind = f->p->frames[nodes[ps->log[i].node].frame].kind;
        if (kind != EFL_FRAME_RUNNABLE && kind != EFL_FRAME_SLEEP)
            ps->log[i].ns -= (uint64_t)((unsigned __int128)ps->log[i].ns * stolen / credited);
    }
    uint32_t os;
    EFL_FORWARD_IF_ERROR(efl_fold_child_kind(f, ps->node != 0 ? ps->node : base_of(ps), EFL_FRAME_OS, 0, &os));
    f->p->nodes[os].self_ns += taken;
    /* A guess of the meantime that turns out a tail call moves it too. */
    EFL_FORWARD_IF_ERROR(efl_fold_hold_credit_all(f, ps, os, taken));
    return EFL_OK;
}

void efl_fold_begin_slice(struct proc_state *ps, uint64_t ts, uint32_t cpu)
{
    ps->in_slice = cpu != 0;
    ps->slice_ts = ts;
    ps->slice_cpu = cpu;
    ps->nslice = 0;
    ps->slice_spec = ps->nlog;
}

/* Credits the time up to ts for another process's event (a graft begins
 * or ends): the interval's tracing cost comes out of what follows. */
efl_status efl_fold_credit(struct efl_folder *f, struct proc_state *ps, uint64_t ts)
{
    return efl_fold_credit_less(f, ps, ts, 0);
}
