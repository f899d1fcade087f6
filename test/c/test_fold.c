/* The folder on hand-written event sequences, against expected folded text.
 * Each case runs with the events on one ring and spread over three: the
 * output must not change. */
#define _GNU_SOURCE /* memmem, memrchr */
#include <time.h>

#include "efl_cost.h"
#include "efl_fold.h"
#include "efl_sites.h"
#include "efl_writer.h"
#include "efl_test.h"

#define C EFL_EV_CALL
#define R EFL_EV_RETURN_TO
#define RC EFL_EV_ROOT_CALL
#define RR EFL_EV_ROOT_RETURN
#define RX EFL_EV_ROOT_EXCEPTION
#define IN EFL_EV_IN
#define OUT EFL_EV_OUT
#define GS EFL_EV_GC_START
#define GE EFL_EV_GC_END

/* The header's meta lines of the scripts folded: a run that followed
 * calls says so (the folder then notes each process's first event). */
static const char *script_meta = "mode=test\n";

static char *fold_with(const struct efl_script *s, size_t n, unsigned rings,
                       const struct efl_fold_opts *opts, struct efl_profile **keep)
{
    const char *path = efl_test_tmpfile("fold");
    CHECK_STATUS(efl_test_write_script_meta(path, s, n, rings, script_meta), EFL_OK);
    struct efl_profile *p = NULL;
    CHECK_STATUS(efl_fold_archive(path, opts, &p), EFL_OK);
    unlink(path);
    struct efl_buf out = {0};
    if (p)
        CHECK_STATUS(efl_write_folded(p, 0, &out), EFL_OK);
    efl_buf_append(&out, "", 1);
    if (keep)
        *keep = p;
    else
        efl_profile_free(p);
    return (char *)out.data;
}

static char *fold(const struct efl_script *s, size_t n, unsigned rings, struct efl_profile **keep)
{
    return fold_with(s, n, rings, NULL, keep);
}

static void check_fold(const struct efl_script *s, size_t n, const char *want)
{
    for (unsigned rings = 1; rings <= 3; rings += 2) {
        char *got = fold(s, n, rings, NULL);
        CHECK_STR(got, want);
        free(got);
    }
}

/* The same, for a run that followed calls (its header says so). */
static void check_fold_following(const struct efl_script *s, size_t n, const char *want)
{
    script_meta = "mode=test\nfollow=true\n";
    check_fold(s, n, want);
    script_meta = "mode=test\n";
}

#define CHECK_FOLD(script, want) check_fold(script, sizeof script / sizeof script[0], want)

/* Time between two events goes to the stack that ran during it. */
static void nesting(void)
{
    static const struct efl_script s[] = {
        {0, 0, 1, C, "m:a/0"},
        {0, 10, 1, C, "m:b/1"},
        {0, 30, 1, R, "m:a/0"},
        {0, 40, 1, R, NULL},
    };
    CHECK_FOLD(s, "<0.1.0>;m:a/0 20\n"
                  "<0.1.0>;m:a/0;m:b/1 20\n");
}

/* Without a site table a call is drawn as a body call, and a return to an
 * outer caller pops the frames tail calls left. */
static void tail_calls(void)
{
    static const struct efl_script s[] = {
        {0, 0, 1, C, "m:main/0"},
        {0, 10, 1, C, "m:a/0"},
        {0, 20, 1, C, "m:b/0"},  /* a tail-calls b */
        {0, 30, 1, C, "m:c/0"},  /* b tail-calls c */
        {0, 40, 1, R, "m:main/0"},
        {0, 45, 1, R, NULL},
    };
    CHECK_FOLD(s, "<0.1.0>;m:main/0 15\n"
                  "<0.1.0>;m:main/0;m:a/0 10\n"
                  "<0.1.0>;m:main/0;m:a/0;m:b/0 10\n"
                  "<0.1.0>;m:main/0;m:a/0;m:b/0;m:c/0 10\n");
}

/* Self tail recursion stays one frame however long it runs. */
static void tail_recursion_bounded(void)
{
    struct efl_script s[2003];
    size_t n = 0;
    s[n++] = (struct efl_script){0, 0, 1, C, "m:main/0"};
    for (unsigned i = 0; i < 2000; i++)
        s[n++] = (struct efl_script){0, 10 + i, 1, C, "m:loop/1"};
    s[n++] = (struct efl_script){0, 3000, 1, R, "m:main/0"};
    s[n++] = (struct efl_script){0, 3010, 1, R, NULL};
    struct efl_profile *p;
    char *got = fold(s, n, 1, &p);
    CHECK_STR(got, "<0.1.0>;m:main/0 20\n"
                   "<0.1.0>;m:main/0;m:loop/1 2990\n");
    CHECK(p->nnodes == 4); /* root, process, main, loop */
    efl_profile_free(p);
    free(got);
}

/* Non-tail mutual recursion keeps every level; returns pop them in order. */
static void mutual_recursion(void)
{
    static const struct efl_script s[] = {
        {0, 0, 1, C, "m:f/1"},
        {0, 1, 1, C, "m:g/1"},
        {0, 2, 1, C, "m:f/1"},
        {0, 3, 1, C, "m:g/1"},
        {0, 5, 1, R, "m:f/1"},
        {0, 8, 1, R, "m:g/1"},
        {0, 12, 1, R, "m:f/1"},
        {0, 17, 1, R, NULL},
    };
    CHECK_FOLD(s, "<0.1.0>;m:f/1 6\n"
                  "<0.1.0>;m:f/1;m:g/1 5\n"
                  "<0.1.0>;m:f/1;m:g/1;m:f/1 4\n"
                  "<0.1.0>;m:f/1;m:g/1;m:f/1;m:g/1 2\n");
}

/* An exception unwinds three frames; the catcher gets a return_to. */
static void exception_unwinds(void)
{
    static const struct efl_script s[] = {
        {0, 0, 1, C, "m:f/0"},
        {0, 10, 1, C, "m:g/0"},
        {0, 20, 1, C, "m:h/0"},
        {0, 30, 1, R, "m:f/0"},   /* h raised, f caught */
        {0, 35, 1, C, "m:k/0"},
        {0, 45, 1, R, "m:f/0"},
        {0, 50, 1, R, NULL},
    };
    CHECK_FOLD(s, "<0.1.0>;m:f/0 20\n"
                  "<0.1.0>;m:f/0;m:g/0 10\n"
                  "<0.1.0>;m:f/0;m:g/0;m:h/0 10\n"
                  "<0.1.0>;m:f/0;m:k/0 10\n");
}

/* Scheduled out, waiting in a receive (it takes a message first thing
 * when scheduled in again): a sleep frame on the stack where it stopped. */
static void sleep_frame(void)
{
    static const struct efl_script s[] = {
        {0, 0, 1, C, "m:f/0"},
        {0, 5, 1, C, "m:wait/0"},
        {0, 10, 1, OUT, "m:wait/0"},
        {1, 60, 1, IN, "m:wait/0"},   /* woken on another scheduler */
        {1, 61, 1, EFL_EV_RECEIVE, NULL},
        {1, 70, 1, R, "m:f/0"},
        {1, 80, 1, R, NULL},
    };
    CHECK_FOLD(s, "<0.1.0>;m:f/0 15\n"
                  "<0.1.0>;m:f/0;m:wait/0 15\n"
                  "<0.1.0>;m:f/0;m:wait/0;sleep 50\n");
}

