/* The SPSC ring: capacity, drop counting, and a two-thread validation run
 * (one producer, one consumer) on millions of events. */
#include <pthread.h>
#include <sched.h>

#include "efl_ring.h"
#include "efl_test.h"

static void capacity_and_drops(void)
{
    struct efl_ring r;
    CHECK(efl_ring_init(&r, 7)); /* 8 slots, 7 events */
    struct efl_event e = {0}, out[16];
    for (unsigned i = 0; i < 10; i++) {
        e.ts = i;
        bool pushed = efl_ring_push(&r, &e);
        CHECK(pushed == (i < 7));
    }
    CHECK(efl_ring_dropped(&r) == 3);
    size_t n = efl_ring_drain(&r, out, 16);
    CHECK(n == 7);
    for (size_t i = 0; i < n; i++)
        CHECK(out[i].ts == i);
    CHECK(efl_ring_drain(&r, out, 16) == 0);
    /* Wraps around. */
    for (unsigned round = 0; round < 5; round++) {
        for (unsigned i = 0; i < 5; i++) {
            e.ts = 100 * round + i;
            CHECK(efl_ring_push(&r, &e));
        }
        CHECK(efl_ring_drain(&r, out, 3) == 3);
        CHECK(efl_ring_drain(&r, out + 3, 16) == 2);
        for (unsigned i = 0; i < 5; i++)
            CHECK(out[i].ts == 100 * round + i);
    }
    efl_ring_destroy(&r);
}

/* A ring resized within its pages holds what it was resized to, empty;
 * past its pages it refuses. */
static void resized(void)
{
    struct efl_ring r;
    CHECK(efl_ring_init(&r, 15)); /* 16 slots */
    struct efl_event e = {0}, out[16];
    CHECK(efl_ring_push(&r, &e));
    CHECK(!efl_ring_resize(&r, 16));
    CHECK(efl_ring_resize(&r, 3));
    CHECK(efl_ring_drain(&r, out, 16) == 0);
    for (unsigned i = 0; i < 5; i++)
        CHECK(efl_ring_push(&r, &e) == (i < 3));
    CHECK(efl_ring_dropped(&r) == 2);
    CHECK(efl_ring_resize(&r, 15));
    CHECK(efl_ring_dropped(&r) == 0);
    for (unsigned i = 0; i < 16; i++)
        CHECK(efl_ring_push(&r, &e) == (i < 15));
    efl_ring_destroy(&r);
}

/* Lost events are reported in the ring, with whose they were, before the
 * next event that fits. */
static void losses_reported(void)
{
    struct efl_ring r;
    CHECK(efl_ring_init(&r, 3));
    struct efl_event e = {.kind = EFL_EV_CALL, .session = 9}, out[8];
    for (unsigned i = 0; i < 3; i++)
        CHECK(efl_ring_push(&r, &e));
    /* Full: two events of process 77 lost. */
    for (unsigned i = 0; i < 2; i++) {
        CHECK(!efl_ring_report_losses(&r, 5, 9) || efl_ring_reserve(&r) == NULL);
        efl_ring_lose(&r, 77);
    }
    CHECK(efl_ring_drain(&r, out, 8) == 3);
    CHECK(efl_ring_report_losses(&r, 6, 9));
    CHECK(efl_ring_push(&r, &e));
    CHECK(efl_ring_drain(&r, out, 8) == 2);
    CHECK(out[0].kind == EFL_EV_LOST && out[0].pid == 77 && out[0].mod == 2 && out[0].session == 9);
    CHECK(out[1].kind == EFL_EV_CALL);
    /* Losses of two processes name none. */
    for (unsigned i = 0; i < 3; i++)
        CHECK(efl_ring_push(&r, &e));
    efl_ring_lose(&r, 77);
    efl_ring_lose(&r, 78);
    CHECK(efl_ring_drain(&r, out, 8) == 3);
    CHECK(efl_ring_report_losses(&r, 7, 9));
    CHECK(efl_ring_drain(&r, out, 8) == 1);
    CHECK(out[0].kind == EFL_EV_LOST && out[0].pid == 0 && out[0].mod == 2);
    efl_ring_destroy(&r);
}

#define VALIDATE_EVENTS 4000000u

struct run {
    struct efl_ring ring;
    uint64_t refused;  /* pushes that found the ring full */
    int done;
};

static void *producer(void *arg)
{
    struct run *run = arg;
    struct efl_event e = {0};
    for (uint64_t i = 1; i <= VALIDATE_EVENTS; i++) {
        e.ts = i;
        e.pid = i * 7;
        e.mod = (uint32_t)i;
        e.fun = (uint32_t)~i;
        e.kind = (uint8_t)(i % EFL_EV_KIND_END);
        e.arity = (uint8_t)i;
        /* Retry a full ring so that every event goes through it. */
        while (!efl_ring_push(&run->ring, &e)) {
            run->refused++;
            sched_yield();
        }
    }
    __atomic_store_n(&run->done, 1, __ATOMIC_RELEASE);
    return NULL;
}

/* Every event comes out whole, once, in order; every refused push is
 * counted as a drop. */
static void two_threads(void)
{
    struct run run = {0};
    CHECK(efl_ring_init(&run.ring, 1024));
    pthread_t t;
    pthread_create(&t, NULL, producer, &run);
    struct efl_event batch[256];
    uint64_t received = 0, last = 0, bad = 0;
    for (;;) {
        int done = __atomic_load_n(&run.done, __ATOMIC_ACQUIRE);
        size_t n = efl_ring_drain(&run.ring, batch, 256);
        for (size_t i = 0; i < n; i++) {
            const struct efl_event *e = &batch[i];
            if (e->ts <= last || e->pid != e->ts * 7 || e->mod != (uint32_t)e->ts ||
                e->fun != (uint32_t)~e->ts || e->arity != (uint8_t)e->ts)
                bad++;
            last = e->ts;
        }
        received += n;
        if (done && n == 0)
            break;
    }
    pthread_join(t, NULL);
    CHECK(bad == 0);
    CHECK(received == VALIDATE_EVENTS);
    CHECK(efl_ring_dropped(&run.ring) == run.refused);
    printf("     %u events through a 1023-event ring, %llu pushes found it full\n",
           VALIDATE_EVENTS, (unsigned long long)run.refused);
    efl_ring_destroy(&run.ring);
}

int main(void)
{
    RUN(capacity_and_drops);
    RUN(resized);
    RUN(losses_reported);
    RUN(two_threads);
    return efl_test_done();
}
