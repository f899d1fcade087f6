/* Sessions: start_session/1, stop_session/1, halt_session/2 and
 * running_session/0, the ring sets they record into, and the flusher
 * each one runs.
 *
 * One session at a time per node. session_lock guards the fields below it
 * and is never held across file I/O or a thread join (halt_session takes
 * it on a normal scheduler): a start or a stop claims the node under the
 * lock (`changing`), does its I/O without it, and publishes under it. */
#include <stdlib.h>
#include <string.h>

#include "efl_archive.h"
#include "efl_flusher.h"
#include "efl_nif.h"

struct session {
    unsigned id;
    struct efl_flusher *flusher;
    ErlNifEnv *name_env; /* for the flusher's atom lookups */
    ErlNifEnv *msg_env;  /* for the flusher's limit message */
    int notify;          /* notify_pid is told when a limit is reached */
    ErlNifPid notify_pid;
};

static ErlNifMutex *session_lock;
static struct session *session; /* the recording session, or NULL */
static int changing;            /* a start or stop is under way */
static unsigned last_id;
static unsigned node_session;   /* atomic: id of the session starting, running or
                                 * stopping, 0 when none (running_session) */
static struct efl_ring_set *retired_sets; /* starter only, see ensure_rings */

/* Capture admission's storage outlives sessions, like the rings. */
static struct efl_capture_entry capture_entries[2 * EFL_NIF_CAPTURE_MAX];

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

/* On the flusher thread, once, when a run reaches max_events or
 * max_bytes: recording stops at once everywhere (the callbacks answer
 * `remove` from now on), and the run's owner is told to disarm. */
static void on_limit(void *ctx, unsigned reason)
{
    struct session *s = ctx;
    unsigned id = s->id;
    __atomic_compare_exchange_n(&efl_tracer.active, &id, 0, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
    if (!s->notify)
        return;
    ERL_NIF_TERM msg = enif_make_tuple2(s->msg_env, efl_atom_eflambe_limit,
                                        enif_make_atom(s->msg_env, efl_stop_reason_name(reason)));
    enif_send(NULL, &s->notify_pid, s->msg_env, msg);
    enif_clear_env(s->msg_env);
}

/* ---- ring sets ------------------------------------------------------ */

static void free_set(struct efl_ring_set *set)
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
    struct efl_ring_set *cur = efl_tracer.rings;
    if (cur != NULL && cur->count >= count && cur->capacity >= events) {
        for (size_t i = 0; i < cur->count; i++)
            efl_ring_resize(&cur->rings[i], events);
        return EFL_OK;
    }
    size_t capacity = cur != NULL && cur->capacity > events ? cur->capacity : events;
    if (cur != NULL && cur->count > count)
        count = cur->count;
    struct efl_ring_set *set = calloc(1, sizeof *set);
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
    __atomic_store_n(&efl_tracer.rings, set, __ATOMIC_RELEASE);
    return EFL_OK;
}

/* ---- start ---------------------------------------------------------- */

struct start_args {
    char *archive, *meta;
    unsigned long ring_events;
    unsigned threads;
    ERL_NIF_TERM root_pid;   /* or 0 */
    int root_frame;
    int capture;
    unsigned budget, every;
    int lazy;
    int follow;
    int have_notify;
    ErlNifPid notify;
    uint64_t max_events, max_bytes;
    unsigned flusher_idle_ms;
};

