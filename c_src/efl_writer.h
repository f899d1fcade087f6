/* Output writers: each turns a profile (efl_profile.h) into one file
 * format. They only read the profile, but for the lookup index the first
 * write builds on it (one writer at a time per profile). */
#ifndef EFL_WRITER_H
#define EFL_WRITER_H

#include "efl_buf.h"
#include "efl_profile.h"
#include "efl_status.h"

/* A writer writes the subtree of `root`: 0 for the whole profile, or a
 * window node for one profiled call. */
struct efl_writer {
    const char *format;     /* the output_format option's value */
    const char *extension;  /* the file name's usual extension, with its dot */
    int needs_timeline;     /* the profile must have its timeline (efl_fold_opts) */
    int file_only;          /* writes to a file only: out->path is set */
    int draws_diff;         /* writes a differential profile (efl_folded.h) */
    efl_status (*write)(const struct efl_profile *p, uint32_t root, struct efl_buf *out);
};

/* The one list of output formats: the output_format value, the usual
 * extension, whether it needs the timeline, whether it is written to a
 * file only (it names another file after its own), whether it draws a
 * diff (eflambe:diff/3), the writer. The NIF tells Erlang the formats,
 * extensions, file-only and diff ones from this list. */
#define EFL_WRITERS(X)                                                  \
    X(brendan_gregg, ".folded", 0, 0, 1, efl_write_folded)              \
    X(perf, ".linux-perf.txt", 1, 0, 0, efl_write_perf)                 \
    X(speedscope, ".speedscope.json", 1, 0, 0, efl_write_speedscope)    \
    X(svg, ".svg", 0, 0, 1, efl_write_svg)                              \
    X(perf_data, ".perf.data", 0, 1, 0, efl_write_perf_data)           \
    X(pprof, ".pb.gz", 0, 0, 1, efl_write_pprof)

#define EFL_WRITER_DECL(format, extension, timeline, file_only, diff, write)  \
    efl_status write(const struct efl_profile *p, uint32_t root, struct efl_buf *out);
EFL_WRITERS(EFL_WRITER_DECL)
#undef EFL_WRITER_DECL

/* Every writer, in the list's order; *n of them. */
const struct efl_writer *efl_writers(size_t *n);
/* NULL for an unknown format. */
const struct efl_writer *efl_writer_find(const char *format);

/* Helpers shared by writers. */
uint64_t efl_ns_to_us(uint64_t ns);
/* A process's number, perf's pid for it: <0.85.0> gives 85 (0: none). */
unsigned efl_process_number(const char *name);
/* Visits every node of root's subtree (root itself excluded) depth first,
 * parents before children, with the node's full stack in `path` (frame
 * names joined by `sep`, window nodes left out). Each name is formatted
 * once, whatever the depth. A visitor returning non-OK stops the walk. */
typedef efl_status (*efl_stack_visitor)(void *ctx, const struct efl_profile *p, uint32_t node,
                                        const char *path, size_t len);
efl_status efl_walk_stacks(const struct efl_profile *p, uint32_t root, const char *sep,
                           efl_stack_visitor visit, void *ctx);

/* The nodes of root's subtree (root excluded), parents before children;
 * *n of them, in an array to free. */
efl_status efl_subtree(const struct efl_profile *p, uint32_t root, uint32_t **nodes, size_t *n);
/* The process nodes in root's subtree, in index order; *n of them. Not
 * those of followed processes, which are frames of their callers' stacks. */
efl_status efl_process_nodes(const struct efl_profile *p, uint32_t root, uint32_t **nodes, size_t *n);
/* The run's clock for time-ordered writers: the first change (in ns) of
 * any of the processes, from which each is placed (0 without a timeline). */
uint64_t efl_run_start(const struct efl_profile *p, const uint32_t *procs, size_t n);
/* The positions in p->timeline of a process node's changes, in time
 * order; *n of them (the array is the profile's). */
efl_status efl_process_changes(const struct efl_profile *p, uint32_t proc, const size_t **changes,
                               size_t *n);
/* Appends a frame's display name: mod:fun/arity (Elixir modules as Elixir
 * writes them: Demo.fib/1), <0.85.0>, sleep, gc, [dropped N events]; no
 * ';' (the folded separator) and no control characters. */
efl_status efl_frame_name(const struct efl_profile *p, uint32_t frame, struct efl_buf *out);
/* Appends a node's display name, with its efl_call_mark. */
efl_status efl_node_name(const struct efl_profile *p, uint32_t node, struct efl_buf *out);
/* Appends s escaped for a JSON string / for XML text and attributes
 * (newlines as character references, which survive in attributes). */
efl_status efl_json_escape(struct efl_buf *out, const char *s, size_t len);
efl_status efl_xml_escape(struct efl_buf *out, const char *s, size_t len);

/* The profiled calls (windows) in the order capture and replay give their
 * results: the calls that ended, by end time (microseconds, then start
 * order), then the others (the trace ended first), in start order. *order
 * (free it) holds window indexes; *n of them. */
efl_status efl_call_order(const struct efl_profile *p, uint32_t **order, size_t *n);

/* A profile in a few figures, for a summary without reading an output
 * back: its distinct stacks (as the outputs show them: a microsecond or
 * more), the deepest (functions), its processes, the time running
 * (functions and gc on top: not sleep, runnable, [os preempted] or
 * [queued]), and the frames with the most of it, most first. */
#define EFL_SUMMARY_TOP 10
struct efl_summary {
    uint64_t stacks;
    uint64_t running_ns;
    uint32_t deepest;
    uint32_t processes;
    size_t ntop;
    uint32_t top_frame[EFL_SUMMARY_TOP];
    uint64_t top_ns[EFL_SUMMARY_TOP];
};
efl_status efl_profile_summary(const struct efl_profile *p, struct efl_summary *s);

/* Appends what a reader must know about an incomplete profile, for titles:
 * " (partial: recording stopped: max_events reached; 12 events lost)", or
 * nothing. No characters that need escaping. */
efl_status efl_append_caveats(const struct efl_profile *p, struct efl_buf *out);

/* The value of a "key=value" line of the archive header's metadata (not
 * terminated: *len bytes), or NULL. */
const char *efl_meta_value(const char *meta, const char *key, size_t *len);

/* What a process node of a profiled call says of how the call ended:
 * " (exception)", " (unfinished)" (the trace ended first: a timeout, a
 * node that died), or NULL (it returned, or is no such node). */
const char *efl_call_mark(const struct efl_profile *p, uint32_t node);

#endif
