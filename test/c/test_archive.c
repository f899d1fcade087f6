/* The archive codec: round trip, frames, and damaged inputs (truncated at
 * every length, every byte flipped, foreign and empty files). */
#include <errno.h>
#include <sys/stat.h>

#include "efl_test.h"

struct collected {
    char names[64][64];
    unsigned nnames;
    char procs[16][32];
    unsigned nprocs;
    struct efl_record ev[4096];
    uint32_t ring[4096];
    size_t nev;
    char meta[256];
};

static efl_status c_meta(void *ctx, const char *line, size_t len)
{
    struct collected *c = ctx;
    strncat(c->meta, line, len < 100 ? len : 100);
    strcat(c->meta, "|");
    return EFL_OK;
}

static efl_status c_symbol(void *ctx, uint32_t id, const char *s, size_t len)
{
    struct collected *c = ctx;
    if (id < 64)
        snprintf(c->names[id], 64, "%.*s", (int)len, s);
    c->nnames = id;
    return EFL_OK;
}

static efl_status c_process(void *ctx, uint32_t id, const char *s, size_t len)
{
    struct collected *c = ctx;
    if (id < 16)
        snprintf(c->procs[id], 32, "%.*s", (int)len, s);
    c->nprocs = id;
    return EFL_OK;
}

static efl_status c_event(void *ctx, uint32_t ring, const struct efl_record *r)
{
    struct collected *c = ctx;
    if (c->nev < 4096) {
        c->ring[c->nev] = ring;
        c->ev[c->nev++] = *r;
    }
    return EFL_OK;
}

static struct efl_archive_visitor visitor(struct collected *c)
{
    struct efl_archive_visitor v = {c, c_meta, c_symbol, c_process, c_event, NULL, NULL, NULL, NULL};
    return v;
}

static const struct efl_script script[] = {
    {0, 10, 5, EFL_EV_CALL, "m:f/1"},
    {0, 12, 5, EFL_EV_CALL, "m:g/2"},
    {1, 13, 6, EFL_EV_CALL, "other:h/0"},
    {0, 20, 5, EFL_EV_RETURN_TO, "m:f/1"},
    {0, 21, 5, EFL_EV_GC_START, NULL},
    {0, 22, 5, EFL_EV_GC_END, NULL},
    {1, 25, 6, EFL_EV_RETURN_TO, NULL},
    {0, 30, 5, EFL_EV_OUT, "cpu=1234567"},  /* the thread's CPU time, us */
    {0, 31, 5, EFL_EV_RECEIVE, NULL},
};
#define NSCRIPT (sizeof script / sizeof script[0])

static void round_trip(void)
{
    const char *path = efl_test_tmpfile("rt");
    CHECK_STATUS(efl_test_write_script(path, script, NSCRIPT, 0), EFL_OK);
    struct collected *c = calloc(1, sizeof *c);
    struct efl_archive_visitor v = visitor(c);
    struct efl_archive_summary sum;
    CHECK_STATUS(efl_archive_read_file(path, &v, &sum), EFL_OK);
    CHECK(sum.ended && !sum.truncated);
    CHECK(sum.major == EFL_ARCHIVE_MAJOR);
    CHECK(sum.events == NSCRIPT && sum.declared_events == NSCRIPT);
    CHECK_STR(c->meta, "mode=test|");
    CHECK(c->nev == NSCRIPT);
    CHECK(c->nprocs == 2);
    CHECK_STR(c->procs[1], "<0.5.0>");
    for (size_t i = 0; i < c->nev && i < NSCRIPT; i++) {
        const struct efl_record *r = &c->ev[i];
        CHECK(c->ring[i] == script[i].ring);
        CHECK(r->ts == script[i].us * 1000ull);
        CHECK(r->kind == script[i].kind);
        CHECK_STR(c->procs[r->pid], script[i].pid == 5 ? "<0.5.0>" : "<0.6.0>");
        char mfa[200] = "";
        if (r->mod)
            snprintf(mfa, sizeof mfa, "%s:%s/%u", c->names[r->mod], c->names[r->fun], r->arity);
        else if (r->cpu)
            snprintf(mfa, sizeof mfa, "cpu=%llu", (unsigned long long)(r->cpu / 1000));
        CHECK_STR(mfa, script[i].mfa && script[i].kind != EFL_EV_GC_START ? script[i].mfa : "");
    }
    free(c);
    unlink(path);
}


/* A many-frame archive: each event batch is its own frame. */
static struct efl_buf framed_archive(size_t *frame_ends, size_t *nframes)
{
    const char *path = efl_test_tmpfile("frames");
    struct efl_archive_writer *w;
    unlink(path);
    CHECK_STATUS(efl_archive_writer_open(&w, path, "mode=test\n", &efl_test_namer), EFL_OK);
    *nframes = 0;
    for (unsigned i = 0; i < 6; i++) {
        struct efl_event e = efl_test_event(&script[i]);
        CHECK_STATUS(efl_archive_writer_events(w, 0, &e, 1), EFL_OK);
        CHECK_STATUS(efl_archive_writer_end_frame(w), EFL_OK);
        struct efl_buf so_far = efl_test_read_file(path);
        frame_ends[(*nframes)++] = so_far.len;
        efl_buf_free(&so_far);
    }
    CHECK_STATUS(efl_archive_writer_close(w, NULL), EFL_OK);
    struct efl_buf b = efl_test_read_file(path);
    unlink(path);
    return b;
}

/* Cut at every length: never a crash; a cut inside the header is an error,
 * anywhere else the events of the complete frames come back. */
