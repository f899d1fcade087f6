/* Folded stacks read back into a profile: "frame;frame;frame COUNT" lines,
 * COUNT in microseconds, as efl_write_folded, flamegraph.pl's
 * stackcollapse scripts and inferno write them. Frame names are told
 * apart as efl_frame_name writes them (mod:fun/arity, Mod.fun/arity,
 * <0.85.0>, sleep, gc, runnable, [os preempted], [queued], [dropped N
 * events]); any other name is a frame of its own kind, drawn as it is (a
 * node's name over its processes, in a cluster's profile). */
#ifndef EFL_FOLDED_H
#define EFL_FOLDED_H

#include <stddef.h>

#include "efl_profile.h"
#include "efl_status.h"

/* No line has more frames: the deepest stack a profile has, under a
 * process and a name above it. */
#define EFL_FOLDED_MAX_FRAMES (EFL_PROFILE_MAX_DEPTH + 8)

/* Builds the profile of len bytes of folded text, with meta as its
 * header's "key=value" lines (NULL: none). With timeline, each process's
 * stacks are laid end to end from time 0, depth first (folded stacks keep
 * no order), for time-ordered writers. EFL_ERR_CORRUPT for a line that is
 * not "stack COUNT", EFL_ERR_LIMIT for a stack deeper than the limit. */
efl_status efl_profile_from_folded(const char *text, size_t len, const char *meta, int timeline,
                                   struct efl_profile **out);

/* The differential profile of two folded profiles, Base and New: one tree
 * of both (stacks matched by their frames' names), each node's two self
 * times in p->diff, and as its own time New's, or Base's where New has
 * nothing at or under it (what went away stays in sight). With normalize,
 * Base's times are scaled to New's total first. */
efl_status efl_profile_diff_folded(const char *base, size_t base_len, const char *new,
                                   size_t new_len, int normalize, const char *meta,
                                   struct efl_profile **out);

#endif
