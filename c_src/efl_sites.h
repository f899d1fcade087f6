/* The call-site table: for each pair of functions seen in a trace, whether
 * the caller calls the callee as a body call, a tail call, or both, read
 * from the modules' code (efl_beam) when the run ends. A trace shows body
 * and tail calls as the same `call` event; the folder asks this table which
 * one it was, so a tail call replaces its caller's frame.
 *
 * Built by the NIF, serialized into the archive's site table (so replay
 * and the CLI fold the same way later, elsewhere), parsed by the folder.
 * Names are text: the table does not depend on the archive's symbol ids.
 * Single-threaded; no dependency on erl_nif.h. */
#ifndef EFL_SITES_H
#define EFL_SITES_H

#include <stddef.h>
#include <stdint.h>

#include "efl_beam.h"
#include "efl_buf.h"
#include "efl_status.h"

struct efl_sites;

efl_status efl_sites_new(struct efl_sites **t);
void efl_sites_free(struct efl_sites *t);

/* Adds a module's call sites (a .beam file's bytes). EFL_ERR_ARG: not a
 * module this reader can follow; the table is unchanged then. */
efl_status efl_sites_add_module(struct efl_sites *t, const void *beam, size_t len);
/* A module's source file (its compile info's), which outputs name. */
efl_status efl_sites_add_source(struct efl_sites *t, struct efl_name mod, struct efl_name file);
/* What a process is called (its registered name, or the function a
 * proc_lib process was started with), by its name in the archive
 * (<0.85.0>); NULL when nothing is known. */
efl_status efl_sites_add_process(struct efl_sites *t, struct efl_name pid, struct efl_name label);
const char *efl_sites_process(const struct efl_sites *t, const char *pid);
/* Marks a function as a BIF: the VM runs a BIF as a body call whatever the
 * call site (it returns to its caller, even from a tail position). */
efl_status efl_sites_add_bif(struct efl_sites *t, struct efl_name mod, struct efl_name fun,
                             unsigned arity);

/* Adds one call site by name (the tests' way to state a table). */
efl_status efl_sites_add_call(struct efl_sites *t, struct efl_name caller_mod,
                              struct efl_name caller_fun, unsigned caller_arity,
                              struct efl_name mod, struct efl_name fun, unsigned arity,
                              unsigned kind, int dynamic);

/* The serialized table (doc/archive-format.adoc, "Site table"). */
efl_status efl_sites_encode(const struct efl_sites *t, struct efl_buf *out);
/* Reads a serialized table; bounded by its length and the limits of the
 * format. */
efl_status efl_sites_decode(const void *data, size_t len, struct efl_sites **t);

/* Lookups for the folder. A name's id, or 0 when no function of the
 * table uses it; a function's id (from name ids), or 0. */
uint32_t efl_sites_name(const struct efl_sites *t, const char *s, size_t len);
uint32_t efl_sites_function(const struct efl_sites *t, uint32_t mod, uint32_t fun, unsigned arity);

/* The line a function's code begins at (a function id; 0: unknown), and
 * in *file the file it is in: an included file, else its module's source,
 * else NULL. */
unsigned efl_sites_line(const struct efl_sites *t, uint32_t fn, const char **file);

/* How `caller` calls `callee` (function ids; 0: not in the table): a set of
 * enum efl_call_kind bits, 0 when the table does not know. A BIF callee is
 * a body call; a callee the caller does not name is reached through one of
 * its dynamic calls (a fun, apply), if it has any. With `any_external`, the
 * callee stands for any function of another module (the VM calls
 * error_handler:undefined_function/3 in place of a function whose module
 * is not loaded yet, from the caller's call site). */
unsigned efl_sites_kind(const struct efl_sites *t, uint32_t caller, uint32_t callee,
                        int any_external);

/* Counts, for tests and statistics. */
size_t efl_sites_pairs(const struct efl_sites *t);

#endif