/* Scheduled out and in again without taking a message: it was ready to
 * run meanwhile (preempted), a runnable frame; also on the timeline. */
static void runnable_frame(void)
{
    static const struct efl_script s[] = {
        {0, 0, 1, C, "m:f/0"},
        {0, 10, 1, OUT, "m:f/0"},
        {1, 30, 1, IN, "m:f/0"},
        {1, 35, 1, C, "m:g/0"},
        {1, 40, 1, R, "m:f/0"},
        {1, 50, 1, R, NULL},
        {1, 60, 1, OUT, NULL},       /* out when recording stops: no say */
    };
    CHECK_FOLD(s, "<0.1.0>;m:f/0 25\n"
                  "<0.1.0>;m:f/0;m:g/0 5\n"
                  "<0.1.0>;m:f/0;runnable 20\n");
    struct efl_profile *p;
    char *got = fold_with(s, sizeof s / sizeof s[0], 1, &(struct efl_fold_opts){.timeline = 1}, &p);
    free(got);
    int runnable_shown = 0;
    for (size_t i = 0; i < p->ntimeline; i++) {
        const struct efl_frame *fr = &p->frames[p->nodes[p->timeline[i].node].frame];
        runnable_shown += fr->kind == EFL_FRAME_RUNNABLE;
        CHECK(fr->kind != EFL_FRAME_SLEEP);
    }
    CHECK(runnable_shown == 1);
    efl_profile_free(p);
}

static void gc_frame(void)
{
    static const struct efl_script s[] = {
        {0, 0, 1, C, "m:f/0"},
        {0, 10, 1, GS, NULL},
        {0, 15, 1, GE, NULL},
        {0, 20, 1, R, NULL},
    };
    CHECK_FOLD(s, "<0.1.0>;m:f/0 15\n"
                  "<0.1.0>;m:f/0;gc 5\n");
}

/* Two processes interleaved on two threads, each with its own stacks. */
static void processes_over_rings(void)
{
    static const struct efl_script s[] = {
        {0, 0, 1, C, "m:a/0"},
        {1, 1, 2, C, "m:b/0"},
        {1, 3, 1, C, "m:c/0"},    /* process 1 moved to thread 1 */
        {0, 4, 2, C, "m:c/0"},    /* process 2 moved to thread 0 */
        {1, 9, 1, R, "m:a/0"},
        {0, 11, 2, R, NULL},
        {1, 12, 1, R, NULL},
    };
    CHECK_FOLD(s, "<0.1.0>;m:a/0 6\n"
                  "<0.1.0>;m:a/0;m:c/0 6\n"
                  "<0.2.0>;m:b/0 3\n"
                  "<0.2.0>;m:b/0;m:c/0 7\n");
}

/* A profiled process counts only between its root call and root return:
 * the wrapper's events before and after are left out. Recursion of the
 * target closes the window only at the outermost return. */
static void root_window(void)
{
    static const struct efl_script s[] = {
        {0, 0, 1, R, "wrap:run/0"},
        {0, 5, 1, RC, "m:t/1"},
        {0, 6, 1, C, "m:t/1"},
        {0, 10, 1, C, "m:u/0"},
        {0, 20, 1, RC, "m:t/1"},   /* u calls t again */
        {0, 21, 1, C, "m:t/1"},
        {0, 31, 1, RR, "m:t/1"},
        {0, 32, 1, R, "m:u/0"},
        {0, 40, 1, R, "m:t/1"},
        {0, 50, 1, RX, "m:t/1"},
        {0, 51, 1, R, "wrap:run/0"},
        {0, 90, 1, C, "erlang:trace/3"},
    };
    /* 45 in all: the window runs from 5 to 50. It ended by an exception. */
    CHECK_FOLD(s, "<0.1.0> (exception);m:t/1 15\n"
                  "<0.1.0> (exception);m:t/1;m:u/0 19\n"
                  "<0.1.0> (exception);m:t/1;m:u/0;m:t/1 11\n");
}

/* apply's window: a root call without a frame of its own. The return into
 * the untraced wrapper names a caller further up: out of the window. */
static void root_window_without_frame(void)
{
    static const struct efl_script s[] = {
        {0, 0, 1, RC, NULL},
        {0, 2, 1, C, "m:t/0"},
        {0, 12, 1, C, "m:u/0"},
        {0, 20, 1, R, "m:t/0"},
        {0, 30, 1, R, "shell:eval/3"},
        {0, 40, 1, RR, NULL},
    };
    CHECK_FOLD(s, "<0.1.0>;m:t/0 20\n"
                  "<0.1.0>;m:t/0;m:u/0 8\n");
}

/* A process spawned inside a profiled call is part of that call's window;
 * one spawned outside any call is on its own. */
static void spawned_inside_window(void)
{
    static const struct efl_script s[] = {
        {0, 0, 1, RC, "m:t/0"},
        {0, 5, 1, EFL_EV_SPAWN, "2"},
        {1, 6, 2, C, "m:child/0"},
        {0, 10, 1, RR, "m:t/0"},
        {1, 16, 2, R, NULL},
        {1, 20, 3, C, "m:other/0"},
        {1, 24, 3, R, NULL},
    };
    struct efl_profile *p;
    char *got = fold(s, sizeof s / sizeof s[0], 1, &p);
    CHECK_STR(got, "<0.1.0>;m:t/0 10\n"
                   "<0.2.0>;m:child/0 10\n"
                   "<0.3.0>;m:other/0 4\n");
    free(got);
    struct efl_buf win = {0};
    CHECK(p->nwindows == 1);
    CHECK_STATUS(efl_write_folded(p, p->windows[0].node, &win), EFL_OK);
    efl_buf_append(&win, "", 1);
    CHECK_STR((char *)win.data, "<0.1.0>;m:t/0 10\n"
                                "<0.2.0>;m:child/0 10\n");
    efl_buf_free(&win);
    efl_profile_free(p);
}

/* Two threads' stamps may disagree a little: a child whose first event is
 * stamped before its spawn (read before it, or after it) is still the
 * spawned process of the window, not a process of its own. */
static void child_stamped_before_spawn(void)
{
    static const struct efl_script read_first[] = {
        {0, 0, 1, RC, "m:t/0"},
        {1, 4, 2, C, "m:child/0"},
        {0, 5, 1, EFL_EV_SPAWN, "2"},
        {0, 10, 1, RR, "m:t/0"},
        {1, 16, 2, R, NULL},
    };
    static const struct efl_script read_after[] = {
        {0, 0, 1, RC, "m:t/0"},
        {0, 5, 1, EFL_EV_SPAWN, "2"},
        {1, 4, 2, C, "m:child/0"},
        {0, 10, 1, RR, "m:t/0"},
        {1, 16, 2, R, NULL},
    };
    const struct {
        const struct efl_script *s;
        const char *want;
    } cases[] = {{read_first, "<0.1.0>;m:t/0 10\n<0.2.0>;m:child/0 12\n"},
                 {read_after, "<0.1.0>;m:t/0 10\n<0.2.0>;m:child/0 11\n"}};
    for (size_t i = 0; i < 2; i++) {
        struct efl_profile *p;
        char *got = fold_with(cases[i].s, 5, 0, NULL, &p);
        CHECK_STR(got, cases[i].want);
        free(got);
        struct efl_buf win = {0};
        CHECK(p->nwindows == 1);
        CHECK_STATUS(efl_write_folded(p, p->windows[0].node, &win), EFL_OK);
        efl_buf_append(&win, "", 1);
        CHECK_STR((char *)win.data, cases[i].want);
        efl_buf_free(&win);
        efl_profile_free(p);
    }
}

