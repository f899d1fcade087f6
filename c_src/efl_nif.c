/* The NIF module eflambe_tracer: the erl_tracer callbacks (enabled/3,
 * trace/5) and the session lifecycle (start, stop, fold).
 *
 * The callbacks run on every scheduler thread, normal and dirty, at once.
 * Each thread writes into its own ring (a lazily assigned thread-local
 * slot): no lock, no fence, no allocation, no call into Erlang. A callback
 * that checked `active` just before its session stopped may still push an
 * event afterwards: rings are therefore never freed while the library is
 * loaded, and every event carries its session id so that the next
 * session's flusher discards such leftovers. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <erl_nif.h>

#include "efl_archive.h"
#include "efl_capture.h"
#include "efl_clock.h"
#include "efl_flusher.h"
#include "efl_fold.h"
#include "efl_ring.h"
#include "efl_sites.h"
#include "efl_writer.h"

#define ATOMS(X)                                                        \
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
    X(stopped) X(timeout) X(flusher_idle_ms) X(lost) X(modules) X(max_depth) \
    X(recursion) X(collapse) X(exact) X(calls) X(guessed_calls) X(site_table) \
    X(pairs) X(tail_resolved) X(returns) X(repaired_returns) X(output) X(file)

#define ATOM_DECL(name) static ERL_NIF_TERM atom_##name;
ATOMS(ATOM_DECL)
#undef ATOM_DECL

#define MAX_SLOTS 512
#define SESSION_ID_MAX (1u << 26)

static unsigned next_slot;             /* atomic: slots handed out so far */

/* One ring per thread slot, all of one size (see ensure_rings). */
struct ring_set {
    struct efl_ring *rings;
    size_t count;
    size_t capacity;  /* events each ring's pages can hold */
    struct ring_set *retired_next;
};

/* The running session, published by start_session through `active`. */
static unsigned active;                /* atomic: its id, 0 when none */
static struct ring_set *ring_set;      /* atomic: read after `active` */
static struct ring_set *retired_sets;
static uint64_t root_pid;              /* apply: meta events are kept for this pid only */
static int root_frame;                 /* the meta call's function is a frame */
static int root_started;               /* apply: the root pid's call has begun */
static int capturing;                  /* capture: admission by budget, not root_pid */
static ErlNifPid notify_pid;           /* told of each captured call that ends */
static int notify;

/* Capture admission; the storage outlives sessions, like the rings. */
#define CAPTURE_MAX 65536
static struct efl_capture_entry capture_entries[2 * CAPTURE_MAX];
static struct efl_capture capture = {.entries = capture_entries, .cap = 2 * CAPTURE_MAX, .every = 1};
static struct efl_clock clock_;
static uint64_t lost_no_ring;          /* atomic: events of threads beyond the set */
static uint32_t flusher_sleeping;      /* the flusher's futex word: 1 while it sleeps */

/* Each thread's slot, and its ring in the set it last saw. initial-exec:
 * a plain load, where the default model for a shared object calls
 * __tls_get_addr on every access. */
#define THREAD_LOCAL __thread __attribute__((tls_model("initial-exec")))
static THREAD_LOCAL int thread_slot = -1;
static THREAD_LOCAL struct ring_set *thread_set;
static THREAD_LOCAL struct efl_ring *thread_ring;

struct session {
    unsigned id;
    struct efl_flusher *flusher;
    ErlNifEnv *name_env;  /* for the flusher's atom lookups */
    ErlNifEnv *msg_env;   /* for the flusher's limit message */
};

/* session_lock guards the three below and is never held across file I/O
 * or a thread join (halt_session takes it on a normal scheduler): a start
 * or a stop claims the node under the lock (`changing`), does its I/O
 * without it, and publishes under it. */
static ErlNifMutex *session_lock;
static struct session *session;        /* the recording session, or NULL */
static int changing;                   /* a start or stop is under way */
static unsigned last_id;
static unsigned node_session;          /* atomic: id of the session starting, running or
                                        * stopping, 0 when none (running_session) */
static ErlNifResourceType *output_type; /* a writer's output, lent to a binary */

/* The calling thread's ring, or NULL when the set has none for it. */
static struct efl_ring *my_ring(void)
{
    struct ring_set *set = __atomic_load_n(&ring_set, __ATOMIC_ACQUIRE);
    if (set != thread_set) {
        if (thread_slot < 0)
            thread_slot = (int)__atomic_fetch_add(&next_slot, 1, __ATOMIC_RELAXED);
        thread_set = set;
        thread_ring = set != NULL && (size_t)thread_slot < set->count ? &set->rings[thread_slot]
                                                                       : NULL;
    }
    return thread_ring;
}

/* The callbacks run for every event, so they read immediates by their tags
 * (erts' erl_term.h, 64-bit) instead of calling enif_is_* through the PLT.
 * load() checks each against the enif functions and refuses to load if the
 * VM disagrees. */
#define RAW_IS_SMALL(t) (((t) & 0xF) == 0xF)
#define RAW_SMALL_VALUE(t) ((int64_t)(t) >> 4)
#define RAW_IS_ATOM(t) (((t) & 0x3F) == 0x0B)
#define RAW_IS_LOCAL_PID(t) (((t) & 0xF) == 0x3)

/* Tracer state is a small integer: session id << 1 | is_meta. */
static int decode_state(ERL_NIF_TERM t, unsigned *id, int *meta)
{
    if (!RAW_IS_SMALL(t))
        return 0;
    int64_t v = RAW_SMALL_VALUE(t);
    if (v < 2 || v >= (int64_t)SESSION_ID_MAX * 2)
        return 0;
    *id = (unsigned)(v >> 1);
    *meta = (int)(v & 1);
    return 1;
}

static uint32_t raw_atom(ERL_NIF_TERM t)
{
    return RAW_IS_ATOM(t) && t <= UINT32_MAX ? (uint32_t)t : 0;
}

