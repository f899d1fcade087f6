/* Archive throughput on one core: the flusher's encode + zstd path
 * (efl_archive_writer, as the flusher thread drives it) and the folder
 * (archive to folded text), on a synthetic call tree of 4 threads and 40
 * processes over 300 functions. Prints events per second and bytes per
 * event. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <time.h>

#include "efl_archive.h"
#include "efl_fold.h"
#include "efl_writer.h"

#define EVENTS 20000000u
#define BATCH 4096
#define FUNCS 300
#define PROCS 40

static size_t name_atom(void *ctx, uint32_t raw, char *buf, size_t cap)
{
    (void)ctx;
    return (size_t)snprintf(buf, cap, raw < 64 ? "module_%u" : "function_name_%u", raw);
}

static size_t name_pid(void *ctx, uint64_t raw, char *buf, size_t cap)
{
    (void)ctx;
    return (size_t)snprintf(buf, cap, "<0.%llu.0>", (unsigned long long)raw);
}

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

/* A random walk: each process calls down (push) or returns (pop) through
 * a fixed call graph (each function calls one of three others, at most 12
 * deep), with a small chance of being scheduled out. */
struct walker {
    uint32_t stack[64];
    int depth;
};

static uint32_t rng = 12345;
static uint32_t next_rand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 17;
    rng ^= rng << 5;
    return rng;
}

static void next_event(struct walker *w, uint64_t pid, uint64_t ts, struct efl_event *e)
{
    e->ts = ts;
    e->pid = pid;
    uint32_t r = next_rand();
    if (w->depth < 2 || (w->depth < 12 && r % 100 < 50)) {
        uint32_t f = (w->depth ? w->stack[w->depth - 1] * 7 + r % 3 : r % 8) % FUNCS;
        w->stack[w->depth++] = f;
        e->kind = EFL_EV_CALL;
        e->mod = 1 + f / 10;
        e->fun = 64 + f;
        e->arity = (uint8_t)(f % 4);
    } else if (r % 100 < 97) {
        w->depth--;
        uint32_t f = w->stack[w->depth - 1];
        e->kind = EFL_EV_RETURN_TO;
        e->mod = 1 + f / 10;
        e->fun = 64 + f;
        e->arity = (uint8_t)(f % 4);
    } else {
        e->kind = EFL_EV_OUT;
        e->mod = e->fun = 0;
    }
}

/* Folds an archive and writes it as folded text, timing each step. */
static int time_fold(const char *path, struct efl_profile **p, struct efl_buf *out, double *fold_s,
                     double *write_s)
{
    double t0 = now();
    if (efl_fold_archive(path, NULL, p) != EFL_OK)
        return 1;
    *fold_s = now() - t0;
    t0 = now();
    if (efl_write_folded(*p, 0, out) != EFL_OK)
        return 1;
    *write_s = now() - t0;
    return 0;
}

/* --fold ARCHIVE: times the folder and the folded writer on a real archive. */
static int fold_only(const char *path)
{
    struct efl_profile *p;
    struct efl_buf out = {0};
    double fold_s, write_s;
    if (time_fold(path, &p, &out, &fold_s, &write_s))
        return 1;
    printf("%s: %llu events, %u distinct stacks\n", path, (unsigned long long)p->events, p->nnodes);
    printf("folder (archive to stacks): %6.1f M events/s\n", p->events / fold_s / 1e6);
    printf("folded writer:              %6.3f s\n", write_s);
    printf("archive to folded text:     %6.1f M events/s (goal >= 20)\n",
           p->events / (fold_s + write_s) / 1e6);
    efl_profile_free(p);
    efl_buf_free(&out);
    return 0;
}

/* Writer throughput on a profile of 100,000 distinct stacks: one process
 * walks every path of a tree 5 levels deep with 10 children per node
 * (function names from each level's digit), spending a microsecond in
 * each leaf. */
static size_t digit_atom(void *ctx, uint32_t raw, char *buf, size_t cap)
{
    (void)ctx;
    if (raw == 1)
        return (size_t)snprintf(buf, cap, "bench_tree");
    return (size_t)snprintf(buf, cap, "level_%u_branch_%u", (raw - 2) / 10, (raw - 2) % 10);
}

