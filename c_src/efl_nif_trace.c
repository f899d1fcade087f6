/* The erl_tracer callbacks, enabled/3 and trace/5: the hot path.
 *
 * They run on every scheduler thread, normal and dirty, at once. Each
 * thread writes into its own ring (a lazily assigned thread-local slot):
 * no lock, no fence, no allocation, no call into Erlang. A callback that
 * checked `active` just before its session stopped may still push an
 * event afterwards: rings are therefore never freed while the library is
 * loaded, and every event carries its session id so that the next
 * session's flusher discards such leftovers. Tracer callbacks never raise:
 * anything unexpected is answered with remove, discard or ok. */
#include "efl_flusher.h"
#include "efl_nif.h"

static unsigned next_slot; /* atomic: slots handed out so far */

/* Each thread's slot, and its ring in the set it last saw. initial-exec:
 * a plain load, where the default model for a shared object calls
 * __tls_get_addr on every access. */
#define THREAD_LOCAL __thread __attribute__((tls_model("initial-exec")))
static THREAD_LOCAL int thread_slot = -1;
static THREAD_LOCAL struct efl_ring_set *thread_set;
static THREAD_LOCAL struct efl_ring *thread_ring;

static inline struct efl_ring *my_ring(void)
{
    struct efl_ring_set *set = __atomic_load_n(&efl_tracer.rings, __ATOMIC_ACQUIRE);
    if (set != thread_set) {
        if (thread_slot < 0)
            thread_slot = (int)__atomic_fetch_add(&next_slot, 1, __ATOMIC_RELAXED);
        thread_set = set;
        thread_ring = set != NULL && (size_t)thread_slot < set->count ? &set->rings[thread_slot]
                                                                       : NULL;
    }
    return thread_ring;
}

struct efl_ring *efl_nif_my_ring(void)
{
    return my_ring();
}

int efl_nif_decode_state(ERL_NIF_TERM t, unsigned *id, unsigned *role)
{
    if (!EFL_RAW_IS_SMALL(t))
        return 0;
    int64_t v = EFL_RAW_SMALL_VALUE(t);
    if (v < 8 || v >= (int64_t)EFL_NIF_SESSION_ID_MAX * 8 || (v & 7) >= EFL_ROLE_END)
        return 0;
    *id = (unsigned)(v >> 3);
    *role = (unsigned)(v & 7);
    return 1;
}

int efl_nif_raw_checks_hold(ErlNifEnv *env)
{
    ErlNifPid self;
    ERL_NIF_TERM atom = enif_make_atom(env, "eflambe"), small = enif_make_int(env, 12345);
    ERL_NIF_TERM neg = enif_make_int(env, -7), big = enif_make_uint64(env, UINT64_MAX);
    ERL_NIF_TERM tuple = enif_make_tuple2(env, atom, small), pid;
    if (enif_self(env, &self) == NULL)
        return 1; /* loaded outside a process: nothing to check against */
    pid = enif_make_pid(env, &self);
    return EFL_RAW_IS_ATOM(atom) && enif_is_atom(env, atom) && !EFL_RAW_IS_ATOM(small) &&
           !EFL_RAW_IS_ATOM(pid) && EFL_RAW_IS_SMALL(small) &&
           EFL_RAW_SMALL_VALUE(small) == 12345 && EFL_RAW_IS_SMALL(neg) &&
           EFL_RAW_SMALL_VALUE(neg) == -7 && !EFL_RAW_IS_SMALL(big) && !EFL_RAW_IS_SMALL(atom) &&
           !EFL_RAW_IS_SMALL(tuple) && EFL_RAW_IS_LOCAL_PID(pid) && enif_is_pid(env, pid) &&
           !EFL_RAW_IS_LOCAL_PID(atom) && !EFL_RAW_IS_LOCAL_PID(small) &&
           !EFL_RAW_IS_LOCAL_PID(tuple);
}