/* Reads start_session's map; 0 for any missing or ill-typed field. */
static int parse_start(ErlNifEnv *env, ERL_NIF_TERM map, struct start_args *a)
{
    ERL_NIF_TERM v;
    ErlNifPid pid;
    ErlNifUInt64 n;
    memset(a, 0, sizeof *a);
    a->every = 1;
    if (!enif_is_map(env, map))
        return 0;
    if (!enif_get_map_value(env, map, efl_atom_archive, &v) ||
        (a->archive = efl_nif_cstr(env, v)) == NULL)
        return 0;
    if (!enif_get_map_value(env, map, efl_atom_meta, &v) || (a->meta = efl_nif_cstr(env, v)) == NULL)
        return 0;
    if (!enif_get_map_value(env, map, efl_atom_ring_events, &v) ||
        !enif_get_ulong(env, v, &a->ring_events) || a->ring_events < 2 ||
        a->ring_events > (1ul << 26))
        return 0;
    if (!enif_get_map_value(env, map, efl_atom_threads, &v) || !enif_get_uint(env, v, &a->threads) ||
        a->threads < 1 || a->threads > EFL_NIF_MAX_SLOTS)
        return 0;
    if (enif_get_map_value(env, map, efl_atom_root_pid, &v) && v != efl_atom_undefined) {
        if (!enif_get_local_pid(env, v, &pid))
            return 0;
        a->root_pid = v;
    }
    if (enif_get_map_value(env, map, efl_atom_root_frame, &v))
        a->root_frame = v == efl_atom_true;
    if (enif_get_map_value(env, map, efl_atom_budget, &v) && v != efl_atom_undefined) {
        if (!enif_get_uint(env, v, &a->budget) || a->budget < 1 ||
            a->budget > EFL_NIF_CAPTURE_MAX)
            return 0;
        a->capture = 1;
    }
    if (enif_get_map_value(env, map, efl_atom_every, &v) &&
        (!enif_get_uint(env, v, &a->every) || a->every < 1))
        return 0;
    if (enif_get_map_value(env, map, efl_atom_lazy, &v))
        a->lazy = v == efl_atom_true;
    if (enif_get_map_value(env, map, efl_atom_follow, &v))
        a->follow = v == efl_atom_true;
    if (enif_get_map_value(env, map, efl_atom_notify, &v) && v != efl_atom_undefined) {
        if (!enif_get_local_pid(env, v, &a->notify))
            return 0;
        a->have_notify = 1;
    }
    if (enif_get_map_value(env, map, efl_atom_max_events, &v)) {
        if (!enif_get_uint64(env, v, &n))
            return 0;
        a->max_events = n;
    }
    if (enif_get_map_value(env, map, efl_atom_max_bytes, &v)) {
        if (!enif_get_uint64(env, v, &n))
            return 0;
        a->max_bytes = n;
    }
    if (enif_get_map_value(env, map, efl_atom_flusher_idle_ms, &v) &&
        (!enif_get_uint(env, v, &a->flusher_idle_ms) || a->flusher_idle_ms > 1000))
        return 0;
    return 1;
}

static void free_session(struct session *s)
{
    if (s == NULL)
        return;
    if (s->name_env)
        enif_free_env(s->name_env);
    if (s->msg_env)
        enif_free_env(s->msg_env);
    free(s);
}

/* Sets up the rings, the archive and the flusher of session s, without the
 * lock; changes nothing the callbacks read. *clock: the clock to publish. */
static efl_status prepare(struct session *s, const struct start_args *a, struct efl_clock *clock)
{
    EFL_RETURN_ERROR_IF((s->name_env = enif_alloc_env()) == NULL ||
                            (s->msg_env = enif_alloc_env()) == NULL,
                        EFL_ERR_NOMEM);
    EFL_FORWARD_IF_ERROR(ensure_rings(a->threads, a->ring_events));
    struct efl_archive_writer *writer = NULL;
    struct efl_namer namer = {s, name_atom, name_pid};
    EFL_FORWARD_IF_ERROR(efl_archive_writer_open(&writer, a->archive, a->meta, &namer));
    /* A fresh base, so that drift never builds up over a node's life; the
     * flusher takes its copy. */
    *clock = efl_tracer.clock;
    efl_clock_rebase(clock);
    s->notify = a->have_notify;
    s->notify_pid = a->notify;
    struct efl_flush_limits limits = {a->max_events, a->max_bytes,
                                      (long)a->flusher_idle_ms * 1000000L, on_limit, s,
                                      &efl_tracer.flusher_sleeping};
    struct efl_ring_set *set = efl_tracer.rings;
    efl_status st = efl_flusher_start(&s->flusher, set->rings, set->count, s->id, clock, &limits,
                                      writer);
    if (st != EFL_OK)
        efl_archive_writer_abort(writer);
    return st;
}

