/* The flusher on its own: it drains every ring into the archive, keeps only
 * its session's events, marks passes, stops at a limit, notes a stop reason,
 * and drains everything before it closes. */
#include <pthread.h>
#include <time.h>

#include "efl_flusher.h"
#include "efl_test.h"

#define SESSION 7

/* What an archive read back holds. */
struct readback {
    uint64_t events, passes, drops, out_of_order;
    uint64_t last_ts[8];
    uint64_t per_ring[8];
};

static efl_status on_event(void *ctx, uint32_t ring, const struct efl_record *r)
{
    struct readback *b = ctx;
    b->events++;
    if (ring < 8) {
        b->out_of_order += r->ts < b->last_ts[ring];
        b->last_ts[ring] = r->ts;
        b->per_ring[ring]++;
    }
    return EFL_OK;
}

static efl_status on_pass(void *ctx, uint64_t ts)
{
    (void)ts;
    ((struct readback *)ctx)->passes++;
    return EFL_OK;
}

static efl_status on_drops(void *ctx, uint32_t ring, uint64_t n)
{
    (void)ring;
    ((struct readback *)ctx)->drops += n;
    return EFL_OK;
}

static struct readback read_back(const char *path, struct efl_archive_summary *sum)
{
    struct readback b = {0};
    struct efl_archive_visitor v = {.ctx = &b, .event = on_event, .pass = on_pass,
                                    .drops = on_drops};
    CHECK_STATUS(efl_archive_read_file(path, &v, sum), EFL_OK);
    return b;
}

static struct efl_event event(uint64_t ts, uint32_t session)
{
    static uint32_t mod;
    if (mod == 0)
        mod = efl_test_atom("m");
    return (struct efl_event){.ts = ts, .pid = 3, .mod = mod, .fun = mod, .kind = EFL_EV_CALL,
                              .arity = 1, .session = session};
}

static struct efl_archive_writer *open_writer(const char *path)
{
    struct efl_archive_writer *w = NULL;
    unlink(path);
    CHECK_STATUS(efl_archive_writer_open(&w, path, "mode=test\n", &efl_test_namer), EFL_OK);
    return w;
}

static void sleep_ms(long ms)
{
    struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&t, NULL);
}

/* Events already in the rings at the start, and leftovers of an earlier
 * session among them: this session's are all archived, in order. */
static void drains_own_session_only(void)
{
    const char *path = efl_test_tmpfile("flusher-own");
    struct efl_ring rings[2];
    struct efl_clock clock = {0}; /* raw readings are nanoseconds */
    CHECK(efl_ring_init(&rings[0], 1024) && efl_ring_init(&rings[1], 1024));
    for (uint64_t i = 0; i < 300; i++) {
        struct efl_event e = event(1000 + i, i % 3 == 0 ? SESSION - 1 : SESSION);
        CHECK(efl_ring_push(&rings[i % 2], &e));
    }
    struct efl_flusher *f = NULL;
    CHECK_STATUS(efl_flusher_start(&f, rings, 2, SESSION, &clock, NULL, open_writer(path)), EFL_OK);
    struct efl_flush_stats st;
    efl_flusher_stop(f, &st);
    /* The processes the events came from (for the run's end to untrace). */
    CHECK(st.npids == 1 && st.pids[0] == 3);
    free(st.modules);
    free(st.pids);
    CHECK_STATUS(st.status, EFL_OK);
    CHECK(st.events == 200);
    CHECK(st.drops == 0);
    CHECK(st.stopped == EFL_STOP_NONE);
    struct efl_archive_summary sum;
    struct readback b = read_back(path, &sum);
    CHECK(sum.ended && !sum.truncated);
    CHECK(b.events == 200 && sum.declared_events == 200);
    CHECK(b.per_ring[0] == 100 && b.per_ring[1] == 100);
    CHECK(b.passes >= 1);
    CHECK(b.out_of_order == 0);
    CHECK(st.bytes > 0);
    efl_ring_destroy(&rings[0]);
    efl_ring_destroy(&rings[1]);
    unlink(path);
}

struct producer {
    struct efl_ring *ring;
    uint32_t *sleeping;
    uint64_t pushed, lost;
    int n;
};

