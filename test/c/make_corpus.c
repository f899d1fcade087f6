/* Writes the archive corpus of test/data/archives: valid archives made
 * from fixed event scripts, and damaged ones made from them. Run by `make -C
 * c_src corpus` (EFLAMBE_BLESS=1 scripts/test.sh); a file that exists is
 * never rewritten, so archives written by an older version stay as they
 * were (version 1.0: apply, capture and what is cut from them; 1.1:
 * sites; 2.0: follow). The expected outcome of each file is in
 * test/data/archives/expected.txt. Files named fuzz-* are inputs the fuzzer
 * once found a bug with, kept as they are; many_rings and no_passes are
 * shapes of hostile archives. */
#include "efl_sites.h"
#include "efl_test.h"

static const struct efl_script apply_script[] = {
    {0, 100, 1, EFL_EV_ROOT_CALL, NULL},
    {0, 102, 1, EFL_EV_CALL, "app:main/1"},
    {0, 110, 1, EFL_EV_CALL, "app:parse/2"},
    {0, 130, 1, EFL_EV_CALL, "lists:map/2"},
    {0, 160, 1, EFL_EV_RETURN_TO, "app:parse/2"},
    {0, 170, 1, EFL_EV_RETURN_TO, "app:main/1"},
    {0, 175, 1, EFL_EV_OUT, "app:main/1"},
    {1, 180, 2, EFL_EV_CALL, "app:worker/0"},
    {1, 200, 2, EFL_EV_GC_START, NULL},
    {1, 205, 2, EFL_EV_GC_END, NULL},
    {1, 230, 2, EFL_EV_RETURN_TO, NULL},
    {1, 240, 1, EFL_EV_IN, "app:main/1"},
    {1, 260, 1, EFL_EV_CALL, "app:render/1"},
    {1, 300, 1, EFL_EV_RETURN_TO, "app:main/1"},
    {1, 310, 1, EFL_EV_RETURN_TO, "shell:eval/3"},
    {1, 311, 1, EFL_EV_ROOT_RETURN, NULL},
};

static const struct efl_script capture_script[] = {
    {0, 10, 3, EFL_EV_ROOT_CALL, "srv:handle/2"},
    {0, 11, 3, EFL_EV_CALL, "srv:handle/2"},
    {1, 15, 4, EFL_EV_ROOT_CALL, "srv:handle/2"},
    {1, 16, 4, EFL_EV_CALL, "srv:handle/2"},
    {0, 20, 3, EFL_EV_CALL, "db:query/1"},
    {1, 25, 4, EFL_EV_CALL, "srv:reply/1"},
    {1, 40, 4, EFL_EV_RETURN_TO, "srv:handle/2"},
    {1, 45, 4, EFL_EV_ROOT_EXCEPTION, "srv:handle/2"},
    {0, 60, 3, EFL_EV_RETURN_TO, "srv:handle/2"},
    {0, 70, 3, EFL_EV_ROOT_RETURN, "srv:handle/2"},
};

/* Version 1.1: a tail-call chain and a call of unknown kind, with the site
 * table that tells them apart. */
static const struct efl_script sites_script[] = {
    {0, 100, 1, EFL_EV_ROOT_CALL, NULL},
    {0, 102, 1, EFL_EV_CALL, "app:main/1"},
    {0, 110, 1, EFL_EV_CALL, "app:parse/2"},
    {0, 120, 1, EFL_EV_CALL, "app:token/1"},
    {0, 150, 1, EFL_EV_RETURN_TO, "app:main/1"},
    {0, 160, 1, EFL_EV_CALL, "app:emit/1"},
    {0, 170, 1, EFL_EV_CALL, "lists:reverse/2"},
    {0, 180, 1, EFL_EV_RETURN_TO, "app:emit/1"},
    {0, 190, 1, EFL_EV_RETURN_TO, "shell:eval/3"},
    {0, 191, 1, EFL_EV_ROOT_RETURN, NULL},
};

/* Version 2.0: a followed call. Process 1 calls server 2 (which the call
 * switches tracing on in) and waits, [queued] while 2 finishes another
 * request; 2 takes it up, works, is done; 1 sleeps until it runs again. Process 3, which got the call's
 * token but is not profiled, calls 2 as well: nothing of it shows. */