/* Are the tag checks right for this VM? */
static int raw_checks_hold(ErlNifEnv *env)
{
    ErlNifPid self;
    ERL_NIF_TERM atom = enif_make_atom(env, "eflambe"), small = enif_make_int(env, 12345);
    ERL_NIF_TERM neg = enif_make_int(env, -7), big = enif_make_uint64(env, UINT64_MAX);
    ERL_NIF_TERM tuple = enif_make_tuple2(env, atom, small), pid;
    if (enif_self(env, &self) == NULL)
        return 1; /* loaded outside a process: nothing to check against */
    pid = enif_make_pid(env, &self);
    return RAW_IS_ATOM(atom) && enif_is_atom(env, atom) && !RAW_IS_ATOM(small) &&
           !RAW_IS_ATOM(pid) && RAW_IS_SMALL(small) && RAW_SMALL_VALUE(small) == 12345 &&
           RAW_IS_SMALL(neg) && RAW_SMALL_VALUE(neg) == -7 && !RAW_IS_SMALL(big) &&
           !RAW_IS_SMALL(atom) && !RAW_IS_SMALL(tuple) && RAW_IS_LOCAL_PID(pid) &&
           enif_is_pid(env, pid) && !RAW_IS_LOCAL_PID(atom) && !RAW_IS_LOCAL_PID(small) &&
           !RAW_IS_LOCAL_PID(tuple);
}

/* {M, F, Arity} or {M, F, Args}: fills mod/fun/arity, or leaves them 0. */
static void read_mfa(ErlNifEnv *env, ERL_NIF_TERM t, struct efl_event *e)
{
    const ERL_NIF_TERM *mfa;
    int n;
    if (!enif_get_tuple(env, t, &n, &mfa) || n != 3)
        return;
    unsigned arity;
    if (RAW_IS_SMALL(mfa[2]) && RAW_SMALL_VALUE(mfa[2]) >= 0)
        arity = (unsigned)RAW_SMALL_VALUE(mfa[2]);
    else if (!enif_get_list_length(env, mfa[2], &arity))
        return;
    e->mod = raw_atom(mfa[0]);
    e->fun = raw_atom(mfa[1]);
    e->arity = (uint8_t)(arity > 255 ? 255 : arity);
    if (e->mod == 0 || e->fun == 0)
        e->mod = e->fun = 0;
}

/* enabled(TraceTag, TracerState, Tracee)
 *
 * For apply, the process tracer traces everything and the meta tracer only
 * the caller. For capture, the meta check of a call admits it (or not)
 * before the match spec's trace action switches tracing on in the caller
 * (an outermost call that `every` passes over is let through as well, so
 * that its return is seen; trace/5 records nothing of it);
 * afterwards the process tracer answers `remove` at the process's first
 * trace_status check outside a captured call, which clears its flags. */
static ERL_NIF_TERM nif_enabled(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[])
{
    (void)env;
    (void)argc;
    unsigned id;
    int meta;
    if (!decode_state(argv[1], &id, &meta) || id != __atomic_load_n(&active, __ATOMIC_ACQUIRE))
        return atom_remove;
    ERL_NIF_TERM tag = argv[0], pid = argv[2];
    if (!capturing) {
        if (meta && pid != (ERL_NIF_TERM)root_pid)
            return atom_discard;
        return atom_trace;
    }
    if (!RAW_IS_LOCAL_PID(pid))
        return atom_discard;
    if (meta) {
        if (tag == atom_call)
            /* A skipped call is traced too: its return ends the skip. */
            return efl_capture_enter(&capture, pid) != EFL_CAPTURE_DISCARD ? atom_trace : atom_discard;
        if (tag == atom_trace_status)
            return efl_capture_armed(&capture) ? atom_trace : atom_remove;
        return atom_trace;
    }
    if (efl_capture_inside(&capture, pid))
        /* Of the `procs' events only spawn is used. */
        return tag == atom_exit || tag == atom_link || tag == atom_unlink || tag == atom_spawned ||
                       tag == atom_getting_linked || tag == atom_getting_unlinked ||
                       tag == atom_register || tag == atom_unregister
                   ? atom_discard
                   : atom_trace;
    return tag == atom_trace_status ? atom_remove : atom_discard;
}

static unsigned event_kind(ERL_NIF_TERM tag, int meta)
{
    if (meta) {
        if (tag == atom_call)
            return EFL_EV_ROOT_CALL;
        if (tag == atom_return_from)
            return EFL_EV_ROOT_RETURN;
        if (tag == atom_exception_from)
            return EFL_EV_ROOT_EXCEPTION;
        return 0;
    }
    if (tag == atom_call)
        return EFL_EV_CALL;
    if (tag == atom_return_to)
        return EFL_EV_RETURN_TO;
    if (tag == atom_in || tag == atom_in_exiting)
        return EFL_EV_IN;
    if (tag == atom_out || tag == atom_out_exiting || tag == atom_out_exited)
        return EFL_EV_OUT;
    if (tag == atom_gc_minor_start || tag == atom_gc_major_start)
        return EFL_EV_GC_START;
    if (tag == atom_gc_minor_end || tag == atom_gc_major_end)
        return EFL_EV_GC_END;
    if (tag == atom_spawn)
        return EFL_EV_SPAWN;
    return 0;
}

/* Writes one event into the calling thread's ring. */
static void record(unsigned id, unsigned kind, ErlNifEnv *env, const ERL_NIF_TERM argv[])
{
    uint64_t ts = efl_clock_read(&clock_);
    struct efl_ring *ring = my_ring();
    if (ring == NULL) {
        __atomic_fetch_add(&lost_no_ring, 1, __ATOMIC_RELAXED);
        return;
    }
    struct efl_event *e = NULL;
    if (efl_ring_report_losses(ring, ts, id))
        e = efl_ring_reserve(ring);
    if (e == NULL) {
        efl_ring_lose(ring, argv[2]);
        return;
    }
    e->ts = ts;
    e->pid = argv[2];
    e->mod = e->fun = 0;
    e->kind = (uint8_t)kind;
    e->arity = 0;
    e->session = id;
    if (kind == EFL_EV_SPAWN) {
        e->mod = (uint32_t)argv[3];
        e->fun = (uint32_t)((uint64_t)argv[3] >> 32);
    } else if (kind != EFL_EV_GC_START && kind != EFL_EV_GC_END &&
               (kind != EFL_EV_ROOT_CALL || root_frame)) {
        read_mfa(env, argv[3], e);
    }
    efl_ring_commit(ring);
    /* A burst does not wait for the flusher's sleep to end. */
    if (__atomic_load_n(&flusher_sleeping, __ATOMIC_RELAXED) && efl_ring_filling(ring))
        efl_flusher_wake(&flusher_sleeping);
}

/* ---- sampling ------------------------------------------------------- */

