/* What tracing cost a traced process between two of its events: the time
 * the folder takes out of the frames that ran meanwhile, so that weights
 * are the program's time rather than the traced run's.
 *
 * Each event costs the process the VM's call into the tracer and ours
 * (80-240 ns here, where an untraced call takes 1-5 ns), part before the
 * event's clock reading and part after: an interval between events of
 * kinds a and b holds the end of a's cost and the start of b's. The
 * archive's header says what such an interval cost on that node
 * (eflambe_calibrate measures it: the mean interval of each pair in a
 * recursion that does nothing else, and each kind's cost as the wall
 * time it adds to a loop, for the other pairs). Means, not least values:
 * an event's cost varies (cache misses, the ring's pages), and the means
 * are what the run's total paid. An interval shorter than its cost leaves
 * the rest owed, paid by the process's next intervals while it runs.
 * Archives without cost lines (older ones, sampling runs) keep their raw
 * time. No dependency on erl_nif.h. */
#ifndef EFL_COST_H
#define EFL_COST_H

#include <stddef.h>
#include <stdint.h>

#include "efl_event.h"
#include "efl_status.h"

struct efl_cost {
    uint32_t pair[EFL_EV_KIND_END][EFL_EV_KIND_END]; /* an interval's mean cost, ns; 0: none */
    uint32_t kind[EFL_EV_KIND_END];                  /* an event's cost, ns */
    uint32_t owed_max;  /* what a process may owe at most (64 of the dearest interval) */
    int calibrated;     /* the header had cost lines */
};

/* The header's "cost_<kind>_ns=N" or "cost_<kind>_<kind>_ns=N" line (kinds
 * call, return_to, sched), if it is one: 1, and c updated. */
int efl_cost_note_line(struct efl_cost *c, const char *line, size_t len);

/* What the interval between a process's events of kinds a and b cost it. */
static inline uint32_t efl_cost_between(const struct efl_cost *c, unsigned a, unsigned b)
{
    if (!c->calibrated || a >= EFL_EV_KIND_END || b >= EFL_EV_KIND_END)
        return 0;
    if (c->pair[a][b] != 0)
        return c->pair[a][b];
    return c->kind[a] - c->kind[a] / 2 + c->kind[b] / 2;
}

/* The mean interval of each pair of kinds of a process's consecutive
 * events in an archive (those longer than four times the pair's median
 * left out: the machine's doing, not the tracer's), for calibration;
 * pairs seen fewer than 64 times are 0. */
efl_status efl_cost_measure(const char *path, uint32_t mean[EFL_EV_KIND_END][EFL_EV_KIND_END]);

#endif