/* start_session(#{archive, ring_events, threads, meta, root_pid, root_frame,
 *                 budget, every, notify}) ->
 *     {ok, TracerState, MetaTracerState,
 *      #{follow_call, follow_take, server, follow_spawn, follow_seq}}
 *     | {error, already_running} | {error, {Atom, Path}}
 *
 * threads: how many threads may call a callback (normal and dirty
 * schedulers, and a few spare); each gets a ring of ring_events.
 * root_pid (apply): meta events are kept for that process only.
 * root_frame: the meta-traced function is shown as the root frame.
 * budget (capture): how many calls of the meta-traced function to admit,
 * one in `every`; `notify` gets eflambe_capture_done as each one ends.
 * follow: the run follows calls (call events may carry a followed call's
 * step).
 * lazy (capture): none is admitted before capture_ready/1; `notify` gets
 * eflambe_capture_first at the first call that comes before.
 * max_events, max_bytes: limits of the run; `notify` gets
 * {eflambe_limit, max_events | max_bytes} when one is reached.
 * flusher_idle_ms: how long the flusher may sleep while idle (events that
 * come slowly, as samples do).
 * The follow_* states are the meta tracer states of a followed call's
 * steps: a caller calling (gen:do_call/4, erpc:call/5), a server taking
 * the request up, the server done with it, erpc's spawn_request noting its
 * request; `server` the tracer state a followed call's match spec switches
 * a server's tracing on with; `follow_seq` the node's sequential tracer's,
 * for plain messages. */
ERL_NIF_TERM efl_nif_start_session(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[])
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
    unsigned id = last_id + 1 >= EFL_NIF_SESSION_ID_MAX ? 1 : last_id + 1;
    if (!busy) {
        changing = 1;
        last_id = id;
        __atomic_store_n(&node_session, id, __ATOMIC_RELEASE);
    }
    enif_mutex_unlock(session_lock);
    if (busy) {
        free(a.archive);
        free(a.meta);
        return enif_make_tuple2(env, efl_atom_error, efl_atom_already_running);
    }

    /* The node is ours: the set-up is done without the lock. */
    struct session *s = calloc(1, sizeof *s);
    struct efl_clock clock;
    efl_status st = EFL_ERR_NOMEM;
    if (s != NULL) {
        s->id = id;
        st = prepare(s, &a, &clock);
    }
    ERL_NIF_TERM result;
    enif_mutex_lock(session_lock);
    if (st != EFL_OK) {
        free_session(s);
        __atomic_store_n(&node_session, 0, __ATOMIC_RELEASE);
        result = efl_nif_error(env, st, enif_make_string(env, a.archive, ERL_NIF_LATIN1));
    } else {
        session = s;
        efl_tracer.clock = clock;
        efl_tracer.cpu_reuse_ticks = efl_clock_ticks(&clock, EFL_NIF_CPU_REUSE_NS);
        efl_tracer.root_pid = a.root_pid;
        efl_tracer.root_frame = a.root_frame;
        efl_tracer.root_started = 0;
        efl_tracer.capturing = a.capture;
        efl_tracer.follows = a.follow;
        efl_tracer.notify = a.have_notify;
        efl_tracer.notify_pid = a.notify;
        if (a.capture)
            efl_capture_start(&efl_tracer.capture, id, a.budget, a.every, a.lazy);
        __atomic_store_n(&efl_tracer.lost_no_ring, 0, __ATOMIC_RELAXED);
        /* Publishes all of the above to the callbacks. */
        __atomic_store_n(&efl_tracer.active, id, __ATOMIC_SEQ_CST);
        ERL_NIF_TERM keys[] = {efl_atom_follow_call, efl_atom_follow_take, efl_atom_server,
                               efl_atom_follow_spawn, efl_atom_follow_seq};
        ERL_NIF_TERM vals[] = {enif_make_int(env, EFL_NIF_STATE(id, EFL_ROLE_FOLLOW_CALL)),
                               enif_make_int(env, EFL_NIF_STATE(id, EFL_ROLE_FOLLOW_TAKE)),
                               enif_make_int(env, EFL_NIF_STATE(id, EFL_ROLE_SERVER)),
                               enif_make_int(env, EFL_NIF_STATE(id, EFL_ROLE_FOLLOW_SPAWN)),
                               enif_make_int(env, EFL_NIF_STATE(id, EFL_ROLE_FOLLOW_SEQ))};
        ERL_NIF_TERM follow;
        enif_make_map_from_arrays(env, keys, vals, sizeof keys / sizeof keys[0], &follow);
        result = enif_make_tuple4(env, efl_atom_ok,
                                  enif_make_int(env, EFL_NIF_STATE(id, EFL_ROLE_PROCESS)),
                                  enif_make_int(env, EFL_NIF_STATE(id, EFL_ROLE_ROOT)), follow);
    }
    changing = 0;
    enif_mutex_unlock(session_lock);
    free(a.archive);
    free(a.meta);
    return result;
}

