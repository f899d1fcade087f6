/* eflambe-fold: folds a trace archive into a flamegraph format without a
 * running Erlang node, so an archive copied off a node can be read
 * anywhere. */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "efl_fold.h"
#include "efl_folded.h"
#include "efl_writer.h"

static void usage(FILE *to)
{
    fprintf(to,
            "usage: eflambe-fold [OPTIONS] [--] ARCHIVE\n"
            "       eflambe-fold --diff BASE [OPTIONS] [--] NEW\n"
            "\n"
            "Folds an eflambe trace archive (written by eflambe:apply with its\n"
            "archive kept) into a flamegraph.\n"
            "\n"
            "  --format FORMAT  output format (default brendan_gregg):\n"
            "                     brendan_gregg  folded stacks, \"frame;frame COUNT\" in microseconds\n"
            "                     perf           perf script text (speedscope, Firefox Profiler)\n"
            "                     speedscope     speedscope JSON, one time-ordered profile per process\n"
            "                     svg            an interactive flamegraph for a web browser\n"
            "                     perf_data      perf.data for perf report and hotspot (with -o\n"
            "                                    FILE; the function names go into FILE.syms)\n"
            "                     pprof          gzipped profile.proto for go tool pprof,\n"
            "                                    Pyroscope, Parca, Grafana, speedscope\n"
            "  -o OUTPUT        write to OUTPUT instead of standard output (a file\n"
            "                   there is replaced; a link there is refused)\n"
            "  --call K         an archive of eflambe:capture holds one profile per\n"
            "                   captured call: fold only the K-th to end (1 = first;\n"
            "                   the calls cut off by the run's end come last);\n"
            "                   without it, all calls are folded together\n"
            "  --calls          list the calls instead: number (for --call), process,\n"
            "                   start and duration in microseconds, how it ended\n"
            "  --max-depth D    cut stacks at D functions below the process (default 1024)\n"
            "  --collapse-recursion  draw a function that calls itself as one frame\n"
            "  --raw-time       keep the time tracing cost the processes (by default the\n"
            "                   cost the archive records per event is taken out)\n"
            "  --diff BASE      what changed from BASE to ARCHIVE: each an archive or a\n"
            "                   folded file; --format brendan_gregg (a line per stack,\n"
            "                   \"stack BASE NEW\"), svg (coloured by change) or pprof\n"
            "  --base-call K    with --diff: BASE's K-th call only (--call: ARCHIVE's)\n"
            "  --normalize      with --diff: scale BASE to ARCHIVE's total first\n"
            "  --help           this text\n"
            "\n"
            "A truncated archive (a node that died mid-write) is folded up to its\n"
            "last complete frame, with a warning. Exit status: 0 on success,\n"
            "1 when the archive cannot be read, 2 on a usage error.\n");
}

/* The window node of the k-th call (1-based) in the order capture and
 * replay give their results; 0 if there is none. */
static uint32_t nth_call(const struct efl_profile *p, uint32_t k)
{
    uint32_t *order, node = 0;
    size_t n;
    if (efl_call_order(p, &order, &n) != EFL_OK)
        return 0;
    if (k <= n)
        node = p->windows[order[k - 1]].node;
    free(order);
    return node;
}

/* --calls: a line per call, in that order: its number (for --call), its
 * process, when it began (microseconds into the run), how long it took,
 * and how it ended. */
static int print_calls(const struct efl_profile *p)
{
    uint32_t *order;
    size_t n;
    if (efl_call_order(p, &order, &n) != EFL_OK)
        return 1;
    printf("%6s  %-14s %12s %12s  %s\n", "call", "process", "start_us", "duration_us", "ended");
    uint64_t origin = n > 0 ? p->windows[order[0]].start_ns : 0;
    for (size_t i = 0; i < n; i++)
        if (p->windows[order[i]].start_ns < origin)
            origin = p->windows[order[i]].start_ns;
    for (size_t i = 0; i < n; i++) {
        const struct efl_window *w = &p->windows[order[i]];
        const char *how = w->ended == EFL_EV_ROOT_RETURN      ? "returned"
                          : w->ended == EFL_EV_ROOT_EXCEPTION ? "raised"
                          : w->ended == EFL_EV_LOST           ? "lost"
                                                              : "unfinished";
        printf("%6zu  %-14s %12llu %12llu  %s\n", i + 1, p->processes[w->pid],
               (unsigned long long)((w->start_ns - origin) / 1000),
               (unsigned long long)((w->end_ns - w->start_ns) / 1000), how);
    }
    free(order);
    return 0;
}

/* The output file: created, or replaced when the user names one that
 * exists, but never through a link (in a shared directory, another user
 * may have planted one there). A file-only format's file beside it (FILE.syms,
 * which the writer creates anew) goes first. */
static FILE *open_output(const char *path, const struct efl_writer *w)
{
    if (w->file_only) {
        struct efl_buf beside = {0};
        if (efl_buf_printf(&beside, "%s.syms%c", path, 0) == EFL_OK)
            (void)unlink((const char *)beside.data);
        efl_buf_free(&beside);
    }
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644);
    FILE *f = fd >= 0 ? fdopen(fd, "wb") : NULL;
    if (fd >= 0 && f == NULL)
        close(fd);
    return f;
}

