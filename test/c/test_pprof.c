/* The pprof writer, read back with a small protobuf reader: the gzip
 * wrapper, the string table, the sample types, each sample's stack
 * (leaf first, every location defined, every function named), its values
 * against the profile's, and its labels. (go tool pprof and speedscope
 * read real profiles in eflambe_formats_SUITE.) */
#include <zlib.h>

#include "efl_fold.h"
#include "efl_writer.h"
#include "efl_test.h"

#define C EFL_EV_CALL
#define R EFL_EV_RETURN_TO
#define IN EFL_EV_IN
#define OUT EFL_EV_OUT
#define RC EFL_EV_ROOT_CALL
#define RR EFL_EV_ROOT_RETURN

struct field {
    unsigned num, wire;
    uint64_t v;              /* a varint's value */
    const unsigned char *p;  /* a length-delimited field's bytes */
    size_t len;
};

/* The next field, or 0 at the end (or on malformed input, checked). */
static int next_field(struct efl_cursor *c, struct field *f)
{
    if (c->p >= c->end)
        return 0;
    uint64_t key;
    CHECK_STATUS(efl_cursor_varint(c, &key), EFL_OK);
    f->num = (unsigned)(key >> 3);
    f->wire = key & 7;
    if (f->wire == 0)
        return efl_cursor_varint(c, &f->v) == EFL_OK;
    CHECK(f->wire == 2);
    uint64_t len;
    if (f->wire != 2 || efl_cursor_varint(c, &len) != EFL_OK ||
        efl_cursor_bytes(c, len, &f->p) != EFL_OK)
        return 0;
    f->len = len;
    return 1;
}

/* Packed varints (or one unpacked) into vals; their count. */
static size_t varints(const struct field *f, uint64_t *vals, size_t max)
{
    if (f->wire == 0) {
        vals[0] = f->v;
        return 1;
    }
    struct efl_cursor c = {f->p, f->p + f->len};
    size_t n = 0;
    while (c.p < c.end && n < max)
        CHECK_STATUS(efl_cursor_varint(&c, &vals[n++]), EFL_OK);
    return n;
}

static uint64_t varint_of(const unsigned char *p, size_t len, unsigned num)
{
    struct efl_cursor c = {p, p + len};
    struct field f;
    while (next_field(&c, &f))
        if (f.num == num && f.wire == 0)
            return f.v;
    return 0;
}

static struct efl_buf gunzip(const struct efl_buf *in)
{
    struct efl_buf out = {0};
    z_stream z = {0};
    CHECK(inflateInit2(&z, 15 + 16) == Z_OK);
    z.next_in = in->data;
    z.avail_in = (uInt)in->len;
    int rc = Z_OK;
    while (rc == Z_OK) {
        CHECK_STATUS(efl_buf_reserve(&out, 1 << 16), EFL_OK);
        z.next_out = out.data + out.len;
        z.avail_out = 1 << 16;
        rc = inflate(&z, Z_NO_FLUSH);
        out.len += (1 << 16) - z.avail_out;
    }
    CHECK(rc == Z_STREAM_END);
    inflateEnd(&z);
    return out;
}

#define MAX_STRINGS 64
#define MAX_SAMPLES 64

struct decoded {
    char strings[MAX_STRINGS][64];
    size_t nstrings;
    uint64_t function_name[MAX_STRINGS]; /* by function id */
    uint64_t location_function[MAX_STRINGS];
    struct {
        uint64_t loc[16];
        size_t nloc;
        uint64_t val[4];
        uint64_t process, node, call; /* label values: strings, call a number */
    } samples[MAX_SAMPLES];
    size_t nsamples;
    uint64_t types[4], default_type;
    size_t ntypes;
};