/* {M, F, Arity} or {M, F, Args}: fills mod/fun/arity, or leaves them 0. */
static void read_mfa(ErlNifEnv *env, ERL_NIF_TERM t, struct efl_event *e)
{
    const ERL_NIF_TERM *mfa;
    int n;
    if (!enif_get_tuple(env, t, &n, &mfa) || n != 3)
        return;
    unsigned arity;
    if (EFL_RAW_IS_SMALL(mfa[2]) && EFL_RAW_SMALL_VALUE(mfa[2]) >= 0)
        arity = (unsigned)EFL_RAW_SMALL_VALUE(mfa[2]);
    else if (!enif_get_list_length(env, mfa[2], &arity))
        return;
    e->mod = efl_raw_atom(mfa[0]);
    e->fun = efl_raw_atom(mfa[1]);
    e->arity = (uint8_t)(arity > 255 ? 255 : arity);
    if (e->mod == 0 || e->fun == 0)
        e->mod = e->fun = 0;
}

/* The calling thread's CPU time, last read at clock reading thread_cpu_ts. */
static THREAD_LOCAL uint64_t thread_cpu, thread_cpu_ts;

static uint64_t thread_cpu_ns(void)
{
    struct timespec t;
    if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t) != 0)
        return 0;
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

/* Writes one trace event of process pid, at ts, into the calling thread's
 * ring; mfa: the trace term's {M, F, Args}, if the kind has one; `other`:
 * the process a spawn or a followed call names. */
static void record_at(uint64_t ts, unsigned id, unsigned kind, ErlNifEnv *env, ERL_NIF_TERM pid,
                      ERL_NIF_TERM mfa, ERL_NIF_TERM other)
{
    struct efl_ring *ring = my_ring();
    if (ring == NULL) {
        __atomic_fetch_add(&efl_tracer.lost_no_ring, 1, __ATOMIC_RELAXED);
        return;
    }
    struct efl_event *e = efl_nif_reserve(ring, ts, id, pid);
    if (e == NULL)
        return;
    e->ts = ts;
    e->pid = pid;
    e->mod = e->fun = 0;
    e->kind = (uint8_t)kind;
    e->arity = 0;
    e->session = id;
    if (efl_event_names_process(kind)) {
        e->mod = (uint32_t)other;
        e->fun = (uint32_t)((uint64_t)other >> 32);
    } else if (kind == EFL_EV_IN || kind == EFL_EV_OUT) {
        /* What the thread really ran of the slice: the OS may take the
         * thread's core away meanwhile (the folder's slice_cpu). */
        uint64_t cpu;
        if (kind == EFL_EV_IN && ts - thread_cpu_ts < efl_tracer.cpu_reuse_ticks) {
            cpu = thread_cpu;
        } else {
            cpu = thread_cpu_ns();
            thread_cpu = cpu;
            thread_cpu_ts = ts;
        }
        e->mod = (uint32_t)cpu;
        e->fun = (uint32_t)(cpu >> 32);
    } else if (kind != EFL_EV_GC_START && kind != EFL_EV_GC_END && kind != EFL_EV_FOLLOW_END &&
               kind != EFL_EV_RECEIVE &&
               (kind != EFL_EV_ROOT_CALL || efl_tracer.root_frame)) {
        read_mfa(env, mfa, e);
    }
    efl_ring_commit(ring);
    /* A burst does not wait for the flusher's sleep to end. */
    if (__atomic_load_n(&efl_tracer.flusher_sleeping, __ATOMIC_RELAXED) && efl_ring_filling(ring))
        efl_flusher_wake(&efl_tracer.flusher_sleeping);
}

static void record(unsigned id, unsigned kind, ErlNifEnv *env, ERL_NIF_TERM pid, ERL_NIF_TERM mfa,
                   ERL_NIF_TERM other)
{
    record_at(efl_clock_read(&efl_tracer.clock), id, kind, env, pid, mfa, other);
}

/* When this thread's caller began a followed call (or a send): erts asks
 * enabled/3 before it runs the call's (the send's) match spec, whose trace
 * action switches the server on, and the server (on another thread) may
 * record events before the call's own event is: the call is dated from
 * the question. */