/* A slice whose thread ran half of its wall time (its CPU time at IN and
 * OUT): the other half was the OS's, taken out of what the slice
 * credited, in proportion, into an [os preempted] frame where it ended. */
static void os_time_taken_out(void)
{
    static const struct efl_script s[] = {
        {0, 0, 1, IN, "cpu=100"},
        {0, 0, 1, C, "m:f/0"},
        {0, 40, 1, C, "m:g/0"},
        {0, 60, 1, R, "m:f/0"},
        {0, 100, 1, OUT, "cpu=150"},
        {0, 200, 1, IN, "cpu=150"},
        {0, 201, 1, EFL_EV_RECEIVE, NULL},
        {0, 210, 1, R, NULL},
    };
    CHECK_FOLD(s, "<0.1.0>;m:f/0 50\n"
                  "<0.1.0>;m:f/0;[os preempted] 50\n"
                  "<0.1.0>;m:f/0;m:g/0 10\n"
                  "<0.1.0>;m:f/0;sleep 100\n");
}

/* An archive whose header says what tracing cost: each interval loses its
 * pair's cost; one too short to pay it owes the rest to the next; raw time
 * keeps everything. */
static void tracing_cost_taken_out(void)
{
    static const struct efl_script s[] = {
        {0, 0, 1, C, "m:f/0"},
        {0, 10, 1, C, "m:g/0"},
        {0, 20, 1, R, "m:f/0"},
        {0, 30, 1, R, NULL},
        {0, 40, 1, C, "m:f/0"},
        {0, 41, 1, C, "m:g/0"},  /* 1 us: pays half of its 2 us */
        {0, 51, 1, R, "m:f/0"},  /* 3 us and the 1 us owed */
        {0, 61, 1, R, NULL},
    };
    script_meta = "mode=test\ncost_call_call_ns=2000\ncost_call_return_to_ns=3000\n"
                  "cost_return_to_return_to_ns=1000\ncost_return_to_call_ns=0\n";
    for (unsigned rings = 1; rings <= 3; rings += 2) {
        struct efl_profile *p;
        char *got = fold(s, sizeof s / sizeof s[0], rings, &p);
        CHECK_STR(got, "<0.1.0>;m:f/0 26\n<0.1.0>;m:f/0;m:g/0 13\n");
        CHECK(p->compensated_ns == 12000);
        free(got);
        efl_profile_free(p);
        got = fold_with(s, sizeof s / sizeof s[0], rings, &(struct efl_fold_opts){.raw_time = 1}, NULL);
        CHECK_STR(got, "<0.1.0>;m:f/0 31\n<0.1.0>;m:f/0;m:g/0 20\n");
        free(got);
    }
    script_meta = "mode=test\n";
}

