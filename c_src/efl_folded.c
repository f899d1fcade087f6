/* A profile from folded stacks (efl_folded.h). */
#define _GNU_SOURCE /* memrchr */
#include <stdlib.h>
#include <string.h>

#include "efl_buf.h"
#include "efl_folded.h"
#include "efl_map.h"

/* Strings to ids: open addressing on a 64-bit FNV-1a hash, keys compared
 * in full. */
struct intern {
    char **keys;
    uint32_t *vals;
    size_t cap, count;
};

static uint64_t hash(const char *s, size_t len)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h;
}

static efl_status intern_grow(struct intern *t)
{
    size_t cap = t->cap ? t->cap * 2 : 256;
    char **keys = calloc(cap, sizeof *keys);
    uint32_t *vals = calloc(cap, sizeof *vals);
    if (keys == NULL || vals == NULL) {
        free(keys);
        free(vals);
        return EFL_ERR_NOMEM;
    }
    for (size_t i = 0; i < t->cap; i++) {
        if (t->keys[i] == NULL)
            continue;
        size_t j = hash(t->keys[i], strlen(t->keys[i])) & (cap - 1);
        while (keys[j] != NULL)
            j = (j + 1) & (cap - 1);
        keys[j] = t->keys[i];
        vals[j] = t->vals[i];
    }
    free(t->keys);
    free(t->vals);
    t->keys = keys;
    t->vals = vals;
    t->cap = cap;
    return EFL_OK;
}

/* The slot of s (the table grown first if half full): its value's if it
 * is there (*found), else the one it goes in (intern_add). */
static efl_status intern_find(struct intern *t, const char *s, size_t len, size_t *slot, int *found)
{
    if (t->count * 2 >= t->cap)
        EFL_FORWARD_IF_ERROR(intern_grow(t));
    size_t j = hash(s, len) & (t->cap - 1);
    while (t->keys[j] != NULL && !(strncmp(t->keys[j], s, len) == 0 && t->keys[j][len] == 0))
        j = (j + 1) & (t->cap - 1);
    *slot = j;
    *found = t->keys[j] != NULL;
    return EFL_OK;
}

static char *copy(const char *s, size_t len)
{
    char *c = malloc(len + 1);
    if (c != NULL) {
        memcpy(c, s, len);
        c[len] = 0;
    }
    return c;
}

/* s with value id, in the slot intern_find gave. */
static efl_status intern_add(struct intern *t, size_t slot, const char *s, size_t len, uint32_t id)
{
    EFL_RETURN_ERROR_IF((t->keys[slot] = copy(s, len)) == NULL, EFL_ERR_NOMEM);
    t->vals[slot] = id;
    t->count++;
    return EFL_OK;
}

static void intern_free(struct intern *t)
{
    for (size_t i = 0; i < t->cap; i++)
        free(t->keys[i]);
    free(t->keys);
    free(t->vals);
}

struct builder {
    struct efl_profile *p;
    size_t symbols_cap, processes_cap, frames_cap, nodes_cap;
    struct intern frames_by_name, symbols_by_name;
    struct efl_map children; /* parent << 32 | frame -> node */
    /* A diff: the lines' times go to one side's array, by node. */
    uint64_t *side_ns;
    size_t side_cap;
    struct efl_diff *diff;
};

static efl_status symbol(struct builder *b, const char *s, size_t len, uint32_t *id)
{
    struct intern *t = &b->symbols_by_name;
    size_t slot;
    int found;
    EFL_FORWARD_IF_ERROR(intern_find(t, s, len, &slot, &found));
    if (found) {
        *id = t->vals[slot];
        return EFL_OK;
    }
    struct efl_profile *p = b->p;
    EFL_GROW(p->symbols, p->nsymbols + 1, b->symbols_cap);
    char *name = copy(s, len);
    EFL_RETURN_ERROR_IF(name == NULL, EFL_ERR_NOMEM);
    if (intern_add(t, slot, s, len, p->nsymbols + 1) != EFL_OK) {
        free(name);
        return EFL_ERR_NOMEM;
    }
    *id = ++p->nsymbols;
    p->symbols[*id] = name;
    return EFL_OK;
}

static int digits(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (s[i] < '0' || s[i] > '9')
            return 0;
    return len > 0;
}

static int starts(const char *s, size_t len, const char *prefix)
{
    size_t n = strlen(prefix);
    return len >= n && memcmp(s, prefix, n) == 0;
}

static int is(const char *s, size_t len, const char *word)
{
    return len == strlen(word) && memcmp(s, word, len) == 0;
}