static THREAD_LOCAL uint64_t call_began;

/* enabled(TraceTag, TracerState, Tracee)
 *
 * For apply, the process tracer traces everything and the meta tracer only
 * the caller. For capture, the meta check of a call admits it (or not)
 * before the match spec's trace action switches tracing on in the caller
 * (an outermost call that `every` passes over is let through as well, so
 * that its return is seen; trace/5 records nothing of it);
 * afterwards the process tracer answers `remove` at the process's first
 * trace_status check outside a captured call, which clears its flags. */
ERL_NIF_TERM efl_nif_enabled(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[])
{
    (void)env;
    (void)argc;
    unsigned id, role;
    if (!efl_nif_decode_state(argv[1], &id, &role) ||
        id != __atomic_load_n(&efl_tracer.active, __ATOMIC_ACQUIRE))
        return efl_atom_remove;
    ERL_NIF_TERM tag = argv[0], pid = argv[2];
    /* The node's sequential tracer, while a run follows plain messages. */
    if (role == EFL_ROLE_FOLLOW_SEQ)
        return efl_atom_trace;
    /* A followed erpc call's steps (meta patterns): the match spec let only
     * tokened processes (working for a followed call) through. */
    if (role == EFL_ROLE_FOLLOW_CALL || role == EFL_ROLE_FOLLOW_TAKE ||
        role == EFL_ROLE_FOLLOW_SPAWN) {
        if (!EFL_RAW_IS_LOCAL_PID(pid) || (tag != efl_atom_call && tag != efl_atom_exception_from &&
                                           tag != efl_atom_return_from))
            return efl_atom_discard;
        if (!efl_tracer.capturing || efl_capture_inside(&efl_tracer.capture, pid)) {
            if (role == EFL_ROLE_FOLLOW_CALL && tag == efl_atom_call)
                call_began = efl_clock_read(&efl_tracer.clock);
            return efl_atom_trace;
        }
        /* capture: a process taking up a captured call's request joins it
         * at its take, whose match spec (switching its tracing on) runs
         * only if let through; trace/5 keeps the take only if the caller
         * is inside. */
        return role == EFL_ROLE_FOLLOW_TAKE && tag == efl_atom_call &&
                       efl_capture_armed(&efl_tracer.capture)
                   ? efl_atom_trace
                   : efl_atom_discard;
    }
    /* capture: a server a followed call switched on stays traced (erts
     * asks about it at once, on whatever thread, before the call's own
     * event adopts it) but counts only once adopted: by a captured call's
     * call to it or its take of one's request; its events are followed
     * only while it works for a captured call. */
    if (role == EFL_ROLE_SERVER) {
        if (!efl_tracer.capturing || !EFL_RAW_IS_LOCAL_PID(pid))
            return efl_atom_trace;
        /* Its calls too, which may take a captured call's request up
         * (their match spec says so: trace/5 keeps only those). */
        if (!efl_capture_inside(&efl_tracer.capture, pid))
            return tag == efl_atom_trace_status ||
                           (tag == efl_atom_call && efl_capture_armed(&efl_tracer.capture))
                       ? efl_atom_trace
                       : efl_atom_discard;
        role = EFL_ROLE_PROCESS;
    }
    int meta = role != EFL_ROLE_PROCESS;
    /* A plain request is a followed call too (its send pattern's match
     * spec switches the receiver on). */
    if (tag == efl_atom_send && !meta)
        call_began = efl_clock_read(&efl_tracer.clock);
    if (!efl_tracer.capturing) {
        if (meta && pid != (ERL_NIF_TERM)efl_tracer.root_pid)
            return efl_atom_discard;
        return efl_atom_trace;
    }
    if (!EFL_RAW_IS_LOCAL_PID(pid))
        return efl_atom_discard;
    struct efl_capture *capture = &efl_tracer.capture;
    if (meta) {
        if (tag == efl_atom_call) {
            /* A skipped call is traced too: its return ends the skip. */
            enum efl_capture_verdict v = efl_capture_enter(capture, pid);
            /* A lazy capture's first call: the owner puts the node's call
             * patterns in place now. */
            if (v == EFL_CAPTURE_SKIP_FIRST && efl_tracer.notify)
                enif_send(env, &efl_tracer.notify_pid, NULL, efl_atom_eflambe_capture_first);
            return v != EFL_CAPTURE_DISCARD ? efl_atom_trace : efl_atom_discard;
        }
        if (tag == efl_atom_trace_status)
            return efl_capture_armed(capture) ? efl_atom_trace : efl_atom_remove;
        return efl_atom_trace;
    }
    if (efl_capture_inside(capture, pid))
        /* Of the `procs' events only spawn is used. */
        return tag == efl_atom_exit || tag == efl_atom_link || tag == efl_atom_unlink ||
                       tag == efl_atom_spawned || tag == efl_atom_getting_linked ||
                       tag == efl_atom_getting_unlinked || tag == efl_atom_register ||
                       tag == efl_atom_unregister
                   ? efl_atom_discard
                   : efl_atom_trace;
    return tag == efl_atom_trace_status ? efl_atom_remove : efl_atom_discard;
}