static int write_profile(struct efl_profile *p, uint32_t root, const struct efl_writer *writer,
                         const char *output);

/* Whether the file starts as an archive does (its header's zstd
 * skippable frame); anything else is taken for folded text. */
static int looks_like_archive(const char *path)
{
    unsigned char head[4] = {0};
    FILE *f = fopen(path, "rb");
    size_t n = f ? fread(head, 1, sizeof head, f) : 0;
    if (f)
        fclose(f);
    return n == 4 && head[0] == 0x5e && head[1] == 0x2a && head[2] == 0x4d && head[3] == 0x18;
}

#define FOLDED_MAX_BYTES ((size_t)1 << 30)

/* One side of a diff as folded text: an archive folded (its k-th call
 * only, with k > 0), or a folded file as it is. */
static int side_text(const char *path, long k, const struct efl_fold_opts *opts,
                     struct efl_buf *text)
{
    if (!looks_like_archive(path)) {
        FILE *f = fopen(path, "rb");
        if (f == NULL) {
            fprintf(stderr, "eflambe-fold: %s: %s\n", path, strerror(errno));
            return 1;
        }
        char chunk[65536];
        size_t n;
        while ((n = fread(chunk, 1, sizeof chunk, f)) > 0 && text->len + n <= FOLDED_MAX_BYTES)
            if (efl_buf_append(text, chunk, n) != EFL_OK)
                break;
        int bad = ferror(f) || n > 0;
        fclose(f);
        if (bad)
            fprintf(stderr, "eflambe-fold: %s: unreadable or over %zu bytes\n", path,
                    FOLDED_MAX_BYTES);
        return bad;
    }
    struct efl_profile *p = NULL;
    efl_status s = efl_fold_archive(path, opts, &p);
    if (s != EFL_OK) {
        fprintf(stderr, "eflambe-fold: %s: %s\n", path, efl_status_text(s));
        return 1;
    }
    uint32_t root = k > 0 ? nth_call(p, (uint32_t)k) : 0;
    if (k > 0 && root == 0) {
        fprintf(stderr, "eflambe-fold: %s holds no call number %ld\n", path, k);
        efl_profile_free(p);
        return 1;
    }
    s = efl_write_folded(p, root, text);
    efl_profile_free(p);
    if (s != EFL_OK)
        fprintf(stderr, "eflambe-fold: %s: %s\n", path, efl_status_text(s));
    return s != EFL_OK;
}

/* --diff: the differential profile of two sides. */
static int diff(const char *base, long base_call, const char *new, long call, int normalize,
                const struct efl_fold_opts *opts, struct efl_profile **p)
{
    struct efl_buf b = {0}, n = {0}, meta = {0};
    int status = side_text(base, base_call, opts, &b);
    if (status == 0)
        status = side_text(new, call, opts, &n);
    if (status == 0 &&
        efl_buf_printf(&meta, "mode=diff\ntarget=%s against %s\n", new, base) == EFL_OK &&
        efl_buf_append(&meta, "", 1) == EFL_OK) {
        efl_status s = efl_profile_diff_folded((const char *)b.data, b.len, (const char *)n.data,
                                               n.len, normalize, (const char *)meta.data, p);
        if (s != EFL_OK) {
            fprintf(stderr, "eflambe-fold: --diff: %s\n",
                    s == EFL_ERR_CORRUPT ? "a side is neither an archive nor folded stacks"
                                         : efl_status_text(s));
            status = 1;
        }
    }
    efl_buf_free(&b);
    efl_buf_free(&n);
    efl_buf_free(&meta);
    return status;
}

