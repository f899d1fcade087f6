/* The fixed-size record a tracer callback writes into its thread's ring. */
#ifndef EFL_EVENT_H
#define EFL_EVENT_H

#include <stdint.h>

/* Values are part of the archive format (doc/archive-format.adoc): append only. */
enum efl_event_kind {
    EFL_EV_CALL = 1,       /* local call of mod:fun/arity: push */
    EFL_EV_RETURN_TO,      /* returned into mod:fun/arity (0/0: undefined): pop to it */
    EFL_EV_ROOT_CALL,      /* meta call of the profiled function: opens the window */
    EFL_EV_ROOT_RETURN,    /* meta return_from of the profiled function */
    EFL_EV_ROOT_EXCEPTION, /* meta exception_from of the profiled function */
    EFL_EV_IN,             /* scheduled in (3.0: with its thread's CPU time) */
    EFL_EV_OUT,            /* scheduled out (3.0: with its thread's CPU time) */
    EFL_EV_GC_START,       /* garbage collection starts */
    EFL_EV_GC_END,         /* garbage collection ends */
    EFL_EV_SPAWN,          /* spawned a process: mod and fun hold its pid (low, high) */
    EFL_EV_LOST,           /* mod events of this process (0: of several) were lost */
    /* Following work across processes (archive version 2): */
    EFL_EV_FOLLOW_CALL,    /* calls server mod/fun (its pid, as for a spawn; its own
                            * for a process spawned for the call) and waits */
    EFL_EV_FOLLOW_TAKE,    /* takes up the request of caller mod/fun (its pid) */
    EFL_EV_FOLLOW_END,     /* is done with the request it took */
    /* Archive version 3: */
    EFL_EV_RECEIVE,        /* took a message or a receive's timeout from its queue (right
                            * after it was scheduled in, if it had waited for it) */
    EFL_EV_KIND_END
};

/* Kinds whose mod and fun fields hold another process's pid. */
static inline int efl_event_names_process(unsigned kind)
{
    return kind == EFL_EV_SPAWN || kind == EFL_EV_FOLLOW_CALL || kind == EFL_EV_FOLLOW_TAKE;
}

/* 32 bytes. pid and the atoms are the VM's raw immediate term values (a local
 * pid and an atom are immediates, valid in any environment): the flusher turns
 * them into text later, off the scheduler. An MFA of 0/0 means "none". IN
 * and OUT hold the thread's CPU time (ns) in mod (low) and fun (high). */
struct efl_event {
    uint64_t ts;     /* CLOCK_MONOTONIC, nanoseconds */
    uint64_t pid;
    uint32_t mod;
    uint32_t fun;
    uint8_t kind;    /* enum efl_event_kind */
    uint8_t arity;
    uint16_t pad;
    uint32_t session; /* the session that recorded it; not archived */
};

_Static_assert(sizeof(struct efl_event) == 32, "efl_event must stay 32 bytes");

#endif