/* The event a trace message makes, 0 for none. A process's own events
 * first: they are nearly all of them. */
static inline unsigned event_kind(ERL_NIF_TERM tag, unsigned role)
{
    if (role == EFL_ROLE_PROCESS || role == EFL_ROLE_SERVER) {
        if (tag == efl_atom_call)
            return EFL_EV_CALL;
        if (tag == efl_atom_return_to)
            return EFL_EV_RETURN_TO;
        if (tag == efl_atom_in || tag == efl_atom_in_exiting)
            return EFL_EV_IN;
        if (tag == efl_atom_out || tag == efl_atom_out_exiting || tag == efl_atom_out_exited)
            return EFL_EV_OUT;
        if (tag == efl_atom_gc_minor_start || tag == efl_atom_gc_major_start)
            return EFL_EV_GC_START;
        if (tag == efl_atom_gc_minor_end || tag == efl_atom_gc_major_end)
            return EFL_EV_GC_END;
        if (tag == efl_atom_spawn)
            return EFL_EV_SPAWN;
        /* A plain request (only those pass the send pattern). */
        if (tag == efl_atom_send)
            return EFL_EV_FOLLOW_CALL;
        if (tag == efl_atom_receive)
            return EFL_EV_RECEIVE;
        return 0;
    }
    if (role == EFL_ROLE_ROOT) {
        if (tag == efl_atom_call)
            return EFL_EV_ROOT_CALL;
        if (tag == efl_atom_return_from)
            return EFL_EV_ROOT_RETURN;
        if (tag == efl_atom_exception_from)
            return EFL_EV_ROOT_EXCEPTION;
        return 0;
    }
    /* erpc's process: the function it ran is over (it exits: OTP 25's
     * execute_call/4 never returns, but a later one might). */
    if (tag == efl_atom_exception_from || tag == efl_atom_return_from)
        return role == EFL_ROLE_FOLLOW_TAKE ? EFL_EV_FOLLOW_END : 0;
    if (tag != efl_atom_call)
        return 0;
    return role == EFL_ROLE_FOLLOW_CALL   ? EFL_EV_FOLLOW_CALL
           : role == EFL_ROLE_FOLLOW_TAKE ? EFL_EV_FOLLOW_TAKE
                                          : 0;
}

/* A send event's receiver: its options' extra, a pid or a registered
 * name (0 for another node's). */
static ERL_NIF_TERM sent_to(ErlNifEnv *env, ERL_NIF_TERM opts)
{
    ERL_NIF_TERM to;
    ErlNifPid pid;
    if (!enif_get_map_value(env, opts, efl_atom_extra, &to))
        return 0;
    if (EFL_RAW_IS_ATOM(to))
        return enif_whereis_pid(env, to, &pid) ? enif_make_pid(env, &pid) : 0;
    return to;
}

