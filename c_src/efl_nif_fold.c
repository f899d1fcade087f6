/* The NIFs that fold an archive into a flamegraph (fold/4), read its
 * header (archive_header/1) and append its call-site table
 * (add_call_sites/3); all run on dirty schedulers. A writer's output is
 * handed to Erlang without a copy, as a binary over a resource. */
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "efl_archive.h"
#include "efl_beam.h"
#include "efl_fold.h"
#include "efl_folded.h"
#include "efl_cost.h"
#include "efl_nif.h"
#include "efl_sites.h"
#include "efl_writer.h"

static ErlNifResourceType *output_type; /* a writer's output, lent to a binary */

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
ERL_NIF_TERM efl_nif_archive_header(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[])
{
    (void)argc;
    char *path = efl_nif_cstr(env, argv[0]);
    if (path == NULL)
        return enif_make_badarg(env);
    struct efl_buf meta = {0};
    struct efl_archive_visitor v = {.ctx = &meta, .meta = collect_meta};
    struct efl_archive_summary sum;
    efl_status st = efl_archive_read_header(path, &v, &sum);
    free(path);
    ERL_NIF_TERM result = st == EFL_OK ? enif_make_tuple2(env, efl_atom_ok, make_binary(env, &meta))
                                       : efl_nif_error(env, st, argv[0]);
    efl_buf_free(&meta);
    return result;
}


static ERL_NIF_TERM fold_info(ErlNifEnv *env, const struct efl_profile *p, const struct efl_writer *w)
{
    const char *meta = p->meta ? p->meta : "";
    ERL_NIF_TERM meta_bin;
    memcpy(enif_make_new_binary(env, strlen(meta), &meta_bin), meta, strlen(meta));
    ERL_NIF_TERM keys[] = {efl_atom_events, efl_atom_dropped, efl_atom_total_us, efl_atom_truncated,
                           efl_atom_cut_frames, efl_atom_extension, efl_atom_meta, efl_atom_stopped,
                           efl_atom_calls, efl_atom_guessed_calls, efl_atom_site_table, efl_atom_tail_resolved,
                           efl_atom_returns, efl_atom_repaired_returns, efl_atom_compensated_us};
    ERL_NIF_TERM vals[] = {enif_make_uint64(env, p->events), enif_make_uint64(env, p->drops),
                           enif_make_uint64(env, efl_ns_to_us(p->total_ns)),
                           p->truncated ? efl_atom_true : efl_atom_false,
                           enif_make_uint64(env, p->cut_frames),
                           enif_make_string(env, w->extension, ERL_NIF_LATIN1), meta_bin,
                           enif_make_atom(env, efl_stop_reason_name(p->stopped)),
                           enif_make_uint64(env, p->calls), enif_make_uint64(env, p->guessed_calls),
                           p->have_sites ? efl_atom_true : efl_atom_false,
                           enif_make_uint64(env, p->tail_resolved), enif_make_uint64(env, p->returns),
                           enif_make_uint64(env, p->repaired_returns),
                           enif_make_uint64(env, efl_ns_to_us(p->compensated_ns))};
    ERL_NIF_TERM info;
    enif_make_map_from_arrays(env, keys, vals, sizeof keys / sizeof keys[0], &info);
    /* A summary, so that no one reads the output back for it. */
    struct efl_summary sum;
    if (efl_profile_summary(p, &sum) == EFL_OK) {
        ERL_NIF_TERM top = enif_make_list(env, 0);
        for (size_t i = sum.ntop; i-- > 0;) {
            struct efl_buf name = {0};
            if (efl_frame_name(p, sum.top_frame[i], &name) != EFL_OK) {
                efl_buf_free(&name);
                continue;
            }
            top = enif_make_list_cell(
                env, enif_make_tuple2(env, make_binary(env, &name),
                                      enif_make_uint64(env, efl_ns_to_us(sum.top_ns[i]))),
                top);
            efl_buf_free(&name);
        }
        enif_make_map_put(env, info, efl_atom_stacks, enif_make_uint64(env, sum.stacks), &info);
        enif_make_map_put(env, info, efl_atom_deepest, enif_make_uint(env, sum.deepest), &info);
        enif_make_map_put(env, info, efl_atom_processes, enif_make_uint(env, sum.processes), &info);
        enif_make_map_put(env, info, efl_atom_top, top, &info);
        enif_make_map_put(env, info, efl_atom_running_us,
                          enif_make_uint64(env, efl_ns_to_us(sum.running_ns)), &info);
    }
    return info;
}

