/* perf script text, as `perf script` prints samples and as speedscope and
 * Firefox Profiler import it: per sample a header line (command, pid/tid,
 * time in seconds, period, event name), the stack leaf first, a blank line.
 *
 * Each Erlang process is a thread (its command is the process, its tid the
 * process number). Each distinct stack is written as two samples, at its
 * start and its end on a running clock: importers that weigh a sample by
 * the midpoints to its neighbours (speedscope) then give each stack
 * exactly its time. Each process's clock starts at its first event on the
 * run's clock (a process spawned 10 ms in starts at 0.010). */
#include <stdlib.h>
#include <string.h>

#include "efl_writer.h"

struct perf {
    struct efl_buf *out;
    struct efl_buf command;
    unsigned tid;
    uint32_t proc;           /* the process node being written */
    uint64_t clock_us;
    struct efl_buf frames;   /* this stack's frame lines, leaf first */
};

static efl_status sample(struct perf *w, uint64_t at_us)
{
    EFL_FORWARD_IF_ERROR(efl_buf_append(w->out, w->command.data, w->command.len));
    EFL_FORWARD_IF_ERROR(efl_buf_printf(w->out, " %u/%u %llu.%06llu: 1 cpu-clock:\n", w->tid, w->tid,
                                        (unsigned long long)(at_us / 1000000),
                                        (unsigned long long)(at_us % 1000000)));
    EFL_FORWARD_IF_ERROR(efl_buf_append(w->out, w->frames.data, w->frames.len));
    return efl_buf_puts(w->out, "\n");
}

static efl_status stack(struct perf *w, const struct efl_profile *p, uint32_t proc, uint32_t node)
{
    uint64_t us = efl_ns_to_us(p->nodes[node].self_ns);
    if (us == 0)
        return EFL_OK;
    w->frames.len = 0;
    for (uint32_t n = node; n != proc && n != 0; n = p->nodes[n].parent) {
        EFL_FORWARD_IF_ERROR(efl_buf_puts(&w->frames, "\t0 "));
        EFL_FORWARD_IF_ERROR(efl_frame_name(p, p->nodes[n].frame, &w->frames));
        EFL_FORWARD_IF_ERROR(efl_buf_puts(&w->frames, " (erlang)\n"));
    }
    EFL_FORWARD_IF_ERROR(sample(w, w->clock_us));
    w->clock_us += us;
    EFL_FORWARD_IF_ERROR(sample(w, w->clock_us));
    return efl_buf_spill(w->out, 0);
}

static efl_status visit(void *ctx, const struct efl_profile *p, uint32_t node, const char *path,
                        size_t len)
{
    (void)path;
    (void)len;
    struct perf *w = ctx;
    return node == w->proc ? EFL_OK : stack(w, p, w->proc, node);
}

efl_status efl_write_perf(const struct efl_profile *p, uint32_t root, struct efl_buf *out)
{
    uint32_t *procs;
    size_t nprocs;
    EFL_FORWARD_IF_ERROR(efl_process_nodes(p, root, &procs, &nprocs));
    struct perf w = {.out = out};
    efl_status s = EFL_OK;
    uint64_t run_start = efl_run_start(p, procs, nprocs);
    for (size_t i = 0; s == EFL_OK && i < nprocs; i++) {
        const struct efl_frame *fr = &p->frames[p->nodes[procs[i]].frame];
        w.command.len = 0;
        /* Each process's clock starts where the run's has it begin. */
        const size_t *changes;
        size_t nchanges;
        s = efl_process_changes(p, procs[i], &changes, &nchanges);
        w.clock_us = s == EFL_OK && nchanges > 0
                         ? efl_ns_to_us(p->timeline[changes[0]].ts - run_start)
                         : 0;
        w.tid = efl_process_number(p->processes[fr->a]);
        w.proc = procs[i];
        s = efl_node_name(p, procs[i], &w.command);
        /* The walk from the process node itself visits its stacks. */
        if (s == EFL_OK)
            s = efl_walk_stacks(p, procs[i], ";", visit, &w);
    }
    free(procs);
    efl_buf_free(&w.command);
    efl_buf_free(&w.frames);
    return s;
}