/* ---- stop ----------------------------------------------------------- */

/* Stops the flusher (which drains the rings and writes the archive's end);
 * frees the session. Called by its one stopper, without the lock, once
 * recording has stopped. */
static void end_session(struct session *s, struct efl_flush_stats *st, uint64_t *lost)
{
    efl_flusher_stop(s->flusher, st);
    *lost = __atomic_load_n(&efl_tracer.lost_no_ring, __ATOMIC_RELAXED);
    struct efl_ring_set *set = efl_tracer.rings;
    for (size_t i = 0; i < set->count; i++)
        efl_ring_release_pages(&set->rings[i]);
    free_session(s);
}

/* running_session() -> TracerState | undefined
 * The session that holds the node (starting, running or stopping); no
 * lock, so it never waits for a start or stop. */
ERL_NIF_TERM efl_nif_running_session(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[])
{
    (void)argc;
    (void)argv;
    unsigned id = __atomic_load_n(&node_session, __ATOMIC_ACQUIRE);
    return id ? enif_make_int(env, EFL_NIF_STATE(id, EFL_ROLE_PROCESS)) : efl_atom_undefined;
}

/* stop_session(TracerState) -> {ok, #{events, dropped, bytes, stopped, modules, processes}}
 *                            | {error, not_running} | {error, {Atom, _}}
 * Stops that session only: a late stop never ends a newer one. */
ERL_NIF_TERM efl_nif_stop_session(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[])
{
    (void)argc;
    unsigned id, role;
    if (!efl_nif_decode_state(argv[0], &id, &role) || role != EFL_ROLE_PROCESS)
        return enif_make_badarg(env);
    enif_mutex_lock(session_lock);
    struct session *s = session;
    if (s == NULL || s->id != id) {
        enif_mutex_unlock(session_lock);
        return enif_make_tuple2(env, efl_atom_error, efl_atom_not_running);
    }
    __atomic_store_n(&efl_tracer.active, 0, __ATOMIC_SEQ_CST);
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
    /* So are local pids, the only ones events carry. */
    ERL_NIF_TERM pids = enif_make_list(env, 0);
    for (size_t i = st.npids; i-- > 0;)
        if (EFL_RAW_IS_LOCAL_PID(st.pids[i]))
            pids = enif_make_list_cell(env, (ERL_NIF_TERM)st.pids[i], pids);
    free(st.pids);
    if (st.status != EFL_OK)
        return efl_nif_error(env, st.status,
                             st.error ? efl_nif_errno_atom(env, st.error) : efl_atom_undefined);
    ERL_NIF_TERM keys[] = {efl_atom_events,  efl_atom_dropped, efl_atom_bytes,
                           efl_atom_stopped, efl_atom_modules, efl_atom_processes};
    ERL_NIF_TERM vals[] = {enif_make_uint64(env, st.events), enif_make_uint64(env, st.drops + lost),
                           enif_make_uint64(env, st.bytes),
                           enif_make_atom(env, efl_stop_reason_name(st.stopped)), modules, pids};
    ERL_NIF_TERM map;
    enif_make_map_from_arrays(env, keys, vals, 6, &map);
    return enif_make_tuple2(env, efl_atom_ok, map);
}

