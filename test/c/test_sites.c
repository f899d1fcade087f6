/* The BEAM reader and the call-site table: kinds and lines read from OTP's
 * own lists.beam, every stdlib module read, damaged modules and tables refused
 * without harm, and the serialized table read back the same. */
#include <dirent.h>

#include "efl_sites.h"
#include "efl_test.h"

#ifndef EFL_TEST_ERL_ROOT
#define EFL_TEST_ERL_ROOT "/usr/lib/erlang"
#endif

static struct efl_name nm(const char *s)
{
    return (struct efl_name){s, strlen(s)};
}

/* The ebin directory of the installed stdlib. */
static const char *stdlib_ebin(void)
{
    static char path[512];
    DIR *d = opendir(EFL_TEST_ERL_ROOT "/lib");
    struct dirent *e;
    path[0] = 0;
    while (d && (e = readdir(d)) != NULL)
        if (strncmp(e->d_name, "stdlib-", 7) == 0)
            snprintf(path, sizeof path, "%s/lib/%s/ebin", EFL_TEST_ERL_ROOT, e->d_name);
    if (d)
        closedir(d);
    return path;
}

static struct efl_buf read_beam(const char *module)
{
    char path[600];
    snprintf(path, sizeof path, "%s/%s.beam", stdlib_ebin(), module);
    return efl_test_read_file(path);
}

static uint32_t fn(const struct efl_sites *t, const char *m, const char *f, unsigned a)
{
    return efl_sites_function(t, efl_sites_name(t, m, strlen(m)), efl_sites_name(t, f, strlen(f)), a);
}

static void kinds_of_lists(void)
{
    struct efl_buf beam = read_beam("lists");
    CHECK(beam.len > 1000);
    struct efl_sites *t;
    CHECK_STATUS(efl_sites_new(&t), EFL_OK);
    CHECK_STATUS(efl_sites_add_module(t, beam.data, beam.len), EFL_OK);
    /* foldl(F, Acc, [H|T]) -> foldl_1(F, F(H, Acc), T): a tail call, and
     * a body call of the fun. */
    uint32_t foldl = fn(t, "lists", "foldl", 3), foldl_1 = fn(t, "lists", "foldl_1", 3);
    CHECK(foldl != 0 && foldl_1 != 0);
    CHECK(efl_sites_kind(t, foldl, foldl_1, 0) == EFL_CALL_TAIL);
    CHECK(efl_sites_kind(t, foldl, 0, 0) == EFL_CALL_BODY);
    /* map(F, [H|T]) -> [F(H) | map(F, T)]: body recursion. */
    uint32_t map = fn(t, "lists", "map", 2);
    CHECK(efl_sites_kind(t, map, map, 0) == EFL_CALL_BODY);
    /* reverse/1 ends in lists:reverse/2, a BIF: a body call once known. */
    uint32_t rev1 = fn(t, "lists", "reverse", 1), rev2 = fn(t, "lists", "reverse", 2);
    CHECK(efl_sites_kind(t, rev1, rev2, 0) == EFL_CALL_TAIL);
    CHECK_STATUS(efl_sites_add_bif(t, nm("lists"), nm("reverse"), 2), EFL_OK);
    CHECK(efl_sites_kind(t, rev1, rev2, 0) == EFL_CALL_BODY);
    /* Unknown callers and callees: no word. */
    CHECK(efl_sites_kind(t, 0, map, 0) == 0);
    CHECK(fn(t, "lists", "no_such_function", 1) == 0);

    /* The serialized table reads back the same. */
    struct efl_buf enc = {0};
    CHECK_STATUS(efl_sites_encode(t, &enc), EFL_OK);
    struct efl_sites *u = NULL;
    CHECK_STATUS(efl_sites_decode(enc.data, enc.len, &u), EFL_OK);
    if (u) {
        CHECK(efl_sites_pairs(u) == efl_sites_pairs(t));
        CHECK(efl_sites_kind(u, fn(u, "lists", "foldl", 3), fn(u, "lists", "foldl_1", 3), 0) ==
              EFL_CALL_TAIL);
        CHECK(efl_sites_kind(u, fn(u, "lists", "reverse", 1), fn(u, "lists", "reverse", 2), 0) ==
              EFL_CALL_BODY);
        efl_sites_free(u);
    }
    /* Every cut of it is refused or read, never overrun. */
    for (size_t cut = 0; cut < enc.len; cut += 1 + cut / 16) {
        u = NULL;
        efl_status s = efl_sites_decode(enc.data, cut, &u);
        CHECK(s == EFL_OK || s == EFL_ERR_CORRUPT);
        efl_sites_free(u);
    }
    efl_buf_free(&enc);
    efl_sites_free(t);
    efl_buf_free(&beam);
}

