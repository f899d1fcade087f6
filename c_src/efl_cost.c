/* The tracing cost of intervals (efl_cost.h): the header's cost lines,
 * and the calibration's measure of an archive's intervals. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "efl_archive.h"
#include "efl_cost.h"

static const struct {
    const char *name;
    unsigned kinds[3]; /* 0-terminated */
} kind_names[] = {
    {"call", {EFL_EV_CALL, 0, 0}},
    {"return_to", {EFL_EV_RETURN_TO, 0, 0}},
    {"sched", {EFL_EV_IN, EFL_EV_OUT, 0}},
};

/* A kind's name at s (as long as the name), or -1. */
static int kind_at(const char *s, size_t len, size_t *used)
{
    for (size_t i = 0; i < sizeof kind_names / sizeof kind_names[0]; i++) {
        size_t n = strlen(kind_names[i].name);
        if (n <= len && memcmp(s, kind_names[i].name, n) == 0 && (n == len || s[n] == '_')) {
            *used = n;
            return (int)i;
        }
    }
    return -1;
}

int efl_cost_note_line(struct efl_cost *c, const char *line, size_t len)
{
    if (len < 8 || memcmp(line, "cost_", 5) != 0)
        return 0;
    const char *eq = memchr(line, '=', len);
    if (eq == NULL || eq - line < 9 || memcmp(eq - 3, "_ns", 3) != 0)
        return 0;
    size_t name_len = (size_t)(eq - 3 - (line + 5)), used;
    const char *name = line + 5;
    int a = kind_at(name, name_len, &used), b = -1;
    if (a < 0)
        return 0;
    if (used < name_len) {
        size_t rest = name_len - used - 1;
        if ((b = kind_at(name + used + 1, rest, &used)) < 0 || used != rest)
            return 0;
    }
    if (eq + 1 == line + len)
        return 0;
    uint32_t v = 0;
    for (const char *p = eq + 1; p < line + len; p++) {
        if (*p < '0' || *p > '9' || v >= 100000)
            return 0;
        v = v * 10 + (uint32_t)(*p - '0');
    }
    if (b < 0 && a == 0) {
        /* Calls; the kinds not calibrated (gc, spawn, meta events) cost as much. */
        for (unsigned k = 1; k < EFL_EV_KIND_END; k++)
            if (k != EFL_EV_RETURN_TO && k != EFL_EV_IN && k != EFL_EV_OUT && k != EFL_EV_LOST)
                c->kind[k] = v;
    } else if (b < 0) {
        for (const unsigned *k = kind_names[a].kinds; *k != 0; k++)
            c->kind[*k] = v;
    } else {
        for (const unsigned *x = kind_names[a].kinds; *x != 0; x++)
            for (const unsigned *y = kind_names[b].kinds; *y != 0; y++)
                c->pair[*x][*y] = v;
    }
    c->calibrated = 1;
    if (64 * v > c->owed_max)
        c->owed_max = 64 * v;
    return 1;
}

/* ---- calibration ---------------------------------------------------- */

#define BUCKETS 256 /* of 16 ns, the archive's grain: intervals below 4 us */

struct last_event {
    uint64_t ts;
    uint32_t pid;
    uint8_t kind; /* 0: none yet */
};

struct measure {
    uint32_t (*hist)[EFL_EV_KIND_END][BUCKETS];
    struct last_event *rings;
    size_t nrings;
};

/* Within a ring, a process's consecutive events (none of another process
 * in between: a thread runs one process at a time) are consecutive in
 * time: no merging needed. */
static efl_status on_event(void *ctx, uint32_t ring, const struct efl_record *r)
{
    struct measure *m = ctx;
    if (ring >= m->nrings) {
        size_t n = (size_t)ring + 1 > m->nrings * 2 ? (size_t)ring + 1 : m->nrings * 2;
        struct last_event *rings = realloc(m->rings, n * sizeof *rings);
        EFL_RETURN_ERROR_IF(rings == NULL, EFL_ERR_NOMEM);
        memset(rings + m->nrings, 0, (n - m->nrings) * sizeof *rings);
        m->rings = rings;
        m->nrings = n;
    }
    struct last_event *last = &m->rings[ring];
    unsigned a = last->kind, b = r->kind;
    if (a != 0 && b < EFL_EV_KIND_END && last->pid == r->pid && r->ts >= last->ts &&
        a != EFL_EV_OUT && a != EFL_EV_GC_START && (r->ts - last->ts) / 16 < BUCKETS)
        m->hist[a][b][(r->ts - last->ts) / 16]++;
    *last = (struct last_event){r->ts, r->pid, (uint8_t)(b < EFL_EV_KIND_END ? b : 0)};
    return EFL_OK;
}

efl_status efl_cost_measure(const char *path, uint32_t mean[EFL_EV_KIND_END][EFL_EV_KIND_END])
{
    struct measure m = {.hist = calloc(EFL_EV_KIND_END, sizeof *m.hist)};
    EFL_RETURN_ERROR_IF(m.hist == NULL, EFL_ERR_NOMEM);
    struct efl_archive_visitor v = {.ctx = &m, .event = on_event};
    struct efl_archive_summary sum;
    efl_status st = efl_archive_read_file(path, &v, &sum);
    for (unsigned a = 0; a < EFL_EV_KIND_END; a++) {
        for (unsigned b = 0; b < EFL_EV_KIND_END; b++) {
            const uint32_t *h = m.hist[a][b];
            uint64_t n = 0, seen = 0, count = 0, total = 0;
            for (unsigned i = 0; i < BUCKETS; i++)
                n += h[i];
            unsigned median = 0;
            for (; median < BUCKETS && (seen += h[median]) * 2 < n; median++)
                ;
            for (unsigned i = 0; i < BUCKETS && i <= 4 * median; i++) {
                count += h[i];
                total += (uint64_t)h[i] * i * 16;
            }
            mean[a][b] = n >= 64 && count > 0 ? (uint32_t)((total + count / 2) / count) : 0;
        }
    }
    free(m.hist);
    free(m.rings);
    return st;
}
