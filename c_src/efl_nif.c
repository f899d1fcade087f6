/* The NIF module eflambe_tracer: its function table, load/upgrade/unload,
 * the tracer state and the term helpers its files share (efl_nif.h lists
 * which file does which job). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "efl_nif.h"

#define EFL_NIF_ATOM_DEF(name) ERL_NIF_TERM efl_atom_##name;
EFL_NIF_ATOMS(EFL_NIF_ATOM_DEF)
#undef EFL_NIF_ATOM_DEF
ERL_NIF_TERM efl_atom_gen_call;
ERL_NIF_TERM efl_atom_gen_cast;
ERL_NIF_TERM efl_atom_receive;
ERL_NIF_TERM efl_atom_alias;

struct efl_tracer_state efl_tracer;

ERL_NIF_TERM efl_nif_error(ErlNifEnv *env, efl_status s, ERL_NIF_TERM detail)
{
    return enif_make_tuple2(env, efl_atom_error,
                            enif_make_tuple2(env, enif_make_atom(env, efl_status_atom(s)), detail));
}

/* For the errors a file being created and written can meet. */
ERL_NIF_TERM efl_nif_errno_atom(ErlNifEnv *env, int e)
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

char *efl_nif_cstr(ErlNifEnv *env, ERL_NIF_TERM t)
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

/* Every version of the module that loaded this file shares its static
 * state (dlopen returns one copy): count them, tear down with the last. */
static int loaded_versions;

static int load(ErlNifEnv *env, void **priv, ERL_NIF_TERM info)
{
    (void)priv;
    (void)info;
#define EFL_NIF_ATOM_INIT(name) efl_atom_##name = enif_make_atom(env, #name);
    EFL_NIF_ATOMS(EFL_NIF_ATOM_INIT)
#undef EFL_NIF_ATOM_INIT
    efl_atom_gen_call = enif_make_atom(env, "$gen_call");
    efl_atom_gen_cast = enif_make_atom(env, "$gen_cast");
    efl_atom_receive = enif_make_atom(env, "receive");
    efl_atom_alias = enif_make_atom(env, "alias");
    if (!efl_nif_raw_checks_hold(env))
        return 2;
    if (efl_nif_fold_load(env) != 0)
        return 3;
    if (efl_nif_follow_load() != 0)
        return 1;
    if (efl_nif_session_load() != 0)
        return 1;
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
    if (--loaded_versions == 0) {
        efl_nif_session_unload();
        efl_nif_follow_unload();
    }
}

static ErlNifFunc funcs[] = {
    {"enabled", 3, efl_nif_enabled, 0},
    {"trace", 5, efl_nif_trace, 0},
    {"start_session", 1, efl_nif_start_session, ERL_NIF_DIRTY_JOB_IO_BOUND},
    {"running_session", 0, efl_nif_running_session, 0},
    {"stop_session", 1, efl_nif_stop_session, ERL_NIF_DIRTY_JOB_IO_BOUND},
    {"halt_session", 2, efl_nif_halt_session, 0},
    {"capture_ready", 1, efl_nif_capture_ready, 0},
    {"record_samples", 3, efl_nif_record_samples, 0},
    {"fold", 4, efl_nif_fold, ERL_NIF_DIRTY_JOB_CPU_BOUND},
    {"convert_folded", 3, efl_nif_convert_folded, ERL_NIF_DIRTY_JOB_CPU_BOUND},
    {"diff_folded", 4, efl_nif_diff_folded, ERL_NIF_DIRTY_JOB_CPU_BOUND},
    {"archive_header", 1, efl_nif_archive_header, ERL_NIF_DIRTY_JOB_IO_BOUND},
    {"add_call_sites", 4, efl_nif_add_call_sites, ERL_NIF_DIRTY_JOB_CPU_BOUND},
    {"read_code", 1, efl_nif_read_code, ERL_NIF_DIRTY_JOB_IO_BOUND},
    {"archive_calls", 1, efl_nif_archive_calls, ERL_NIF_DIRTY_JOB_CPU_BOUND},
    {"capabilities", 0, efl_nif_capabilities, 0},
    {"interval_costs", 1, efl_nif_interval_costs, ERL_NIF_DIRTY_JOB_IO_BOUND},
};

ERL_NIF_INIT(eflambe_tracer, funcs, load, NULL, upgrade, unload)
