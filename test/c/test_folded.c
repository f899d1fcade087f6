/* Folded stacks read back (efl_folded.h): the folded writer gives back the
 * text it read, for every kind of frame; bad input is refused; the
 * differential profile of two folded texts; the time-ordered writers'
 * timeline laid out from them. */
#include "efl_folded.h"
#include "efl_writer.h"
#include "efl_test.h"

static char *written(const struct efl_profile *p, const char *format)
{
    struct efl_buf out = {0};
    CHECK_STATUS(efl_writer_find(format)->write(p, 0, &out), EFL_OK);
    efl_buf_append(&out, "", 1);
    return (char *)out.data;
}

static void round_trip(void)
{
    static const char text[] =
        "<0.85.0>;Demo.run/0;Demo.fib/1 12\n"
        "<0.85.0>;lists:foldl/3;gc 3\n"
        "<0.85.0>;lists:foldl/3;lists:'-x/1-fun-0-'/2;[os preempted] 7\n"
        "<0.85.0>;m:f/255;[dropped 12 events] 4\n"
        "<0.85.0>;m:f/255;runnable 1\n"
        "<0.85.0>;sleep 100\n"
        "<0.86.0> (exception);m:g/0;[queued] 9\n"
        "node@host;<0.90.0>;m:h/300 5\n";
    struct efl_profile *p = NULL;
    CHECK_STATUS(efl_profile_from_folded(text, sizeof text - 1, NULL, 0, &p), EFL_OK);
    if (p == NULL)
        return;
    char *back = written(p, "brendan_gregg");
    CHECK_STR(back, text);
    free(back);
    /* Kinds as the writers know them: node@host, and m:h/300 (no arity is
     * over 255), are names drawn as they are. */
    int named = 0;
    for (uint32_t i = 0; i < p->nframes; i++)
        named += p->frames[i].kind == EFL_FRAME_NAME;
    CHECK(named == 2);
    CHECK(p->total_ns == 141000);
    efl_profile_free(p);
}

static void refused(void)
{
    static const char *bad[] = {"a;b\n", "a;b x\n", "a;;b 1\n", " 1\n", "a;b -1\n",
                                "a 1234567890123456\n"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct efl_profile *p = NULL;
        CHECK_STATUS(efl_profile_from_folded(bad[i], strlen(bad[i]), NULL, 0, &p), EFL_ERR_CORRUPT);
        CHECK(p == NULL);
    }
    /* A NUL inside a name (the fuzzer's find). */
    static const char nul[] = "p;a\0b 1\n";
    struct efl_profile *q = NULL;
    CHECK_STATUS(efl_profile_from_folded(nul, sizeof nul - 1, NULL, 0, &q), EFL_ERR_CORRUPT);
    /* Deeper than any profile: refused, not cut. */
    struct efl_buf deep = {0};
    for (int i = 0; i < EFL_FOLDED_MAX_FRAMES + 1; i++)
        efl_buf_puts(&deep, i ? ";m:f/0" : "p");
    efl_buf_puts(&deep, " 1\n");
    struct efl_profile *p = NULL;
    CHECK_STATUS(efl_profile_from_folded((const char *)deep.data, deep.len, NULL, 0, &p),
                 EFL_ERR_LIMIT);
    efl_buf_free(&deep);
    /* Empty lines and a last line without its newline are fine. */
    static const char ok[] = "\np;m:f/0 2\n\np;m:g/0 3";
    CHECK_STATUS(efl_profile_from_folded(ok, sizeof ok - 1, NULL, 0, &p), EFL_OK);
    if (p)
        CHECK(p->total_ns == 5000);
    efl_profile_free(p);
}

/* Time-ordered writers get each process's stacks end to end from 0. */
static void laid_out(void)
{
    static const char text[] = "<0.1.0>;m:a/0 10\n<0.1.0>;m:a/0;m:b/0 5\nn@h;<0.2.0>;m:c/0 7\n";
    struct efl_profile *p = NULL;
    CHECK_STATUS(efl_profile_from_folded(text, sizeof text - 1, NULL, 1, &p), EFL_OK);
    if (p == NULL)
        return;
    /* Two processes: 2 + 1 changes, each ending with the process alone. */
    CHECK(p->ntimeline == 5);
    uint64_t end1 = 0, end2 = 0;
    for (size_t i = 0; i < p->ntimeline; i++) {
        const struct efl_change *c = &p->timeline[i];
        if (c->node == c->proc)
            *(p->frames[p->nodes[c->proc].frame].a == 1 ? &end1 : &end2) = c->ts;
    }
    CHECK(end1 == 15000 && end2 == 7000);
    char *json = written(p, "speedscope");
    CHECK(strstr(json, "<0.1.0>") != NULL && strstr(json, "<0.2.0>") != NULL);
    free(json);
    efl_profile_free(p);
}

