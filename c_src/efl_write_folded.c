/* Folded stacks, as flamegraph.pl, inferno and speedscope read them:
 * "frame;frame;frame COUNT" per distinct stack, COUNT in microseconds,
 * lines in byte order so the output is deterministic. A differential
 * profile's lines have both counts, "stack BASE NEW", as difffolded.pl
 * writes them and flamegraph.pl reads them. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "efl_writer.h"

struct line {
    size_t off, len;
};

/* qsort has no context argument; folds may run on several threads at once. */
static __thread const unsigned char *sort_base;

static int cmp_line(const void *a, const void *b)
{
    const struct line *x = a, *y = b;
    size_t n = x->len < y->len ? x->len : y->len;
    int c = memcmp(sort_base + x->off, sort_base + y->off, n);
    if (c != 0)
        return c;
    return (x->len > y->len) - (x->len < y->len);
}

/* A line's counts: " COUNT\n", or " BASE NEW\n" for a diff; 0 when the
 * stack has none (under a microsecond). */
static int counts(const struct efl_profile *p, uint32_t node, char out[48])
{
    if (p->diff == NULL) {
        uint64_t us = efl_ns_to_us(p->nodes[node].self_ns);
        return us == 0 ? 0 : snprintf(out, 48, " %llu\n", (unsigned long long)us);
    }
    uint64_t base = efl_ns_to_us(p->diff->base_ns[node]), new = efl_ns_to_us(p->diff->new_ns[node]);
    if (base == 0 && new == 0)
        return 0;
    return snprintf(out, 48, " %llu %llu\n", (unsigned long long)base, (unsigned long long)new);
}

struct folded {
    struct efl_buf text;
    struct line *lines;
    size_t nlines;
};

static efl_status add_line(void *ctx, const struct efl_profile *p, uint32_t node, const char *path,
                           size_t len)
{
    struct folded *f = ctx;
    char c[48];
    int n = counts(p, node, c);
    if (n == 0)
        return EFL_OK;
    size_t off = f->text.len;
    EFL_FORWARD_IF_ERROR(efl_buf_append(&f->text, path, len));
    EFL_FORWARD_IF_ERROR(efl_buf_append(&f->text, c, (size_t)n));
    f->lines[f->nlines++] = (struct line){off, f->text.len - off};
    return EFL_OK;
}

/* Streaming: lines go out as the walk makes them, if it makes them in byte
 * order; a first walk checks, keeping only the line before. */
struct order {
    struct efl_buf prev, line;
    int sorted;
};

static efl_status check_line(void *ctx, const struct efl_profile *p, uint32_t node, const char *path,
                             size_t len)
{
    struct order *o = ctx;
    char c[48];
    int n = counts(p, node, c);
    if (n == 0 || !o->sorted)
        return EFL_OK;
    o->line.len = 0;
    EFL_FORWARD_IF_ERROR(efl_buf_append(&o->line, path, len));
    EFL_FORWARD_IF_ERROR(efl_buf_append(&o->line, c, (size_t)n));
    if (o->prev.len > 0) {
        size_t n = o->prev.len < o->line.len ? o->prev.len : o->line.len;
        int c = memcmp(o->prev.data, o->line.data, n);
        o->sorted = c < 0 || (c == 0 && o->prev.len <= o->line.len);
    }
    struct efl_buf swap = o->prev;
    o->prev = o->line;
    o->line = swap;
    return EFL_OK;
}

static efl_status stream_line(void *ctx, const struct efl_profile *p, uint32_t node,
                              const char *path, size_t len)
{
    struct efl_buf *out = ctx;
    char c[48];
    int n = counts(p, node, c);
    if (n == 0)
        return EFL_OK;
    EFL_FORWARD_IF_ERROR(efl_buf_append(out, path, len));
    EFL_FORWARD_IF_ERROR(efl_buf_append(out, c, (size_t)n));
    return efl_buf_spill(out, 0);
}

efl_status efl_write_folded(const struct efl_profile *p, uint32_t root, struct efl_buf *out)
{
    if (out->sink != NULL) {
        struct order o = {{0}, {0}, 1};
        efl_status s = efl_walk_stacks(p, root, ";", check_line, &o);
        efl_buf_free(&o.prev);
        efl_buf_free(&o.line);
        EFL_FORWARD_IF_ERROR(s);
        if (o.sorted)
            return efl_walk_stacks(p, root, ";", stream_line, out);
    }
    struct folded f = {{0}, NULL, 0};
    if (p->nnodes > 0 && (f.lines = malloc(p->nnodes * sizeof *f.lines)) == NULL)
        return EFL_ERR_NOMEM;
    efl_status s = efl_walk_stacks(p, root, ";", add_line, &f);
    if (s == EFL_OK) {
        /* The walk visits siblings in name order, which is line order but
         * for names that sort between "name " and "name;": check, and
         * sort only then. */
        sort_base = f.text.data;
        size_t i = 1;
        while (i < f.nlines && cmp_line(&f.lines[i - 1], &f.lines[i]) <= 0)
            i++;
        if (i < f.nlines) {
            qsort(f.lines, f.nlines, sizeof *f.lines, cmp_line);
        } else if (out->len == 0 && out->sink == NULL) {
            /* Already in order: the text is the output, no copy. */
            efl_buf_free(out);
            *out = f.text;
            f.text = (struct efl_buf){0};
            f.nlines = 0;
        }
        s = efl_buf_reserve(out, f.text.len);
    }
    for (size_t i = 0; s == EFL_OK && i < f.nlines; i++)
        s = efl_buf_append(out, f.text.data + f.lines[i].off, f.lines[i].len);
    free(f.lines);
    efl_buf_free(&f.text);
    return s;
}
