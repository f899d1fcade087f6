/* The list of writers and what they share: frame names, stack walks, the
 * per-profile index, caveats of a partial profile (efl_writer.h). */
#include <stdlib.h>
#include <string.h>

#include "efl_writer.h"

static const struct efl_writer writers[] = {
#define EFL_WRITER_ENTRY(format, extension, timeline, file_only, diff, write)                  \
    {#format, extension, timeline, file_only, diff, write},
    EFL_WRITERS(EFL_WRITER_ENTRY)
#undef EFL_WRITER_ENTRY
};

const struct efl_writer *efl_writers(size_t *n)
{
    *n = sizeof writers / sizeof writers[0];
    return writers;
}

const struct efl_writer *efl_writer_find(const char *format)
{
    for (size_t i = 0; i < sizeof writers / sizeof writers[0]; i++)
        if (strcmp(writers[i].format, format) == 0)
            return &writers[i];
    return NULL;
}

uint64_t efl_ns_to_us(uint64_t ns)
{
    return (ns + 500) / 1000;
}

unsigned efl_process_number(const char *name)
{
    const char *dot = strchr(name, '.');
    return dot ? (unsigned)strtoul(dot + 1, NULL, 10) : 0;
}

/* Frame names go into folded lines: no ';' (the separator), no control
 * characters (line breaks). */
static efl_status append_clean(struct efl_buf *out, const char *s)
{
    size_t start = out->len;
    EFL_FORWARD_IF_ERROR(efl_buf_puts(out, s));
    for (size_t i = start; i < out->len; i++) {
        unsigned char c = out->data[i];
        if (c == ';')
            out->data[i] = ',';
        else if (c < 0x20 || c == 0x7f)
            out->data[i] = '?';
    }
    return EFL_OK;
}

efl_status efl_frame_name(const struct efl_profile *p, uint32_t frame, struct efl_buf *out)
{
    EFL_RETURN_ERROR_IF(frame >= p->nframes, EFL_ERR_ARG);
    const struct efl_frame *fr = &p->frames[frame];
    switch (fr->kind) {
    case EFL_FRAME_MFA: {
        /* Elixir modules as Elixir writes them: Demo.fib/1, not
         * Elixir.Demo:fib/1. */
        const char *mod = p->symbols[fr->a];
        int elixir = strncmp(mod, "Elixir.", 7) == 0 && mod[7] != 0;
        EFL_FORWARD_IF_ERROR(append_clean(out, elixir ? mod + 7 : mod));
        EFL_FORWARD_IF_ERROR(efl_buf_puts(out, elixir ? "." : ":"));
        EFL_FORWARD_IF_ERROR(append_clean(out, p->symbols[fr->b]));
        return efl_buf_printf(out, "/%u", fr->arity);
    }
    case EFL_FRAME_PROCESS:
        return append_clean(out, p->processes[fr->a]);
    case EFL_FRAME_SLEEP:
        return efl_buf_puts(out, "sleep");
    case EFL_FRAME_GC:
        return efl_buf_puts(out, "gc");
    case EFL_FRAME_RUNNABLE:
        return efl_buf_puts(out, "runnable");
    case EFL_FRAME_OS:
        return efl_buf_puts(out, "[os preempted]");
    case EFL_FRAME_DROPPED:
        return efl_buf_printf(out, "[dropped %u events]", fr->a);
    case EFL_FRAME_QUEUED:
        return efl_buf_puts(out, "[queued]");
    case EFL_FRAME_NAME:
        return append_clean(out, p->symbols[fr->a]);
    default:
        return EFL_OK;
    }
}

const char *efl_call_mark(const struct efl_profile *p, uint32_t node)
{
    const struct efl_frame *parent = &p->frames[p->nodes[p->nodes[node].parent].frame];
    if (node == 0 || p->nodes[node].parent == 0 || parent->kind != EFL_FRAME_WINDOW ||
        p->frames[p->nodes[node].frame].kind != EFL_FRAME_PROCESS)
        return NULL;
    switch (p->windows[parent->a].ended) {
    case EFL_EV_ROOT_EXCEPTION: return " (exception)";
    case 0: return " (unfinished)";
    default: return NULL;
    }
}


/* Frame names, formatted once per profile. */
struct names {
    struct efl_buf text;
    size_t *off;   /* nframes + 1 offsets into text */
};

static efl_status format_names(const struct efl_profile *p, struct names *n)
{
    n->text = (struct efl_buf){0};
    n->off = malloc((p->nframes + 1) * sizeof *n->off);
    EFL_RETURN_ERROR_IF(n->off == NULL, EFL_ERR_NOMEM);
    for (uint32_t i = 0; i < p->nframes; i++) {
        n->off[i] = n->text.len;
        EFL_FORWARD_IF_ERROR(efl_frame_name(p, i, &n->text));
    }
    n->off[p->nframes] = n->text.len;
    return EFL_OK;
}

/* Children lists: first child and next sibling, siblings in the byte
 * order of their names so that a walk emits stacks (nearly always)
 * already sorted. */
struct tree {
    uint32_t *first, *next;
};

/* What the writers look up, built once per profile: a capture's profile
 * is written once per captured call, and each write may look only at its
 * call's part (work in proportion to the whole profile per call made
 * folding 16,000 calls take minutes). */
struct efl_profile_index {
    struct names names;
    struct tree tree;
    size_t *changes_at;  /* nnodes + 1: a process node's range in changes */
    size_t *changes;     /* timeline positions by process node, each in time order */
};

struct sort_ctx {
    const struct efl_profile *p;
    const struct names *names;
    const struct tree *tree;
};

static __thread const struct sort_ctx *sorting;

/* The name a node's stacks start with: a window node has none of its own,
 * its process child's stands for it. */
static void sort_name(uint32_t node, const char **s, size_t *len, const char **mark)
{
    const struct efl_profile *p = sorting->p;
    if (p->frames[p->nodes[node].frame].kind == EFL_FRAME_WINDOW && sorting->tree->first[node])
        node = sorting->tree->first[node];
    uint32_t f = p->nodes[node].frame;
    *len = sorting->names->off[f + 1] - sorting->names->off[f];
    *s = *len ? (const char *)sorting->names->text.data + sorting->names->off[f] : "";
    *mark = efl_call_mark(p, node);
}

static int by_name(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    const char *sx, *sy, *mx, *my;
    size_t lx, ly;
    sort_name(x, &sx, &lx, &mx);
    sort_name(y, &sy, &ly, &my);
    int c = memcmp(sx, sy, lx < ly ? lx : ly);
    if (c == 0 && lx != ly)
        c = lx < ly ? -1 : 1;
    if (c == 0)
        c = strcmp(mx ? mx : "", my ? my : "");
    return c != 0 ? c : (x > y) - (x < y);
}

static efl_status build_tree(const struct efl_profile *p, const struct names *names, struct tree *t)
{
    t->first = calloc(p->nnodes, sizeof *t->first);
    t->next = calloc(p->nnodes, sizeof *t->next);
    uint32_t *kids = malloc(p->nnodes * sizeof *kids);
    if (t->first == NULL || t->next == NULL || kids == NULL) {
        free(kids);
        return EFL_ERR_NOMEM;
    }
    /* Node 0 is the root, never anyone's child: 0 ends a list. */
    for (uint32_t n = p->nnodes; n-- > 1;) {
        uint32_t parent = p->nodes[n].parent;
        t->next[n] = t->first[parent];
        t->first[parent] = n;
    }
    /* Deepest first, so a window node's process child is in place before
     * the window is sorted among its siblings. */
    struct sort_ctx ctx = {p, names, t};
    sorting = &ctx;
    for (uint32_t n = p->nnodes; n-- > 0;) {
        size_t k = 0;
        for (uint32_t c = t->first[n]; c != 0; c = t->next[c])
            kids[k++] = c;
        if (k < 2)
            continue;
        qsort(kids, k, sizeof *kids, by_name);
        t->first[n] = kids[0];
        for (size_t i = 0; i < k; i++)
            t->next[kids[i]] = i + 1 < k ? kids[i + 1] : 0;
    }
    sorting = NULL;
    free(kids);
    return EFL_OK;
}

/* The timeline's positions grouped by process node (a counting sort,
 * which keeps each group in time order). */
static efl_status group_changes(const struct efl_profile *p, struct efl_profile_index *x)
{
    x->changes_at = calloc((size_t)p->nnodes + 1, sizeof *x->changes_at);
    x->changes = malloc((p->ntimeline + 1) * sizeof *x->changes);
    EFL_RETURN_ERROR_IF(x->changes_at == NULL || x->changes == NULL, EFL_ERR_NOMEM);
    for (size_t i = 0; i < p->ntimeline; i++)
        x->changes_at[p->timeline[i].proc + 1]++;
    for (uint32_t n = 0; n < p->nnodes; n++)
        x->changes_at[n + 1] += x->changes_at[n];
    size_t *fill = malloc(((size_t)p->nnodes + 1) * sizeof *fill);
    EFL_RETURN_ERROR_IF(fill == NULL, EFL_ERR_NOMEM);
    memcpy(fill, x->changes_at, ((size_t)p->nnodes + 1) * sizeof *fill);
    for (size_t i = 0; i < p->ntimeline; i++)
        x->changes[fill[p->timeline[i].proc]++] = i;
    free(fill);
    return EFL_OK;
}

static void free_index(struct efl_profile_index *x)
{
    efl_buf_free(&x->names.text);
    free(x->names.off);
    free(x->tree.first);
    free(x->tree.next);
    free(x->changes_at);
    free(x->changes);
    free(x);
}

/* The profile's index, built on first use. It is a cache: what it is
 * built from never changes, and a profile is written by one thread at a
 * time. NULL if memory runs out. */
static const struct efl_profile_index *index_of(const struct efl_profile *p)
{
    if (p->index != NULL)
        return p->index;
    struct efl_profile_index *x = calloc(1, sizeof *x);
    if (x == NULL)
        return NULL;
    efl_status s = format_names(p, &x->names);
    if (s == EFL_OK && p->nnodes > 0)
        s = build_tree(p, &x->names, &x->tree);
    if (s == EFL_OK)
        s = group_changes(p, x);
    if (s != EFL_OK) {
        free_index(x);
        return NULL;
    }
    struct efl_profile *cache = (struct efl_profile *)p;
    cache->index = x;
    cache->free_index = free_index;
    return x;
}

/* The node after n in root's subtree, parents before children: its first
 * child, else the next sibling of it or of its nearest ancestor below
 * root that has one; 0 at the end. */
static uint32_t next_in(const struct efl_profile *p, const struct tree *t, uint32_t root, uint32_t n)
{
    if (t->first[n] != 0)
        return t->first[n];
    for (; n != root; n = p->nodes[n].parent)
        if (t->next[n] != 0)
            return t->next[n];
    return 0;
}

efl_status efl_subtree(const struct efl_profile *p, uint32_t root, uint32_t **nodes, size_t *n)
{
    *n = 0;
    *nodes = NULL;
    if (p->nnodes == 0)
        return EFL_OK;
    const struct efl_profile_index *x = index_of(p);
    EFL_RETURN_ERROR_IF(x == NULL, EFL_ERR_NOMEM);
    size_t cap = 0;
    for (uint32_t k = x->tree.first[root]; k != 0; k = next_in(p, &x->tree, root, k)) {
        EFL_GROW(*nodes, *n, cap);
        (*nodes)[(*n)++] = k;
    }
    return EFL_OK;
}

efl_status efl_walk_stacks(const struct efl_profile *p, uint32_t root, const char *sep,
                           efl_stack_visitor visit, void *ctx)
{
    if (p->nnodes == 0)
        return EFL_OK;
    const struct efl_profile_index *x = index_of(p);
    EFL_RETURN_ERROR_IF(x == NULL, EFL_ERR_NOMEM);
    const struct names *names = &x->names;
    const struct tree *t = &x->tree;
    efl_status s = EFL_OK;
    struct efl_buf path = {0};
    /* The walk's stack: a node and the path length before its name. */
    struct frame {
        uint32_t node;
        size_t len;
    } *stack = malloc((EFL_PROFILE_MAX_DEPTH + 8) * sizeof *stack);
    size_t depth = 0, sep_len = strlen(sep);
    if (stack == NULL)
        s = EFL_ERR_NOMEM;
    uint32_t n = s == EFL_OK ? t->first[root] : 0;
    while (s == EFL_OK && n != 0) {
        size_t before = path.len;
        uint32_t f = p->nodes[n].frame;
        if (p->frames[f].kind != EFL_FRAME_WINDOW) {
            if (path.len > 0)
                s = efl_buf_append(&path, sep, sep_len);
            size_t len = names->off[f + 1] - names->off[f];
            /* No name text at all: data is NULL, and NULL + 0 is undefined. */
            if (s == EFL_OK && len > 0)
                s = efl_buf_append(&path, names->text.data + names->off[f], len);
            const char *mark = efl_call_mark(p, n);
            if (s == EFL_OK && mark != NULL)
                s = efl_buf_puts(&path, mark);
        }
        if (s == EFL_OK)
            s = visit(ctx, p, n, (const char *)path.data, path.len);
        if (s != EFL_OK)
            break;
        if (t->first[n] != 0 && depth < EFL_PROFILE_MAX_DEPTH + 8) {
            stack[depth++] = (struct frame){n, before};
            n = t->first[n];
            continue;
        }
        /* No children: on to the next sibling, or back up. */
        path.len = before;
        while (n != 0 && t->next[n] == 0) {
            if (depth == 0) {
                n = 0;
                break;
            }
            depth--;
            n = stack[depth].node;
            path.len = stack[depth].len;
        }
        if (n != 0)
            n = t->next[n];
    }
    free(stack);
    efl_buf_free(&path);
    return s;
}

static int by_index(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

efl_status efl_process_nodes(const struct efl_profile *p, uint32_t root, uint32_t **nodes, size_t *n)
{
    EFL_FORWARD_IF_ERROR(efl_subtree(p, root, nodes, n));
    size_t k = 0;
    /* A process under a followed call's frame is part of its caller's
     * stacks, not a process of its own here. */
    for (size_t i = 0; i < *n; i++) {
        const struct efl_node *node = &p->nodes[(*nodes)[i]];
        uint32_t parent = node->parent;
        uint8_t above = parent == 0 ? EFL_FRAME_WINDOW : p->frames[p->nodes[parent].frame].kind;
        if (p->frames[node->frame].kind == EFL_FRAME_PROCESS &&
            (above == EFL_FRAME_WINDOW || above == EFL_FRAME_NAME))
            (*nodes)[k++] = (*nodes)[i];
    }
    *n = k;
    /* (An empty profile's array may be NULL: no qsort of it.) */
    if (k > 1)
        qsort(*nodes, k, sizeof **nodes, by_index);
    return EFL_OK;
}

uint64_t efl_run_start(const struct efl_profile *p, const uint32_t *procs, size_t n)
{
    uint64_t start = UINT64_MAX;
    for (size_t i = 0; i < n; i++) {
        const size_t *changes;
        size_t nchanges;
        if (efl_process_changes(p, procs[i], &changes, &nchanges) == EFL_OK && nchanges > 0 &&
            p->timeline[changes[0]].ts < start)
            start = p->timeline[changes[0]].ts;
    }
    return start == UINT64_MAX ? 0 : start;
}

efl_status efl_process_changes(const struct efl_profile *p, uint32_t proc, const size_t **changes,
                               size_t *n)
{
    const struct efl_profile_index *x = index_of(p);
    EFL_RETURN_ERROR_IF(x == NULL, EFL_ERR_NOMEM);
    *changes = x->changes + x->changes_at[proc];
    *n = x->changes_at[proc + 1] - x->changes_at[proc];
    return EFL_OK;
}

efl_status efl_node_name(const struct efl_profile *p, uint32_t node, struct efl_buf *out)
{
    EFL_FORWARD_IF_ERROR(efl_frame_name(p, p->nodes[node].frame, out));
    const char *mark = efl_call_mark(p, node);
    return mark != NULL ? efl_buf_puts(out, mark) : EFL_OK;
}

efl_status efl_json_escape(struct efl_buf *out, const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            char esc[2] = {'\\', (char)c};
            EFL_FORWARD_IF_ERROR(efl_buf_append(out, esc, 2));
        } else if (c < 0x20) {
            EFL_FORWARD_IF_ERROR(efl_buf_printf(out, "\\u%04x", c));
        } else {
            EFL_FORWARD_IF_ERROR(efl_buf_append(out, &s[i], 1));
        }
    }
    return EFL_OK;
}