/* Where functions are: the line each one's code begins at (lists.beam's
 * Line chunk), and the module's source file; what a process is called;
 * all read back the same. */
static void lines_of_lists(void)
{
    struct efl_buf beam = read_beam("lists");
    struct efl_sites *t;
    CHECK_STATUS(efl_sites_new(&t), EFL_OK);
    CHECK_STATUS(efl_sites_add_module(t, beam.data, beam.len), EFL_OK);
    CHECK_STATUS(efl_sites_add_source(t, nm("lists"), nm("/src/lists.erl")), EFL_OK);
    CHECK_STATUS(efl_sites_add_process(t, nm("<0.85.0>"), nm("my_server")), EFL_OK);
    CHECK(efl_sites_process(t, "<0.86.0>") == NULL);
    const char *file;
    unsigned foldl = efl_sites_line(t, fn(t, "lists", "foldl", 3), &file);
    unsigned foldl_1 = efl_sites_line(t, fn(t, "lists", "foldl_1", 3), &file);
    unsigned map = efl_sites_line(t, fn(t, "lists", "map", 2), &file);
    /* foldl_1/3 is foldl/3's helper, written after it. */
    CHECK(foldl > 100 && foldl_1 > foldl && map > 100);
    CHECK(file != NULL && strcmp(file, "/src/lists.erl") == 0);
    CHECK(efl_sites_line(t, 0, &file) == 0 && file == NULL);
    struct efl_buf enc = {0};
    CHECK_STATUS(efl_sites_encode(t, &enc), EFL_OK);
    struct efl_sites *u = NULL;
    CHECK_STATUS(efl_sites_decode(enc.data, enc.len, &u), EFL_OK);
    if (u) {
        CHECK(efl_sites_line(u, fn(u, "lists", "foldl", 3), &file) == foldl);
        CHECK(efl_sites_line(u, fn(u, "lists", "map", 2), &file) == map);
        CHECK(file != NULL && strcmp(file, "/src/lists.erl") == 0);
        const char *called = efl_sites_process(u, "<0.85.0>");
        CHECK(called != NULL && strcmp(called, "my_server") == 0);
        efl_sites_free(u);
    }
    efl_buf_free(&enc);
    efl_sites_free(t);
    efl_buf_free(&beam);
}

/* The reader follows every module of stdlib. */
static void every_stdlib_module(void)
{
    DIR *d = opendir(stdlib_ebin());
    CHECK(d != NULL);
    struct dirent *e;
    unsigned read = 0;
    struct efl_sites *t;
    CHECK_STATUS(efl_sites_new(&t), EFL_OK);
    while (d && (e = readdir(d)) != NULL) {
        size_t len = strlen(e->d_name);
        if (len < 6 || strcmp(e->d_name + len - 5, ".beam") != 0)
            continue;
        char path[800];
        snprintf(path, sizeof path, "%s/%s", stdlib_ebin(), e->d_name);
        struct efl_buf beam = efl_test_read_file(path);
        efl_status s = efl_sites_add_module(t, beam.data, beam.len);
        if (s != EFL_OK)
            fprintf(stderr, "%s: %s\n", e->d_name, efl_status_atom(s));
        CHECK(s == EFL_OK);
        read++;
        efl_buf_free(&beam);
    }
    if (d)
        closedir(d);
    CHECK(read > 50);
    CHECK(efl_sites_pairs(t) > 10000);
    efl_sites_free(t);
}