static const struct efl_script follow_script[] = {
    {0, 100, 1, EFL_EV_ROOT_CALL, NULL},
    {0, 102, 1, EFL_EV_CALL, "app:main/1"},
    {0, 110, 1, EFL_EV_CALL, "gen:do_call/4"},
    {0, 111, 1, EFL_EV_FOLLOW_CALL, "2"},
    {1, 112, 2, EFL_EV_IN, NULL},
    {1, 113, 2, EFL_EV_CALL, "srv:other/1"},
    {0, 115, 1, EFL_EV_OUT, NULL},
    {1, 120, 2, EFL_EV_CALL, "gen_server:loop/7"},
    {1, 130, 2, EFL_EV_CALL, "gen_server:handle_msg/6"},
    {1, 131, 2, EFL_EV_FOLLOW_TAKE, "1"},
    {1, 140, 2, EFL_EV_CALL, "srv:handle_call/3"},
    {1, 150, 3, EFL_EV_FOLLOW_CALL, "2"},
    {1, 180, 2, EFL_EV_RETURN_TO, "gen_server:handle_msg/6"},
    {1, 190, 2, EFL_EV_CALL, "gen_server:loop/7"},
    {1, 191, 2, EFL_EV_FOLLOW_END, NULL},
    {1, 195, 2, EFL_EV_OUT, NULL},
    {0, 200, 1, EFL_EV_IN, NULL},
    {0, 205, 1, EFL_EV_RETURN_TO, "app:main/1"},
    {0, 210, 1, EFL_EV_RETURN_TO, "shell:eval/3"},
    {0, 211, 1, EFL_EV_ROOT_RETURN, NULL},
};

static struct efl_name name(const char *s)
{
    return (struct efl_name){s, strlen(s)};
}

/* main/1 body-calls parse/2, which tail-calls token/1; main/1 calls emit/1
 * both ways (a tail call here: it returns past main/1); reverse/2 is a BIF. */
static int append_sites(const char *path)
{
    struct efl_sites *t;
    struct efl_buf table = {0};
    int bad = efl_sites_new(&t) != EFL_OK;
    bad = bad || efl_sites_add_call(t, name("app"), name("main"), 1, name("app"), name("parse"), 2,
                                    EFL_CALL_BODY, 0) != EFL_OK;
    bad = bad || efl_sites_add_call(t, name("app"), name("parse"), 2, name("app"), name("token"), 1,
                                    EFL_CALL_TAIL, 0) != EFL_OK;
    bad = bad || efl_sites_add_call(t, name("app"), name("main"), 1, name("app"), name("emit"), 1,
                                    EFL_CALL_BODY | EFL_CALL_TAIL, 0) != EFL_OK;
    bad = bad || efl_sites_add_call(t, name("app"), name("emit"), 1, name("lists"), name("reverse"), 2,
                                    EFL_CALL_TAIL, 0) != EFL_OK;
    bad = bad || efl_sites_add_bif(t, name("lists"), name("reverse"), 2) != EFL_OK;
    bad = bad || efl_sites_encode(t, &table) != EFL_OK;
    bad = bad || efl_archive_append_sites(path, table.data, table.len) != EFL_OK;
    efl_buf_free(&table);
    efl_sites_free(t);
    return bad;
}

static int exists(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (f)
        fclose(f);
    return f != NULL;
}

static long file_size(const char *path)
{
    FILE *f = fopen(path, "rb");
    long n = -1;
    if (f && fseek(f, 0, SEEK_END) == 0)
        n = ftell(f);
    if (f)
        fclose(f);
    return n;
}

/* Writes a script, ending a frame after every `per_frame` events; the file
 * size after each frame goes to frame_ends (if not NULL). */
static int write_script(const char *path, const char *meta, const struct efl_script *s, size_t n,
                        size_t per_frame, long *frame_ends)
{
    struct efl_archive_writer *w;
    if (efl_archive_writer_open(&w, path, meta, &efl_test_namer) != EFL_OK)
        return 1;
    for (size_t i = 0; i < n; i++) {
        struct efl_event e = efl_test_event(&s[i]);
        if (efl_archive_writer_events(w, s[i].ring, &e, 1) != EFL_OK)
            return 1;
        if ((i + 1) % per_frame == 0) {
            if (efl_archive_writer_end_frame(w) != EFL_OK)
                return 1;
            if (frame_ends)
                *frame_ends++ = file_size(path);
        }
    }
    return efl_archive_writer_close(w, NULL) != EFL_OK;
}


/* Shapes a hostile archive may take, small enough to seed the fuzzer:
 * many rings with a pass after every event (the merge once scanned every
 * ring at every pass), and events with no pass at all (the folder once
 * held them all). */