int main(int argc, char **argv)
{
    const char *archive = NULL, *format = "brendan_gregg", *output = NULL, *diff_base = NULL;
    long call = 0, base_call = 0;
    unsigned max_depth = 0;
    int collapse = 0, raw_time = 0, list_calls = 0, normalize = 0;
    int options_end = 0;
    for (int i = 1; i < argc; i++) {
        if (options_end || strcmp(argv[i], "-") == 0 || argv[i][0] != '-') {
            if (archive != NULL) {
                fprintf(stderr, "eflambe-fold: one archive at a time (got %s and %s)\n", archive,
                        argv[i]);
                return 2;
            }
            archive = argv[i];
        } else if (strcmp(argv[i], "--") == 0) {
            options_end = 1;
        } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(argv[i], "--format") == 0 && i + 1 < argc) {
            format = argv[++i];
        } else if (strcmp(argv[i], "-o") == 0 && i + 1 < argc) {
            output = argv[++i];
        } else if (strcmp(argv[i], "--collapse-recursion") == 0) {
            collapse = 1;
        } else if (strcmp(argv[i], "--raw-time") == 0) {
            raw_time = 1;
        } else if (strcmp(argv[i], "--calls") == 0) {
            list_calls = 1;
        } else if (strcmp(argv[i], "--diff") == 0 && i + 1 < argc) {
            diff_base = argv[++i];
        } else if (strcmp(argv[i], "--normalize") == 0) {
            normalize = 1;
        } else if (strcmp(argv[i], "--max-depth") == 0 && i + 1 < argc) {
            char *end;
            long d = strtol(argv[++i], &end, 10);
            if (*end != 0 || d < 1 || d > EFL_FOLD_MAX_DEPTH) {
                fprintf(stderr, "eflambe-fold: --max-depth takes 1 to %d, not %s\n",
                        EFL_FOLD_MAX_DEPTH, argv[i]);
                return 2;
            }
            max_depth = (unsigned)d;
        } else if ((strcmp(argv[i], "--call") == 0 || strcmp(argv[i], "--base-call") == 0) &&
                   i + 1 < argc) {
            char *end;
            errno = 0;
            long *k = strcmp(argv[i], "--call") == 0 ? &call : &base_call;
            *k = strtol(argv[++i], &end, 10);
            if (*end != 0 || errno != 0 || *k < 1 || *k > UINT32_MAX) {
                fprintf(stderr, "eflambe-fold: %s takes a number from 1 to %lu, not %s\n",
                        argv[i - 1], (unsigned long)UINT32_MAX, argv[i]);
                return 2;
            }
        } else {
            fprintf(stderr, "eflambe-fold: unknown or incomplete option %s\n\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }
    if (archive == NULL) {
        usage(stderr);
        return 2;
    }
    const struct efl_writer *writer = efl_writer_find(format);
    if (writer == NULL) {
        fprintf(stderr, "eflambe-fold: unknown format %s (try --help)\n", format);
        return 2;
    }

    if (writer->file_only && output == NULL && !list_calls) {
        fprintf(stderr, "eflambe-fold: --format %s is written to a file only: give -o FILE\n", format);
        return 2;
    }

    struct efl_profile *p = NULL;
    struct efl_fold_opts opts = {.timeline = writer->needs_timeline, .max_depth = max_depth,
                                 .collapse_recursion = collapse, .raw_time = raw_time};
    if (diff_base != NULL) {
        if (!writer->draws_diff) {
            size_t n;
            const struct efl_writer *all = efl_writers(&n);
            fprintf(stderr, "eflambe-fold: --diff is not written as %s; it is as", format);
            for (size_t i = 0; i < n; i++)
                if (all[i].draws_diff)
                    fprintf(stderr, " %s", all[i].format);
            fprintf(stderr, "\n");
            return 2;
        }
        opts.timeline = 0;
        if (diff(diff_base, base_call, archive, call, normalize, &opts, &p) != 0)
            return 1;
        return write_profile(p, 0, writer, output);
    }
    efl_status s = efl_fold_archive(archive, &opts, &p);
    if (s != EFL_OK) {
        fprintf(stderr, "eflambe-fold: %s: %s%s%s\n", archive, efl_status_text(s),
                s == EFL_ERR_IO ? ": " : "", s == EFL_ERR_IO ? strerror(errno) : "");
        return 1;
    }
    if (p->truncated)
        fprintf(stderr, "eflambe-fold: warning: %s is truncated; folded up to its last complete frame\n",
                archive);
    if (p->drops > 0)
        fprintf(stderr, "eflambe-fold: warning: %llu events were dropped while tracing\n",
                (unsigned long long)p->drops);

    if (list_calls) {
        int status = print_calls(p);
        efl_profile_free(p);
        return status;
    }
    uint32_t root = 0;
    if (call > 0) {
        root = nth_call(p, (uint32_t)call);
        if (root == 0) {
            fprintf(stderr, "eflambe-fold: %s holds no call number %ld\n", archive, call);
            efl_profile_free(p);
            return 1;
        }
    }
    return write_profile(p, root, writer, output);
}

/* Writes the profile from root (and frees it) to output, or to standard
 * output: the exit status. */
static int write_profile(struct efl_profile *p, uint32_t root, const struct efl_writer *writer,
                         const char *output)
{
    /* The output goes out as it is written (a megabyte at a time). */
    struct efl_buf out = {.sink = output ? open_output(output, writer) : stdout, .path = output};
    if (out.sink == NULL) {
        fprintf(stderr, "eflambe-fold: cannot write %s: %s\n", output, strerror(errno));
        efl_profile_free(p);
        return 1;
    }
    efl_status s = writer->write(p, root, &out);
    efl_profile_free(p);
    if (s == EFL_OK)
        s = efl_buf_spill(&out, 1);
    if (s != EFL_OK && s != EFL_ERR_IO) {
        fprintf(stderr, "eflambe-fold: %s\n", efl_status_text(s));
        efl_buf_free(&out);
        if (output) {
            fclose(out.sink);
            unlink(output); /* no half-written file */
        }
        return 1;
    }
    int ok = s == EFL_OK && fflush(out.sink) == 0;
    if (output && fclose(out.sink) != 0)
        ok = 0;
    efl_buf_free(&out);
    if (!ok) {
        fprintf(stderr, "eflambe-fold: cannot write %s: %s\n", output ? output : "standard output",
                strerror(errno));
        return 1;
    }
    return 0;
}