/* Cut or damaged modules: refused or read, never overrun (ASan checks). */
static void damaged_modules(void)
{
    struct efl_buf beam = read_beam("lists");
    for (size_t cut = 0; cut < beam.len; cut += 1 + cut / 64) {
        struct efl_sites *t;
        CHECK_STATUS(efl_sites_new(&t), EFL_OK);
        efl_status s = efl_sites_add_module(t, beam.data, cut);
        CHECK(s == EFL_ERR_ARG || (s == EFL_OK && cut > beam.len / 2));
        efl_sites_free(t);
    }
    for (size_t i = 0; i < beam.len; i += 7) {
        unsigned char keep = beam.data[i];
        beam.data[i] ^= 0xA5;
        struct efl_sites *t;
        CHECK_STATUS(efl_sites_new(&t), EFL_OK);
        efl_status s = efl_sites_add_module(t, beam.data, beam.len);
        CHECK(s == EFL_OK || s == EFL_ERR_ARG || s == EFL_ERR_CORRUPT || s == EFL_ERR_VERSION ||
              s == EFL_ERR_LIMIT);
        efl_sites_free(t);
        beam.data[i] = keep;
    }
    efl_buf_free(&beam);
    struct efl_sites *t;
    CHECK_STATUS(efl_sites_new(&t), EFL_OK);
    CHECK_STATUS(efl_sites_add_module(t, "FOR1\0\0\0\4BEAM", 12), EFL_ERR_ARG);
    CHECK_STATUS(efl_sites_add_module(t, "not a module at all", 19), EFL_ERR_ARG);
    efl_sites_free(t);
}

/* Where a chunk with that id starts in a BEAM file (its id), or NULL. */
static unsigned char *find_chunk(struct efl_buf *beam, const char *id)
{
    for (size_t at = 12; at + 8 <= beam->len;) {
        unsigned char *p = beam->data + at;
        uint32_t size = (uint32_t)p[4] << 24 | (uint32_t)p[5] << 16 | (uint32_t)p[6] << 8 | p[7];
        if (memcmp(p, id, 4) == 0)
            return p;
        at += 8 + ((size + 3) & ~3u);
    }
    return NULL;
}

static void put_be32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24), p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8), p[3] = (unsigned char)v;
}

static uint32_t get_be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* lists.beam with `ins` inserted at the start of its Code chunk's
 * instructions (sizes fixed, padding kept). */
static struct efl_buf with_instruction(const unsigned char *ins, size_t n)
{
    struct efl_buf beam = read_beam("lists"), out = {0};
    unsigned char *code = find_chunk(&beam, "Code");
    CHECK(code != NULL);
    uint32_t size = get_be32(code + 4), header = get_be32(code + 8);
    size_t at = (size_t)(code - beam.data) + 8 + 4 + header;
    size_t old_end = (size_t)(code - beam.data) + 8 + ((size + 3) & ~3u);
    uint32_t new_size = size + (uint32_t)n;
    static const unsigned char zeros[4];
    CHECK_STATUS(efl_buf_append(&out, beam.data, at), EFL_OK);
    CHECK_STATUS(efl_buf_append(&out, ins, n), EFL_OK);
    CHECK_STATUS(efl_buf_append(&out, beam.data + at, (size_t)(code - beam.data) + 8 + size - at),
                 EFL_OK);
    CHECK_STATUS(efl_buf_append(&out, zeros, (4 - new_size % 4) % 4), EFL_OK);
    CHECK_STATUS(efl_buf_append(&out, beam.data + old_end, beam.len - old_end), EFL_OK);
    put_be32(out.data + (code - beam.data) + 4, new_size);
    put_be32(out.data + 4, (uint32_t)out.len - 8);
    efl_buf_free(&beam);
    return out;
}

/* OTP 27's executable_line/2 and OTP 28's debug_line/4 are read over;
 * an opcode after them is a newer compiler's: EFL_ERR_VERSION, not a
 * guess at its operands. */
static void newer_compilers(void)
{
    static const unsigned char executable_line[] = {183, 0x00, 0x10};
    static const unsigned char debug_line[] = {184, 0x02, 0x00, 0x10, 0x00};
    static const unsigned char unknown[] = {185, 0x00};
    struct efl_buf a = with_instruction(executable_line, sizeof executable_line);
    struct efl_buf b = with_instruction(debug_line, sizeof debug_line);
    struct efl_buf c = with_instruction(unknown, sizeof unknown);
    struct efl_sites *t;
    CHECK_STATUS(efl_sites_new(&t), EFL_OK);
    CHECK_STATUS(efl_sites_add_module(t, a.data, a.len), EFL_OK);
    size_t pairs = efl_sites_pairs(t);
    CHECK(pairs > 100);
    CHECK_STATUS(efl_sites_add_module(t, b.data, b.len), EFL_OK);
    CHECK(efl_sites_pairs(t) == pairs);
    CHECK_STATUS(efl_sites_add_module(t, c.data, c.len), EFL_ERR_VERSION);
    efl_sites_free(t);
    efl_buf_free(&a);
    efl_buf_free(&b);
    efl_buf_free(&c);
}