static int write_hostile(const char *dir, const char *name, unsigned rings, unsigned per_ring,
                         int passes)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (exists(path))
        return 0;
    struct efl_archive_writer *w;
    if (efl_archive_writer_open(&w, path, "node=corpus@host\nmode=apply\n", &efl_test_namer) != EFL_OK)
        return 1;
    for (unsigned i = 0; i < per_ring; i++) {
        for (unsigned r = 0; r < rings; r++) {
            struct efl_script in = {r, 10 + i * rings + r, 1 + r % 7, i % 2 ? EFL_EV_RETURN_TO : EFL_EV_CALL,
                                    i % 2 ? NULL : "m:f/1"};
            struct efl_event e = efl_test_event(&in);
            if (efl_archive_writer_events(w, r, &e, 1) != EFL_OK ||
                (passes && efl_archive_writer_pass(w, e.ts / 2) != EFL_OK))
                return 1;
        }
    }
    return efl_archive_writer_close(w, NULL) != EFL_OK;
}

static int spit(const char *dir, const char *name, const void *data, size_t len)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (exists(path))
        return 0;
    FILE *f = fopen(path, "wb");
    int ok = f && fwrite(data, 1, len, f) == len;
    if (f)
        fclose(f);
    return !ok;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: make_corpus DIR\n");
        return 2;
    }
    const char *dir = argv[1];
    char apply_path[1024], capture_path[1024];
    snprintf(apply_path, sizeof apply_path, "%s/apply.eftrace", dir);
    snprintf(capture_path, sizeof capture_path, "%s/capture.eftrace", dir);
    const char *apply_meta = "node=corpus@host\nmode=apply\ntarget=app:main/1\n";
    const char *capture_meta = "node=corpus@host\nmode=capture\ntarget=srv:handle/2\n";
    long frame_ends[8] = {0};
    if (!exists(apply_path) && write_script(apply_path, apply_meta, apply_script, 16, 4, frame_ends))
        return 1;
    if (!exists(capture_path) && write_script(capture_path, capture_meta, capture_script, 10, 3, NULL))
        return 1;
    char sites_path[1024];
    snprintf(sites_path, sizeof sites_path, "%s/sites.eftrace", dir);
    const char *sites_meta = "node=corpus@host\nmode=apply\ntarget=app:main/1\n";
    if (!exists(sites_path) && (write_script(sites_path, sites_meta, sites_script, 10, 4, NULL) ||
                                append_sites(sites_path)))
        return 1;

    char follow_path[1024];
    snprintf(follow_path, sizeof follow_path, "%s/follow.eftrace", dir);
    const char *follow_meta = "node=corpus@host\nmode=apply\ntarget=app:main/1\n";
    if (!exists(follow_path) && write_script(follow_path, follow_meta, follow_script, 20, 5, NULL))
        return 1;

    int bad = 0;
    /* The site table's locator pointing past its table. */
    struct efl_buf sites = efl_test_read_file(sites_path);
    sites.data[sites.len - 8] ^= 0x40;
    bad |= spit(dir, "sites_damaged.eftrace", sites.data, sites.len);
    efl_buf_free(&sites);

    struct efl_buf whole = efl_test_read_file(apply_path);
    /* Cut inside the third frame (of four, then the end record's): the
     * events of the first two survive. */
    if (frame_ends[1] > 0) /* only known when apply.eftrace was written now */
        bad |= spit(dir, "truncated.eftrace", whole.data, (size_t)frame_ends[1] + 5);
    /* Cut right after the header: no frame at all. */
    size_t header = 8 + (size_t)(whole.data[4] | whole.data[5] << 8);
    bad |= spit(dir, "header_only.eftrace", whole.data, header);
    /* Cut inside the header. */
    bad |= spit(dir, "cut_header.eftrace", whole.data, 10);
    /* A flipped byte inside the second frame: zstd's checksum sees it. */
    whole.data[whole.len / 2] ^= 0x10;
    bad |= spit(dir, "flipped.eftrace", whole.data, whole.len);
    whole.data[whole.len / 2] ^= 0x10;
    /* Written by a future major version (2 when this file was made, which
     * eflambe came to write: the reader of 2.0 reads it). */
    whole.data[16] = 2;
    bad |= spit(dir, "newer_major.eftrace", whole.data, whole.len);
    /* Major 3 too, which eflambe came to write next. */
    whole.data[16] = 3;
    bad |= spit(dir, "major_3.eftrace", whole.data, whole.len);
    whole.data[16] = 4;
    bad |= spit(dir, "major_4.eftrace", whole.data, whole.len);
    bad |= spit(dir, "empty.eftrace", "", 0);
    const char foreign[] = "<0.85.0>;app:main/1 12\n";
    bad |= spit(dir, "foreign.folded", foreign, sizeof foreign - 1);
    bad |= write_hostile(dir, "many_rings.eftrace", 4096, 2, 1);
    bad |= write_hostile(dir, "no_passes.eftrace", 1, 20000, 0);
    efl_buf_free(&whole);
    return bad;
}