/* Writes one event of process pid with an MFA (mod 0: none) at ts. */
static int write_event(struct efl_ring *ring, unsigned id, uint64_t ts, ERL_NIF_TERM pid,
                       unsigned kind, uint32_t mod, uint32_t fun, unsigned arity)
{
    struct efl_event *e = NULL;
    if (efl_ring_report_losses(ring, ts, id))
        e = efl_ring_reserve(ring);
    if (e == NULL) {
        efl_ring_lose(ring, pid);
        return 0;
    }
    *e = (struct efl_event){.ts = ts, .pid = pid, .mod = mod, .fun = fun, .kind = (uint8_t)kind,
                            .arity = (uint8_t)(arity > 255 ? 255 : arity), .session = id};
    efl_ring_commit(ring);
    return 1;
}

/* The frames of a stack trace, leaf first: [{M, F, Arity | Args, Location}]. */
static int stack_frame(ErlNifEnv *env, ERL_NIF_TERM t, uint32_t *mod, uint32_t *fun, unsigned *arity)
{
    const ERL_NIF_TERM *f;
    int n;
    if (!enif_get_tuple(env, t, &n, &f) || n != 4)
        return 0;
    *mod = raw_atom(f[0]);
    *fun = raw_atom(f[1]);
    if (!enif_get_uint(env, f[2], arity) && !enif_get_list_length(env, f[2], arity))
        return 0;
    return *mod != 0 && *fun != 0;
}

#define SAMPLE_DEPTH_MAX 256

/* record_samples(TracerState, [{Pid, StackTrace}], PeriodNs) -> ok
 *
 * One tick of the sampler: each process had that stack for the period
 * that just ended. Written as plain events, so the folder needs nothing
 * new: at the period's start a reset (return to nothing) and the calls from
 * the root to the leaf, at its end a return to nothing. All starts come
 * before all ends, so the ring stays in time order. */
static ERL_NIF_TERM nif_record_samples(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[])
{
    (void)argc;
    unsigned id;
    int meta;
    ErlNifUInt64 period_ns;
    if (!decode_state(argv[0], &id, &meta) || meta || !enif_is_list(env, argv[1]) ||
        !enif_get_uint64(env, argv[2], &period_ns))
        return enif_make_badarg(env);
    if (id != __atomic_load_n(&active, __ATOMIC_ACQUIRE))
        return enif_make_tuple2(env, atom_error, atom_not_running);
    struct efl_ring *ring = my_ring();
    if (ring == NULL)
        return atom_ok;
    uint64_t end = efl_clock_read(&clock_);
    uint64_t ticks = efl_clock_ticks(&clock_, period_ns);
    uint64_t start = end > ticks ? end - ticks : 0;
    for (int pass = 0; pass < 2; pass++) {
        ERL_NIF_TERM list = argv[1], head;
        while (enif_get_list_cell(env, list, &head, &list)) {
            const ERL_NIF_TERM *sample;
            int n;
            if (!enif_get_tuple(env, head, &n, &sample) || n != 2 || !RAW_IS_LOCAL_PID(sample[0]))
                continue;
            if (pass == 1) {
                write_event(ring, id, end, sample[0], EFL_EV_RETURN_TO, 0, 0, 0);
                continue;
            }
            ERL_NIF_TERM frames[SAMPLE_DEPTH_MAX], frame, rest = sample[1];
            unsigned depth = 0;
            while (depth < SAMPLE_DEPTH_MAX && enif_get_list_cell(env, rest, &frame, &rest))
                frames[depth++] = frame;
            write_event(ring, id, start, sample[0], EFL_EV_RETURN_TO, 0, 0, 0);
            for (unsigned i = depth; i-- > 0;) {
                uint32_t mod, fun;
                unsigned arity;
                if (stack_frame(env, frames[i], &mod, &fun, &arity))
                    write_event(ring, id, start, sample[0], EFL_EV_CALL, mod, fun, arity);
            }
        }
    }
    return atom_ok;
}

/* trace(TraceTag, TracerState, Tracee, TraceTerm, Opts) */
static ERL_NIF_TERM nif_trace(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[])
{
    (void)argc;
    unsigned id;
    int meta;
    if (!decode_state(argv[1], &id, &meta) || id != __atomic_load_n(&active, __ATOMIC_ACQUIRE) ||
        !RAW_IS_LOCAL_PID(argv[2]))
        return atom_ok;
    unsigned kind = event_kind(argv[0], meta);
    if (kind == 0 || (kind == EFL_EV_SPAWN && !RAW_IS_LOCAL_PID(argv[3])))
        return atom_ok;
    /* apply: the caller's own events before its profiled call (eflambe
     * arming) are nobody's business; only the callers' own thread writes
     * and reads root_started. */
    if (!capturing && argv[2] == (ERL_NIF_TERM)root_pid && !root_started) {
        if (kind != EFL_EV_ROOT_CALL)
            return atom_ok;
        root_started = 1;
    }
    /* A call `every` passed over is followed to its return, not recorded. */
    if (capturing && meta && efl_capture_skipping(&capture, argv[2])) {
        if (kind == EFL_EV_ROOT_RETURN || kind == EFL_EV_ROOT_EXCEPTION)
            efl_capture_leave(&capture, argv[2]);
        return atom_ok;
    }
    record(id, kind, env, argv);
    if (kind == EFL_EV_SPAWN && capturing)
        efl_capture_adopt(&capture, argv[3]);
    /* The end of a captured call is counted even when its event was lost. */
    if (capturing && (kind == EFL_EV_ROOT_RETURN || kind == EFL_EV_ROOT_EXCEPTION) &&
        efl_capture_leave(&capture, argv[2]) && notify)
        enif_send(env, &notify_pid, NULL, atom_eflambe_capture_done);
    return atom_ok;
}

/* ---- names, on the flusher thread ---------------------------------- */

static size_t name_atom(void *ctx, uint32_t raw, char *buf, size_t cap)
{
    struct session *s = ctx;
    int n = enif_get_atom(s->name_env, (ERL_NIF_TERM)raw, buf, (unsigned)cap, ERL_NIF_LATIN1);
    if (n > 0)
        return (size_t)n - 1;
    /* Not Latin-1 (or too long): let the VM print it. */
    n = enif_snprintf(buf, cap, "%T", (ERL_NIF_TERM)raw);
    return n > 0 ? ((size_t)n < cap ? (size_t)n : cap - 1) : 0;
}

