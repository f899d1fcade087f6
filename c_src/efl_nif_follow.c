/* The steps of a followed call the tracer callbacks read from a meta
 * event's arguments (erpc: whom a caller calls, whose request a process
 * takes up) or from the sequential tracer's (plain messages); a gen call's
 * steps come told by their local match specs (efl_nif_trace.c's
 * follow_step). erpc's process for
 * a local call names its caller nowhere: the caller's spawn_request notes
 * its request's reference here, and the spawned process finds its caller
 * by it. */
#include <string.h>

#include "efl_nif.h"

/* erpc calls whose process has not begun yet, a few at most at a time: an
 * entry is overwritten after EFL_ERPC_SLOTS newer ones (a process that
 * never began), and a lookup takes it out. */
#define EFL_ERPC_SLOTS 64

struct erpc_request {
    uint64_t key;      /* hash of the request's reference; 0: free */
    uint64_t caller;   /* the caller's pid (a raw immediate) */
    unsigned session;
};

static ErlNifMutex *erpc_lock; /* held for a slot's read or write only */
static struct erpc_request erpc_requests[EFL_ERPC_SLOTS];
static unsigned erpc_next;

static ErlNifMutex *message_lock;

int efl_nif_follow_load(void)
{
    if (erpc_lock == NULL)
        erpc_lock = enif_mutex_create("eflambe_erpc_requests");
    if (message_lock == NULL)
        message_lock = enif_mutex_create("eflambe_message_requests");
    return erpc_lock == NULL || message_lock == NULL;
}

void efl_nif_follow_unload(void)
{
    if (erpc_lock != NULL)
        enif_mutex_destroy(erpc_lock);
    if (message_lock != NULL)
        enif_mutex_destroy(message_lock);
    erpc_lock = message_lock = NULL;
}

static uint64_t ref_key(ERL_NIF_TERM ref)
{
    return enif_hash(ERL_NIF_INTERNAL_HASH, ref, 0) | (uint64_t)1 << 63;
}

/* The arguments of the {M, F, Args} a call event carries, or 0. */
static ERL_NIF_TERM call_args(ErlNifEnv *env, ERL_NIF_TERM mfa)
{
    const ERL_NIF_TERM *t;
    int n;
    return enif_get_tuple(env, mfa, &n, &t) && n == 3 ? t[2] : 0;
}

/* erlang:spawn_request(Node, erpc, execute_call, [Ref | _], Opts) in a
 * followed caller (its match spec checked the rest). */
void efl_nif_follow_note_erpc(ErlNifEnv *env, unsigned session, ERL_NIF_TERM caller,
                              ERL_NIF_TERM mfa)
{
    ERL_NIF_TERM args = call_args(env, mfa), arg, ref;
    for (int i = 0; i < 4; i++)
        if (!enif_get_list_cell(env, args, &arg, &args))
            return;
    if (!enif_get_list_cell(env, arg, &ref, &arg) || !enif_is_ref(env, ref))
        return;
    uint64_t key = ref_key(ref);
    enif_mutex_lock(erpc_lock);
    erpc_requests[erpc_next++ % EFL_ERPC_SLOTS] = (struct erpc_request){key, caller, session};
    enif_mutex_unlock(erpc_lock);
}

/* erpc:execute_call(Ref, M, F, A): the caller that noted Ref, or 0. */
static ERL_NIF_TERM erpc_caller(unsigned session, ERL_NIF_TERM ref)
{
    uint64_t key = ref_key(ref), caller = 0;
    enif_mutex_lock(erpc_lock);
    for (unsigned i = 0; i < EFL_ERPC_SLOTS; i++) {
        struct erpc_request *r = &erpc_requests[i];
        if (r->key == key && r->session == session) {
            caller = r->caller;
            r->key = 0;
            break;
        }
    }
    enif_mutex_unlock(erpc_lock);
    return (ERL_NIF_TERM)caller;
}

/* The caller whose request a process takes up, or 0: in the arguments of
 * the function that takes it (a meta event), erpc's reference (*spawned is
 * then set), gen_server's message {'$gen_call', {From, Tag}, Request} or
 * gen_statem's event {{call, {From, Tag}}, _}. */
