/* The BEAM reader and the call-site table: kinds read from OTP's own
 * lists.beam, every stdlib module read, damaged modules and tables refused
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
        CHECK(s == EFL_OK || s == EFL_ERR_ARG || s == EFL_ERR_CORRUPT);
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
    RUN(every_stdlib_module);
    RUN(damaged_modules);
    RUN(damaged_tables);
    return efl_test_done();
}