/* What a frame's display name (efl_frame_name's) says it is. */
static efl_status parse_frame(struct builder *b, const char *s, size_t len, struct efl_frame *f)
{
    *f = (struct efl_frame){0};
    if (is(s, len, "sleep")) {
        f->kind = EFL_FRAME_SLEEP;
    } else if (is(s, len, "gc")) {
        f->kind = EFL_FRAME_GC;
    } else if (is(s, len, "runnable")) {
        f->kind = EFL_FRAME_RUNNABLE;
    } else if (is(s, len, "[os preempted]")) {
        f->kind = EFL_FRAME_OS;
    } else if (is(s, len, "[queued]")) {
        f->kind = EFL_FRAME_QUEUED;
    } else if (starts(s, len, "[dropped ") && len > 17 && is(s + len - 8, 8, " events]") &&
               digits(s + 9, len - 17) && len - 17 <= 9) {
        f->kind = EFL_FRAME_DROPPED;
        f->a = (uint32_t)strtoul(s + 9, NULL, 10);
    } else if (starts(s, len, "<0.") || starts(s, len, "<")) {
        /* A process: <0.85.0>, with what ended its call, if anything. */
        struct efl_profile *p = b->p;
        char *name = copy(s, len);
        EFL_RETURN_ERROR_IF(name == NULL, EFL_ERR_NOMEM);
        if (p->nprocesses + 1 >= b->processes_cap) {
            size_t cap = b->processes_cap ? b->processes_cap * 2 : 64;
            char **grown = realloc(p->processes, cap * sizeof *grown);
            if (grown == NULL) {
                free(name);
                return EFL_ERR_NOMEM;
            }
            p->processes = grown;
            b->processes_cap = cap;
        }
        f->kind = EFL_FRAME_PROCESS;
        f->a = ++p->nprocesses;
        p->processes[f->a] = name;
    } else {
        /* mod:fun/arity, or Elixir's Mod.fun/arity; anything else is a
         * name drawn as it is (a node's, say). */
        const char *slash = memrchr(s, '/', len);
        size_t arity_len = slash ? len - (size_t)(slash - s) - 1 : 0;
        const char *colon = slash ? memchr(s, ':', (size_t)(slash - s)) : NULL;
        const char *dot = slash && !colon ? memrchr(s, '.', (size_t)(slash - s)) : NULL;
        const char *sep = colon ? colon : dot;
        if (sep != NULL && sep > s && sep + 1 < slash && digits(slash + 1, arity_len) &&
            arity_len <= 3 && strtoul(slash + 1, NULL, 10) <= 255) {
            f->kind = EFL_FRAME_MFA;
            f->arity = (uint8_t)strtoul(slash + 1, NULL, 10);
            if (colon) {
                EFL_FORWARD_IF_ERROR(symbol(b, s, (size_t)(sep - s), &f->a));
            } else {
                char mod[4096];
                EFL_RETURN_ERROR_IF((size_t)(sep - s) + 7 >= sizeof mod, EFL_ERR_LIMIT);
                memcpy(mod, "Elixir.", 7);
                memcpy(mod + 7, s, (size_t)(sep - s));
                EFL_FORWARD_IF_ERROR(symbol(b, mod, (size_t)(sep - s) + 7, &f->a));
            }
            EFL_FORWARD_IF_ERROR(symbol(b, sep + 1, (size_t)(slash - sep - 1), &f->b));
        } else {
            f->kind = EFL_FRAME_NAME;
            EFL_FORWARD_IF_ERROR(symbol(b, s, len, &f->a));
        }
    }
    return EFL_OK;
}

/* The frame a display name stands for, made on first sight. */
static efl_status frame(struct builder *b, const char *s, size_t len, uint32_t *id)
{
    struct intern *t = &b->frames_by_name;
    size_t slot;
    int found;
    EFL_FORWARD_IF_ERROR(intern_find(t, s, len, &slot, &found));
    if (found) {
        *id = t->vals[slot];
        return EFL_OK;
    }
    /* (Parsing adds to the symbols' table, not this one: the slot holds.) */
    struct efl_profile *p = b->p;
    struct efl_frame f;
    EFL_FORWARD_IF_ERROR(parse_frame(b, s, len, &f));
    EFL_GROW(p->frames, p->nframes, b->frames_cap);
    EFL_FORWARD_IF_ERROR(intern_add(t, slot, s, len, p->nframes));
    *id = p->nframes;
    p->frames[p->nframes++] = f;
    return EFL_OK;
}

static efl_status child(struct builder *b, uint32_t parent, uint32_t f, uint32_t *node)
{
    uint64_t key = (uint64_t)parent << 32 | f;
    *node = efl_map_get(&b->children, key);
    if (*node != EFL_MAP_NONE)
        return EFL_OK;
    struct efl_profile *p = b->p;
    EFL_GROW(p->nodes, p->nnodes, b->nodes_cap);
    *node = p->nnodes;
    p->nodes[p->nnodes++] = (struct efl_node){.parent = parent, .frame = f,
                                              .depth = p->nodes[parent].depth + 1};
    return efl_map_put(&b->children, key, *node);
}