static void decode_sample(struct decoded *d, const struct field *s)
{
    CHECK(d->nsamples < MAX_SAMPLES);
    if (d->nsamples >= MAX_SAMPLES)
        return;
    struct efl_cursor c = {s->p, s->p + s->len};
    struct field f;
    size_t i = d->nsamples++;
    while (next_field(&c, &f)) {
        if (f.num == 1) {
            d->samples[i].nloc = varints(&f, d->samples[i].loc, 16);
        } else if (f.num == 2) {
            CHECK(varints(&f, d->samples[i].val, 4) == d->ntypes);
        } else if (f.num == 3) {
            uint64_t key = varint_of(f.p, f.len, 1), str = varint_of(f.p, f.len, 2);
            CHECK(key < d->nstrings);
            const char *k = key < d->nstrings ? d->strings[key] : "";
            if (strcmp(k, "process") == 0)
                d->samples[i].process = str;
            else if (strcmp(k, "node") == 0)
                d->samples[i].node = str;
            else if (strcmp(k, "call") == 0)
                d->samples[i].call = varint_of(f.p, f.len, 3);
        }
    }
}

static void decode(const struct efl_buf *pb, struct decoded *d)
{
    memset(d, 0, sizeof *d);
    struct efl_cursor c = {pb->data, pb->data + pb->len};
    struct field f;
    while (next_field(&c, &f)) {
        switch (f.num) {
        case 1: /* sample_type */
            if (d->ntypes < 4)
                d->types[d->ntypes++] = varint_of(f.p, f.len, 1);
            break;
        case 2:
            decode_sample(d, &f);
            break;
        case 4: { /* location: id, its line's function */
            uint64_t id = varint_of(f.p, f.len, 1);
            struct efl_cursor l = {f.p, f.p + f.len};
            struct field lf;
            while (next_field(&l, &lf))
                if (lf.num == 4 && id < MAX_STRINGS)
                    d->location_function[id] = varint_of(lf.p, lf.len, 1);
            CHECK(varint_of(f.p, f.len, 2) == 1); /* the one mapping */
            break;
        }
        case 5: { /* function: id, name */
            uint64_t id = varint_of(f.p, f.len, 1);
            CHECK(id > 0 && id < MAX_STRINGS);
            if (id > 0 && id < MAX_STRINGS)
                d->function_name[id] = varint_of(f.p, f.len, 2);
            break;
        }
        case 6:
            CHECK(d->nstrings < MAX_STRINGS && f.len < 64);
            if (d->nstrings < MAX_STRINGS && f.len < 64) {
                memcpy(d->strings[d->nstrings], f.p, f.len);
                d->strings[d->nstrings++][f.len] = 0;
            }
            break;
        case 14:
            d->default_type = f.v;
            break;
        }
    }
}

/* A location's function's name. */
static const char *location_name(const struct decoded *d, uint64_t loc)
{
    if (loc >= MAX_STRINGS || d->location_function[loc] >= MAX_STRINGS)
        return "?";
    uint64_t name = d->function_name[d->location_function[loc]];
    return name > 0 && name < d->nstrings ? d->strings[name] : "?";
}

static struct efl_profile *fold_script(const struct efl_script *s, size_t n, const char *meta)
{
    const char *path = efl_test_tmpfile("pprof");
    CHECK_STATUS(efl_test_write_script_meta(path, s, n, 0, meta), EFL_OK);
    struct efl_profile *p = NULL;
    CHECK_STATUS(efl_fold_archive(path, NULL, &p), EFL_OK);
    unlink(path);
    return p;
}

/* One process: main calls work, which is scheduled out for 100 us, ready
 * to run (runnable: what comes after its `in' is no receive), returns,
 * and is called again; every stack a sample, leaf first, its time three
 * ways and its calls. */