/* halt_session(TracerState, timeout | stopped) -> ok | {error, not_running}
 * Stops recording now (the session stays open until stop_session) and
 * notes why in the archive. */
ERL_NIF_TERM efl_nif_halt_session(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[])
{
    (void)argc;
    unsigned id, role;
    unsigned reason = argv[1] == efl_atom_timeout ? EFL_STOP_TIMEOUT
                      : argv[1] == efl_atom_stopped ? EFL_STOP_STOPPED
                                                    : EFL_STOP_NONE;
    if (!efl_nif_decode_state(argv[0], &id, &role) || role != EFL_ROLE_PROCESS ||
        reason == EFL_STOP_NONE)
        return enif_make_badarg(env);
    ERL_NIF_TERM result = enif_make_tuple2(env, efl_atom_error, efl_atom_not_running);
    enif_mutex_lock(session_lock);
    if (session != NULL && session->id == id) {
        __atomic_compare_exchange_n(&efl_tracer.active, &id, 0, 0, __ATOMIC_SEQ_CST,
                                    __ATOMIC_SEQ_CST);
        efl_flusher_note_stop(session->flusher, reason);
        result = efl_atom_ok;
    }
    enif_mutex_unlock(session_lock);
    return result;
}

/* ---- load and unload ------------------------------------------------ */

int efl_nif_session_load(void)
{
    if (session_lock != NULL)
        return 0;
    if ((session_lock = enif_mutex_create("eflambe_session")) == NULL)
        return 1;
    efl_tracer.capture = (struct efl_capture){.entries = capture_entries,
                                              .cap = 2 * EFL_NIF_CAPTURE_MAX, .every = 1};
    efl_clock_calibrate(&efl_tracer.clock);
    return 0;
}

/* The last version of the module is purged: no Erlang code can stop the
 * session now, and no callback of this library can run any more. */
void efl_nif_session_unload(void)
{
    if (session != NULL) {
        struct efl_flush_stats st;
        uint64_t lost;
        __atomic_store_n(&efl_tracer.active, 0, __ATOMIC_SEQ_CST);
        end_session(session, &st, &lost);
        session = NULL;
        free(st.modules);
        free(st.pids);
    }
    if (efl_tracer.rings != NULL)
        free_set(efl_tracer.rings);
    efl_tracer.rings = NULL;
    while (retired_sets != NULL) {
        struct efl_ring_set *next = retired_sets->retired_next;
        free_set(retired_sets);
        retired_sets = next;
    }
    enif_mutex_destroy(session_lock);
    session_lock = NULL;
}

/* capture_ready(TracerState) -> ok | {error, not_running}
 * A lazy capture's call patterns are in place: calls may be admitted. */
ERL_NIF_TERM efl_nif_capture_ready(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[])
{
    (void)argc;
    unsigned id, role;
    if (!efl_nif_decode_state(argv[0], &id, &role) || role != EFL_ROLE_PROCESS)
        return enif_make_badarg(env);
    enif_mutex_lock(session_lock);
    int running = session != NULL && session->id == id && efl_tracer.capturing;
    if (running)
        efl_capture_ready(&efl_tracer.capture);
    enif_mutex_unlock(session_lock);
    return running ? efl_atom_ok : enif_make_tuple2(env, efl_atom_error, efl_atom_not_running);
}