static efl_status line(struct builder *b, const char *s, size_t len)
{
    while (len > 0 && (s[len - 1] == '\r' || s[len - 1] == ' '))
        len--;
    if (len == 0)
        return EFL_OK;
    /* Names are C strings: a NUL in one would cut it short. */
    EFL_RETURN_ERROR_IF(memchr(s, 0, len) != NULL, EFL_ERR_CORRUPT);
    const char *space = memrchr(s, ' ', len);
    EFL_RETURN_ERROR_IF(space == NULL || space == s, EFL_ERR_CORRUPT);
    size_t count_len = len - (size_t)(space - s) - 1;
    EFL_RETURN_ERROR_IF(!digits(space + 1, count_len) || count_len > 15, EFL_ERR_CORRUPT);
    uint64_t us = strtoull(space + 1, NULL, 10);
    uint32_t node = 0, depth = 0;
    for (const char *at = s; at < space;) {
        const char *end = memchr(at, ';', (size_t)(space - at));
        if (end == NULL)
            end = space;
        EFL_RETURN_ERROR_IF(end == at, EFL_ERR_CORRUPT);
        EFL_RETURN_ERROR_IF(++depth > EFL_FOLDED_MAX_FRAMES, EFL_ERR_LIMIT);
        uint32_t f;
        EFL_FORWARD_IF_ERROR(frame(b, at, (size_t)(end - at), &f));
        EFL_FORWARD_IF_ERROR(child(b, node, f, &node));
        at = end + 1;
    }
    if (b->diff == NULL) {
        b->p->nodes[node].self_ns += us * 1000;
        b->p->total_ns += us * 1000;
        return EFL_OK;
    }
    if (node >= b->side_cap) {
        size_t cap = b->side_cap ? b->side_cap : 1024;
        while (cap <= node)
            cap *= 2;
        uint64_t *grown = realloc(b->side_ns, cap * sizeof *grown);
        EFL_RETURN_ERROR_IF(grown == NULL, EFL_ERR_NOMEM);
        memset(grown + b->side_cap, 0, (cap - b->side_cap) * sizeof *grown);
        b->side_ns = grown;
        b->side_cap = cap;
    }
    b->side_ns[node] += us * 1000;
    return EFL_OK;
}

/* Each process's stacks end to end from 0, depth first, children in the
 * order they were first seen: the order folded stacks lose. */
static efl_status lay_out(struct efl_profile *p, const uint32_t *first, const uint32_t *next)
{
    size_t cap = 0;
    for (uint32_t proc = 1; proc < p->nnodes; proc++) {
        const struct efl_node *pn = &p->nodes[proc];
        if (p->frames[pn->frame].kind != EFL_FRAME_PROCESS ||
            (pn->parent != 0 && p->frames[p->nodes[pn->parent].frame].kind != EFL_FRAME_NAME))
            continue;
        uint64_t t = 0;
        uint32_t n = proc;
        for (;;) {
            if (p->nodes[n].self_ns > 0) {
                EFL_GROW(p->timeline, p->ntimeline, cap);
                p->timeline[p->ntimeline++] = (struct efl_change){t, proc, n};
                t += p->nodes[n].self_ns;
            }
            if (first[n] != 0) {
                n = first[n];
                continue;
            }
            while (n != proc && next[n] == 0)
                n = p->nodes[n].parent;
            if (n == proc)
                break;
            n = next[n];
        }
        EFL_GROW(p->timeline, p->ntimeline, cap);
        p->timeline[p->ntimeline++] = (struct efl_change){t, proc, proc};
        p->end_ns = t > p->end_ns ? t : p->end_ns;
    }
    return EFL_OK;
}

static efl_status with_timeline(struct efl_profile *p)
{
    uint32_t *first = calloc(p->nnodes, sizeof *first), *next = calloc(p->nnodes, sizeof *next);
    efl_status s = first && next ? EFL_OK : EFL_ERR_NOMEM;
    for (uint32_t i = p->nnodes; s == EFL_OK && i-- > 1;) {
        next[i] = first[p->nodes[i].parent];
        first[p->nodes[i].parent] = i;
    }
    if (s == EFL_OK)
        s = lay_out(p, first, next);
    free(first);
    free(next);
    return s;
}

static efl_status begin(struct builder *b, const char *meta)
{
    struct efl_profile *p = b->p = calloc(1, sizeof *b->p);
    EFL_RETURN_ERROR_IF(p == NULL, EFL_ERR_NOMEM);
    EFL_RETURN_ERROR_IF(meta != NULL && (p->meta = copy(meta, strlen(meta))) == NULL,
                        EFL_ERR_NOMEM);
    EFL_GROW(p->symbols, 1, b->symbols_cap);
    EFL_GROW(p->processes, 1, b->processes_cap);
    EFL_GROW(p->nodes, 0, b->nodes_cap);
    p->nodes[p->nnodes++] = (struct efl_node){0};
    return EFL_OK;
}