static void pprof_layout(void)
{
    static const struct efl_script s[] = {
        {0, 0, 1, C, "a:main/0"},   {0, 10, 1, C, "a:work/1"}, {0, 40, 1, OUT, NULL},
        {0, 140, 1, IN, NULL},      {0, 150, 1, R, "a:main/0"}, {0, 155, 1, C, "a:work/1"},
        {0, 155, 1, R, "a:main/0"}, {0, 170, 1, R, NULL},
    };
    struct efl_profile *p = fold_script(s, sizeof s / sizeof s[0], "mode=test\nnode=n1@host\n");
    if (p == NULL)
        return;
    struct efl_buf gz = {0};
    CHECK_STATUS(efl_write_pprof(p, 0, &gz), EFL_OK);
    CHECK(gz.len > 18 && gz.data[0] == 0x1f && gz.data[1] == 0x8b);
    struct efl_buf pb = gunzip(&gz);
    struct decoded *d = calloc(1, sizeof *d);
    decode(&pb, d);
    CHECK(d->nstrings > 0 && d->strings[0][0] == 0);
    CHECK(d->ntypes == 4);
    CHECK_STR(d->strings[d->types[0]], "wall");
    CHECK_STR(d->strings[d->types[1]], "cpu");
    CHECK_STR(d->strings[d->types[2]], "off_cpu");
    CHECK_STR(d->strings[d->types[3]], "calls");
    CHECK(d->default_type == d->types[0]);
    uint64_t wall = 0, self = 0;
    for (uint32_t i = 0; i < p->nnodes; i++)
        self += p->nodes[i].self_ns;
    int saw_runnable = 0, saw_work = 0;
    for (size_t i = 0; i < d->nsamples; i++) {
        const char *leaf = location_name(d, d->samples[i].loc[0]);
        const char *root = location_name(d, d->samples[i].loc[d->samples[i].nloc - 1]);
        CHECK(root[0] == '<'); /* the process, at the root as in the folded output */
        CHECK(d->samples[i].process > 0 && strcmp(d->strings[d->samples[i].process], root) == 0);
        CHECK_STR(d->strings[d->samples[i].node], "n1@host");
        wall += d->samples[i].val[0];
        CHECK(d->samples[i].val[1] + d->samples[i].val[2] == d->samples[i].val[0] ||
              root == leaf);
        if (strcmp(leaf, "runnable") == 0) {
            saw_runnable = 1;
            CHECK(d->samples[i].val[1] == 0 && d->samples[i].val[2] == 100000);
            CHECK(d->samples[i].nloc == 4);
            CHECK_STR(location_name(d, d->samples[i].loc[1]), "a:work/1");
            CHECK_STR(location_name(d, d->samples[i].loc[2]), "a:main/0");
        }
        if (strcmp(leaf, "a:work/1") == 0) {
            saw_work = 1;
            CHECK(d->samples[i].val[0] == 40000 && d->samples[i].val[1] == 40000);
            CHECK(d->samples[i].val[3] == 2); /* called twice */
        }
    }
    CHECK(saw_runnable && saw_work);
    CHECK(wall == self);
    free(d);
    efl_buf_free(&pb);
    efl_buf_free(&gz);
    efl_profile_free(p);
}

/* A capture's calls: each sample says which call (its place in the call
 * order, as capture returns them); one call's file holds only its own. */
static void pprof_calls(void)
{
    static const struct efl_script s[] = {
        {0, 0, 1, RC, "a:run/0"}, {0, 10, 1, C, "a:slow/0"}, {1, 15, 2, RC, "a:run/0"},
        {1, 20, 2, RR, NULL},      {0, 90, 1, RR, NULL},
    };
    struct efl_profile *p = fold_script(s, sizeof s / sizeof s[0], "mode=capture\n");
    if (p == NULL)
        return;
    CHECK(p->nwindows == 2);
    struct efl_buf gz = {0};
    CHECK_STATUS(efl_write_pprof(p, 0, &gz), EFL_OK);
    struct efl_buf pb = gunzip(&gz);
    struct decoded *d = calloc(1, sizeof *d);
    decode(&pb, d);
    /* The second call to begin ended first: call 1. */
    int calls = 0;
    for (size_t i = 0; i < d->nsamples; i++) {
        const char *leaf = location_name(d, d->samples[i].loc[0]);
        CHECK(d->samples[i].node == 0); /* no node in the header: no label */
        if (strcmp(leaf, "a:slow/0") == 0)
            CHECK(d->samples[i].call == 2);
        calls |= 1 << d->samples[i].call;
    }
    CHECK(calls == 6);
    efl_buf_free(&pb);
    efl_buf_free(&gz);
    /* One call alone. */
    CHECK_STATUS(efl_write_pprof(p, p->windows[0].node, &gz), EFL_OK);
    pb = gunzip(&gz);
    decode(&pb, d);
    CHECK(d->nsamples > 0);
    for (size_t i = 0; i < d->nsamples; i++)
        CHECK(d->samples[i].call == 2);
    free(d);
    efl_buf_free(&pb);
    efl_buf_free(&gz);
    efl_profile_free(p);
}

int main(void)
{
    RUN(pprof_layout);
    RUN(pprof_calls);
    return efl_test_done();
}
