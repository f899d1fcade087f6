/* Folded stacks, as flamegraph.pl, inferno and speedscope read them:
 * "frame;frame;frame COUNT" per distinct stack, COUNT in microseconds,
 * lines in byte order so the output is deterministic. */
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

efl_status efl_write_folded(const struct efl_profile *p, uint32_t root, struct efl_buf *out)
{
    struct efl_buf text = {0};
    struct line *lines = NULL;
    size_t nlines = 0;
    efl_status s = EFL_OK;
    if (p->nnodes > 0) {
        lines = malloc(p->nnodes * sizeof *lines);
        if (lines == NULL)
            return EFL_ERR_NOMEM;
    }
    for (uint32_t n = 1; s == EFL_OK && n < p->nnodes; n++) {
        uint64_t us = efl_ns_to_us(p->nodes[n].self_ns);
        if (us == 0 || !efl_profile_in(p, n, root))
            continue;
        size_t off = text.len;
        s = efl_append_stack(p, n, ";", &text);
        if (s == EFL_OK)
            s = efl_buf_printf(&text, " %llu\n", (unsigned long long)us);
        lines[nlines++] = (struct line){off, text.len - off};
    }
    if (s == EFL_OK) {
        sort_base = text.data;
        qsort(lines, nlines, sizeof *lines, cmp_line);
        s = efl_buf_reserve(out, text.len);
    }
    for (size_t i = 0; s == EFL_OK && i < nlines; i++)
        s = efl_buf_append(out, text.data + lines[i].off, lines[i].len);
    free(lines);
    efl_buf_free(&text);
    return s;
}
