/* A minimal test harness for the C unit tests, and helpers to build
 * archives from hand-written event scripts. */
#ifndef EFL_TEST_H
#define EFL_TEST_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "efl_archive.h"
#include "efl_buf.h"

static int efl_test_failures;

#define CHECK(cond)                                                         \
    do {                                                                    \
        if (!(cond)) {                                                      \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
            efl_test_failures++;                                            \
        }                                                                   \
    } while (0)

#define CHECK_STATUS(expr, want)                                            \
    do {                                                                    \
        efl_status got_ = (expr);                                           \
        if (got_ != (want)) {                                               \
            fprintf(stderr, "%s:%d: %s returned %s, wanted %s\n", __FILE__, __LINE__, #expr, \
                    efl_status_atom(got_), efl_status_atom(want));          \
            efl_test_failures++;                                            \
        }                                                                   \
    } while (0)

#define CHECK_STR(got, want)                                                \
    do {                                                                    \
        const char *g_ = (got), *w_ = (want);                               \
        if (strcmp(g_, w_) != 0) {                                          \
            fprintf(stderr, "%s:%d: got:\n%s\nwanted:\n%s\n", __FILE__, __LINE__, g_, w_); \
            efl_test_failures++;                                            \
        }                                                                   \
    } while (0)

#define RUN(test)                                                           \
    do {                                                                    \
        int before_ = efl_test_failures;                                    \
        test();                                                             \
        printf("%s %s\n", efl_test_failures == before_ ? "ok  " : "FAIL", #test); \
    } while (0)

static inline int efl_test_done(void)
{
    if (efl_test_failures)
        fprintf(stderr, "%d check(s) failed\n", efl_test_failures);
    return efl_test_failures ? 1 : 0;
}

/* ---- scripted archives ---------------------------------------------- */

/* Fake atoms: raw value = index + 1 into this table. */
#define EFL_TEST_MAX_ATOMS 4096
static const char *efl_test_atoms[EFL_TEST_MAX_ATOMS];
static unsigned efl_test_natoms;

static inline uint32_t efl_test_atom(const char *name)
{
    for (unsigned i = 0; i < efl_test_natoms; i++)
        if (strcmp(efl_test_atoms[i], name) == 0)
            return i + 1;
    efl_test_atoms[efl_test_natoms] = strdup(name);
    return ++efl_test_natoms;
}

static inline size_t efl_test_name_atom(void *ctx, uint32_t raw, char *buf, size_t cap)
{
    (void)ctx;
    return (size_t)snprintf(buf, cap, "%s", efl_test_atoms[raw - 1]);
}

/* Fake pids: raw value N is shown as <0.N.0>. */
static inline size_t efl_test_name_pid(void *ctx, uint64_t raw, char *buf, size_t cap)
{
    (void)ctx;
    return (size_t)snprintf(buf, cap, "<0.%llu.0>", (unsigned long long)raw);
}

static const struct efl_namer efl_test_namer = {NULL, efl_test_name_atom, efl_test_name_pid};

/* One scripted event: at `us` microseconds, process `pid` on thread `ring`;
 * mfa is "mod:fun/arity" or NULL. */
struct efl_script {
    unsigned ring;
    unsigned us;
    unsigned pid;
    unsigned kind;
    const char *mfa;
};

static inline struct efl_event efl_test_event(const struct efl_script *s)
{
    struct efl_event e = {0};
    e.ts = (uint64_t)s->us * 1000;
    e.pid = s->pid;
    e.kind = (uint8_t)s->kind;
    if ((efl_event_names_process(s->kind) || s->kind == EFL_EV_LOST) && s->mfa) {
        /* The other process's pid number, or the events lost, as text. */
        e.mod = (uint32_t)strtoul(s->mfa, NULL, 10);
    } else if (s->kind == EFL_EV_IN || s->kind == EFL_EV_OUT) {
        /* The thread's CPU time in microseconds, as text ("cpu=N"); none:
         * not known. */
        uint64_t cpu = s->mfa && strncmp(s->mfa, "cpu=", 4) == 0
                           ? (uint64_t)strtoull(s->mfa + 4, NULL, 10) * 1000
                           : 0;
        e.mod = (uint32_t)cpu;
        e.fun = (uint32_t)(cpu >> 32);
    } else if (s->mfa) {
        char mod[256], fun[256];
        unsigned arity;
        if (sscanf(s->mfa, "%255[^:]:%255[^/]/%u", mod, fun, &arity) == 3) {
            e.mod = efl_test_atom(mod);
            e.fun = efl_test_atom(fun);
            e.arity = (uint8_t)arity;
        }
    }
    return e;
}

/* Writes the script to an archive with the header's meta lines, each
 * event to its ring, one write call per run of consecutive events on one
 * ring (as the flusher would). */
static inline efl_status efl_test_write_script_meta(const char *path, const struct efl_script *s,
                                                    size_t n, unsigned rings_override,
                                                    const char *meta)
{
    struct efl_archive_writer *w;
    unlink(path); /* the writer creates a new file only */
    EFL_FORWARD_IF_ERROR(efl_archive_writer_open(&w, path, meta, &efl_test_namer));
    for (size_t i = 0; i < n; i++) {
        struct efl_event e = efl_test_event(&s[i]);
        unsigned ring = rings_override ? (unsigned)(i % rings_override) : s[i].ring;
        efl_status st = efl_archive_writer_events(w, ring, &e, 1);
        if (st != EFL_OK) {
            efl_archive_writer_abort(w);
            return st;
        }
    }
    return efl_archive_writer_close(w, NULL);
}

static inline efl_status efl_test_write_script(const char *path, const struct efl_script *s,
                                               size_t n, unsigned rings_override)
{
    return efl_test_write_script_meta(path, s, n, rings_override, "mode=test\n");
}

/* The whole file (empty if it cannot be read). */
static inline struct efl_buf efl_test_read_file(const char *path)
{
    struct efl_buf b = {0};
    FILE *f = fopen(path, "rb");
    char chunk[4096];
    size_t n;
    while (f && (n = fread(chunk, 1, sizeof chunk, f)) > 0)
        efl_buf_append(&b, chunk, n);
    if (f)
        fclose(f);
    return b;
}

static inline char *efl_test_tmpfile(const char *tag)
{
    static char path[256];
    const char *dir = getenv("TMPDIR");
    snprintf(path, sizeof path, "%s/efl-test-%s-%d", dir && *dir ? dir : "/tmp", tag, (int)getpid());
    return path;
}

#endif
