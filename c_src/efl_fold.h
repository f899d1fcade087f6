/* The offline folder: turns archive events into a profile (efl_profile.h),
 * a tree of stacks weighted by the time each was on top. It merges the
 * rings by timestamp, pass by pass, and rebuilds each process's real stack
 * (body and tail calls told apart by the archive's site table). Single
 * threaded; no dependency on erl_nif.h. */
#ifndef EFL_FOLD_H
#define EFL_FOLD_H

#include <stddef.h>
#include <stdint.h>

#include "efl_archive.h"
#include "efl_profile.h"
#include "efl_status.h"

/* Deeper stacks are cut: their time goes to the frame at this depth (in
 * functions below the process). The default and the most allowed. */
#define EFL_FOLD_MAX_DEPTH EFL_PROFILE_MAX_DEPTH
/* Frames a process's real stack holds; deeper ones are only counted. */
#define EFL_FOLD_STACK_MAX (1u << 20)

struct efl_folder;

struct efl_fold_opts {
    int timeline;        /* record the timeline (time-ordered writers need it) */
    unsigned max_depth;  /* 1..EFL_FOLD_MAX_DEPTH; 0 means the most */
    int collapse_recursion; /* a function calling itself stays one frame */
    /* Keep the traced run's own time: what the archive's cost_* lines say
     * each event cost is not taken out (the time the OS took a scheduler
     * thread away still goes to [os preempted]: the weights still add up
     * to the wall time). */
    int raw_time;
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

#endif