efl_status efl_xml_escape(struct efl_buf *out, const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        const char *rep = NULL;
        switch (s[i]) {
        case '<': rep = "&lt;"; break;
        case '>': rep = "&gt;"; break;
        case '&': rep = "&amp;"; break;
        case '"': rep = "&quot;"; break;
        case '\'': rep = "&apos;"; break;
        /* Kept through attribute value normalisation. */
        case '\n': rep = "&#10;"; break;
        default: break;
        }
        EFL_FORWARD_IF_ERROR(rep ? efl_buf_puts(out, rep) : efl_buf_append(out, &s[i], 1));
    }
    return EFL_OK;
}

efl_status efl_append_caveats(const struct efl_profile *p, struct efl_buf *out)
{
    if (p->stopped == EFL_STOP_NONE && p->drops == 0 && !p->truncated)
        return EFL_OK;
    EFL_FORWARD_IF_ERROR(efl_buf_puts(out, " (partial:"));
    const char *sep = " ";
    if (p->stopped != EFL_STOP_NONE) {
        EFL_FORWARD_IF_ERROR(efl_buf_printf(out, "%srecording stopped: %s", sep,
                                            efl_stop_reason_text(p->stopped)));
        sep = "; ";
    }
    if (p->truncated) {
        EFL_FORWARD_IF_ERROR(efl_buf_printf(out, "%sarchive truncated", sep));
        sep = "; ";
    }
    if (p->drops > 0)
        EFL_FORWARD_IF_ERROR(efl_buf_printf(out, "%s%llu events lost", sep, (unsigned long long)p->drops));
    return efl_buf_puts(out, ")");
}