/* A followed call's step, which the local match spec of gen's functions
 * tells in a call event's options (eflambe_follow:arm/4): {follow_call,
 * Server} in a caller's gen:do_call/4, {follow_take, Caller} where a
 * server takes a request up, follow_end where it is back in its loop. The
 * kind (0: none) and the process it names. Most call events have no
 * options at all. */
static unsigned follow_step(ErlNifEnv *env, ERL_NIF_TERM opts, ERL_NIF_TERM *other)
{
    size_t size;
    ERL_NIF_TERM result;
    if (!enif_get_map_size(env, opts, &size) || size == 0 ||
        !enif_get_map_value(env, opts, efl_atom_match_spec_result, &result))
        return 0;
    if (result == efl_atom_follow_end) {
        *other = 0;
        return EFL_EV_FOLLOW_END;
    }
    const ERL_NIF_TERM *t;
    int n;
    if (!enif_get_tuple(env, result, &n, &t) || n != 2 || !EFL_RAW_IS_LOCAL_PID(t[1]))
        return 0;
    *other = t[1];
    return t[0] == efl_atom_follow_call   ? EFL_EV_FOLLOW_CALL
           : t[0] == efl_atom_follow_take ? EFL_EV_FOLLOW_TAKE
                                          : 0;
}

/* trace(seq_trace, TracerState, Label, SeqTraceInfo, Opts): a tokened
 * message taken, in its receiver, at the take. */
static ERL_NIF_TERM seq_event(ErlNifEnv *env, unsigned id, const ERL_NIF_TERM argv[])
{
    ERL_NIF_TERM from, to;
    /* capture: only the requests of a captured call's processes. */
    if (argv[0] == efl_atom_seq_trace && efl_nif_follow_taken(env, id, argv[3], &from, &to) &&
        (!efl_tracer.capturing || efl_capture_inside(&efl_tracer.capture, from)))
        record(id, EFL_EV_FOLLOW_TAKE, env, to, 0, from);
    return efl_atom_ok;
}