static efl_status lines(struct builder *b, const char *text, size_t len)
{
    for (const char *at = text, *end = text + len; at < end;) {
        const char *nl = memchr(at, '\n', (size_t)(end - at));
        if (nl == NULL)
            nl = end;
        EFL_FORWARD_IF_ERROR(line(b, at, (size_t)(nl - at)));
        at = nl + 1;
    }
    return EFL_OK;
}

/* The builder's tables go; the profile stays, or goes too on failure. */
static efl_status end(struct builder *b, efl_status s, struct efl_profile **out)
{
    intern_free(&b->frames_by_name);
    intern_free(&b->symbols_by_name);
    efl_map_free(&b->children);
    free(b->side_ns);
    if (s != EFL_OK) {
        efl_profile_free(b->p);
        return s;
    }
    *out = b->p;
    return EFL_OK;
}

efl_status efl_profile_from_folded(const char *text, size_t len, const char *meta, int timeline,
                                   struct efl_profile **out)
{
    *out = NULL;
    struct builder b = {0};
    efl_status s = begin(&b, meta);
    if (s == EFL_OK)
        s = lines(&b, text, len);
    if (s == EFL_OK && timeline)
        s = with_timeline(b.p);
    return end(&b, s, out);
}

/* One side's times so far, by node, for n nodes; the builder's array is
 * emptied for the other side. */
static efl_status take_side(struct builder *b, size_t n, uint64_t **side)
{
    *side = calloc(n ? n : 1, sizeof **side);
    EFL_RETURN_ERROR_IF(*side == NULL, EFL_ERR_NOMEM);
    for (size_t i = 0; i < n && i < b->side_cap; i++)
        (*side)[i] = b->side_ns[i];
    if (b->side_ns != NULL)
        memset(b->side_ns, 0, b->side_cap * sizeof *b->side_ns);
    return EFL_OK;
}

/* With normalize, Base's times scaled to New's total. Then each node's
 * time drawn: New's, or Base's where New has nothing at or under it (so
 * that what went away is seen). */
static efl_status lay_out_diff(struct efl_profile *p, struct efl_diff *d, int normalize)
{
    uint64_t base_total = 0, new_total = 0;
    for (uint32_t i = 0; i < p->nnodes; i++) {
        base_total += d->base_ns[i];
        new_total += d->new_ns[i];
    }
    d->scale = normalize && base_total > 0 ? (double)new_total / (double)base_total : 1.0;
    if (d->scale != 1.0)
        for (uint32_t i = 0; i < p->nnodes; i++)
            d->base_ns[i] = (uint64_t)((double)d->base_ns[i] * d->scale + 0.5);
    uint64_t *under = calloc(p->nnodes, sizeof *under);
    EFL_RETURN_ERROR_IF(under == NULL, EFL_ERR_NOMEM);
    for (uint32_t i = 0; i < p->nnodes; i++)
        under[i] = d->new_ns[i];
    for (uint32_t i = p->nnodes; i-- > 1;)
        under[p->nodes[i].parent] += under[i];
    for (uint32_t i = 1; i < p->nnodes; i++) {
        p->nodes[i].self_ns = under[i] > 0 ? d->new_ns[i] : d->base_ns[i];
        p->total_ns += p->nodes[i].self_ns;
    }
    free(under);
    return EFL_OK;
}

efl_status efl_profile_diff_folded(const char *base, size_t base_len, const char *new,
                                   size_t new_len, int normalize, const char *meta,
                                   struct efl_profile **out)
{
    *out = NULL;
    struct builder b = {0};
    efl_status s = begin(&b, meta);
    struct efl_diff *d = NULL;
    if (s == EFL_OK && (d = b.p->diff = calloc(1, sizeof *d)) == NULL)
        s = EFL_ERR_NOMEM;
    b.diff = d;
    uint64_t *base_side = NULL;
    size_t base_nodes = 0;
    if (s == EFL_OK)
        s = lines(&b, base, base_len);
    if (s == EFL_OK) {
        base_nodes = b.p->nnodes;
        s = take_side(&b, base_nodes, &base_side);
    }
    if (s == EFL_OK)
        s = lines(&b, new, new_len);
    if (s == EFL_OK)
        s = take_side(&b, b.p->nnodes, &d->new_ns);
    if (s == EFL_OK && (d->base_ns = calloc(b.p->nnodes, sizeof *d->base_ns)) == NULL)
        s = EFL_ERR_NOMEM;
    if (s == EFL_OK) {
        memcpy(d->base_ns, base_side, base_nodes * sizeof *base_side);
        s = lay_out_diff(b.p, d, normalize);
    }
    free(base_side);
    return end(&b, s, out);
}
