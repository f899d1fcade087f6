/* Reads the call sites of a compiled module (a .beam file's bytes): for each
 * function, which functions it calls, and whether each call is a body call
 * (the caller's frame stays below the callee) or a tail call (the callee
 * takes the caller's frame). The folder needs this to tell the two apart:
 * the trace shows both as the same `call` event. No dependency on erl_nif.h.
 *
 * The input is untrusted: every count, length and index is checked against
 * the chunk that holds it, and an instruction this reader does not know
 * (a newer compiler's) ends the read with EFL_ERR_VERSION, never a guess. */
#ifndef EFL_BEAM_H
#define EFL_BEAM_H

#include <stddef.h>
#include <stdint.h>

#include "efl_status.h"

/* How a call site calls. A function can call the same callee both ways. */
enum efl_call_kind {
    EFL_CALL_BODY = 1,
    EFL_CALL_TAIL = 2
};

/* A name as it sits in the module's atom table: not NUL-terminated. */
struct efl_name {
    const char *s;
    size_t len;
};

/* One call site. For a call whose callee is only known at run time (a fun,
 * apply/3 with a variable module), dynamic is 1 and mod/fun are empty. */
struct efl_beam_call {
    struct efl_name caller_fun;
    unsigned caller_arity;
    struct efl_name mod, fun;
    unsigned arity;
    unsigned kind;   /* enum efl_call_kind */
    int dynamic;
};

struct efl_beam_visitor {
    void *ctx;
    /* The module's name, once, before any call. */
    efl_status (*module)(void *ctx, struct efl_name mod);
    /* Every call site, in code order (a site may repeat). */
    efl_status (*call)(void *ctx, const struct efl_beam_call *c);
    /* Every function, after the call sites: the line its code begins at
     * (0: the module has no line table), and the file that line is in when
     * it is not the module's own source (an included file), else empty.
     * NULL: not wanted. */
    efl_status (*function)(void *ctx, struct efl_name fun, unsigned arity, unsigned line,
                           struct efl_name file);
};

/* The largest file the reader takes (the largest OTP module is under 1 MB). */
#define EFL_BEAM_MAX_BYTES (32u << 20)

/* EFL_ERR_ARG: not a BEAM file, or a damaged one (a table twice too);
 * EFL_ERR_VERSION: an instruction of a newer compiler; EFL_ERR_LIMIT: a
 * file or a table beyond this reader's bounds. */
efl_status efl_beam_read(const void *beam, size_t len, const struct efl_beam_visitor *v);

#endif