static int writers(const char *path)
{
    struct efl_namer namer = {NULL, digit_atom, name_pid};
    struct efl_archive_writer *w;
    unlink(path);
    if (efl_archive_writer_open(&w, path, "mode=bench\ntarget=bench_tree:run/0\n", &namer) != EFL_OK)
        return 1;
    uint64_t ts = 1000;
    struct efl_event e = {.pid = 7, .kind = EFL_EV_CALL, .mod = 1, .fun = 2};
    for (uint32_t leaf = 0; leaf < 100000; leaf++) {
        for (uint32_t level = 0, div = 10000; level < 5; level++, div /= 10) {
            uint32_t digit = leaf / div % 10;
            /* Only the levels that differ from the previous leaf are new calls. */
            if (leaf > 0 && leaf % div != 0)
                continue;
            e = (struct efl_event){.ts = ts++, .pid = 7, .kind = EFL_EV_CALL, .mod = 1,
                                   .fun = 2 + level * 10 + digit, .arity = 0};
            if (efl_archive_writer_events(w, 0, &e, 1) != EFL_OK)
                return 1;
        }
        ts += 1000;
        /* Back to the level whose digit changes next. */
        uint32_t next = leaf + 1, level = 4, div = 1;
        while (level > 0 && next / div % 10 == 0) {
            level--;
            div *= 10;
        }
        if (level == 0 || next == 100000)
            continue;
        uint32_t keep = level - 1;
        uint32_t kdiv = 10000;
        for (uint32_t l = 0; l < keep; l++)
            kdiv /= 10;
        e = (struct efl_event){.ts = ts++, .pid = 7, .kind = EFL_EV_RETURN_TO, .mod = 1,
                               .fun = 2 + keep * 10 + leaf / kdiv % 10, .arity = 0};
        if (efl_archive_writer_events(w, 0, &e, 1) != EFL_OK)
            return 1;
    }
    if (efl_archive_writer_close(w, NULL) != EFL_OK)
        return 1;
    struct efl_profile *p;
    if (efl_fold_archive(path, &(struct efl_fold_opts){.timeline = 1}, &p) != EFL_OK)
        return 1;
    uint32_t leaves = 0;
    for (uint32_t n = 0; n < p->nnodes; n++)
        leaves += p->nodes[n].self_ns > 0;
    printf("\nwriters: a profile of %u distinct stacks (%u nodes)\n", leaves, p->nnodes);
    const char *formats[] = {"brendan_gregg", "perf", "speedscope", "svg", "pprof"};
    for (size_t i = 0; i < sizeof formats / sizeof formats[0]; i++) {
        const struct efl_writer *wr = efl_writer_find(formats[i]);
        struct efl_buf out = {0};
        double t0 = now();
        if (wr->write(p, 0, &out) != EFL_OK)
            return 1;
        double t = now() - t0;
        printf("  %-14s %7.3f s  %8.2f M stacks/s  %7.1f MB  %7.1f MB/s\n", formats[i], t,
               leaves / t / 1e6, out.len / 1e6, out.len / t / 1e6);
        efl_buf_free(&out);
    }
    efl_profile_free(p);
    remove(path);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--fold") == 0)
        return fold_only(argv[2]);
    if (argc == 2 && strcmp(argv[1], "--writers") == 0)
        return writers("/tmp/eflambe-bench-writers.eftrace");
    const char *path = argc > 1 ? argv[1] : "/tmp/eflambe-bench.eftrace";
    static struct walker walkers[PROCS];
    static struct efl_event batch[BATCH];
    struct efl_namer namer = {NULL, name_atom, name_pid};
    struct efl_archive_writer *w;
    unlink(path);
    if (efl_archive_writer_open(&w, path, "mode=bench\n", &namer) != EFL_OK)
        return 1;

    /* Generating the events is timed apart and taken out. */
    double gen = 0, t0 = now();
    uint64_t ts = 1000000;
    for (uint32_t done = 0; done < EVENTS; done += BATCH) {
        uint32_t ring = (done / BATCH) % 4;
        double g0 = now();
        for (uint32_t i = 0; i < BATCH; i++) {
            uint32_t p = (ring * 10) + next_rand() % 10;
            ts += 1 + next_rand() % 400;
            next_event(&walkers[p], p + 80, ts, &batch[i]);
        }
        gen += now() - g0;
        if (efl_archive_writer_events(w, ring, batch, BATCH) != EFL_OK)
            return 1;
    }
    uint64_t bytes;
    if (efl_archive_writer_close(w, &bytes) != EFL_OK)
        return 1;
    double write_s = now() - t0 - gen;

    struct efl_profile *p;
    struct efl_buf out = {0};
    double fold_s, write_folded_s;
    if (time_fold(path, &p, &out, &fold_s, &write_folded_s))
        return 1;

    printf("archive benchmark: %u synthetic events (4 threads, %d processes, %d functions;\n"
           "a stress input: one new distinct stack every few events)\n", EVENTS, PROCS, FUNCS);
    printf("flusher path (encode + zstd), one core: %6.1f M events/s\n", EVENTS / write_s / 1e6);
    printf("archive size:                           %6.2f bytes/event\n", (double)bytes / EVENTS);
    printf("folder (archive to stacks):             %6.1f M events/s\n", EVENTS / fold_s / 1e6);
    printf("folded writer:                          %6.2f s for %u distinct stacks (%.1f MB)\n",
           write_folded_s, p->nnodes, out.len / 1e6);
    efl_profile_free(p);
    efl_buf_free(&out);
    remove(path);
    return 0;
}
