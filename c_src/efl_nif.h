/* What the NIF module eflambe_tracer's files share: its atoms, the state
 * the tracer callbacks read, and small term helpers. The jobs are split:
 *   efl_nif.c          function table, load/upgrade/unload, the state
 *   efl_nif_trace.c    the erl_tracer callbacks (enabled/3, trace/5)
 *   efl_nif_sample.c   the sampler's record_samples/3
 *   efl_nif_session.c  ring sets, session start/stop and its options
 *   efl_nif_follow.c   a followed call's steps, read from meta events
 *   efl_nif_fold.c     fold, archive header, call sites and the code they
 *                      are read from, output binaries,
 *                      the formats this build writes */
#ifndef EFL_NIF_H
#define EFL_NIF_H

#include <stdint.h>

#include <erl_nif.h>

#include "efl_capture.h"
#include "efl_clock.h"
#include "efl_ring.h"
#include "efl_status.h"

/* Everything here is the library's own: the callbacks reach the state and
 * the atoms without the GOT. */
#pragma GCC visibility push(hidden)

#define EFL_NIF_ATOMS(X)                                                \
    X(already_running) X(bytes) X(call) X(discard) X(dropped) X(error)  \
    X(events) X(exception_from) X(gc_major_end) X(gc_major_start)       \
    X(gc_minor_end) X(gc_minor_start) X(in) X(in_exiting)              \
    X(not_running) X(ok) X(out) X(out_exited) X(out_exiting) X(remove)  \
    X(return_from) X(return_to) X(total_us) X(trace) X(trace_status)    \
    X(truncated) X(undefined) X(unknown_format) X(cut_frames)          \
    X(extension) X(true) X(false) X(archive) X(ring_events) X(threads) \
    X(root_pid) X(root_frame) X(budget) X(every) X(notify) X(meta)      \
    X(eflambe_capture_done) X(pid) X(ended) X(start_us) X(end_us)       \
    X(open) X(data) X(spawn) X(spawned)                                 \
    X(exit) X(link) X(unlink) X(getting_linked) X(getting_unlinked)     \
    X(register) X(unregister) X(max_events) X(max_bytes) X(eflambe_limit)    \
    X(stopped) X(timeout) X(flusher_idle_ms) X(lost) X(modules) X(normalize) X(max_depth) \
    X(recursion) X(collapse) X(exact) X(calls) X(guessed_calls) X(site_table) \
    X(pairs) X(tail_resolved) X(returns) X(repaired_returns) X(output) X(file)  \
    X(formats) X(event_bytes) X(follow_call) X(follow_take) X(follow_end) \
    X(needs_a_file) X(file_only) X(diff) X(server) X(follow_spawn) X(seq_trace) X(send) \
    X(follow_seq) X(extra) X(raw_time) X(compensated_us) X(unreadable) \
    X(stacks) X(deepest) X(processes) X(top) X(running_us) \
    X(match_spec_result) X(lazy) X(eflambe_capture_first) X(index) X(duration_us) X(follow)

#define EFL_NIF_ATOM_DECL(name) extern ERL_NIF_TERM efl_atom_##name;
EFL_NIF_ATOMS(EFL_NIF_ATOM_DECL)
#undef EFL_NIF_ATOM_DECL
extern ERL_NIF_TERM efl_atom_gen_call; /* '$gen_call' */
extern ERL_NIF_TERM efl_atom_gen_cast; /* '$gen_cast' */
extern ERL_NIF_TERM efl_atom_receive;  /* 'receive' */
extern ERL_NIF_TERM efl_atom_alias;

/* Thread slots (rings) at most, and session ids below this. */
#define EFL_NIF_MAX_SLOTS 512
#define EFL_NIF_SESSION_ID_MAX (1u << 26)
/* A thread's CPU time read when it scheduled a process out serves as the
 * start of the next slice it schedules in this soon after (ping-pong of
 * messages: one read per switch, not two); the scheduler's own work
 * between counts as the slice's. */