/* A second atom, import or code table: which one the loader took is not
 * the reader's to guess. An atom count with the top bit set (OTP 28's
 * long atoms) of 2^31 atoms, or any count beyond the bound: refused
 * before anything is allocated for it. */
static void tables_twice_and_huge_counts(void)
{
    static const char *ids[] = {"AtU8", "ImpT", "Code"};
    for (size_t i = 0; i < 3; i++) {
        struct efl_buf beam = read_beam("lists"), twice = {0};
        unsigned char *chunk = find_chunk(&beam, ids[i]);
        CHECK(chunk != NULL);
        size_t n = 8 + ((get_be32(chunk + 4) + 3) & ~3u);
        size_t chunk_at = (size_t)(chunk - beam.data);
        CHECK_STATUS(efl_buf_append(&twice, beam.data, beam.len), EFL_OK);
        CHECK_STATUS(efl_buf_append(&twice, beam.data + chunk_at, n), EFL_OK);
        put_be32(twice.data + 4, (uint32_t)twice.len - 8);
        struct efl_sites *t;
        CHECK_STATUS(efl_sites_new(&t), EFL_OK);
        CHECK_STATUS(efl_sites_add_module(t, twice.data, twice.len), EFL_ERR_ARG);
        CHECK(efl_sites_pairs(t) == 0);
        efl_sites_free(t);
        efl_buf_free(&twice);
        efl_buf_free(&beam);
    }
    const uint32_t counts[] = {0x80000000u, 0xFFFFFFFFu, 0x7FFFFFFFu, (1u << 20) + 1};
    for (size_t i = 0; i < sizeof counts / sizeof counts[0]; i++) {
        struct efl_buf beam = read_beam("lists");
        unsigned char *atoms = find_chunk(&beam, "AtU8");
        CHECK(atoms != NULL);
        put_be32(atoms + 8, counts[i]);
        struct efl_sites *t;
        CHECK_STATUS(efl_sites_new(&t), EFL_OK);
        efl_status s = efl_sites_add_module(t, beam.data, beam.len);
        CHECK(s == EFL_ERR_ARG || s == EFL_ERR_LIMIT);
        efl_sites_free(t);
        efl_buf_free(&beam);
    }
}

/* Hand-made tables: bad kinds and names are damage. */
static void damaged_tables(void)
{
    static const unsigned char bad_kind[] = {1, 1, 'm', 1, 1, 'f', 2, 1, 2, 0, 3, 7, 1, 2, 0};
    static const unsigned char no_caller[] = {1, 1, 'm', 1, 1, 'f', 3, 1, 1, 2, 0};
    static const unsigned char unknown_name[] = {1, 1, 'm', 2, 1, 9, 0};
    static const unsigned char repeated_name[] = {1, 1, 'm', 1, 1, 'm'};
    static const unsigned char unknown_tag[] = {9};
    const struct { const unsigned char *d; size_t n; } cases[] = {
        {bad_kind, sizeof bad_kind}, {no_caller, sizeof no_caller},
        {unknown_name, sizeof unknown_name}, {repeated_name, sizeof repeated_name},
        {unknown_tag, sizeof unknown_tag}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct efl_sites *t = NULL;
        CHECK_STATUS(efl_sites_decode(cases[i].d, cases[i].n, &t), EFL_ERR_CORRUPT);
        CHECK(t == NULL);
    }
    struct efl_sites *t = NULL;
    CHECK_STATUS(efl_sites_decode("", 0, &t), EFL_OK);
    efl_sites_free(t);
}

int main(void)
{
    RUN(kinds_of_lists);
    RUN(lines_of_lists);
    RUN(every_stdlib_module);
    RUN(damaged_modules);
    RUN(newer_compilers);
    RUN(tables_twice_and_huge_counts);
    RUN(damaged_tables);
    return efl_test_done();
}