efl_status efl_profile_summary(const struct efl_profile *p, struct efl_summary *s)
{
    *s = (struct efl_summary){0};
    uint64_t *self = calloc((size_t)p->nframes + 1, sizeof *self);
    uint32_t *functions = calloc((size_t)p->nnodes + 1, sizeof *functions); /* on the path */
    if (self == NULL || functions == NULL) {
        free(self);
        free(functions);
        return EFL_ERR_NOMEM;
    }
    for (uint32_t f = 0; f < p->nframes; f++)
        s->processes += p->frames[f].kind == EFL_FRAME_PROCESS;
    for (uint32_t n = 1; n < p->nnodes; n++) {
        const struct efl_node *node = &p->nodes[n];
        uint8_t kind = p->frames[node->frame].kind;
        functions[n] = functions[node->parent] + (kind == EFL_FRAME_MFA);
        /* (Stacks of less than half a microsecond are in no output.) */
        if (efl_ns_to_us(node->self_ns) == 0)
            continue;
        s->stacks++;
        if (functions[n] > s->deepest)
            s->deepest = functions[n];
        if (kind == EFL_FRAME_MFA || kind == EFL_FRAME_GC) {
            self[node->frame] += node->self_ns;
            s->running_ns += node->self_ns;
        }
    }
    /* The most first: an insertion into a short list. */
    for (uint32_t f = 0; f < p->nframes; f++) {
        if (self[f] == 0)
            continue;
        size_t i = s->ntop < EFL_SUMMARY_TOP ? s->ntop++ : EFL_SUMMARY_TOP;
        for (; i > 0 && s->top_ns[i - 1] < self[f]; i--)
            if (i < EFL_SUMMARY_TOP) {
                s->top_ns[i] = s->top_ns[i - 1];
                s->top_frame[i] = s->top_frame[i - 1];
            }
        if (i < EFL_SUMMARY_TOP) {
            s->top_ns[i] = self[f];
            s->top_frame[i] = f;
        }
    }
    free(self);
    free(functions);
    return EFL_OK;
}