#define EFL_NIF_CPU_REUSE_NS 20000
/* Calls a capture may admit at most. */
#define EFL_NIF_CAPTURE_MAX 65536

/* One ring per thread slot, all of one size (efl_nif_session.c). */
struct efl_ring_set {
    struct efl_ring *rings;
    size_t count;
    size_t capacity;  /* events each ring's pages can hold */
    struct efl_ring_set *retired_next;
};

/* What the tracer callbacks read. The session starter (efl_nif_session.c,
 * the only one at a time) writes every field but root_started and
 * lost_no_ring, then publishes them with a release store of `active`;
 * the callbacks read `active` first (acquire) and the rest after it. The
 * storage outlives sessions: a late callback of an ended session may
 * still read it, and the event it writes carries the old id. */
struct efl_tracer_state {
    unsigned active;              /* atomic: the running session's id, 0 when none */
    struct efl_ring_set *rings;   /* atomic: read after `active` */
    uint64_t root_pid;            /* apply: meta events are kept for this pid only */
    int root_frame;               /* the meta call's function is a frame */
    int root_started;             /* apply: the root pid's call has begun (1) or
                                   * ended (2) (its own thread writes it, after
                                   * the start) */
    int capturing;                /* capture: admission by budget, not root_pid */
    int follows;                  /* the run follows calls: a call event may carry a
                                   * step (efl_nif_trace.c's follow_step) */
    int notify;                   /* notify_pid is told of each captured call that ends */
    ErlNifPid notify_pid;
    struct efl_capture capture;   /* capture admission */
    struct efl_clock clock;
    uint64_t cpu_reuse_ticks;     /* EFL_NIF_CPU_REUSE_NS on the clock */
    uint64_t lost_no_ring;        /* atomic: events of threads beyond the set */
    uint32_t flusher_sleeping;    /* the flusher's futex word: 1 while it sleeps */
};

extern struct efl_tracer_state efl_tracer;

/* The callbacks run for every event, so they read immediates by their tags
 * (erts' erl_term.h, 64-bit) instead of calling enif_is_* through the PLT.
 * load() checks each against the enif functions (efl_nif_raw_checks_hold)
 * and refuses to load if the VM disagrees. */
#define EFL_RAW_IS_SMALL(t) (((t) & 0xF) == 0xF)
#define EFL_RAW_SMALL_VALUE(t) ((int64_t)(t) >> 4)
#define EFL_RAW_IS_ATOM(t) (((t) & 0x3F) == 0x0B)
#define EFL_RAW_IS_LOCAL_PID(t) (((t) & 0xF) == 0x3)

static inline uint32_t efl_raw_atom(ERL_NIF_TERM t)
{
    return EFL_RAW_IS_ATOM(t) && t <= UINT32_MAX ? (uint32_t)t : 0;
}

int efl_nif_raw_checks_hold(ErlNifEnv *env);

/* What a tracer state traces for: a process's own events, or a meta
 * pattern's: the profiled function's (root), or a followed erpc call's
 * steps (a gen call's come in its processes' own call events, told by
 * their local match specs). */
enum efl_tracer_role {
    EFL_ROLE_PROCESS,
    EFL_ROLE_ROOT,
    EFL_ROLE_FOLLOW_CALL,  /* erpc:call/5: a caller sends a request and waits */
    EFL_ROLE_FOLLOW_TAKE,  /* erpc:execute_call/4: its process takes the request up,
                            * and is done with it at its return */
    EFL_ROLE_SERVER,       /* a server's own events, its tracing switched on by a
                            * followed call's match spec */
    EFL_ROLE_FOLLOW_SPAWN, /* erpc's spawn_request: notes whose request it is */
    EFL_ROLE_FOLLOW_SEQ,   /* the node's sequential tracer: plain messages' sends
                            * and takes */
    EFL_ROLE_END
};
_Static_assert(EFL_ROLE_END <= 8, "a role takes 3 bits of the tracer state");

/* Tracer state is a small integer: session id << 3 | role. */
#define EFL_NIF_STATE(id, role) ((int)((id) << 3 | (role)))
int efl_nif_decode_state(ERL_NIF_TERM t, unsigned *id, unsigned *role);