/* Writes the profile (from node root) with w, into out or, with a path,
 * streamed into a new file there (removed again if writing fails; *err:
 * errno then). */
static efl_status write_output(const struct efl_profile *p, uint32_t root,
                               const struct efl_writer *w, const char *path, struct efl_buf *out,
                               int *err)
{
    if (path == NULL)
        return w->write(p, root, out);
    errno = 0;
    out->sink = efl_buf_create_file(path, 0644);
    out->path = path;
    *err = errno;
    EFL_RETURN_ERROR_IF(out->sink == NULL, EFL_ERR_IO);
    efl_status s = w->write(p, root, out);
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

/* Window i's file, with a stem: STEM-<i + 1><extension>. */
static char *window_path(const char *stem, uint32_t i, const struct efl_writer *w)
{
    struct efl_buf b = {0};
    if (efl_buf_printf(&b, "%s-%u%s%c", stem, i + 1, w->extension, 0) != EFL_OK) {
        efl_buf_free(&b);
        return NULL;
    }
    return (char *)b.data;
}

/* Removes the files of windows [from, to) (a file-only format's file of
 * symbols beside each too): one that could not be written takes the
 * others with it. */
static void unlink_windows(const char *stem, uint32_t from, uint32_t to,
                           const struct efl_writer *w)
{
    for (uint32_t i = from; i < to; i++) {
        char *path = window_path(stem, i, w);
        struct efl_buf beside = {0};
        if (path != NULL) {
            unlink(path);
            if (w->file_only && efl_buf_printf(&beside, "%s.syms%c", path, 0) == EFL_OK)
                unlink((const char *)beside.data);
        }
        efl_buf_free(&beside);
        free(path);
    }
}

/* One map per profiled call, in the order capture gives its results
 * (efl_call_order): #{pid, ended, start_us, end_us, data}; data is the
 * flamegraph, or with a stem {file, N}, a new file each,
 * STEM-<N><extension>, N its place in that order (*err: errno when one
 * cannot be written; none is left then). */
static efl_status fold_windows(ErlNifEnv *env, const struct efl_profile *p,
                               const struct efl_writer *w, const char *stem, ERL_NIF_TERM *list,
                               int *err)
{
    uint32_t *order;
    size_t n;
    EFL_FORWARD_IF_ERROR(efl_call_order(p, &order, &n));
    *list = enif_make_list(env, 0);
    for (size_t k = n; k-- > 0;) {
        const struct efl_window *win = &p->windows[order[k]];
        struct efl_buf out = {0};
        char *path = NULL;
        efl_status st = EFL_OK;
        if (stem != NULL && (path = window_path(stem, (uint32_t)k, w)) == NULL)
            st = EFL_ERR_NOMEM;
        if (st == EFL_OK)
            st = write_output(p, win->node, w, path, &out, err);
        if (st != EFL_OK) {
            efl_buf_free(&out);
            free(path);
            free(order);
            if (stem != NULL)
                unlink_windows(stem, (uint32_t)k + 1, (uint32_t)n, w);
            return st;
        }
        ERL_NIF_TERM data = path != NULL
                                ? enif_make_tuple2(env, efl_atom_file, enif_make_uint64(env, k + 1))
                                : take_binary(env, &out);
        free(path);
        const char *pid = p->processes[win->pid];
        ERL_NIF_TERM keys[] = {efl_atom_pid, efl_atom_ended, efl_atom_start_us, efl_atom_end_us, efl_atom_data};
        ERL_NIF_TERM vals[] = {
            enif_make_string(env, pid, ERL_NIF_LATIN1),
            win->ended == EFL_EV_ROOT_RETURN      ? efl_atom_return_from
            : win->ended == EFL_EV_ROOT_EXCEPTION ? efl_atom_exception_from
            : win->ended == EFL_EV_LOST           ? efl_atom_lost
                                                  : efl_atom_open,
            enif_make_uint64(env, win->start_ns / 1000), enif_make_uint64(env, win->end_ns / 1000),
            data};
        efl_buf_free(&out);
        ERL_NIF_TERM map;
        enif_make_map_from_arrays(env, keys, vals, 5, &map);
        *list = enif_make_list_cell(env, map, *list);
    }
    free(order);
    return EFL_OK;
}

/* fold(ArchivePath, Format, Split, #{max_depth, recursion, raw_time, output})
 *     -> {ok, Data | [Window], Info}
 *                                                                     | {error, {Atom, Detail}}
 * Split: false for one flamegraph of everything, true for one per profiled
 * call (a window), in the order capture gives its results. max_depth: stacks are cut
 * at that many functions below the process; recursion: exact | collapse;
 * raw_time (optional, default false): keep the tracing cost in the time;
 * output (optional): a file to create and stream the flamegraph into, Data
 * then {file, Path}; with Split, a stem: each window's file is
 * STEM-<N><extension>, its data {file, N}; if one cannot be created or written, {error,
 * {output, Posix}} (eexist: the name is taken), and none is left. */
ERL_NIF_TERM efl_nif_fold(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[])
{
    (void)argc;
    char format[64];
    unsigned max_depth;
    ERL_NIF_TERM depth_term, recursion;
    char *path = efl_nif_cstr(env, argv[0]);
    if (path == NULL || enif_get_atom(env, argv[1], format, sizeof format, ERL_NIF_LATIN1) <= 0 ||
        (argv[2] != efl_atom_true && argv[2] != efl_atom_false) ||
        !enif_get_map_value(env, argv[3], efl_atom_max_depth, &depth_term) ||
        !enif_get_uint(env, depth_term, &max_depth) ||
        !enif_get_map_value(env, argv[3], efl_atom_recursion, &recursion) ||
        (recursion != efl_atom_exact && recursion != efl_atom_collapse) ||
        max_depth < 1 || max_depth > EFL_FOLD_MAX_DEPTH) {
        free(path);
        return enif_make_badarg(env);
    }
    ERL_NIF_TERM output_term;
    char *output = NULL;
    if (enif_get_map_value(env, argv[3], efl_atom_output, &output_term) &&
        (output = efl_nif_cstr(env, output_term)) == NULL) {
        free(path);
        return enif_make_badarg(env);
    }
    const struct efl_writer *w = efl_writer_find(format);
    if (w == NULL) {
        free(path);
        free(output);
        return enif_make_tuple2(env, efl_atom_error, enif_make_tuple2(env, efl_atom_unknown_format, argv[1]));
    }
    /* perf.data names a file of symbols after its own. */
    if (w->file_only && output == NULL) {
        free(path);
        return enif_make_tuple2(env, efl_atom_error,
                                enif_make_tuple2(env, efl_atom_needs_a_file, argv[1]));
    }
    struct efl_profile *p = NULL;
    struct efl_buf out = {0};
    ERL_NIF_TERM data = 0;
    int err = 0;
    ERL_NIF_TERM raw_time = efl_atom_false;
    (void)enif_get_map_value(env, argv[3], efl_atom_raw_time, &raw_time);
    struct efl_fold_opts opts = {.timeline = w->needs_timeline, .max_depth = max_depth,
                                 .collapse_recursion = recursion == efl_atom_collapse,
                                 .raw_time = raw_time == efl_atom_true};
    efl_status st = efl_fold_archive(path, &opts, &p);
    free(path);
    int folded = st == EFL_OK;
    if (st == EFL_OK && argv[2] == efl_atom_true) {
        st = fold_windows(env, p, w, output, &data, &err);
    } else if (st == EFL_OK && (st = write_output(p, 0, w, output, &out, &err)) == EFL_OK) {
        data = output ? enif_make_tuple2(env, efl_atom_file, output_term) : take_binary(env, &out);
    }
    if (st != EFL_OK && output != NULL && folded) {
        /* The archive folded; the output could not be written. */
        free(output);
        efl_profile_free(p);
        efl_buf_free(&out);
        return enif_make_tuple2(env, efl_atom_error, enif_make_tuple2(env, efl_atom_output, efl_nif_errno_atom(env, err)));
    }
    free(output);
    ERL_NIF_TERM result = st == EFL_OK ? enif_make_tuple3(env, efl_atom_ok, data, fold_info(env, p, w))
                                       : efl_nif_error(env, st, argv[0]);
    efl_profile_free(p);
    efl_buf_free(&out);
    return result;
}

/* Folded stacks made a profile and written: convert_folded/3 (base NULL)
 * and diff_folded/4 share this. opts: #{output => Path, meta => Binary,
 * normalize => boolean()}. */
static ERL_NIF_TERM folded_profile(ErlNifEnv *env, const ErlNifBinary *base,
                                   const ErlNifBinary *folded, ERL_NIF_TERM format_term,
                                   ERL_NIF_TERM opts)
{
    ErlNifBinary meta_bin = {0};
    char format[64];
    ERL_NIF_TERM output_term, meta_term, normalize = efl_atom_false;
    char *output = NULL, *meta = NULL;
    if (enif_get_atom(env, format_term, format, sizeof format, ERL_NIF_LATIN1) <= 0 ||
        !enif_is_map(env, opts))
        return enif_make_badarg(env);
    if (enif_get_map_value(env, opts, efl_atom_meta, &meta_term) &&
        (!enif_inspect_binary(env, meta_term, &meta_bin) ||
         memchr(meta_bin.data, 0, meta_bin.size) != NULL))
        return enif_make_badarg(env);
    (void)enif_get_map_value(env, opts, efl_atom_normalize, &normalize);
    if (enif_get_map_value(env, opts, efl_atom_output, &output_term) &&
        (output = efl_nif_cstr(env, output_term)) == NULL)
        return enif_make_badarg(env);
    const struct efl_writer *w = efl_writer_find(format);
    int diffable = w != NULL && w->draws_diff;
    if (w == NULL || (w->file_only && output == NULL) || (base != NULL && !diffable)) {
        free(output);
        ERL_NIF_TERM why = w == NULL ? efl_atom_unknown_format
                           : base != NULL && !diffable ? enif_make_atom(env, "not_a_diff_format")
                                                       : efl_atom_needs_a_file;
        return enif_make_tuple2(env, efl_atom_error, enif_make_tuple2(env, why, format_term));
    }
    if (meta_bin.size > 0 && (meta = malloc(meta_bin.size + 1)) != NULL) {
        memcpy(meta, meta_bin.data, meta_bin.size);
        meta[meta_bin.size] = 0;
    }
    struct efl_profile *p = NULL;
    struct efl_buf out = {0};
    int err = 0;
    efl_status st;
    if (meta_bin.size > 0 && meta == NULL)
        st = EFL_ERR_NOMEM;
    else if (base != NULL)
        st = efl_profile_diff_folded((const char *)base->data, base->size,
                                     (const char *)folded->data, folded->size,
                                     normalize == efl_atom_true, meta, &p);
    else
        st = efl_profile_from_folded((const char *)folded->data, folded->size, meta,
                                     w->needs_timeline, &p);
    free(meta);
    ERL_NIF_TERM result;
    if (st != EFL_OK) {
        /* {bad_folded, not_folded_stacks | limit_exceeded | ...} */
        result = enif_make_tuple2(
            env, efl_atom_error,
            enif_make_tuple2(env, enif_make_atom(env, "bad_folded"),
                             enif_make_atom(env, st == EFL_ERR_CORRUPT ? "not_folded_stacks"
                                                                       : efl_status_atom(st))));
    } else if ((st = write_output(p, 0, w, output, &out, &err)) != EFL_OK) {
        result = output ? enif_make_tuple2(env, efl_atom_error,
                                           enif_make_tuple2(env, efl_atom_output,
                                                            efl_nif_errno_atom(env, err)))
                        : efl_nif_error(env, st, efl_atom_undefined);
    } else {
        ERL_NIF_TERM data = output ? enif_make_tuple2(env, efl_atom_file, output_term)
                                   : take_binary(env, &out);
        result = enif_make_tuple3(env, efl_atom_ok, data, fold_info(env, p, w));
    }
    free(output);
    efl_profile_free(p);
    efl_buf_free(&out);
    return result;
}

/* convert_folded(Folded, Format, #{output => Path, meta => Binary})
 *     -> {ok, Binary | {file, Path}, Info} | {error, {bad_folded, Why}}
 *      | {error, {output, Errno}}
 * Folded stacks (efl_folded.h) in another output format: a cluster's
 * profile, the stacks each node folded under its node's name. */
ERL_NIF_TERM efl_nif_convert_folded(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[])
{
    (void)argc;
    ErlNifBinary folded;
    if (!enif_inspect_binary(env, argv[0], &folded))
        return enif_make_badarg(env);
    return folded_profile(env, NULL, &folded, argv[1], argv[2]);
}

/* diff_folded(Base, New, Format, #{output, meta, normalize})
 *     -> as convert_folded/3, in brendan_gregg (two counts a line), svg or
 *        pprof only ({error, {not_a_diff_format, Format}})
 * The differential profile of two folded profiles (efl_folded.h). */
ERL_NIF_TERM efl_nif_diff_folded(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[])
{
    (void)argc;
    ErlNifBinary base, folded;
    if (!enif_inspect_binary(env, argv[0], &base) || !enif_inspect_binary(env, argv[1], &folded))
        return enif_make_badarg(env);
    return folded_profile(env, &base, &folded, argv[2], argv[3]);
}

/* add_call_sites(ArchivePath, [{Module, Beam} | {Module, Beam, Source}], [{M, F, A}],
 *                [{PidText, Name}])
 *     -> {ok, #{modules, pairs, unreadable := [{Module, Reason}]}} | {error, {Atom, Detail}}
 * Reads the call sites of each module's code and appends them to a closed
 * archive as its site table; the third list names the BIFs among the
 * functions they call. A module whose code cannot be read is left out (its
 * calls are then told apart by the trace alone) and named, with why:
 * bad_argument (damaged), unsupported_version (a newer compiler's
 * instruction), limit_exceeded (beyond the reader's bounds). */
ERL_NIF_TERM efl_nif_add_call_sites(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[])
{
    (void)argc;
    char *path = efl_nif_cstr(env, argv[0]);
    struct efl_sites *t = NULL;
    if (path == NULL || !enif_is_list(env, argv[1]) || !enif_is_list(env, argv[2]) ||
        !enif_is_list(env, argv[3]) || efl_sites_new(&t) != EFL_OK) {
        free(path);
        return enif_make_badarg(env);
    }
    efl_status st = EFL_OK;
    unsigned read = 0;
    ERL_NIF_TERM unreadable = enif_make_list(env, 0);
    ERL_NIF_TERM head, tail = argv[1];
    while (st == EFL_OK && enif_get_list_cell(env, tail, &head, &tail)) {
        const ERL_NIF_TERM *pair;
        int arity, len;
        ErlNifBinary beam, source;
        char mod[1024];
        if (!enif_get_tuple(env, head, &arity, &pair) || arity < 2 || arity > 3 ||
            !enif_is_atom(env, pair[0]) || !enif_inspect_binary(env, pair[1], &beam) ||
            (arity == 3 && !enif_inspect_binary(env, pair[2], &source))) {
            st = EFL_ERR_ARG;
            break;
        }
        /* Only running out of memory stops the table. */
        efl_status m = efl_sites_add_module(t, beam.data, beam.size);
        /* Its source file, for the outputs that name files (a module whose
         * name is not latin-1, or too long a name, goes without). */
        len = enif_get_atom(env, pair[0], mod, sizeof mod, ERL_NIF_LATIN1);
        if (m == EFL_OK && arity == 3 && len > 0 &&
            efl_sites_add_source(t, (struct efl_name){mod, (size_t)len - 1},
                                 (struct efl_name){(const char *)source.data, source.size}) ==
                EFL_ERR_NOMEM)
            m = EFL_ERR_NOMEM;
        if (m == EFL_OK)
            read++;
        else if (m == EFL_ERR_NOMEM)
            st = m;
        else
            unreadable = enif_make_list_cell(
                env, enif_make_tuple2(env, pair[0], enif_make_atom(env, efl_status_atom(m))),
                unreadable);
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
    /* What the processes are called: {Pid text, name} (a name the table
     * cannot hold is left out). */
    tail = argv[3];
    while (st == EFL_OK && enif_get_list_cell(env, tail, &head, &tail)) {
        const ERL_NIF_TERM *pl;
        int arity;
        ErlNifBinary pid, label;
        if (!enif_get_tuple(env, head, &arity, &pl) || arity != 2 ||
            !enif_inspect_binary(env, pl[0], &pid) || !enif_inspect_binary(env, pl[1], &label)) {
            st = EFL_ERR_ARG;
            break;
        }
        struct efl_name p = {(const char *)pid.data, pid.size};
        struct efl_name l = {(const char *)label.data, label.size};
        efl_status a = efl_sites_add_process(t, p, l);
        if (a == EFL_ERR_NOMEM)
            st = a;
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
        return efl_nif_error(env, st, argv[0]);
    ERL_NIF_TERM keys[] = {efl_atom_modules, efl_atom_pairs, efl_atom_unreadable};
    ERL_NIF_TERM vals[] = {enif_make_uint(env, read), enif_make_uint64(env, pairs), unreadable};
    ERL_NIF_TERM info;
    enif_make_map_from_arrays(env, keys, vals, 3, &info);
    return enif_make_tuple2(env, efl_atom_ok, info);
}

/* read_code(Path) -> {ok, Binary} | {error, Reason}
 * A module's object file, for add_call_sites/3: a regular file of at most
 * EFL_BEAM_MAX_BYTES, read here rather than by the node's file server, so
 * that a FIFO, a device or a huge file planted at a module's path neither
 * blocks the node's file I/O nor fills its memory. Reason: not_regular,
 * too_large, or the POSIX atom of open/read. */
ERL_NIF_TERM efl_nif_read_code(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[])
{
    (void)argc;
    char *path = efl_nif_cstr(env, argv[0]);
    if (path == NULL)
        return enif_make_badarg(env);
    /* O_NONBLOCK: opening a FIFO returns at once (a regular file ignores it). */
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
    int err = errno;
    free(path);
    if (fd < 0)
        return enif_make_tuple2(env, efl_atom_error, efl_nif_errno_atom(env, err));
    struct stat st;
    const char *refused = NULL;
    if (fstat(fd, &st) != 0)
        refused = "io_error";
    else if (!S_ISREG(st.st_mode))
        refused = "not_regular";
    else if (st.st_size > (off_t)EFL_BEAM_MAX_BYTES)
        refused = "too_large";
    ErlNifBinary bin;
    if (refused == NULL && !enif_alloc_binary((size_t)st.st_size, &bin))
        refused = "enomem";
    if (refused != NULL) {
        close(fd);
        return enif_make_tuple2(env, efl_atom_error, enif_make_atom(env, refused));
    }
    /* Read what fstat saw, no more: a file that grows is cut there. */
    size_t got = 0;
    while (got < bin.size) {
        ssize_t n = read(fd, bin.data + got, bin.size - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            err = n < 0 ? errno : 0;
            break;
        }
        got += (size_t)n;
    }
    close(fd);
    if (got < bin.size && err != 0) {
        enif_release_binary(&bin);
        return enif_make_tuple2(env, efl_atom_error, efl_nif_errno_atom(env, err));
    }
    if (got < bin.size && !enif_realloc_binary(&bin, got)) {
        enif_release_binary(&bin);
        return enif_make_tuple2(env, efl_atom_error, enif_make_atom(env, "enomem"));
    }
    return enif_make_tuple2(env, efl_atom_ok, enif_make_binary(env, &bin));
}

/* capabilities() -> #{formats := [{Format, Extension}], event_bytes := 32,
 *                    file_only := [Format], diff := [Format]}
 * What this build supports, so that Erlang keeps no copy of the lists. */
ERL_NIF_TERM efl_nif_capabilities(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[])
{
    (void)argc;
    (void)argv;
    size_t n;
    const struct efl_writer *w = efl_writers(&n);
    ERL_NIF_TERM formats = enif_make_list(env, 0);
    for (size_t i = n; i-- > 0;)
        formats = enif_make_list_cell(
            env,
            enif_make_tuple2(env, enif_make_atom(env, w[i].format),
                             enif_make_string(env, w[i].extension, ERL_NIF_LATIN1)),
            formats);
    ERL_NIF_TERM file_only = enif_make_list(env, 0), diff = enif_make_list(env, 0);
    for (size_t i = n; i-- > 0;) {
        if (w[i].file_only)
            file_only = enif_make_list_cell(env, enif_make_atom(env, w[i].format), file_only);
        if (w[i].draws_diff)
            diff = enif_make_list_cell(env, enif_make_atom(env, w[i].format), diff);
    }
    ERL_NIF_TERM keys[] = {efl_atom_formats, efl_atom_event_bytes, efl_atom_file_only,
                           efl_atom_diff};
    ERL_NIF_TERM vals[] = {formats, enif_make_uint(env, (unsigned)sizeof(struct efl_event)),
                           file_only, diff};
    ERL_NIF_TERM map;
    enif_make_map_from_arrays(env, keys, vals, 4, &map);
    return map;
}

int efl_nif_fold_load(ErlNifEnv *env)
{
    output_type = enif_open_resource_type(env, NULL, "eflambe_output", output_free,
                                          ERL_NIF_RT_CREATE | ERL_NIF_RT_TAKEOVER, NULL);
    return output_type == NULL;
}

/* interval_costs(ArchivePath) -> {ok, #{{KindA, KindB} => MeanNs}} | {error, {Atom, Path}}
 * The mean interval between a process's consecutive events of kinds call
 * and return_to (efl_cost_measure), for calibration. */
ERL_NIF_TERM efl_nif_interval_costs(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[])
{
    (void)argc;
    char *path = efl_nif_cstr(env, argv[0]);
    if (path == NULL)
        return enif_make_badarg(env);
    uint32_t mean[EFL_EV_KIND_END][EFL_EV_KIND_END];
    efl_status st = efl_cost_measure(path, mean);
    free(path);
    if (st != EFL_OK)
        return efl_nif_error(env, st, argv[0]);
    const unsigned kinds[] = {EFL_EV_CALL, EFL_EV_RETURN_TO};
    const ERL_NIF_TERM names[] = {efl_atom_call, efl_atom_return_to};
    ERL_NIF_TERM map = enif_make_new_map(env);
    for (unsigned i = 0; i < 2; i++)
        for (unsigned j = 0; j < 2; j++)
            if (mean[kinds[i]][kinds[j]] != 0)
                enif_make_map_put(env, map, enif_make_tuple2(env, names[i], names[j]),
                                  enif_make_uint(env, mean[kinds[i]][kinds[j]]), &map);
    return enif_make_tuple2(env, efl_atom_ok, map);
}

/* archive_calls(ArchivePath)
 *     -> {ok, [#{index, pid, start_us, duration_us, ended}]} | {error, {Atom, Path}}
 * The profiled calls of an archive, in the order capture and replay give
 * their results (efl_call_order: index 1 first); start_us from the first
 * call's start; ended: return_from, exception_from, lost (its end was among
 * lost events) or open (the run ended first). */
ERL_NIF_TERM efl_nif_archive_calls(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[])
{
    (void)argc;
    char *path = efl_nif_cstr(env, argv[0]);
    if (path == NULL)
        return enif_make_badarg(env);
    struct efl_profile *p = NULL;
    struct efl_fold_opts opts = {0};
    efl_status st = efl_fold_archive(path, &opts, &p);
    free(path);
    uint32_t *order = NULL;
    size_t n = 0;
    if (st == EFL_OK)
        st = efl_call_order(p, &order, &n);
    if (st != EFL_OK) {
        efl_profile_free(p);
        return efl_nif_error(env, st, argv[0]);
    }
    uint64_t origin = UINT64_MAX;
    for (size_t i = 0; i < n; i++)
        if (p->windows[order[i]].start_ns < origin)
            origin = p->windows[order[i]].start_ns;
    ERL_NIF_TERM list = enif_make_list(env, 0);
    for (size_t i = n; i-- > 0;) {
        const struct efl_window *w = &p->windows[order[i]];
        ERL_NIF_TERM keys[] = {efl_atom_index, efl_atom_pid, efl_atom_start_us,
                               efl_atom_duration_us, efl_atom_ended};
        ERL_NIF_TERM vals[] = {
            enif_make_uint64(env, i + 1), enif_make_string(env, p->processes[w->pid], ERL_NIF_LATIN1),
            enif_make_uint64(env, (w->start_ns - origin) / 1000),
            enif_make_uint64(env, (w->end_ns - w->start_ns) / 1000),
            w->ended == EFL_EV_ROOT_RETURN      ? efl_atom_return_from
            : w->ended == EFL_EV_ROOT_EXCEPTION ? efl_atom_exception_from
            : w->ended == EFL_EV_LOST           ? efl_atom_lost
                                                : efl_atom_open};
        ERL_NIF_TERM map;
        enif_make_map_from_arrays(env, keys, vals, 5, &map);
        list = enif_make_list_cell(env, map, list);
    }
    free(order);
    efl_profile_free(p);
    return enif_make_tuple2(env, efl_atom_ok, list);
}