/* A tracer callback's part: write, count what does not fit, wake the
 * flusher when the ring fills. */
static void *produce(void *arg)
{
    struct producer *p = arg;
    for (int i = 0; i < p->n; i++) {
        struct efl_event e = event((uint64_t)efl_monotonic_ns(), SESSION);
        struct efl_event *slot = NULL;
        if (efl_ring_report_losses(p->ring, e.ts, SESSION))
            slot = efl_ring_reserve(p->ring);
        if (slot == NULL) {
            efl_ring_lose(p->ring, e.pid);
            p->lost++;
        } else {
            *slot = e;
            efl_ring_commit(p->ring);
            p->pushed++;
        }
        if (__atomic_load_n(p->sleeping, __ATOMIC_RELAXED) && efl_ring_filling(p->ring))
            efl_flusher_wake(p->sleeping);
        if (i % 4096 == 0)
            sched_yield();
    }
    return NULL;
}

/* Two producers write while the flusher runs: every event is archived or
 * counted as dropped, none twice, each ring's in time order. */
static void producers_and_flusher(void)
{
    const char *path = efl_test_tmpfile("flusher-live");
    struct efl_ring rings[2];
    struct efl_clock clock = {0};
    uint32_t sleeping = 0;
    CHECK(efl_ring_init(&rings[0], 4096) && efl_ring_init(&rings[1], 4096));
    struct efl_flush_limits limits = {.sleeping = &sleeping};
    struct efl_flusher *f = NULL;
    CHECK_STATUS(efl_flusher_start(&f, rings, 2, SESSION, &clock, &limits, open_writer(path)),
                 EFL_OK);
    struct producer p[2] = {{&rings[0], &sleeping, 0, 0, 200000},
                            {&rings[1], &sleeping, 0, 0, 200000}};
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        CHECK(pthread_create(&t[i], NULL, produce, &p[i]) == 0);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    struct efl_flush_stats st;
    efl_flusher_stop(f, &st);
    free(st.modules);
    free(st.pids);
    CHECK_STATUS(st.status, EFL_OK);
    struct efl_archive_summary sum;
    struct readback b = read_back(path, &sum);
    uint64_t pushed = p[0].pushed + p[1].pushed, lost = p[0].lost + p[1].lost;
    /* A loss marker takes a slot: it is archived as an event too. */
    CHECK(b.events >= pushed && st.events == b.events);
    CHECK(st.drops == lost && b.drops == lost);
    CHECK(b.out_of_order == 0);
    CHECK(b.passes >= 1); /* how many depends on the timing */
    CHECK(sum.ended);
    efl_ring_destroy(&rings[0]);
    efl_ring_destroy(&rings[1]);
    unlink(path);
}

struct limit_seen {
    int calls;
    unsigned reason;
};

static void on_limit(void *ctx, unsigned reason)
{
    struct limit_seen *l = ctx;
    __atomic_fetch_add(&l->calls, 1, __ATOMIC_SEQ_CST);
    __atomic_store_n(&l->reason, reason, __ATOMIC_SEQ_CST);
}

/* max_events: on_limit once, on the flusher's thread; what comes after is
 * discarded; the archive says why it stopped. */
static void stops_at_max_events(void)
{
    const char *path = efl_test_tmpfile("flusher-limit");
    struct efl_ring ring;
    struct efl_clock clock = {0};
    struct limit_seen seen = {0};
    CHECK(efl_ring_init(&ring, 8192));
    for (uint64_t i = 0; i < 3000; i++) {
        struct efl_event e = event(i + 1, SESSION);
        CHECK(efl_ring_push(&ring, &e));
    }
    struct efl_flush_limits limits = {.max_events = 1000, .on_limit = on_limit, .ctx = &seen};
    struct efl_flusher *f = NULL;
    CHECK_STATUS(efl_flusher_start(&f, &ring, 1, SESSION, &clock, &limits, open_writer(path)),
                 EFL_OK);
    for (int i = 0; i < 2000 && __atomic_load_n(&seen.calls, __ATOMIC_SEQ_CST) == 0; i++)
        sleep_ms(1);
    /* Pushed after the limit (the producer keeps the ring): dropped. */
    for (uint64_t i = 0; i < 3000; i++) {
        struct efl_event e = event(5000 + i, SESSION);
        CHECK(efl_ring_push(&ring, &e));
    }
    struct efl_flush_stats st;
    efl_flusher_stop(f, &st);
    free(st.modules);
    free(st.pids);
    CHECK(seen.calls == 1);
    CHECK(seen.reason == EFL_STOP_MAX_EVENTS);
    CHECK(st.stopped == EFL_STOP_MAX_EVENTS);
    CHECK(st.events == 3000); /* the pass that crossed the limit, whole */
    struct efl_archive_summary sum;
    struct readback b = read_back(path, &sum);
    CHECK(b.events == 3000);
    CHECK(sum.stopped == EFL_STOP_MAX_EVENTS);
    efl_ring_destroy(&ring);
    unlink(path);
}