ERL_NIF_TERM efl_nif_follow_caller(ErlNifEnv *env, unsigned session, ERL_NIF_TERM mfa,
                                   int *spawned)
{
    const ERL_NIF_TERM *ev, *from;
    int n;
    ERL_NIF_TERM args = call_args(env, mfa), arg, rest;
    *spawned = 0;
    if (enif_get_list_cell(env, args, &arg, &rest) && enif_is_ref(env, arg)) {
        *spawned = 1;
        return erpc_caller(session, arg);
    }
    while (enif_get_list_cell(env, args, &arg, &args)) {
        if (!enif_get_tuple(env, arg, &n, &ev))
            continue;
        if (n == 3 && ev[0] == efl_atom_gen_call && enif_get_tuple(env, ev[1], &n, &from) &&
            n == 2 && EFL_RAW_IS_LOCAL_PID(from[0]))
            return from[0];
        if (n == 2 && enif_get_tuple(env, ev[0], &n, &ev) && n == 2 && ev[0] == efl_atom_call &&
            enif_get_tuple(env, ev[1], &n, &from) && n == 2 && EFL_RAW_IS_LOCAL_PID(from[0]))
            return from[0];
    }
    return 0;
}

/* The process a followed caller calls: gen:do_call/4's first argument;
 * the caller itself for erpc:call/5, whose process is not spawned yet. */
ERL_NIF_TERM efl_nif_follow_callee(ErlNifEnv *env, ERL_NIF_TERM caller, ERL_NIF_TERM mfa)
{
    ERL_NIF_TERM first, rest;
    if (!enif_get_list_cell(env, call_args(env, mfa), &first, &rest))
        return 0;
    return EFL_RAW_IS_ATOM(first) ? caller : first;
}

/* ---- plain messages -------------------------------------------------- */

/* A plain request is a tokened message that names its sender, so that the
 * receiver can answer (the send pattern's match spec picks them for the
 * processes a run follows: eflambe_follow); its receiver takes it up when
 * it takes it (the sequential tracer's receive event, in the receiver, at
 * the take) and is done when it answers: a message naming itself to its
 * caller. (An answer that does not name its sender is not seen: the
 * caller, woken by it, ends the wait as it runs again.) Who asked whom
 * and who serves whom: two small tables keyed by pid, direct-mapped (a
 * collision forgets an older request: its wait stays a wait). */
#define EFL_MESSAGE_SLOTS 256

struct message_link {
    uint64_t pid;   /* the key; 0: free */
    uint64_t peer;  /* the process it asked (requests) or serves (serving) */
    unsigned session;
};

/* (message_lock, above: held for a slot's read or write only) */
static struct message_link requests[EFL_MESSAGE_SLOTS], serving[EFL_MESSAGE_SLOTS];

static struct message_link *slot(struct message_link *table, uint64_t pid)
{
    /* A local pid's number is in the bits above its 4-bit tag. */
    return &table[(pid >> 4) % EFL_MESSAGE_SLOTS];
}

/* Under the lock; pid last, for the look without it. */
static void link_to(struct message_link *l, uint64_t pid, uint64_t peer, unsigned session)
{
    __atomic_store_n(&l->pid, 0, __ATOMIC_RELAXED);
    l->peer = peer;
    l->session = session;
    __atomic_store_n(&l->pid, pid, __ATOMIC_RELEASE);
}

/* Takes the link of pid to peer out of the table, under the lock; 1 if it
 * was there. */
static int take_link(struct message_link *table, uint64_t pid, uint64_t peer, unsigned session)
{
    struct message_link *l = slot(table, pid);
    if (l->pid != pid || l->peer != peer || l->session != session)
        return 0;
    __atomic_store_n(&l->pid, 0, __ATOMIC_RELAXED);
    return 1;
}

enum efl_message_step efl_nif_follow_sent(unsigned session, ERL_NIF_TERM from, ERL_NIF_TERM to)
{
    enif_mutex_lock(message_lock);
    int answer = take_link(serving, from, to, session);
    if (!answer)
        link_to(slot(requests, from), from, to, session);
    enif_mutex_unlock(message_lock);
    return answer ? EFL_MESSAGE_ANSWERED : EFL_MESSAGE_ASKED;
}

int efl_nif_follow_taken(ErlNifEnv *env, unsigned session, ERL_NIF_TERM info,
                         ERL_NIF_TERM *from, ERL_NIF_TERM *to)
{
    const ERL_NIF_TERM *t;
    int n;
    if (!enif_get_tuple(env, info, &n, &t) || n != 5 || t[0] != efl_atom_receive ||
        !EFL_RAW_IS_LOCAL_PID(t[2]) || !EFL_RAW_IS_LOCAL_PID(t[3]) || t[2] == t[3])
        return 0;
    /* Most tokened messages are no request: a look without the lock first
     * (a stale look only sends this one to the lock). */
    if (__atomic_load_n(&slot(requests, t[2])->pid, __ATOMIC_RELAXED) != t[2])
        return 0;
    enif_mutex_lock(message_lock);
    int taken = take_link(requests, t[2], t[3], session);
    if (taken)
        link_to(slot(serving, t[3]), t[3], t[2], session);
    enif_mutex_unlock(message_lock);
    *from = t[2];
    *to = t[3];
    return taken;
}