/* efl_nif_follow.c: a followed call's steps (see there). */
int efl_nif_follow_load(void);
void efl_nif_follow_unload(void);
void efl_nif_follow_note_erpc(ErlNifEnv *env, unsigned session, ERL_NIF_TERM caller,
                              ERL_NIF_TERM mfa);
ERL_NIF_TERM efl_nif_follow_caller(ErlNifEnv *env, unsigned session, ERL_NIF_TERM mfa,
                                   int *spawned);
/* Plain messages: a message naming its sender sent (its send event
 * passed the send pattern), a request or its answer; the sequential
 * tracer's SeqTraceInfo ({'receive', Serial, From, To, Message}) of a
 * message taken: 1 if it is a request (*from, *to filled in). */
enum efl_message_step { EFL_MESSAGE_ASKED, EFL_MESSAGE_ANSWERED };
enum efl_message_step efl_nif_follow_sent(unsigned session, ERL_NIF_TERM from, ERL_NIF_TERM to);
int efl_nif_follow_taken(ErlNifEnv *env, unsigned session, ERL_NIF_TERM info,
                         ERL_NIF_TERM *from, ERL_NIF_TERM *to);
ERL_NIF_TERM efl_nif_follow_callee(ErlNifEnv *env, ERL_NIF_TERM caller, ERL_NIF_TERM mfa);

/* The calling thread's ring in the current set, or NULL when it has none. */
struct efl_ring *efl_nif_my_ring(void);

/* The slot of the calling thread's ring to write pid's next event into
 * (after a loss marker, if events were lost), or NULL when the ring is full
 * (the event is counted lost). The caller fills it and commits. */
static inline struct efl_event *efl_nif_reserve(struct efl_ring *ring, uint64_t ts,
                                                uint32_t session, uint64_t pid)
{
    struct efl_event *e = NULL;
    if (efl_ring_report_losses(ring, ts, session))
        e = efl_ring_reserve(ring);
    if (e == NULL)
        efl_ring_lose(ring, pid);
    return e;
}

/* {error, {StatusAtom, Detail}} */
ERL_NIF_TERM efl_nif_error(ErlNifEnv *env, efl_status s, ERL_NIF_TERM detail);
/* The POSIX atom Erlang's file module gives an errno, or io_error. */
ERL_NIF_TERM efl_nif_errno_atom(ErlNifEnv *env, int e);
/* A NUL-terminated copy of an iolist without NULs (free it), or NULL. */
char *efl_nif_cstr(ErlNifEnv *env, ERL_NIF_TERM t);

/* Each file's NIFs. */
ERL_NIF_TERM efl_nif_enabled(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]);
ERL_NIF_TERM efl_nif_trace(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]);
ERL_NIF_TERM efl_nif_record_samples(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]);
ERL_NIF_TERM efl_nif_start_session(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]);
ERL_NIF_TERM efl_nif_running_session(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]);
ERL_NIF_TERM efl_nif_stop_session(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]);
ERL_NIF_TERM efl_nif_halt_session(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]);
ERL_NIF_TERM efl_nif_capture_ready(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]);
ERL_NIF_TERM efl_nif_fold(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]);
ERL_NIF_TERM efl_nif_convert_folded(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]);
ERL_NIF_TERM efl_nif_diff_folded(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]);
ERL_NIF_TERM efl_nif_archive_header(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]);
ERL_NIF_TERM efl_nif_add_call_sites(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]);
ERL_NIF_TERM efl_nif_read_code(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]);
ERL_NIF_TERM efl_nif_archive_calls(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]);
ERL_NIF_TERM efl_nif_capabilities(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]);
ERL_NIF_TERM efl_nif_interval_costs(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]);

/* load/unload of the files that own state: 0 on success. */
int efl_nif_session_load(void);
void efl_nif_session_unload(void);
int efl_nif_fold_load(ErlNifEnv *env);

#pragma GCC visibility pop

#endif
