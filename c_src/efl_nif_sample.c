/* The sampler's NIF, record_samples/3: stack traces that eflambe_sample
 * took with process_info, written into the rings as plain trace events,
 * so that the flusher, the archive and the folder need nothing new. It
 * runs on the sampling process's scheduler and writes into that thread's
 * ring, like a tracer callback. */
#include "efl_nif.h"

#define SAMPLE_DEPTH_MAX 256

/* The frames of a stack trace, leaf first: [{M, F, Arity | Args, Location}]. */
static int stack_frame(ErlNifEnv *env, ERL_NIF_TERM t, uint32_t *mod, uint32_t *fun, unsigned *arity)
{
    const ERL_NIF_TERM *f;
    int n;
    if (!enif_get_tuple(env, t, &n, &f) || n != 4)
        return 0;
    *mod = efl_raw_atom(f[0]);
    *fun = efl_raw_atom(f[1]);
    if (!enif_get_uint(env, f[2], arity) && !enif_get_list_length(env, f[2], arity))
        return 0;
    return *mod != 0 && *fun != 0;
}

/* Writes one event of process pid with an MFA (mod 0: none) at ts. */
static void write_event(struct efl_ring *ring, unsigned id, uint64_t ts, ERL_NIF_TERM pid,
                        unsigned kind, uint32_t mod, uint32_t fun, unsigned arity)
{
    struct efl_event *e = efl_nif_reserve(ring, ts, id, pid);
    if (e == NULL)
        return;
    *e = (struct efl_event){.ts = ts, .pid = pid, .mod = mod, .fun = fun, .kind = (uint8_t)kind,
                            .arity = (uint8_t)(arity > 255 ? 255 : arity), .session = id};
    efl_ring_commit(ring);
}

/* The end of the last tick recorded, and its session's id: one sampler
 * process per session records its ticks one after another. */
static struct {
    unsigned session;
    uint64_t end;
} last_tick;

/* record_samples(TracerState, [{Pid, StackTrace}], PeriodNs) -> ok
 *
 * One tick of the sampler: each process had that stack since the tick
 * before (the first tick: for the period that just ended). At that start
 * a reset (return to nothing) and the calls from the root to the leaf, at
 * its end a return to nothing. All starts come before all ends, so the
 * ring stays in time order. */
ERL_NIF_TERM efl_nif_record_samples(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[])
{
    (void)argc;
    unsigned id, role;
    ErlNifUInt64 period_ns;
    if (!efl_nif_decode_state(argv[0], &id, &role) || role != EFL_ROLE_PROCESS || !enif_is_list(env, argv[1]) ||
        !enif_get_uint64(env, argv[2], &period_ns))
        return enif_make_badarg(env);
    if (id != __atomic_load_n(&efl_tracer.active, __ATOMIC_ACQUIRE))
        return enif_make_tuple2(env, efl_atom_error, efl_atom_not_running);
    struct efl_ring *ring = efl_nif_my_ring();
    if (ring == NULL)
        return efl_atom_ok;
    uint64_t end = efl_clock_read(&efl_tracer.clock);
    uint64_t ticks = efl_clock_ticks(&efl_tracer.clock, period_ns);
    uint64_t start = end > ticks ? end - ticks : 0;
    /* A tick's stacks stand for the time since the tick before ended,
     * whatever the period says: no gap (a tick that took longer than the
     * one before) and no overlap (the earlier one's end would cut the
     * later one's stacks short) between them. */
    uint64_t last_end = __atomic_load_n(&last_tick.end, __ATOMIC_RELAXED);
    if (__atomic_load_n(&last_tick.session, __ATOMIC_RELAXED) == id && last_end <= end &&
        last_end > 0)
        start = last_end;
    __atomic_store_n(&last_tick.session, id, __ATOMIC_RELAXED);
    __atomic_store_n(&last_tick.end, end, __ATOMIC_RELAXED);
    for (int pass = 0; pass < 2; pass++) {
        ERL_NIF_TERM list = argv[1], head;
        while (enif_get_list_cell(env, list, &head, &list)) {
            const ERL_NIF_TERM *sample;
            int n;
            if (!enif_get_tuple(env, head, &n, &sample) || n != 2 ||
                !EFL_RAW_IS_LOCAL_PID(sample[0]))
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
    return efl_atom_ok;
}