struct call_end {
    uint64_t end_us;
    uint32_t index;
};

static int by_end(const void *a, const void *b)
{
    const struct call_end *x = a, *y = b;
    if (x->end_us != y->end_us)
        return x->end_us < y->end_us ? -1 : 1;
    return (x->index > y->index) - (x->index < y->index);
}

efl_status efl_call_order(const struct efl_profile *p, uint32_t **order, size_t *n)
{
    struct call_end *ended = malloc(((size_t)p->nwindows + 1) * sizeof *ended);
    *order = malloc(((size_t)p->nwindows + 1) * sizeof **order);
    if (ended == NULL || *order == NULL) {
        free(ended);
        free(*order);
        *order = NULL;
        return EFL_ERR_NOMEM;
    }
    size_t k = 0;
    for (uint32_t i = 0; i < p->nwindows; i++)
        if (p->windows[i].ended)
            ended[k++] = (struct call_end){p->windows[i].end_ns / 1000, i};
    qsort(ended, k, sizeof *ended, by_end);
    for (size_t i = 0; i < k; i++)
        (*order)[i] = ended[i].index;
    for (uint32_t i = 0; i < p->nwindows; i++)
        if (!p->windows[i].ended)
            (*order)[k++] = i;
    *n = k;
    free(ended);
    return EFL_OK;
}

const char *efl_meta_value(const char *meta, const char *key, size_t *len)
{
    size_t klen = strlen(key);
    for (const char *line = meta; line && *line;) {
        const char *nl = strchr(line, '\n');
        if (strncmp(line, key, klen) == 0 && line[klen] == '=') {
            *len = (size_t)((nl ? nl : line + strlen(line)) - line) - klen - 1;
            return line + klen + 1;
        }
        line = nl ? nl + 1 : NULL;
    }
    return NULL;
}