static size_t name_pid(void *ctx, uint64_t raw, char *buf, size_t cap)
{
    (void)ctx;
    int n = enif_snprintf(buf, cap, "%T", (ERL_NIF_TERM)raw);
    return n > 0 ? ((size_t)n < cap ? (size_t)n : cap - 1) : 0;
}

/* ---- session -------------------------------------------------------- */

/* On the flusher thread, once, when a run reaches max_events or
 * max_bytes: recording stops at once everywhere (the callbacks answer
 * `remove` from now on), and the run's owner is told to disarm. */
static void on_limit(void *ctx, unsigned reason)
{
    struct session *s = ctx;
    unsigned id = s->id;
    __atomic_compare_exchange_n(&active, &id, 0, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
    if (!notify)
        return;
    ERL_NIF_TERM msg = enif_make_tuple2(s->msg_env, atom_eflambe_limit,
                                        enif_make_atom(s->msg_env, efl_stop_reason_name(reason)));
    enif_send(NULL, &notify_pid, s->msg_env, msg);
    enif_clear_env(s->msg_env);
}

static ERL_NIF_TERM errno_atom(ErlNifEnv *env, int e);

static ERL_NIF_TERM error_tuple(ErlNifEnv *env, efl_status s, ERL_NIF_TERM detail)
{
    return enif_make_tuple2(env, atom_error,
                            enif_make_tuple2(env, enif_make_atom(env, efl_status_atom(s)), detail));
}

static char *binary_to_cstr(ErlNifEnv *env, ERL_NIF_TERM t)
{
    ErlNifBinary bin;
    if (!enif_inspect_iolist_as_binary(env, t, &bin) || memchr(bin.data, 0, bin.size))
        return NULL;
    char *s = malloc(bin.size + 1);
    if (s) {
        memcpy(s, bin.data, bin.size);
        s[bin.size] = 0;
    }
    return s;
}

static void free_set(struct ring_set *set)
{
    for (size_t i = 0; i < set->count; i++)
        efl_ring_destroy(&set->rings[i]);
    free(set->rings);
    free(set);
}

/* Reuses the current ring set when it has room, each ring resized to
 * `events`; else replaces it with one as large as both. A late callback of
 * an earlier session may still hold a replaced set (nothing tells when it
 * is done), so it is retired, its pages given back, not unmapped until
 * unload; as sets only grow, at most one is retired per doubling. Called by
 * the one starter, with no session running. */
static efl_status ensure_rings(size_t count, size_t events)
{
    struct ring_set *cur = ring_set;
    if (cur != NULL && cur->count >= count && cur->capacity >= events) {
        for (size_t i = 0; i < cur->count; i++)
            efl_ring_resize(&cur->rings[i], events);
        return EFL_OK;
    }
    size_t capacity = cur != NULL && cur->capacity > events ? cur->capacity : events;
    if (cur != NULL && cur->count > count)
        count = cur->count;
    struct ring_set *set = calloc(1, sizeof *set);
    EFL_RETURN_ERROR_IF(set == NULL, EFL_ERR_NOMEM);
    set->capacity = capacity;
    set->rings = calloc(count, sizeof *set->rings);
    for (; set->rings != NULL && set->count < count; set->count++) {
        if (!efl_ring_init(&set->rings[set->count], capacity))
            break;
        efl_ring_resize(&set->rings[set->count], events);
    }
    if (set->rings == NULL || set->count < count) {
        free_set(set);
        return EFL_ERR_NOMEM;
    }
    if (cur != NULL) {
        cur->retired_next = retired_sets;
        retired_sets = cur;
    }
    __atomic_store_n(&ring_set, set, __ATOMIC_RELEASE);
    return EFL_OK;
}

struct start_args {
    char *archive, *meta;
    unsigned long ring_events;
    unsigned threads;
    ERL_NIF_TERM root_pid;   /* or 0 */
    int root_frame;
    int capture;
    unsigned budget, every;
    int have_notify;
    ErlNifPid notify;
    uint64_t max_events, max_bytes;
    unsigned flusher_idle_ms;
};

static int map_get(ErlNifEnv *env, ERL_NIF_TERM map, ERL_NIF_TERM key, ERL_NIF_TERM *value)
{
    return enif_get_map_value(env, map, key, value);
}

/* Reads start_session's map; 0 for any missing or ill-typed field. */
static int parse_start(ErlNifEnv *env, ERL_NIF_TERM map, struct start_args *a)
{
    ERL_NIF_TERM v;
    ErlNifPid pid;
    memset(a, 0, sizeof *a);
    a->every = 1;
    if (!enif_is_map(env, map))
        return 0;
    if (!map_get(env, map, atom_archive, &v) || (a->archive = binary_to_cstr(env, v)) == NULL)
        return 0;
    if (!map_get(env, map, atom_meta, &v) || (a->meta = binary_to_cstr(env, v)) == NULL)
        return 0;
    if (!map_get(env, map, atom_ring_events, &v) || !enif_get_ulong(env, v, &a->ring_events) ||
        a->ring_events < 2 || a->ring_events > (1ul << 26))
        return 0;
    if (!map_get(env, map, atom_threads, &v) || !enif_get_uint(env, v, &a->threads) ||
        a->threads < 1 || a->threads > MAX_SLOTS)
        return 0;
    if (map_get(env, map, atom_root_pid, &v) && v != atom_undefined) {
        if (!enif_get_local_pid(env, v, &pid))
            return 0;
        a->root_pid = v;
    }
    if (map_get(env, map, atom_root_frame, &v))
        a->root_frame = v == atom_true;
    if (map_get(env, map, atom_budget, &v) && v != atom_undefined) {
        if (!enif_get_uint(env, v, &a->budget) || a->budget < 1 || a->budget > CAPTURE_MAX)
            return 0;
        a->capture = 1;
    }
    if (map_get(env, map, atom_every, &v) && (!enif_get_uint(env, v, &a->every) || a->every < 1))
        return 0;
    if (map_get(env, map, atom_notify, &v) && v != atom_undefined) {
        if (!enif_get_local_pid(env, v, &a->notify))
            return 0;
        a->have_notify = 1;
    }
    ErlNifUInt64 n;
    if (map_get(env, map, atom_max_events, &v)) {
        if (!enif_get_uint64(env, v, &n))
            return 0;
        a->max_events = n;
    }
    if (map_get(env, map, atom_max_bytes, &v)) {
        if (!enif_get_uint64(env, v, &n))
            return 0;
        a->max_bytes = n;
    }
    if (map_get(env, map, atom_flusher_idle_ms, &v) &&
        (!enif_get_uint(env, v, &a->flusher_idle_ms) || a->flusher_idle_ms > 1000))
        return 0;
    return 1;
}

/* start_session(#{archive, ring_events, threads, meta, root_pid, root_frame,
 *                 budget, every, notify}) ->
 *     {ok, TracerState, MetaTracerState} | {error, already_running} | {error, {Atom, Path}}
 *
 * threads: how many threads may call a callback (normal and dirty
 * schedulers, and a few spare); each gets a ring of ring_events.
 * root_pid (apply): meta events are kept for that process only.
 * root_frame: the meta-traced function is shown as the root frame.
 * budget (capture): how many calls of the meta-traced function to admit,
 * one in `every`; `notify` gets eflambe_capture_done as each one ends.
 * max_events, max_bytes: limits of the run; `notify` gets
 * {eflambe_limit, max_events | max_bytes} when one is reached.
 * flusher_idle_ms: how long the flusher may sleep while idle (events that
 * come slowly, as samples do). */
static ERL_NIF_TERM nif_start_session(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[])
{
    (void)argc;
    struct start_args a;
    if (!parse_start(env, argv[0], &a)) {
        free(a.archive);
        free(a.meta);
        return enif_make_badarg(env);
    }
    enif_mutex_lock(session_lock);
    int busy = session != NULL || changing;
    unsigned id = last_id + 1 >= SESSION_ID_MAX ? 1 : last_id + 1;
    if (!busy) {
        changing = 1;
        last_id = id;
        __atomic_store_n(&node_session, id, __ATOMIC_RELEASE);
    }
    enif_mutex_unlock(session_lock);
    if (busy) {
        free(a.archive);
        free(a.meta);
        return enif_make_tuple2(env, atom_error, atom_already_running);
    }

    /* The node is ours: the rings, the archive and the flusher are set up
     * without the lock. */
    struct session *s = calloc(1, sizeof *s);
    efl_status st = s ? EFL_OK : EFL_ERR_NOMEM;
    if (st == EFL_OK && ((s->name_env = enif_alloc_env()) == NULL ||
                         (s->msg_env = enif_alloc_env()) == NULL))
        st = EFL_ERR_NOMEM;
    if (st == EFL_OK)
        st = ensure_rings(a.threads, a.ring_events);
    struct efl_archive_writer *writer = NULL;
    struct efl_namer namer = {s, name_atom, name_pid};
    if (st == EFL_OK)
        st = efl_archive_writer_open(&writer, a.archive, a.meta, &namer);
    if (st == EFL_OK) {
        s->id = id;
        /* The flusher takes its copy of the clock: a fresh base first. The
         * callbacks may read notify as soon as the flusher runs. */
        efl_clock_rebase(&clock_);
        notify = a.have_notify;
        notify_pid = a.notify;
        struct efl_flush_limits limits = {a.max_events, a.max_bytes,
                                          (long)a.flusher_idle_ms * 1000000L, on_limit, s,
                                          &flusher_sleeping};
        st = efl_flusher_start(&s->flusher, ring_set->rings, ring_set->count, id, &clock_, &limits,
                               writer);
        if (st != EFL_OK)
            efl_archive_writer_abort(writer);
    }
    ERL_NIF_TERM result;
    enif_mutex_lock(session_lock);
    if (st != EFL_OK) {
        if (s && s->name_env)
            enif_free_env(s->name_env);
        if (s && s->msg_env)
            enif_free_env(s->msg_env);
        free(s);
        __atomic_store_n(&node_session, 0, __ATOMIC_RELEASE);
        result = error_tuple(env, st, enif_make_string(env, a.archive, ERL_NIF_LATIN1));
    } else {
        session = s;
        root_pid = a.root_pid;
        root_frame = a.root_frame;
        root_started = 0;
        capturing = a.capture;
        if (capturing)
            efl_capture_start(&capture, id, a.budget, a.every);
        __atomic_store_n(&lost_no_ring, 0, __ATOMIC_RELAXED);
        /* Publishes all of the above to the callbacks. */
        __atomic_store_n(&active, id, __ATOMIC_SEQ_CST);
        result = enif_make_tuple3(env, atom_ok, enif_make_int(env, (int)(id << 1)),
                                  enif_make_int(env, (int)(id << 1 | 1)));
    }
    changing = 0;
    enif_mutex_unlock(session_lock);
    free(a.archive);
    free(a.meta);
    return result;
}

/* Stops recording, then the flusher (which writes the archive's end);
 * frees the session. Called by its one stopper, without the lock. */
static void end_session(struct session *s, struct efl_flush_stats *st, uint64_t *lost)
{
    efl_flusher_stop(s->flusher, st);
    *lost = __atomic_load_n(&lost_no_ring, __ATOMIC_RELAXED);
    for (size_t i = 0; i < ring_set->count; i++)
        efl_ring_release_pages(&ring_set->rings[i]);
    enif_free_env(s->name_env);
    enif_free_env(s->msg_env);
    free(s);
}

/* running_session() -> TracerState | undefined
 * The session that holds the node (starting, running or stopping); no
 * lock, so it never waits for a start or stop. */
static ERL_NIF_TERM nif_running_session(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[])
{
    (void)argc;
    (void)argv;
    unsigned id = __atomic_load_n(&node_session, __ATOMIC_ACQUIRE);
    return id ? enif_make_int(env, (int)(id << 1)) : atom_undefined;
}

/* stop_session(TracerState) -> {ok, #{events, dropped, bytes}} | {error, not_running}
 *                            | {error, {Atom, _}}
 * Stops that session only: a late stop never ends a newer one. */
static ERL_NIF_TERM nif_stop_session(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[])
{
    (void)argc;
    unsigned id;
    int meta;
    if (!decode_state(argv[0], &id, &meta) || meta)
        return enif_make_badarg(env);
    enif_mutex_lock(session_lock);
    struct session *s = session;
    if (s == NULL || s->id != id) {
        enif_mutex_unlock(session_lock);
        return enif_make_tuple2(env, atom_error, atom_not_running);
    }
    __atomic_store_n(&active, 0, __ATOMIC_SEQ_CST);
    session = NULL;
    changing = 1;
    enif_mutex_unlock(session_lock);

    struct efl_flush_stats st;
    uint64_t lost;
    end_session(s, &st, &lost);
    enif_mutex_lock(session_lock);
    changing = 0;
    __atomic_store_n(&node_session, 0, __ATOMIC_RELEASE);
    enif_mutex_unlock(session_lock);
    /* Atoms are immediates, valid in any environment. */
    ERL_NIF_TERM modules = enif_make_list(env, 0);
    for (size_t i = st.nmodules; i-- > 0;)
        modules = enif_make_list_cell(env, (ERL_NIF_TERM)st.modules[i], modules);
    free(st.modules);
    if (st.status != EFL_OK)
        return error_tuple(env, st.status, st.error ? errno_atom(env, st.error) : atom_undefined);
    ERL_NIF_TERM keys[] = {atom_events, atom_dropped, atom_bytes, atom_stopped, atom_modules};
    ERL_NIF_TERM vals[] = {enif_make_uint64(env, st.events), enif_make_uint64(env, st.drops + lost),
                           enif_make_uint64(env, st.bytes),
                           enif_make_atom(env, efl_stop_reason_name(st.stopped)), modules};
    ERL_NIF_TERM map;
    enif_make_map_from_arrays(env, keys, vals, 5, &map);
    return enif_make_tuple2(env, atom_ok, map);
}

/* halt_session(TracerState, timeout | stopped) -> ok | {error, not_running}
 * Stops recording now (the session stays open until stop_session) and
 * notes why in the archive. */
static ERL_NIF_TERM nif_halt_session(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[])
{
    (void)argc;
    unsigned id;
    int meta;
    unsigned reason = argv[1] == atom_timeout ? EFL_STOP_TIMEOUT
                      : argv[1] == atom_stopped ? EFL_STOP_STOPPED
                                                : EFL_STOP_NONE;
    if (!decode_state(argv[0], &id, &meta) || meta || reason == EFL_STOP_NONE)
        return enif_make_badarg(env);
    ERL_NIF_TERM result = enif_make_tuple2(env, atom_error, atom_not_running);
    enif_mutex_lock(session_lock);
    if (session != NULL && session->id == id) {
        __atomic_compare_exchange_n(&active, &id, 0, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
        efl_flusher_note_stop(session->flusher, reason);
        result = atom_ok;
    }
    enif_mutex_unlock(session_lock);
    return result;
}

static ERL_NIF_TERM make_binary(ErlNifEnv *env, const struct efl_buf *b)
{
    ERL_NIF_TERM t;
    unsigned char *d = enif_make_new_binary(env, b->len, &t);
    if (b->len)
        memcpy(d, b->data, b->len);
    return t;
}

/* A writer's output, handed to Erlang without a copy: the binary points
 * into the buffer, which the resource frees when the binary is gone. */
struct output {
    struct efl_buf buf;
};

static void output_free(ErlNifEnv *env, void *obj)
{
    (void)env;
    efl_buf_free(&((struct output *)obj)->buf);
}

static ERL_NIF_TERM take_binary(ErlNifEnv *env, struct efl_buf *b)
{
    struct output *o = enif_alloc_resource(output_type, sizeof *o);
    if (o == NULL)
        return make_binary(env, b);
    o->buf = *b;
    *b = (struct efl_buf){0};
    ERL_NIF_TERM bin = enif_make_resource_binary(env, o, o->buf.data ? o->buf.data : (void *)"",
                                                 o->buf.len);
    enif_release_resource(o);
    return bin;
}

static efl_status collect_meta(void *ctx, const char *line, size_t len)
{
    EFL_FORWARD_IF_ERROR(efl_buf_append(ctx, line, len));
    return efl_buf_append(ctx, "\n", 1);
}

/* archive_header(ArchivePath) -> {ok, MetaLines :: binary()} | {error, {Atom, Path}} */
static ERL_NIF_TERM nif_archive_header(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[])
{
    (void)argc;
    char *path = binary_to_cstr(env, argv[0]);
    if (path == NULL)
        return enif_make_badarg(env);
    struct efl_buf meta = {0};
    struct efl_archive_visitor v = {.ctx = &meta, .meta = collect_meta};
    struct efl_archive_summary sum;
    efl_status st = efl_archive_read_header(path, &v, &sum);
    free(path);
    ERL_NIF_TERM result = st == EFL_OK ? enif_make_tuple2(env, atom_ok, make_binary(env, &meta))
                                       : error_tuple(env, st, argv[0]);
    efl_buf_free(&meta);
    return result;
}


static ERL_NIF_TERM fold_info(ErlNifEnv *env, const struct efl_profile *p, const struct efl_writer *w)
{
    const char *meta = p->meta ? p->meta : "";
    ERL_NIF_TERM meta_bin;
    memcpy(enif_make_new_binary(env, strlen(meta), &meta_bin), meta, strlen(meta));
    ERL_NIF_TERM keys[] = {atom_events, atom_dropped, atom_total_us, atom_truncated,
                           atom_cut_frames, atom_extension, atom_meta, atom_stopped,
                           atom_calls, atom_guessed_calls, atom_site_table, atom_tail_resolved,
                           atom_returns, atom_repaired_returns};
    ERL_NIF_TERM vals[] = {enif_make_uint64(env, p->events), enif_make_uint64(env, p->drops),
                           enif_make_uint64(env, efl_ns_to_us(p->total_ns)),
                           p->truncated ? atom_true : atom_false,
                           enif_make_uint64(env, p->cut_frames),
                           enif_make_string(env, w->extension, ERL_NIF_LATIN1), meta_bin,
                           enif_make_atom(env, efl_stop_reason_name(p->stopped)),
                           enif_make_uint64(env, p->calls), enif_make_uint64(env, p->guessed_calls),
                           p->have_sites ? atom_true : atom_false,
                           enif_make_uint64(env, p->tail_resolved), enif_make_uint64(env, p->returns),
                           enif_make_uint64(env, p->repaired_returns)};
    ERL_NIF_TERM info;
    enif_make_map_from_arrays(env, keys, vals, 14, &info);
    return info;
}

/* One map per profiled call: #{pid, ended, start_us, end_us, data}. */
static efl_status fold_windows(ErlNifEnv *env, const struct efl_profile *p,
                               const struct efl_writer *w, ERL_NIF_TERM *list)
{
    *list = enif_make_list(env, 0);
    for (uint32_t i = p->nwindows; i-- > 0;) {
        const struct efl_window *win = &p->windows[i];
        struct efl_buf out = {0};
        efl_status st = w->write(p, win->node, &out);
        if (st != EFL_OK) {
            efl_buf_free(&out);
            return st;
        }
        const char *pid = p->processes[win->pid];
        ERL_NIF_TERM keys[] = {atom_pid, atom_ended, atom_start_us, atom_end_us, atom_data};
        ERL_NIF_TERM vals[] = {
            enif_make_string(env, pid, ERL_NIF_LATIN1),
            win->ended == EFL_EV_ROOT_RETURN      ? atom_return_from
            : win->ended == EFL_EV_ROOT_EXCEPTION ? atom_exception_from
            : win->ended == EFL_EV_LOST           ? atom_lost
                                                  : atom_open,
            enif_make_uint64(env, win->start_ns / 1000), enif_make_uint64(env, win->end_ns / 1000),
            take_binary(env, &out)};
        efl_buf_free(&out);
        ERL_NIF_TERM map;
        enif_make_map_from_arrays(env, keys, vals, 5, &map);
        *list = enif_make_list_cell(env, map, *list);
    }
    return EFL_OK;
}

/* The POSIX name Erlang's file module gives an errno, for the errors a
 * file being created and written can meet; io_error for the rest. */
static ERL_NIF_TERM errno_atom(ErlNifEnv *env, int e)
{
    switch (e) {
    case EEXIST: return enif_make_atom(env, "eexist");
    case ENOSPC: return enif_make_atom(env, "enospc");
    case EDQUOT: return enif_make_atom(env, "edquot");
    case EACCES: return enif_make_atom(env, "eacces");
    case EROFS: return enif_make_atom(env, "erofs");
    case ELOOP: return enif_make_atom(env, "eloop");
    case ENOENT: return enif_make_atom(env, "enoent");
    case EIO: return enif_make_atom(env, "eio");
    case EFBIG: return enif_make_atom(env, "efbig");
    default: return enif_make_atom(env, "io_error");
    }
}

/* Writes the whole profile with w, into out or, with a path, streamed into
 * a new file there (removed again if writing fails; *err: errno then). */
static efl_status write_output(const struct efl_profile *p, const struct efl_writer *w,
                               const char *path, struct efl_buf *out, int *err)
{
    if (path == NULL)
        return w->write(p, 0, out);
    errno = 0;
    out->sink = efl_buf_create_file(path, 0644);
    *err = errno;
    EFL_RETURN_ERROR_IF(out->sink == NULL, EFL_ERR_IO);
    efl_status s = w->write(p, 0, out);
    if (s == EFL_OK)
        s = efl_buf_spill(out, 1);
    *err = errno;
    if (fclose(out->sink) != 0 && s == EFL_OK) {
        s = EFL_ERR_IO;
        *err = errno;
    }
    out->sink = NULL;
    if (s != EFL_OK)
        unlink(path);
    return s;
}

/* fold(ArchivePath, Format, Split, #{max_depth, recursion, output}) -> {ok, Data | [Window], Info}
 *                                                                     | {error, {Atom, Detail}}
 * Split: false for one flamegraph of everything, true for one per profiled
 * call (a window), in the order the calls began. max_depth: stacks are cut
 * at that many functions below the process; recursion: exact | collapse;
 * output (optional, not with Split): a file to create and stream the
 * flamegraph into, Data then {file, Path}; if it cannot be created or
 * written, {error, {output, Posix}} (eexist: the name is taken). */
static ERL_NIF_TERM nif_fold(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[])
{
    (void)argc;
    char format[64];
    unsigned max_depth;
    ERL_NIF_TERM depth_term, recursion;
    char *path = binary_to_cstr(env, argv[0]);
    if (path == NULL || enif_get_atom(env, argv[1], format, sizeof format, ERL_NIF_LATIN1) <= 0 ||
        (argv[2] != atom_true && argv[2] != atom_false) ||
        !enif_get_map_value(env, argv[3], atom_max_depth, &depth_term) ||
        !enif_get_uint(env, depth_term, &max_depth) ||
        !enif_get_map_value(env, argv[3], atom_recursion, &recursion) ||
        (recursion != atom_exact && recursion != atom_collapse) ||
        max_depth < 1 || max_depth > EFL_FOLD_MAX_DEPTH) {
        free(path);
        return enif_make_badarg(env);
    }
    ERL_NIF_TERM output_term;
    char *output = NULL;
    if (enif_get_map_value(env, argv[3], atom_output, &output_term) &&
        (argv[2] == atom_true || (output = binary_to_cstr(env, output_term)) == NULL)) {
        free(path);
        return enif_make_badarg(env);
    }
    const struct efl_writer *w = efl_writer_find(format);
    if (w == NULL) {
        free(path);
        free(output);
        return enif_make_tuple2(env, atom_error, enif_make_tuple2(env, atom_unknown_format, argv[1]));
    }
    struct efl_profile *p = NULL;
    struct efl_buf out = {0};
    ERL_NIF_TERM data = 0;
    int err = 0;
    struct efl_fold_opts opts = {.timeline = w->needs_timeline, .max_depth = max_depth,
                                 .collapse_recursion = recursion == atom_collapse};
    efl_status st = efl_fold_archive(path, &opts, &p);
    free(path);
    if (st == EFL_OK && argv[2] == atom_true) {
        st = fold_windows(env, p, w, &data);
    } else if (st == EFL_OK && (st = write_output(p, w, output, &out, &err)) == EFL_OK) {
        data = output ? enif_make_tuple2(env, atom_file, output_term) : take_binary(env, &out);
    } else if (st != EFL_OK && output != NULL && p != NULL) {
        /* The archive folded; the output could not be written. */
        free(output);
        efl_profile_free(p);
        efl_buf_free(&out);
        return enif_make_tuple2(env, atom_error, enif_make_tuple2(env, atom_output, errno_atom(env, err)));
    }
    free(output);
    ERL_NIF_TERM result = st == EFL_OK ? enif_make_tuple3(env, atom_ok, data, fold_info(env, p, w))
                                       : error_tuple(env, st, argv[0]);
    efl_profile_free(p);
    efl_buf_free(&out);
    return result;
}

/* add_call_sites(ArchivePath, [{Module, Beam}], [{M, F, A}]) -> {ok, #{modules, pairs}}
 *                                                        | {error, {Atom, Detail}}
 * Reads the call sites of each module's code and appends them to a closed
 * archive as its site table; the third list names the BIFs among the
 * functions they call. A module whose code cannot be read is left out
 * (its calls are then told apart by the trace alone). */
static ERL_NIF_TERM nif_add_call_sites(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[])
{
    (void)argc;
    char *path = binary_to_cstr(env, argv[0]);
    struct efl_sites *t = NULL;
    if (path == NULL || !enif_is_list(env, argv[1]) || !enif_is_list(env, argv[2]) ||
        efl_sites_new(&t) != EFL_OK) {
        free(path);
        return enif_make_badarg(env);
    }
    efl_status st = EFL_OK;
    unsigned read = 0;
    ERL_NIF_TERM head, tail = argv[1];
    while (st == EFL_OK && enif_get_list_cell(env, tail, &head, &tail)) {
        const ERL_NIF_TERM *pair;
        int arity;
        ErlNifBinary beam;
        if (!enif_get_tuple(env, head, &arity, &pair) || arity != 2 ||
            !enif_inspect_binary(env, pair[1], &beam)) {
            st = EFL_ERR_ARG;
            break;
        }
        /* A module this reader cannot follow is left out; only running
         * out of memory stops the table. */
        efl_status m = efl_sites_add_module(t, beam.data, beam.size);
        if (m == EFL_OK)
            read++;
        else if (m == EFL_ERR_NOMEM || m == EFL_ERR_LIMIT)
            st = m;
    }
    tail = argv[2];
    while (st == EFL_OK && enif_get_list_cell(env, tail, &head, &tail)) {
        const ERL_NIF_TERM *mfa;
        int arity;
        unsigned a;
        char mod[1024], fun[1024];
        int ml, fl;
        if (!enif_get_tuple(env, head, &arity, &mfa) || arity != 3 ||
            (ml = enif_get_atom(env, mfa[0], mod, sizeof mod, ERL_NIF_LATIN1)) <= 0 ||
            (fl = enif_get_atom(env, mfa[1], fun, sizeof fun, ERL_NIF_LATIN1)) <= 0 ||
            !enif_get_uint(env, mfa[2], &a)) {
            st = EFL_ERR_ARG;
            break;
        }
        st = efl_sites_add_bif(t, (struct efl_name){mod, (size_t)ml - 1},
                               (struct efl_name){fun, (size_t)fl - 1}, a);
    }
    struct efl_buf table = {0};
    size_t pairs = efl_sites_pairs(t);
    if (st == EFL_OK)
        st = efl_sites_encode(t, &table);
    if (st == EFL_OK)
        st = efl_archive_append_sites(path, table.data, table.len);
    efl_buf_free(&table);
    efl_sites_free(t);
    free(path);
    if (st == EFL_ERR_ARG)
        return enif_make_badarg(env);
    if (st != EFL_OK)
        return error_tuple(env, st, argv[0]);
    ERL_NIF_TERM keys[] = {atom_modules, atom_pairs};
    ERL_NIF_TERM vals[] = {enif_make_uint(env, read), enif_make_uint64(env, pairs)};
    ERL_NIF_TERM info;
    enif_make_map_from_arrays(env, keys, vals, 2, &info);
    return enif_make_tuple2(env, atom_ok, info);
}

/* Every version of the module that loaded this file shares its static
 * state (dlopen returns one copy): count them, tear down with the last. */
static int loaded_versions;

static int load(ErlNifEnv *env, void **priv, ERL_NIF_TERM info)
{
    (void)priv;
    (void)info;
#define ATOM_INIT(name) atom_##name = enif_make_atom(env, #name);
    ATOMS(ATOM_INIT)
#undef ATOM_INIT
    if (!raw_checks_hold(env))
        return 2;
    output_type = enif_open_resource_type(env, NULL, "eflambe_output", output_free,
                                          ERL_NIF_RT_CREATE | ERL_NIF_RT_TAKEOVER, NULL);
    if (output_type == NULL)
        return 3;
    if (session_lock == NULL) {
        if ((session_lock = enif_mutex_create("eflambe_session")) == NULL)
            return 1;
        efl_clock_calibrate(&clock_);
    }
    loaded_versions++;
    return 0;
}

static int upgrade(ErlNifEnv *env, void **priv, void **old_priv, ERL_NIF_TERM info)
{
    (void)old_priv;
    return load(env, priv, info);
}

static void unload(ErlNifEnv *env, void *priv)
{
    (void)env;
    (void)priv;
    if (--loaded_versions > 0)
        return;
    /* The last version is purged: no Erlang code can stop the session now. */
    if (session != NULL) {
        struct efl_flush_stats st;
        uint64_t lost;
        __atomic_store_n(&active, 0, __ATOMIC_SEQ_CST);
        end_session(session, &st, &lost);
        session = NULL;
        free(st.modules);
    }
    /* No callback of this library can run any more. */
    if (ring_set != NULL)
        free_set(ring_set);
    ring_set = NULL;
    while (retired_sets != NULL) {
        struct ring_set *next = retired_sets->retired_next;
        free_set(retired_sets);
        retired_sets = next;
    }
    enif_mutex_destroy(session_lock);
    session_lock = NULL;
}

static ErlNifFunc funcs[] = {
    {"enabled", 3, nif_enabled, 0},
    {"trace", 5, nif_trace, 0},
    {"start_session", 1, nif_start_session, ERL_NIF_DIRTY_JOB_IO_BOUND},
    {"running_session", 0, nif_running_session, 0},
    {"stop_session", 1, nif_stop_session, ERL_NIF_DIRTY_JOB_IO_BOUND},
    {"halt_session", 2, nif_halt_session, 0},
    {"record_samples", 3, nif_record_samples, 0},
    {"fold", 4, nif_fold, ERL_NIF_DIRTY_JOB_CPU_BOUND},
    {"archive_header", 1, nif_archive_header, ERL_NIF_DIRTY_JOB_IO_BOUND},
    {"add_call_sites", 3, nif_add_call_sites, ERL_NIF_DIRTY_JOB_CPU_BOUND},
};

ERL_NIF_INIT(eflambe_tracer, funcs, load, NULL, upgrade, unload)