/* The header's cost lines: per pair of kinds, or per kind for the rest. */
static void cost_lines(void)
{
    struct efl_cost c = {0};
    const char *good[] = {"cost_call_ns=200", "cost_sched_ns=120", "cost_return_to_call_ns=167",
                          "cost_return_to_ns=88"};
    const char *bad[] = {"cost_ns=1", "cost_call_ns=", "cost_call_ns=12x", "cost_calls_ns=1",
                         "cost_call_sched_gc_ns=1", "cost_call_ns=1000000", "mode=sample"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
        CHECK(efl_cost_note_line(&c, good[i], strlen(good[i])));
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CHECK(!efl_cost_note_line(&c, bad[i], strlen(bad[i])));
    CHECK(efl_cost_between(&c, EFL_EV_RETURN_TO, EFL_EV_CALL) == 167);
    CHECK(efl_cost_between(&c, EFL_EV_CALL, EFL_EV_CALL) == 200);  /* 100 + 100 */
    CHECK(efl_cost_between(&c, EFL_EV_OUT, EFL_EV_IN) == 120);
    CHECK(efl_cost_between(&c, EFL_EV_GC_START, EFL_EV_GC_END) == 200);
    CHECK(efl_cost_between(&c, EFL_EV_CALL, EFL_EV_RETURN_TO) == 144); /* 100 + 44 */
    struct efl_cost none = {0};
    CHECK(efl_cost_between(&none, EFL_EV_CALL, EFL_EV_CALL) == 0);
}

/* Stacks deeper than the cap are cut, not grown without bound. */
static void depth_cap(void)
{
    enum { N = EFL_FOLD_MAX_DEPTH + 50 };
    static struct efl_script s[N + 1];
    static char names[N][32];
    for (unsigned i = 0; i < N; i++) {
        snprintf(names[i], sizeof names[i], "m:f%u/0", i);
        s[i] = (struct efl_script){0, i, 1, C, names[i]};
    }
    s[N] = (struct efl_script){0, N + 100, 1, R, NULL};
    struct efl_profile *p;
    char *got = fold(s, N + 1, 1, &p);
    CHECK(p->cut_frames == 50);
    uint32_t deepest = 0;
    for (uint32_t i = 0; i < p->nnodes; i++)
        deepest = p->nodes[i].depth > deepest ? p->nodes[i].depth : deepest;
    /* The process node is at depth 1, its functions below it. */
    CHECK(deepest == 1 + EFL_FOLD_MAX_DEPTH);
    efl_profile_free(p);
    free(got);
}

/* max_depth: deeper calls are not pushed; their time stays with the frame
 * at the limit. */
static void max_depth_option(void)
{
    static const struct efl_script s[] = {
        {0, 0, 1, C, "m:a/0"},
        {0, 10, 1, C, "m:b/0"},
        {0, 20, 1, C, "m:c/0"},
        {0, 30, 1, C, "m:d/0"},
        {0, 40, 1, R, "m:b/0"},
        {0, 50, 1, R, NULL},
    };
    struct efl_fold_opts opts = {.max_depth = 2};
    struct efl_profile *p;
    char *got = fold_with(s, sizeof s / sizeof s[0], 1, &opts, &p);
    CHECK_STR(got, "<0.1.0>;m:a/0 10\n"
                   "<0.1.0>;m:a/0;m:b/0 40\n");
    CHECK(p->cut_frames == 2);
    efl_profile_free(p);
    free(got);
}

/* Events of a process were lost: its stack is unknown from there on, so
 * what follows hangs on a [dropped N events] frame instead of being
 * stacked on a stale stack. */
static void lost_events_resync(void)
{
    static const struct efl_script s[] = {
        {0, 0, 1, C, "m:a/0"},
        {0, 10, 1, C, "m:b/0"},
        {0, 20, 1, EFL_EV_LOST, "5"},
        {0, 30, 1, C, "m:c/0"},
        {0, 40, 1, R, "m:a/0"},
        {0, 50, 1, R, NULL},
    };
    CHECK_FOLD(s, "<0.1.0>;[dropped 5 events] 10\n"
                  "<0.1.0>;[dropped 5 events];m:a/0 10\n"
                  "<0.1.0>;[dropped 5 events];m:c/0 10\n"
                  "<0.1.0>;m:a/0 10\n"
                  "<0.1.0>;m:a/0;m:b/0 10\n");
}

/* A profiled call whose end was among lost events still counts as ended
 * (the tracer counted it); one open without losses does not. */
static void window_end_lost(void)
{
    static const struct efl_script s[] = {
        {0, 0, 1, RC, "m:t/0"},
        {0, 10, 1, C, "m:u/0"},
        {0, 20, 1, EFL_EV_LOST, "3"},
        {0, 30, 2, RC, "m:t/0"},
        {0, 40, 2, C, "m:u/0"},
    };
    struct efl_profile *p;
    char *got = fold(s, sizeof s / sizeof s[0], 1, &p);
    CHECK(p->nwindows == 2);
    CHECK(p->windows[0].ended == EFL_EV_LOST);
    CHECK(p->windows[1].ended == 0);
    efl_profile_free(p);
    free(got);
}

/* ---- with a site table ----------------------------------------------- */

/* A call site of the table: caller, callee ("m:f/a"; NULL: a fun or apply)
 * and kinds; kind 0 marks the callee as a BIF. */
struct site {
    const char *caller, *callee;
    unsigned kind;
};

static struct efl_name part(const char *s, size_t len)
{
    return (struct efl_name){s, len};
}

/* "m:f/a" as name parts. */
static void mfa(const char *s, struct efl_name *m, struct efl_name *f, unsigned *a)
{
    const char *colon = strchr(s, ':'), *slash = strrchr(s, '/');
    *m = part(s, (size_t)(colon - s));
    *f = part(colon + 1, (size_t)(slash - colon - 1));
    *a = (unsigned)atoi(slash + 1);
}

static char *fold_sites_opts(const struct efl_script *s, size_t n, unsigned rings,
                             const struct site *sites, size_t nsites,
                             const struct efl_fold_opts *opts, struct efl_profile **keep)
{
    const char *path = efl_test_tmpfile("fold-sites");
    CHECK_STATUS(efl_test_write_script(path, s, n, rings), EFL_OK);
    struct efl_sites *t;
    CHECK_STATUS(efl_sites_new(&t), EFL_OK);
    for (size_t i = 0; i < nsites; i++) {
        struct efl_name cm, cf, m = {"", 0}, f = {"", 0};
        unsigned ca, a = 0;
        if (sites[i].kind == 0) {
            mfa(sites[i].callee, &m, &f, &a);
            CHECK_STATUS(efl_sites_add_bif(t, m, f, a), EFL_OK);
            continue;
        }
        mfa(sites[i].caller, &cm, &cf, &ca);
        if (sites[i].callee)
            mfa(sites[i].callee, &m, &f, &a);
        CHECK_STATUS(efl_sites_add_call(t, cm, cf, ca, m, f, a, sites[i].kind, sites[i].callee == NULL),
                     EFL_OK);
    }
    struct efl_buf table = {0};
    CHECK_STATUS(efl_sites_encode(t, &table), EFL_OK);
    CHECK_STATUS(efl_archive_append_sites(path, table.data, table.len), EFL_OK);
    efl_buf_free(&table);
    efl_sites_free(t);
    struct efl_profile *p = NULL;
    CHECK_STATUS(efl_fold_archive(path, opts, &p), EFL_OK);
    unlink(path);
    struct efl_buf out = {0};
    if (p)
        CHECK_STATUS(efl_write_folded(p, 0, &out), EFL_OK);
    efl_buf_append(&out, "", 1);
    if (keep)
        *keep = p;
    else
        efl_profile_free(p);
    return (char *)out.data;
}

static char *fold_sites(const struct efl_script *s, size_t n, unsigned rings,
                        const struct site *sites, size_t nsites, struct efl_profile **keep)
{
    return fold_sites_opts(s, n, rings, sites, nsites, NULL, keep);
}

static void check_sites(const struct efl_script *s, size_t n, const struct site *sites,
                        size_t nsites, const char *want)
{
    for (unsigned rings = 1; rings <= 3; rings += 2) {
        char *got = fold_sites(s, n, rings, sites, nsites, NULL);
        CHECK_STR(got, want);
        free(got);
    }
}

#define CHECK_SITES(script, sites, want)                                              \
    check_sites(script, sizeof script / sizeof script[0], sites, sizeof sites / sizeof sites[0], \
                want)

#define BODY EFL_CALL_BODY
#define TAIL EFL_CALL_TAIL
#define BOTH (EFL_CALL_BODY | EFL_CALL_TAIL)

/* A tail call replaces its caller's frame. */
static void tail_call_replaces(void)
{
    static const struct efl_script s[] = {
        {0, 0, 1, C, "m:main/0"},
        {0, 10, 1, C, "m:a/0"},
        {0, 20, 1, C, "m:b/0"},
        {0, 30, 1, C, "m:c/0"},
        {0, 40, 1, R, "m:main/0"},
        {0, 45, 1, R, NULL},
    };
    static const struct site t[] = {
        {"m:main/0", "m:a/0", BODY}, {"m:a/0", "m:b/0", TAIL}, {"m:b/0", "m:c/0", TAIL}};
    CHECK_SITES(s, t, "<0.1.0>;m:main/0 15\n"
                      "<0.1.0>;m:main/0;m:a/0 10\n"
                      "<0.1.0>;m:main/0;m:b/0 10\n"
                      "<0.1.0>;m:main/0;m:c/0 10\n");
}

/* The sites of the two cases below: a calls b both ways. */
static const struct site a_calls_b_both_ways[3] = {
    {"m:main/0", "m:a/0", BODY}, {"m:a/0", "m:b/0", BOTH}, {"m:b/0", "m:x/0", BODY}};

/* The same, preempted meanwhile (by the VM: runnable; by the OS: a slice
 * whose thread ran only part of it): the runnable time, held with the
 * slice that follows it, is not scaled with that slice's, and all of it
 * moves too. */
static void preempted_under_a_guess(void)
{
    static const struct efl_script s[] = {
        {0, 0, 1, IN, "cpu=100"},
        {0, 0, 1, C, "m:main/0"},
        {0, 10, 1, C, "m:a/0"},
        {0, 20, 1, C, "m:b/0"},
        {0, 30, 1, C, "m:x/0"},
        {0, 40, 1, OUT, "cpu=120"},  /* ran 20 of 40 */
        {0, 60, 1, IN, "cpu=120"},   /* runnable 20 */
        {0, 70, 1, R, "m:b/0"},
        {0, 80, 1, OUT, "cpu=125"},  /* ran 5 of 20 */
        {0, 90, 1, IN, "cpu=125"},   /* runnable 10 */
        {0, 95, 1, R, "m:main/0"},
        {0, 100, 1, R, NULL},
    };
    for (unsigned rings = 1; rings <= 3; rings += 2) {
        char *got = fold_sites(s, sizeof s / sizeof s[0], rings, a_calls_b_both_ways, 3, NULL);
        CHECK(strstr(got, "m:a/0;m:b/0") == NULL);
        CHECK(strstr(got, "<0.1.0>;m:main/0;m:b/0;m:x/0;runnable 20\n") != NULL);
        CHECK(strstr(got, "<0.1.0>;m:main/0;m:b/0;runnable 10\n") != NULL);
        uint64_t total = 0;
        for (char *line = got; *line;) {
            char *end = strchr(line, '\n'), *space = memrchr(line, ' ', (size_t)(end - line));
            total += strtoull(space + 1, NULL, 10);
            line = end + 1;
        }
        CHECK(total >= 99 && total <= 101); /* each line rounded */
        free(got);
    }
}

/* A call its caller makes both ways is drawn as a body call until its
 * return: landing below the caller moves its time from under the caller. */
static void unknown_kind_was_tail(void)
{
    static const struct efl_script s[] = {
        {0, 0, 1, C, "m:main/0"},
        {0, 10, 1, C, "m:a/0"},
        {0, 20, 1, C, "m:b/0"},
        {0, 30, 1, C, "m:x/0"},
        {0, 40, 1, R, "m:b/0"},
        {0, 50, 1, R, "m:main/0"},
        {0, 60, 1, R, NULL},
    };
    CHECK_SITES(s, a_calls_b_both_ways, "<0.1.0>;m:main/0 20\n"
                                        "<0.1.0>;m:main/0;m:a/0 10\n"
                                        "<0.1.0>;m:main/0;m:b/0 20\n"
                                        "<0.1.0>;m:main/0;m:b/0;m:x/0 10\n");
    struct efl_profile *p;
    free(fold_sites(s, sizeof s / sizeof s[0], 1, a_calls_b_both_ways, 3, &p));
    CHECK(p->guessed_calls == 1 && p->tail_resolved == 1 && p->repaired_returns == 0);
    efl_profile_free(p);
    /* The time-ordered view is rewritten too: no change of what is on top
     * names a stack with both a/0 and b/0 (speedscope's Time Order view). */
    struct efl_fold_opts timeline = {.timeline = 1};
    free(fold_sites_opts(s, sizeof s / sizeof s[0], 1, a_calls_b_both_ways, 3, &timeline, &p));
    CHECK(p->ntimeline >= 5);
    for (size_t i = 0; i < p->ntimeline; i++) {
        int a = 0, b = 0;
        for (uint32_t n = p->timeline[i].node; n != 0; n = p->nodes[n].parent) {
            struct efl_buf name = {0};
            efl_frame_name(p, p->nodes[n].frame, &name);
            efl_buf_append(&name, "", 1);
            a |= strcmp((char *)name.data, "m:a/0") == 0;
            b |= strcmp((char *)name.data, "m:b/0") == 0;
            efl_buf_free(&name);
        }
        CHECK(!(a && b));
    }
    efl_profile_free(p);
}

static void unknown_kind_was_body(void)
{
    static const struct efl_script s[] = {
        {0, 0, 1, C, "m:main/0"},
        {0, 10, 1, C, "m:a/0"},
        {0, 20, 1, C, "m:b/0"},
        {0, 30, 1, C, "m:x/0"},
        {0, 40, 1, R, "m:b/0"},
        {0, 50, 1, R, "m:a/0"},
        {0, 60, 1, R, "m:main/0"},
        {0, 70, 1, R, NULL},
    };
    CHECK_SITES(s, a_calls_b_both_ways, "<0.1.0>;m:main/0 20\n"
                                        "<0.1.0>;m:main/0;m:a/0 20\n"
                                        "<0.1.0>;m:main/0;m:a/0;m:b/0 20\n"
                                        "<0.1.0>;m:main/0;m:a/0;m:b/0;m:x/0 10\n");
}

/* Past the stack's cap, body calls are counted and tail calls are not:
 * the returns unwind it exactly, and main gets its time back. */
static void stack_past_max(void)
{
    enum { K = EFL_FOLD_STACK_MAX + 10 }; /* a and b calling each other */
    static struct efl_script s[2 * K + 4];
    size_t n = 0;
    unsigned us = 0;
    s[n++] = (struct efl_script){0, us++, 1, C, "m:main/0"};
    for (unsigned i = 0; i < K; i++)
        s[n++] = (struct efl_script){0, us++, 1, C, i % 2 ? "m:b/0" : "m:a/0"};
    s[n++] = (struct efl_script){0, us++, 1, C, "m:t/0"}; /* the last b tail-calls t */
    for (unsigned i = K - 1; i-- > 0;)
        s[n++] = (struct efl_script){0, us++, 1, R, i % 2 ? "m:b/0" : "m:a/0"};
    s[n++] = (struct efl_script){0, us, 1, R, "m:main/0"};
    s[n++] = (struct efl_script){0, us + 1000, 1, R, NULL};
    static const struct site t[] = {{"m:main/0", "m:a/0", BODY},
                                    {"m:a/0", "m:b/0", BODY},
                                    {"m:b/0", "m:a/0", BODY},
                                    {"m:b/0", "m:t/0", TAIL}};
    struct efl_profile *p;
    char *got = fold_sites(s, n, 1, t, 4, &p);
    CHECK(strncmp(got, "<0.1.0>;m:main/0 1001\n", 22) == 0);
    CHECK(strstr(got, "\n<0.1.0>;m:a/0 ") == NULL && strstr(got, "\n<0.1.0>;m:b/0 ") == NULL);
    CHECK(p->repaired_returns == 0);
    efl_profile_free(p);
    free(got);
}

/* The VM runs a BIF as a body call, even from a tail position. */
static void bif_is_body(void)
{
    static const struct efl_script s[] = {
        {0, 0, 1, C, "m:main/0"},
        {0, 10, 1, C, "erlang:length/1"},
        {0, 20, 1, R, "m:main/0"},
        {0, 30, 1, R, NULL},
    };
    static const struct site t[] = {{"m:main/0", "erlang:length/1", TAIL},
                                    {NULL, "erlang:length/1", 0}};
    CHECK_SITES(s, t, "<0.1.0>;m:main/0 20\n"
                      "<0.1.0>;m:main/0;erlang:length/1 10\n");
}

/* A module's first call: error_handler:undefined_function/3 takes the
 * caller's call site (here a tail call), loads the module, then calls the
 * function in its own place. */
static void first_call_of_a_module(void)
{
    static const struct efl_script s[] = {
        {0, 0, 1, C, "m:main/0"},
        {0, 10, 1, C, "error_handler:undefined_function/3"},
        {0, 20, 1, C, "code:load/1"},
        {0, 30, 1, R, "error_handler:undefined_function/3"},
        {0, 40, 1, C, "other:f/0"},
        {0, 50, 1, R, NULL},
    };
    static const struct site t[] = {
        {"m:main/0", "other:f/0", TAIL},
        {"error_handler:undefined_function/3", "code:load/1", BODY},
        {"error_handler:undefined_function/3", NULL, TAIL}};
    CHECK_SITES(s, t, "<0.1.0>;error_handler:undefined_function/3 20\n"
                      "<0.1.0>;error_handler:undefined_function/3;code:load/1 10\n"
                      "<0.1.0>;m:main/0 10\n"
                      "<0.1.0>;other:f/0 10\n");
}

/* Body recursion keeps its depth; tail recursion stays one frame. */
static void recursion_with_table(void)
{
    static const struct efl_script s[] = {
        {0, 0, 1, C, "m:nest/1"},
        {0, 10, 1, C, "m:nest/1"},
        {0, 20, 1, C, "m:nest/1"},
        {0, 30, 1, C, "m:loop/1"},
        {0, 40, 1, C, "m:loop/1"},
        {0, 50, 1, R, "m:nest/1"},
        {0, 60, 1, R, "m:nest/1"},
        {0, 70, 1, R, NULL},
    };
    static const struct site t[] = {
        {"m:nest/1", "m:nest/1", BODY}, {"m:nest/1", "m:loop/1", BODY}, {"m:loop/1", "m:loop/1", TAIL}};
    CHECK_SITES(s, t, "<0.1.0>;m:nest/1 10\n"
                      "<0.1.0>;m:nest/1;m:nest/1 20\n"
                      "<0.1.0>;m:nest/1;m:nest/1;m:nest/1 20\n"
                      "<0.1.0>;m:nest/1;m:nest/1;m:nest/1;m:loop/1 20\n");
}

/* A damaged site table is damage: the archive is refused. */
static void damaged_site_table(void)
{
    static const struct efl_script s[] = {{0, 0, 1, C, "m:a/0"}, {0, 10, 1, R, NULL}};
    const char *path = efl_test_tmpfile("fold-bad-sites");
    CHECK_STATUS(efl_test_write_script(path, s, 2, 0), EFL_OK);
    static const unsigned char table[] = {9, 9, 9};
    CHECK_STATUS(efl_archive_append_sites(path, table, sizeof table), EFL_OK);
    struct efl_profile *p = NULL;
    CHECK_STATUS(efl_fold_archive(path, NULL, &p), EFL_ERR_CORRUPT);
    /* The locator pointing anywhere else is damage too. */
    struct efl_buf bytes = efl_test_read_file(path);
    bytes.data[bytes.len - 8] ^= 0x40;
    CHECK_STATUS(efl_fold_archive_mem(bytes.data, bytes.len, NULL, &p), EFL_ERR_CORRUPT);
    efl_buf_free(&bytes);
    unlink(path);
}

/* Writes p with writer `format` in memory and streaming to a file; the two
 * must be the same bytes, and streaming must hold at most 2 MiB (it
 * spills past 1 MiB) however big the output. Returns the output's size. */
static size_t stream_same(const struct efl_profile *p, const char *format)
{
    const struct efl_writer *w = efl_writer_find(format);
    struct efl_buf mem = {0}, streamed = {0};
    CHECK_STATUS(w->write(p, 0, &mem), EFL_OK);
    char out[300];
    snprintf(out, sizeof out, "%s.%s", efl_test_tmpfile("stream-out"), format);
    streamed.sink = fopen(out, "wb");
    CHECK(streamed.sink != NULL);
    CHECK_STATUS(w->write(p, 0, &streamed), EFL_OK);
    CHECK_STATUS(efl_buf_spill(&streamed, 1), EFL_OK);
    fclose(streamed.sink);
    struct efl_buf file = efl_test_read_file(out);
    CHECK(file.len == mem.len && memcmp(file.data, mem.data, mem.len) == 0);
    unlink(out);
    CHECK(streamed.cap <= (size_t)2 << 20);
    size_t size = mem.len;
    efl_buf_free(&file);
    efl_buf_free(&mem);
    efl_buf_free(&streamed);
    return size;
}

/* Each writer gives the same bytes streaming to a file as building its
 * output in memory, and never holds it all: 40,000 distinct stacks, over
 * 3 MB of folded lines and of perf samples (pprof's gzip far less). */
static void streamed_outputs(void)
{
    enum { K = 200, N = K * K }; /* names from 2 x 200 atoms: the test namer holds 4096 */
    struct efl_script *s = calloc(2 * N + 2, sizeof *s);
    char (*names)[96] = calloc(N, sizeof *names);
    size_t n = 0;
    s[n++] = (struct efl_script){0, 0, 1, C, "mod:main/0"};
    for (unsigned i = 0; i < N; i++) {
        snprintf(names[i], sizeof names[i], "module_with_a_long_name_%03u:function_with_a_long_name_%03u/1",
                 i / K, i % K);
        s[n++] = (struct efl_script){0, 10 + 20 * i, 1, C, names[i]};
        s[n++] = (struct efl_script){0, 20 + 20 * i, 1, R, "mod:main/0"};
    }
    s[n++] = (struct efl_script){0, 20 * N + 50, 1, R, NULL};
    const char *path = efl_test_tmpfile("stream");
    CHECK_STATUS(efl_test_write_script(path, s, n, 0), EFL_OK);
    struct efl_profile *p = NULL;
    CHECK_STATUS(efl_fold_archive(path, &(struct efl_fold_opts){.timeline = 1}, &p), EFL_OK);
    unlink(path);
    const char *formats[] = {"brendan_gregg", "perf", "speedscope", "svg", "pprof"};
    for (size_t i = 0; p && i < 5; i++)
        CHECK(stream_same(p, formats[i]) > (size_t)3 << 20 || i >= 2);
    efl_profile_free(p);
    free(names);
    free(s);
}

/* Siblings whose walk order is not byte order (f/1 has a child, and
 * "f/10 " sorts before "f/1;"): the folded writer sorts in memory, and
 * the file is still the same. */
static void streamed_unsorted_folded(void)
{
    static const struct efl_script s[] = {
        {0, 0, 1, C, "m:main/0"},
        {0, 10, 1, C, "m:f/1"},
        {0, 20, 1, C, "m:g/0"},
        {0, 30, 1, R, "m:f/1"},
        {0, 40, 1, R, "m:main/0"},
        {0, 50, 1, C, "m:f/10"},
        {0, 60, 1, R, "m:main/0"},
        {0, 70, 1, R, NULL},
    };
    const char *path = efl_test_tmpfile("stream-unsorted");
    CHECK_STATUS(efl_test_write_script(path, s, sizeof s / sizeof s[0], 0), EFL_OK);
    struct efl_profile *p = NULL;
    CHECK_STATUS(efl_fold_archive(path, NULL, &p), EFL_OK);
    unlink(path);
    if (p)
        stream_same(p, "brendan_gregg");
    efl_profile_free(p);
}

/* Frame names never break a folded line. */
static void names_escaped(void)
{
    static const struct efl_script s[] = {
        {0, 0, 1, C, "m:a;b\nc/0"},
        {0, 10, 1, R, NULL},
    };
    CHECK_FOLD(s, "<0.1.0>;m:a,b?c/0 10\n");
}

/* An archive of many rings with a pass after every event, none of them
 * ready: each pass costs nothing (a merge once scanned every ring at every
 * pass: 65,536 rings of 100 events took about an hour). */
static void many_rings_many_passes(void)
{
    enum { RINGS = 60000 };
    const char *path = efl_test_tmpfile("rings");
    struct efl_archive_writer *w;
    unlink(path);
    CHECK_STATUS(efl_archive_writer_open(&w, path, "mode=test\n", &efl_test_namer), EFL_OK);
    for (unsigned r = 0; r < RINGS; r++) {
        struct efl_script in[2] = {{0, 1000000 + r, 1 + r % 50, C, "m:f/0"},
                                   {0, 2000000 + r, 1 + r % 50, R, NULL}};
        for (unsigned k = 0; k < 2; k++) {
            struct efl_event e = efl_test_event(&in[k]);
            CHECK_STATUS(efl_archive_writer_events(w, r, &e, 1), EFL_OK);
            CHECK_STATUS(efl_archive_writer_pass(w, r), EFL_OK);
        }
    }
    CHECK_STATUS(efl_archive_writer_close(w, NULL), EFL_OK);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    struct efl_profile *p = NULL;
    CHECK_STATUS(efl_fold_archive(path, NULL, &p), EFL_OK);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    CHECK(p != NULL && p->events == 2 * RINGS);
    /* Generous: it takes well under a second; the old merge, minutes. */
    CHECK(t1.tv_sec - t0.tv_sec < 30);
    efl_profile_free(p);
    unlink(path);
}

/* Passes further apart than held_max events: folded as they come, with
 * the same result on one ring; names past name_bytes_max are refused. */
static void holding_bounded(void)
{
    enum { CALLS = 5000 };
    struct efl_script *s = calloc(2 * CALLS + 2, sizeof *s);
    size_t n = 0;
    s[n++] = (struct efl_script){0, 1, 1, C, "m:top/0"};
    for (unsigned i = 0; i < CALLS; i++) {
        s[n++] = (struct efl_script){0, 10 + 3 * i, 1, C, i % 2 ? "m:odd/1" : "m:even/1"};
        s[n++] = (struct efl_script){0, 11 + 3 * i, 1, R, "m:top/0"};
    }
    s[n++] = (struct efl_script){0, 20 + 3 * CALLS, 1, R, NULL};
    struct efl_profile *whole = NULL, *bounded = NULL;
    char *want = fold_with(s, n, 0, NULL, &whole);
    char *got = fold_with(s, n, 0, &(struct efl_fold_opts){.held_max = 1000}, &bounded);
    CHECK_STR(got, want);
    CHECK(whole && whole->early_folds == 0);
    CHECK(bounded && bounded->early_folds >= n / 1000 - 1);
    efl_profile_free(whole);
    efl_profile_free(bounded);
    free(want);
    free(got);
    const char *path = efl_test_tmpfile("names");
    CHECK_STATUS(efl_test_write_script(path, s, n, 0), EFL_OK);
    struct efl_profile *p = NULL;
    CHECK_STATUS(efl_fold_archive(path, &(struct efl_fold_opts){.name_bytes_max = 12}, &p),
                 EFL_ERR_LIMIT);
    CHECK(p == NULL);
    unlink(path);
    free(s);
}

#define FC EFL_EV_FOLLOW_CALL
#define FT EFL_EV_FOLLOW_TAKE
#define FE EFL_EV_FOLLOW_END

/* A followed call: process 1 waits [queued] for server 2, then 2's work is
 * under 1's waiting frame, and 1's sleep meanwhile is not counted. */
static void followed_call(void)
{
    static const struct efl_script s[] = {
        {0, 0, 1, C, "a:main/0"},          {0, 10, 1, C, "gen:do_call/4"},
        {0, 11, 1, FC, "2"},               {0, 15, 1, OUT, NULL},
        {1, 20, 2, C, "srv:other/1"},      {1, 30, 2, C, "gen_server:handle_msg/6"},
        {1, 31, 2, FT, "1"},               {1, 35, 2, C, "srv:handle_call/3"},
        {1, 75, 2, R, "gen_server:handle_msg/6"}, {1, 80, 2, FE, NULL},
        {0, 90, 1, IN, NULL},              {0, 95, 1, R, "a:main/0"},
        {0, 100, 1, R, NULL},
    };
    check_fold_following(s, sizeof s / sizeof s[0],
               "<0.1.0>;a:main/0 15\n"
               "<0.1.0>;a:main/0;gen:do_call/4 10\n"
               "<0.1.0>;a:main/0;gen:do_call/4;<0.2.0>;[queued] 16\n"
               "<0.1.0>;a:main/0;gen:do_call/4;<0.2.0>;gen_server:handle_msg/6 9\n"
               "<0.1.0>;a:main/0;gen:do_call/4;<0.2.0>;gen_server:handle_msg/6;srv:handle_call/3 40\n"
               "<0.1.0>;a:main/0;gen:do_call/4;sleep 10\n");
}

/* A local erpc call: the caller's call names no process (itself); the
 * process spawned for it is followed from its birth (its spawn_init and
 * execute_call before the take count as the caller's wait), and its work
 * ends where its function exits. */
static void followed_erpc_call(void)
{
    static const struct efl_script s[] = {
        {0, 0, 1, C, "a:main/0"},          {0, 10, 1, C, "erpc:call/5"},
        {0, 11, 1, FC, "1"},               {0, 15, 1, OUT, NULL},
        {1, 20, 2, C, "erts_internal:spawn_init/1"}, {1, 22, 2, C, "erpc:execute_call/4"},
        {1, 23, 2, FT, "1"},               {1, 25, 2, C, "w:work/0"},
        {1, 65, 2, R, "erpc:execute_call/4"}, {1, 70, 2, FE, NULL},
        {1, 72, 2, OUT, NULL},             {0, 80, 1, IN, NULL},
        {0, 85, 1, R, "a:main/0"},         {0, 90, 1, R, NULL},
    };
    check_fold_following(s, sizeof s / sizeof s[0],
               "<0.1.0>;a:main/0 15\n"
               "<0.1.0>;a:main/0;erpc:call/5 10\n"
               "<0.1.0>;a:main/0;erpc:call/5;<0.2.0>;erpc:execute_call/4 7\n"
               "<0.1.0>;a:main/0;erpc:call/5;<0.2.0>;erpc:execute_call/4;w:work/0 40\n"
               "<0.1.0>;a:main/0;erpc:call/5;[queued] 8\n"
               "<0.1.0>;a:main/0;erpc:call/5;sleep 10\n");
}

/* A plain request: the caller, woken by something else, runs its own code
 * again while the server still works: the server's work up to then is
 * the caller's wait, the rest is not. (Its return from the send, which
 * comes after the take, is the call's own: it had not slept yet.) */
static void caller_runs_again(void)
{
    static const struct efl_script s[] = {
        {0, 0, 1, C, "a:main/0"},    {0, 10, 1, FC, "2"},         {0, 12, 1, C, "erlang:send/2"},
        {1, 13, 2, IN, NULL},        {1, 14, 2, FT, "1"},         {0, 14, 1, R, "a:main/0"},
        {0, 15, 1, OUT, NULL},
        {1, 22, 2, C, "s:work/0"},
        {0, 40, 1, IN, NULL},        {0, 42, 1, C, "a:other/0"},  {0, 50, 1, R, "a:main/0"},
        {1, 60, 2, R, NULL},         {1, 62, 2, FE, NULL},        {0, 70, 1, R, NULL},
    };
    check_fold_following(s, sizeof s / sizeof s[0],
                         "<0.1.0>;a:main/0 32\n"
                         "<0.1.0>;a:main/0;<0.2.0> 8\n"
                         "<0.1.0>;a:main/0;<0.2.0>;s:work/0 20\n"
                         "<0.1.0>;a:main/0;a:other/0 8\n"
                         "<0.1.0>;a:main/0;erlang:send/2 2\n");
}

/* A plain request sent through erlang:send/2: the wait is its caller's
 * (the return from the send does not end it). */
static void sent_through_send_bif(void)
{
    static const struct efl_script s[] = {
        {0, 0, 1, C, "a:main/0"},    {0, 10, 1, C, "erlang:send/2"}, {0, 11, 1, FC, "2"},
        {0, 12, 1, R, "a:main/0"},   {0, 13, 1, OUT, NULL},           {1, 14, 2, IN, NULL},
        {1, 15, 2, FT, "1"},         {1, 16, 2, C, "s:work/0"},       {1, 40, 2, R, NULL},
        {1, 41, 2, FE, NULL},        {0, 45, 1, IN, NULL},            {0, 50, 1, R, NULL},
    };
    check_fold_following(s, sizeof s / sizeof s[0],
                         "<0.1.0>;a:main/0 16\n"
                         "<0.1.0>;a:main/0;<0.2.0> 2\n"
                         "<0.1.0>;a:main/0;<0.2.0>;[queued] 2\n"
                         "<0.1.0>;a:main/0;<0.2.0>;s:work/0 24\n"
                         "<0.1.0>;a:main/0;erlang:send/2 2\n"
                         "<0.1.0>;a:main/0;sleep 4\n");
}

/* A hostile archive: two processes each taking the other's request, in a
 * ring, then ending in any order: folded without looping or crashing. */
static void follow_ring_survives(void)
{
    static const struct efl_script s[] = {
        {0, 0, 1, C, "a:main/0"},  {0, 1, 2, C, "b:main/0"},  {0, 2, 1, FC, "2"},
        {0, 3, 2, FT, "1"},        {0, 4, 2, FC, "1"},        {0, 5, 1, FT, "2"},
        {0, 6, 2, C, "b:work/0"},  {0, 7, 1, C, "a:work/0"},  {0, 8, 2, FE, NULL},
        {0, 9, 1, FE, NULL},       {0, 10, 1, FT, "1"},       {0, 11, 2, FT, "2"},
        {0, 12, 1, FE, NULL},      {0, 13, 1, R, NULL},       {0, 14, 2, R, NULL},
    };
    struct efl_profile *p = NULL;
    free(fold(s, sizeof s / sizeof s[0], 0, &p));
    CHECK(p != NULL);
    efl_profile_free(p);
}

static uint64_t le64(const unsigned char *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

/* perf.data: its header's sections cover the file; every record of the
 * data section is whole; the sample periods add up to the folded
 * output's; the file of symbols beside it is an ELF file naming every
 * function. (perf and hotspot read it in eflambe_formats_SUITE.) */
static void perf_data_layout(void)
{
    static const struct efl_script s[] = {
        {0, 0, 1, C, "a:main/0"},   {0, 10, 1, C, "a:work/1"}, {0, 40, 1, R, "a:main/0"},
        {0, 45, 1, OUT, NULL},      {1, 60, 2, C, "b:loop/0"}, {1, 90, 1, IN, NULL},
        {1, 100, 1, R, NULL},       {1, 120, 2, R, NULL},
    };
    struct efl_profile *p = NULL;
    char *folded = fold(s, sizeof s / sizeof s[0], 0, &p);
    uint64_t folded_total = 0;
    for (char *line = folded; line && *line;) {
        char *end = strchr(line, '\n'), *space = memrchr(line, ' ', (size_t)(end - line));
        folded_total += strtoull(space + 1, NULL, 10);
        line = end + 1;
    }
    free(folded);
    if (p == NULL)
        return;
    const char *path = efl_test_tmpfile("perf-data");
    char syms[300];
    snprintf(syms, sizeof syms, "%s.syms", path);
    unlink(path);
    unlink(syms);
    struct efl_buf none = {0};
    CHECK_STATUS(efl_write_perf_data(p, 0, &none), EFL_ERR_ARG); /* no file: refused */
    struct efl_buf out = {.sink = efl_buf_create_file(path, 0600), .path = path};
    CHECK(out.sink != NULL);
    CHECK_STATUS(efl_write_perf_data(p, 0, &out), EFL_OK);
    CHECK_STATUS(efl_buf_spill(&out, 1), EFL_OK);
    fclose(out.sink);
    efl_buf_free(&out);
    efl_profile_free(p);
    struct efl_buf file = efl_test_read_file(path), elf = efl_test_read_file(syms);
    CHECK(file.len > 104 && memcmp(file.data, "PERFILE2", 8) == 0);
    uint64_t data_off = le64(file.data + 40), data_len = le64(file.data + 48);
    /* After the data: the build-id feature's section (its place, then it). */
    CHECK(le64(file.data + 72) == 1u << 2);
    uint64_t table = data_off + data_len;
    CHECK(table + 16 <= file.len);
    uint64_t ids_off = le64(file.data + table), ids_len = le64(file.data + table + 8);
    CHECK(ids_off == table + 16 && ids_off + ids_len == file.len);
    uint64_t periods = 0, samples = 0, comms = 0, mmaps = 0;
    for (uint64_t at = data_off; at + 8 <= table;) {
        uint32_t type;
        uint16_t size;
        memcpy(&type, file.data + at, 4);
        memcpy(&size, file.data + at + 6, 2);
        CHECK(size >= 8 && at + size <= table);
        if (size < 8)
            break;
        if (type == 9) { /* SAMPLE: ip, pid/tid, time, period, ... */
            periods += le64(file.data + at + 8 + 24);
            samples++;
        }
        comms += type == 3;
        mmaps += type == 1;
        at += size;
    }
    /* Two processes; their periods add up to the folded output's total. */
    CHECK(comms == 2 && mmaps == 2);
    CHECK(samples >= 4);
    CHECK(folded_total > 0 && periods == folded_total);
    CHECK(elf.len > 64 && memcmp(elf.data, "\x7f" "ELF", 4) == 0);
    const char *names[] = {"a:main/0", "a:work/1", "b:loop/0", "sleep"};
    for (size_t i = 0; i < 4; i++)
        CHECK(memmem(elf.data, elf.len, names[i], strlen(names[i]) + 1) != NULL);
    /* The MMAP records name it by its absolute path. */
    char *real = realpath(syms, NULL);
    CHECK(real != NULL && memmem(file.data, file.len, real, strlen(real)) != NULL);
    free(real);
    /* The build-id table gives the ELF's own build id (its note's). */
    const unsigned char *note = memmem(elf.data, elf.len, "GNU", 4);
    CHECK(note != NULL && ids_len >= 36 + 20);
    if (note != NULL && ids_len >= 36)
        CHECK(memcmp(note + 4, file.data + ids_off + 12, 20) == 0);
    efl_buf_free(&file);
    efl_buf_free(&elf);
    unlink(path);
    unlink(syms);
}

int main(void)
{
    RUN(nesting);
    RUN(tail_calls);
    RUN(tail_recursion_bounded);
    RUN(mutual_recursion);
    RUN(exception_unwinds);
    RUN(sleep_frame);
    RUN(runnable_frame);
    RUN(os_time_taken_out);
    RUN(gc_frame);
    RUN(processes_over_rings);
    RUN(root_window);
    RUN(root_window_without_frame);
    RUN(spawned_inside_window);
    RUN(child_stamped_before_spawn);
    RUN(tracing_cost_taken_out);
    RUN(cost_lines);
    RUN(depth_cap);
    RUN(max_depth_option);
    RUN(lost_events_resync);
    RUN(window_end_lost);
    RUN(names_escaped);
    RUN(tail_call_replaces);
    RUN(unknown_kind_was_tail);
    RUN(preempted_under_a_guess);
    RUN(unknown_kind_was_body);
    RUN(stack_past_max);
    RUN(bif_is_body);
    RUN(first_call_of_a_module);
    RUN(recursion_with_table);
    RUN(damaged_site_table);
    RUN(streamed_outputs);
    RUN(streamed_unsorted_folded);
    RUN(many_rings_many_passes);
    RUN(holding_bounded);
    RUN(perf_data_layout);
    RUN(followed_call);
    RUN(followed_erpc_call);
    RUN(caller_runs_again);
    RUN(sent_through_send_bif);
    RUN(follow_ring_survives);
    return efl_test_done();
}