/* Nothing at all: every writer writes an empty profile (the fuzzer's
 * find: the process list of no process). */
static void empty(void)
{
    struct efl_profile *p = NULL;
    CHECK_STATUS(efl_profile_from_folded("", 0, NULL, 1, &p), EFL_OK);
    static const char *formats[] = {"brendan_gregg", "perf", "speedscope", "svg", "pprof"};
    for (size_t i = 0; p && i < sizeof formats / sizeof formats[0]; i++) {
        struct efl_buf out = {0};
        (void)efl_writer_find(formats[i])->write(p, 0, &out);
        efl_buf_free(&out);
    }
    efl_profile_free(p);
}

static void diff_lines(void)
{
    static const char base[] = "p;m:a/0;m:x/0 100\np;m:a/0;m:y/0 50\np;m:a/0 10\n";
    static const char new[] = "p;m:a/0;m:x/0 300\np;m:a/0 10\np;m:a/0;m:z/0 40\n";
    struct efl_profile *p = NULL;
    CHECK_STATUS(efl_profile_diff_folded(base, sizeof base - 1, new, sizeof new - 1, 0, NULL, &p),
                 EFL_OK);
    if (p == NULL)
        return;
    char *lines = written(p, "brendan_gregg");
    CHECK_STR(lines, "p;m:a/0 10 10\np;m:a/0;m:x/0 100 300\n"
                     "p;m:a/0;m:y/0 50 0\np;m:a/0;m:z/0 0 40\n");
    free(lines);
    /* Drawn: New's times, and y (only in Base) at Base's. */
    CHECK(p->total_ns == (10 + 300 + 50 + 40) * 1000);
    char *svg = written(p, "svg");
    CHECK(strstr(svg, "Differential flame graph") != NULL);
    CHECK(strstr(svg, "base 100 \xc2\xb5s, new 300 \xc2\xb5s, +200.0%") != NULL);
    CHECK(strstr(svg, "-100.0%; only in base") != NULL);
    CHECK(strstr(svg, "+40 \xc2\xb5s; only in new") != NULL);
    CHECK(strstr(svg, "stroke-dasharray") != NULL);
    free(svg);
    efl_profile_free(p);
    /* Normalized: Base (160) scaled to New (350). */
    CHECK_STATUS(efl_profile_diff_folded(base, sizeof base - 1, new, sizeof new - 1, 1, NULL, &p),
                 EFL_OK);
    if (p == NULL)
        return;
    lines = written(p, "brendan_gregg");
    CHECK_STR(lines, "p;m:a/0 22 10\np;m:a/0;m:x/0 219 300\n"
                     "p;m:a/0;m:y/0 109 0\np;m:a/0;m:z/0 0 40\n");
    free(lines);
    efl_profile_free(p);
    /* A profile against itself: no change anywhere, all white. */
    CHECK_STATUS(efl_profile_diff_folded(base, sizeof base - 1, base, sizeof base - 1, 0, NULL, &p),
                 EFL_OK);
    if (p == NULL)
        return;
    svg = written(p, "svg");
    size_t fills = 0, white = 0;
    for (const char *at = svg; (at = strstr(at, "fill=\"rgb(")) != NULL; at++) {
        fills++;
        white += strncmp(at, "fill=\"rgb(255,255,255)\"", 23) == 0;
    }
    CHECK(fills > 3 && fills == white);
    CHECK(strstr(svg, "only in") == NULL);
    free(svg);
    efl_profile_free(p);
}

int main(void)
{
    RUN(round_trip);
    RUN(refused);
    RUN(laid_out);
    RUN(empty);
    RUN(diff_lines);
    return efl_test_done();
}