/* trace(TraceTag, TracerState, Tracee, TraceTerm, Opts) */
ERL_NIF_TERM efl_nif_trace(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[])
{
    (void)argc;
    unsigned id, role;
    if (!efl_nif_decode_state(argv[1], &id, &role) ||
        id != __atomic_load_n(&efl_tracer.active, __ATOMIC_ACQUIRE))
        return efl_atom_ok;
    if (role == EFL_ROLE_FOLLOW_SEQ)
        return seq_event(env, id, argv);
    if (!EFL_RAW_IS_LOCAL_PID(argv[2]))
        return efl_atom_ok;
    int meta = role != EFL_ROLE_PROCESS && role != EFL_ROLE_SERVER;
    unsigned kind = event_kind(argv[0], role);
    /* A call that is also a followed call's step: the call, then the step. */
    ERL_NIF_TERM step_other = 0;
    unsigned step =
        kind == EFL_EV_CALL && efl_tracer.follows ? follow_step(env, argv[4], &step_other) : 0;
    if (efl_tracer.capturing && role == EFL_ROLE_SERVER &&
        !efl_capture_inside(&efl_tracer.capture, argv[2])) {
        /* A server outside the capture joins it where it takes a captured
         * call's request up; nothing else of it counts. */
        if (step != EFL_EV_FOLLOW_TAKE || !efl_capture_inside(&efl_tracer.capture, step_other))
            return efl_atom_ok;
        efl_capture_adopt(&efl_tracer.capture, argv[2]);
    }
    if (kind == 0) {
        if (role == EFL_ROLE_FOLLOW_SPAWN && argv[0] == efl_atom_call)
            efl_nif_follow_note_erpc(env, id, argv[2], argv[3]);
        return efl_atom_ok;
    }
    /* The process a spawn or a followed call names (kinds from SPAWN on). */
    ERL_NIF_TERM other = 0;
    int spawned = 0;
    if (kind >= EFL_EV_SPAWN && kind <= EFL_EV_FOLLOW_END) {
        other = kind == EFL_EV_SPAWN ? argv[3]
                : kind == EFL_EV_FOLLOW_CALL
                    ? (meta ? efl_nif_follow_callee(env, argv[2], argv[3]) : sent_to(env, argv[4]))
                : kind == EFL_EV_FOLLOW_TAKE ? efl_nif_follow_caller(env, id, argv[3], &spawned)
                                             : 0;
        if (efl_event_names_process(kind) && !EFL_RAW_IS_LOCAL_PID(other))
            return efl_atom_ok;
        /* A plain message that names its sender: a request, or an answer. */
        if (kind == EFL_EV_FOLLOW_CALL && !meta &&
            efl_nif_follow_sent(id, argv[2], other) == EFL_MESSAGE_ANSWERED)
            kind = EFL_EV_FOLLOW_END;
    }
    int capturing = efl_tracer.capturing;
    struct efl_capture *capture = &efl_tracer.capture;
    /* A take outside the capture of a captured call's request (erpc's
     * process: its caller's spawn_request noted it, inside): it joins. */
    if (capturing && kind == EFL_EV_FOLLOW_TAKE && !efl_capture_inside(capture, argv[2])) {
        if (!spawned && !efl_capture_inside(capture, other))
            return efl_atom_ok;
        efl_capture_adopt(capture, argv[2]);
    }
    /* apply: the caller's own events before its profiled call (eflambe
     * arming) and after it (disarming) are nobody's business, nor are the
     * modules they name worth reading; only the caller's own thread writes
     * and reads root_started. */
    if (!capturing && argv[2] == (ERL_NIF_TERM)efl_tracer.root_pid &&
        efl_tracer.root_started != 1) {
        if (kind != EFL_EV_ROOT_CALL || efl_tracer.root_started == 2)
            return efl_atom_ok;
        efl_tracer.root_started = 1;
    }
    /* A call `every` passed over is followed to its return, not recorded. */
    if (capturing && meta && efl_capture_skipping(capture, argv[2])) {
        if (kind == EFL_EV_ROOT_RETURN || kind == EFL_EV_ROOT_EXCEPTION)
            efl_capture_leave(capture, argv[2]);
        return efl_atom_ok;
    }
    /* A followed call is dated from enabled/3's question (call_began). */
    uint64_t ts = efl_clock_read(&efl_tracer.clock);
    if (kind == EFL_EV_FOLLOW_CALL && call_began != 0 && call_began <= ts &&
        ts - call_began < 1000000)
        ts = call_began;
    call_began = 0;
    record_at(ts, id, kind, env, argv[2], argv[3], other);
    if (step != 0) {
        record_at(ts, id, step, env, argv[2], 0, step_other);
        /* The server a captured call calls is part of it. */
        if (step == EFL_EV_FOLLOW_CALL && capturing && step_other != argv[2])
            efl_capture_adopt(capture, step_other);
    }
    if (!capturing && (kind == EFL_EV_ROOT_RETURN || kind == EFL_EV_ROOT_EXCEPTION) &&
        argv[2] == (ERL_NIF_TERM)efl_tracer.root_pid)
        efl_tracer.root_started = 2;
    /* A process spawned inside a captured call, or called by one that
     * follows, is part of it (its own events pass the checks). */
    if ((kind == EFL_EV_SPAWN || kind == EFL_EV_FOLLOW_CALL) && capturing && other != argv[2])
        efl_capture_adopt(capture, other);
    /* The end of a captured call is counted even when its event was lost. */
    if (capturing && (kind == EFL_EV_ROOT_RETURN || kind == EFL_EV_ROOT_EXCEPTION) &&
        efl_capture_leave(capture, argv[2]) && efl_tracer.notify)
        enif_send(env, &efl_tracer.notify_pid, NULL, efl_atom_eflambe_capture_done);
    return efl_atom_ok;
}
