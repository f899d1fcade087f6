/* The profile: what the folder makes of an archive and every writer reads.
 * A tree of stacks (nodes), each weighted by the time it was on top, the
 * frames and names the nodes point to, the profiled calls (windows) and,
 * for time-ordered writers, each process's changes of stack. Built once by
 * the folder, then read only (the writers' lookup index aside). */
#ifndef EFL_PROFILE_H
#define EFL_PROFILE_H

#include <stddef.h>
#include <stdint.h>

#include "efl_event.h"
#include "efl_stop.h"

/* No stack of a profile is deeper, in functions below the process. */
#define EFL_PROFILE_MAX_DEPTH 1024

enum efl_frame_kind {
    EFL_FRAME_MFA,      /* a = module symbol, b = function symbol */
    EFL_FRAME_PROCESS,  /* a = process id */
    EFL_FRAME_SLEEP,    /* scheduled out, waiting in a receive (or for a port...) */
    EFL_FRAME_GC,       /* garbage collecting */
    EFL_FRAME_WINDOW,   /* a = window index; groups one profiled call, never shown */
    EFL_FRAME_DROPPED,  /* a = events lost: the stack above it is resynchronised */
    EFL_FRAME_QUEUED,   /* a followed call waits: its request is not taken up yet */
    EFL_FRAME_RUNNABLE, /* scheduled out, ready to run: waiting for a scheduler */
    EFL_FRAME_OS,       /* scheduled in, its scheduler thread off the CPU (the OS ran
                         * something else) */
    EFL_FRAME_NAME      /* a = symbol: a name drawn as it is (a node's, over its
                         * processes in a cluster's profile) */
};

struct efl_frame {
    uint32_t a, b;
    uint8_t kind;
    uint8_t arity;
};

/* Node 0 is the root and has no frame; a node's parent has a smaller index.
 * Under the root: a window node per profiled call (its process's stacks
 * below it), and the process nodes of processes that are not profiled
 * calls themselves (spawned ones). */
struct efl_node {
    uint32_t parent;
    uint32_t frame;
    uint32_t depth;     /* root 0, process 1, first function 2 ... */
    uint32_t calls;     /* call events that made this stack (traced runs; as drawn, so a
                         * call a guess put elsewhere first stays counted there) */
    uint64_t self_ns;   /* time this exact stack was on top */
};

/* One profiled call: from a root call to its matching return. */
struct efl_window {
    uint32_t node;        /* its window node */
    uint32_t pid;         /* process id */
    uint64_t start_ns, end_ns;
    uint8_t ended;        /* EFL_EV_ROOT_RETURN, EFL_EV_ROOT_EXCEPTION, EFL_EV_LOST (its end
                           * was among lost events), or 0: still open */
    uint8_t lossy;        /* events of it were lost */
};

/* A change of what a process is running, for time-ordered output: from
 * `ts` on, process node `proc` has `node` on top (its own process node:
 * nothing known). Only recorded when asked. */
struct efl_change {
    uint64_t ts;
    uint32_t proc;
    uint32_t node;
};

/* A differential profile's two sides (efl_folded.h): by node, each one's
 * own time (Base's scaled by `scale` when normalized). */
struct efl_diff {
    uint64_t *base_ns;
    uint64_t *new_ns;
    double scale;
};

struct efl_profile {
    char **symbols;      /* by id; [0] unused */
    uint32_t nsymbols;
    char **processes;    /* by id; [0] unused */
    uint32_t nprocesses;
    struct efl_frame *frames;
    uint32_t nframes;
    struct efl_node *nodes;
    uint32_t nnodes;
    struct efl_window *windows;  /* in the order the calls began */
    uint32_t nwindows;
    struct efl_change *timeline; /* in time order, if asked for */
    size_t ntimeline;
    uint64_t end_ns;             /* the last event's time */
    uint64_t total_ns;
    uint64_t compensated_ns; /* tracing cost taken out of the frames' time */
    uint64_t events;
    uint64_t drops;       /* events lost to full rings */
    uint64_t drops_unattributed;  /* of them, lost by several processes at once */
    uint64_t cut_frames;  /* frames past the maximum depth (drawn at the cap) */
    uint64_t calls;       /* call events */
    uint64_t guessed_calls; /* of them, told body or tail without the site table's word */
    uint64_t returns;       /* return_to events */
    uint64_t repaired_returns; /* of them, not landing one frame down: a guess was wrong */
    uint64_t tail_resolved; /* of them, drawn as body calls until their return showed a tail call */
    uint64_t early_folds; /* times events were folded before a pass said so (held_max) */
    int have_sites;       /* the archive had a site table */
    int truncated;        /* the archive stopped before its end record */
    unsigned stopped;     /* enum efl_stop_reason: recording ended early */
    /* By frame, from the site table: an MFA frame's first line in its
     * source (0: unknown) and its file (index + 1 into files; 0: none).
     * NULL without a site table. */
    uint32_t *frame_line;
    uint32_t *frame_file;
    char **files;
    uint32_t nfiles;
    /* By process id: what the process is called (its registered name, or
     * the function a proc_lib process was started with), NULL if unknown
     * or NULL altogether. */
    char **process_labels;
    char *meta;           /* the header's "key=value\n" lines */
    struct efl_diff *diff; /* a differential profile's sides, else NULL */
    /* The writers' lookup tables, built on first use (efl_writer.c) and
     * freed with the profile. */
    struct efl_profile_index *index;
    void (*free_index)(struct efl_profile_index *index);
};

void efl_profile_free(struct efl_profile *p);

#endif
