/* Capture admission: budget, recursion, every K, and many threads entering
 * at once (no call admitted twice, none beyond the budget). */
#include <pthread.h>

#include "efl_capture.h"
#include "efl_test.h"

#define CAP 1024
static struct efl_capture_entry entries[CAP];

static void budget_and_recursion(void)
{
    struct efl_capture c = {.entries = entries, .cap = CAP};
    efl_capture_start(&c, 1, 2, 1, 0);
    CHECK(efl_capture_armed(&c));
    CHECK(efl_capture_enter(&c, 100));   /* admitted */
    CHECK(efl_capture_enter(&c, 100));   /* recursion: free */
    CHECK(efl_capture_inside(&c, 100));
    CHECK(!efl_capture_leave(&c, 100));  /* inner return */
    CHECK(efl_capture_inside(&c, 100));
    CHECK(efl_capture_enter(&c, 200));   /* admitted: budget now 0 */
    CHECK(!efl_capture_enter(&c, 300));  /* refused */
    CHECK(!efl_capture_inside(&c, 300));
    CHECK(efl_capture_leave(&c, 100));   /* outer return ends the capture */
    CHECK(!efl_capture_inside(&c, 100));
    CHECK(!efl_capture_enter(&c, 100));  /* no budget for a second call */
    CHECK(efl_capture_armed(&c));        /* 200 still inside */
    CHECK(efl_capture_leave(&c, 200));
    CHECK(!efl_capture_armed(&c));
    CHECK(c.completed == 2);
    CHECK(!efl_capture_leave(&c, 300));  /* never admitted */
}

/* A new session sees none of the old entries, without clearing. */
static void sessions_do_not_mix(void)
{
    struct efl_capture c = {.entries = entries, .cap = CAP};
    efl_capture_start(&c, 7, 1, 1, 0);
    CHECK(efl_capture_enter(&c, 42));
    efl_capture_start(&c, 8, 1, 1, 0);
    CHECK(!efl_capture_inside(&c, 42));
    CHECK(efl_capture_enter(&c, 43));
    CHECK(!efl_capture_enter(&c, 42));
}

static void one_in_k(void)
{
    struct efl_capture c = {.entries = entries, .cap = CAP};
    efl_capture_start(&c, 9, 100, 3, 0);
    int admitted = 0;
    for (uint64_t pid = 1; pid <= 30; pid++)
        admitted += efl_capture_enter(&c, pid * 16 + 3) == EFL_CAPTURE_TRACE;
    CHECK(admitted == 10);
}

/* Lazy: before ready, calls are passed over (the first told, once), their
 * recursion discarded, and no budget taken; after, admitted. */
static void lazy_until_ready(void)
{
    struct efl_capture c = {.entries = entries, .cap = CAP};
    efl_capture_start(&c, 12, 1, 1, 1);
    CHECK(efl_capture_enter(&c, 600) == EFL_CAPTURE_SKIP_FIRST);
    CHECK(efl_capture_enter(&c, 600) == EFL_CAPTURE_DISCARD); /* its recursion */
    CHECK(efl_capture_enter(&c, 601) == EFL_CAPTURE_SKIP);    /* told once */
    CHECK(!efl_capture_inside(&c, 600) && !efl_capture_leave(&c, 600));
    efl_capture_ready(&c);
    CHECK(!efl_capture_leave(&c, 601));                       /* began before */
    CHECK(efl_capture_enter(&c, 600) == EFL_CAPTURE_TRACE);
    CHECK(efl_capture_inside(&c, 600));
    CHECK(efl_capture_enter(&c, 602) == EFL_CAPTURE_DISCARD); /* budget spent */
    CHECK(efl_capture_leave(&c, 600));
}

/* Only outermost calls count for `every`: the recursive calls inside a
 * skipped call are discarded, uncounted, until its return. */
static void one_in_k_outermost(void)
{
    struct efl_capture c = {.entries = entries, .cap = CAP};
    efl_capture_start(&c, 10, 2, 2, 0);
    CHECK(efl_capture_enter(&c, 500) == EFL_CAPTURE_TRACE); /* 1st: captured */
    CHECK(efl_capture_leave(&c, 500));
    CHECK(efl_capture_enter(&c, 501) == EFL_CAPTURE_SKIP);  /* 2nd: skipped */
    CHECK(efl_capture_skipping(&c, 501));
    for (int i = 0; i < 1000; i++)                          /* its recursion */
        CHECK(efl_capture_enter(&c, 501) == EFL_CAPTURE_DISCARD);
    CHECK(!efl_capture_inside(&c, 501));
    CHECK(!efl_capture_leave(&c, 501));                     /* its return */
    CHECK(!efl_capture_skipping(&c, 501));
    CHECK(efl_capture_enter(&c, 501) == EFL_CAPTURE_TRACE); /* 3rd: captured */
    CHECK(efl_capture_enter(&c, 501) == EFL_CAPTURE_TRACE); /* its recursion */
    CHECK(!efl_capture_leave(&c, 501));
    CHECK(efl_capture_leave(&c, 501));
    CHECK(c.completed == 2);
    CHECK(!efl_capture_armed(&c));
}

#define THREADS 4
#define PIDS_PER_THREAD 5000
static struct efl_capture shared = {.entries = entries, .cap = CAP};
static int admitted_by[THREADS];

static void *enter_many(void *arg)
{
    int t = (int)(intptr_t)arg;
    for (int i = 0; i < PIDS_PER_THREAD; i++) {
        uint64_t pid = ((uint64_t)(t * PIDS_PER_THREAD + i) << 4) | 3;
        if (efl_capture_enter(&shared, pid)) {
            admitted_by[t]++;
            /* Our own entry is findable at once, then ends. */
            if (!efl_capture_inside(&shared, pid) || !efl_capture_leave(&shared, pid))
                admitted_by[t] = -1000000;
        }
    }
    return NULL;
}

static void concurrent_admission(void)
{
    efl_capture_start(&shared, 11, 300, 1, 0);
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++)
        pthread_create(&t[i], NULL, enter_many, (void *)(intptr_t)i);
    int total = 0;
    for (int i = 0; i < THREADS; i++) {
        pthread_join(t[i], NULL);
        total += admitted_by[i];
    }
    CHECK(total == 300);
    CHECK(shared.completed == 300);
    CHECK(!efl_capture_armed(&shared));
}

int main(void)
{
    RUN(budget_and_recursion);
    RUN(sessions_do_not_mix);
    RUN(one_in_k);
    RUN(one_in_k_outermost);
    RUN(lazy_until_ready);
    RUN(concurrent_admission);
    return efl_test_done();
}