/* A stop noted from outside (a timeout) is written at close; a later note
 * does not replace the first. */
static void notes_a_stop(void)
{
    const char *path = efl_test_tmpfile("flusher-note");
    struct efl_ring ring;
    struct efl_clock clock = {0};
    CHECK(efl_ring_init(&ring, 64));
    struct efl_flusher *f = NULL;
    CHECK_STATUS(efl_flusher_start(&f, &ring, 1, SESSION, &clock, NULL, open_writer(path)), EFL_OK);
    efl_flusher_note_stop(f, EFL_STOP_TIMEOUT);
    efl_flusher_note_stop(f, EFL_STOP_STOPPED);
    struct efl_flush_stats st;
    efl_flusher_stop(f, &st);
    free(st.modules);
    free(st.pids);
    CHECK(st.stopped == EFL_STOP_TIMEOUT);
    CHECK(st.events == 0);
    struct efl_archive_summary sum;
    read_back(path, &sum);
    CHECK(sum.stopped == EFL_STOP_TIMEOUT && sum.ended);
    efl_ring_destroy(&ring);
    unlink(path);
}

/* A sleeping flusher is woken by a producer: events pushed while it sleeps
 * its longest (1 s here) reach the archive well before that. */
static void woken_by_a_producer(void)
{
    const char *path = efl_test_tmpfile("flusher-wake");
    struct efl_ring ring;
    struct efl_clock clock = {0};
    uint32_t sleeping = 0;
    struct limit_seen seen = {0};
    CHECK(efl_ring_init(&ring, 1024));
    struct efl_flush_limits limits = {.max_events = 100, .on_limit = on_limit, .ctx = &seen,
                                      .idle_wait_max_ns = 1000000000L, .sleeping = &sleeping};
    struct efl_flusher *f = NULL;
    CHECK_STATUS(efl_flusher_start(&f, &ring, 1, SESSION, &clock, &limits, open_writer(path)),
                 EFL_OK);
    /* Let it go idle, up to its longest sleep. */
    sleep_ms(1200);
    int64_t t0 = efl_monotonic_ns();
    for (uint64_t i = 0; !efl_ring_filling(&ring); i++) {
        struct efl_event e = event(i + 1, SESSION);
        CHECK(efl_ring_push(&ring, &e));
    }
    efl_flusher_wake(&sleeping);
    while (__atomic_load_n(&seen.calls, __ATOMIC_SEQ_CST) == 0 && efl_monotonic_ns() - t0 < 5000000000LL)
        sleep_ms(1);
    int64_t took_ms = (efl_monotonic_ns() - t0) / 1000000;
    struct efl_flush_stats st;
    efl_flusher_stop(f, &st);
    free(st.modules);
    free(st.pids);
    /* Without the wake it would sleep on for up to 1 s more. */
    CHECK(seen.calls == 1);
    if (took_ms >= 500)
        fprintf(stderr, "woken after %lld ms\n", (long long)took_ms);
    CHECK(took_ms < 500);
    efl_ring_destroy(&ring);
    unlink(path);
}

int main(void)
{
    RUN(drains_own_session_only);
    RUN(producers_and_flusher);
    RUN(stops_at_max_events);
    RUN(notes_a_stop);
    RUN(woken_by_a_producer);
    return efl_test_done();
}