static void truncated_everywhere(void)
{
    size_t ends[16], nframes;
    struct efl_buf whole = framed_archive(ends, &nframes);
    CHECK(nframes == 6);
    for (size_t len = 0; len < whole.len; len++) {
        struct collected *c = calloc(1, sizeof *c);
        struct efl_archive_visitor v = visitor(c);
        struct efl_archive_summary sum;
        efl_status s = efl_archive_read_mem(whole.data, len, &v, &sum);
        size_t complete = 0;
        while (complete < nframes && ends[complete] <= len)
            complete++;
        if (len == 0) {
            CHECK_STATUS(s, EFL_ERR_EMPTY);
        } else if (len < 8) {
            CHECK_STATUS(s, EFL_ERR_NOT_ARCHIVE);
        } else if (s == EFL_OK) {
            CHECK(sum.truncated);
            CHECK(c->nev == complete);
        } else {
            /* Only the header can be cut into an error. */
            CHECK(len < ends[0]);
        }
        free(c);
    }
    efl_buf_free(&whole);
}

/* Flip each byte: the reader answers OK or an error, never crashes; zstd's
 * checksums catch damage inside frames. */
static void flipped_bytes(void)
{
    size_t ends[16], nframes;
    struct efl_buf whole = framed_archive(ends, &nframes);
    unsigned errors = 0;
    for (size_t i = 0; i < whole.len; i++) {
        whole.data[i] ^= 0x5a;
        struct collected *c = calloc(1, sizeof *c);
        struct efl_archive_visitor v = visitor(c);
        struct efl_archive_summary sum;
        if (efl_archive_read_mem(whole.data, whole.len, &v, &sum) != EFL_OK)
            errors++;
        whole.data[i] ^= 0x5a;
        free(c);
    }
    /* Nearly every flip is detected; a flipped metadata byte is not. */
    CHECK(errors > whole.len / 2);
    efl_buf_free(&whole);
}

/* The same through files, where a second thread decodes frames while the
 * caller parses them: same outcomes, whatever the cut or the damage. */
static void damaged_files(void)
{
    size_t ends[16], nframes;
    struct efl_buf whole = framed_archive(ends, &nframes);
    const char *path = efl_test_tmpfile("damaged");
    for (size_t len = 8; len <= whole.len; len += 3) {
        for (int flip = 0; flip < 2; flip++) {
            size_t at = len / 2;
            if (flip)
                whole.data[at] ^= 0x24;
            FILE *f = fopen(path, "wb");
            fwrite(whole.data, 1, len, f);
            fclose(f);
            struct collected *c = calloc(1, sizeof *c), *m = calloc(1, sizeof *m);
            struct efl_archive_visitor vf = visitor(c), vm = visitor(m);
            struct efl_archive_summary sf, sm;
            efl_status from_file = efl_archive_read_file(path, &vf, &sf);
            efl_status from_mem = efl_archive_read_mem(whole.data, len, &vm, &sm);
            CHECK(from_file == from_mem);
            CHECK(c->nev == m->nev);
            if (from_file == EFL_OK)
                CHECK(sf.truncated == sm.truncated && sf.frames == sm.frames);
            if (flip)
                whole.data[at] ^= 0x24;
            free(c);
            free(m);
        }
    }
    unlink(path);
    efl_buf_free(&whole);
}

static void foreign_inputs(void)
{
    struct efl_archive_summary sum;
    struct efl_archive_visitor v = {0};
    CHECK_STATUS(efl_archive_read_mem("", 0, &v, &sum), EFL_ERR_EMPTY);
    const char text[] = "<0.85.0>;m:f/1 12\n";
    CHECK_STATUS(efl_archive_read_mem(text, sizeof text - 1, &v, &sum), EFL_ERR_NOT_ARCHIVE);
    CHECK_STATUS(efl_archive_read_file("/nonexistent/eflambe", &v, &sum), EFL_ERR_IO);
    /* A newer major version is refused. */
    size_t ends[16], nframes;
    struct efl_buf whole = framed_archive(ends, &nframes);
    whole.data[16] = EFL_ARCHIVE_MAJOR + 1;
    CHECK_STATUS(efl_archive_read_mem(whole.data, whole.len, &v, &sum), EFL_ERR_VERSION);
    /* There never was a major version 0: damaged, not newer. */
    whole.data[16] = 0;
    CHECK_STATUS(efl_archive_read_mem(whole.data, whole.len, &v, &sum), EFL_ERR_CORRUPT);
    efl_buf_free(&whole);
}

/* Only regular files are read: a FIFO with no writer would block the
 * reader for ever, a directory has nothing to read. */
static void not_regular_files(void)
{
    struct efl_archive_summary sum;
    struct efl_archive_visitor v = {0};
    char dir[] = "/tmp/efl-test-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char fifo[sizeof dir + 8];
    snprintf(fifo, sizeof fifo, "%s/fifo", dir);
    CHECK(mkfifo(fifo, 0600) == 0);
    CHECK_STATUS(efl_archive_read_file(fifo, &v, &sum), EFL_ERR_IO);
    CHECK_STATUS(efl_archive_read_header(fifo, &v, &sum), EFL_ERR_IO);
    errno = 0;
    CHECK_STATUS(efl_archive_read_file(dir, &v, &sum), EFL_ERR_IO);
    CHECK(errno == EISDIR);
    unlink(fifo);
    rmdir(dir);
}

int main(void)
{
    RUN(round_trip);
    RUN(truncated_everywhere);
    RUN(flipped_bytes);
    RUN(damaged_files);
    RUN(foreign_inputs);
    RUN(not_regular_files);
    return efl_test_done();
}
