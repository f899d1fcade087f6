/* The offline folder: turns archive events into a profile, a tree of stacks
 * weighted by the time each was on top. No dependency on erl_nif.h. */
#ifndef EFL_FOLD_H
#define EFL_FOLD_H

#include <stddef.h>
#include <stdint.h>

#include "efl_archive.h"
#include "efl_buf.h"
#include "efl_status.h"

/* Deeper stacks are cut: their time goes to the frame at this depth (in
 * functions below the process). The default and the most allowed. */
#define EFL_FOLD_MAX_DEPTH 1024
/* Frames a process's real stack holds; deeper ones are only counted. */
#define EFL_FOLD_STACK_MAX (1u << 20)

enum efl_frame_kind {
    EFL_FRAME_MFA,      /* a = module symbol, b = function symbol */
    EFL_FRAME_PROCESS,  /* a = process id */
    EFL_FRAME_SLEEP,    /* scheduled out */
    EFL_FRAME_GC,       /* garbage collecting */
    EFL_FRAME_WINDOW,   /* a = window index; groups one profiled call, never shown */
    EFL_FRAME_DROPPED   /* a = events lost: the stack above it is resynchronised */
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
    char *meta;           /* the header's "key=value\n" lines */
    /* The writers' lookup tables, built on first use (efl_writer.c) and
     * freed with the profile. */
    struct efl_profile_index *index;
    void (*free_index)(struct efl_profile_index *index);
};

struct efl_folder;

struct efl_fold_opts {
    int timeline;        /* record the timeline (time-ordered writers need it) */
    unsigned max_depth;  /* 1..EFL_FOLD_MAX_DEPTH; 0 means the most */
    int collapse_recursion; /* a function calling itself stays one frame */
    /* What an archive may make the folder hold (0: the defaults below;
     * tests set small ones). Events held until a pass says they can be
     * merged, 16 bytes each: past this, an archive whose passes come
     * further apart than eflambe's flusher writes them is folded as it
     * comes, in order within each ring. */
    uint64_t held_max;
    /* Symbol and process names, all together, in bytes: past this the
     * archive is refused (limit_exceeded). */
    uint64_t name_bytes_max;
};

#define EFL_FOLD_HELD_MAX (1u << 24)
/* A million atoms of 255 characters, and as many processes, fit. */
#define EFL_FOLD_NAME_BYTES_MAX (512u << 20)

efl_status efl_folder_new(struct efl_folder **f, const struct efl_fold_opts *opts);
void efl_folder_free(struct efl_folder *f);
/* A visitor that feeds an archive reader's output to the folder. */
struct efl_archive_visitor efl_folder_visitor(struct efl_folder *f);
/* Merges the rings by timestamp, rebuilds the stacks. Frees f. */
efl_status efl_folder_finish(struct efl_folder *f, struct efl_profile **out);

efl_status efl_fold_archive(const char *path, const struct efl_fold_opts *opts,
                            struct efl_profile **out);
efl_status efl_fold_archive_mem(const void *data, size_t len, const struct efl_fold_opts *opts,
                                struct efl_profile **out);
void efl_profile_free(struct efl_profile *p);

/* Appends the frame's display name: mod:fun/arity, <0.85.0>, sleep, gc. */
efl_status efl_profile_frame_name(const struct efl_profile *p, uint32_t frame, struct efl_buf *out);

#endif
