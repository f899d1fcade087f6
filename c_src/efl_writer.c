#include <stdlib.h>
#include <string.h>

#include "efl_writer.h"

static const struct efl_writer writers[] = {
    {"brendan_gregg", ".folded", efl_write_folded},
};

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

int efl_ended_by_exception(const struct efl_profile *p, uint32_t node)
{
    const struct efl_frame *parent = &p->frames[p->nodes[p->nodes[node].parent].frame];
    return node != 0 && p->nodes[node].parent != 0 && parent->kind == EFL_FRAME_WINDOW &&
           p->windows[parent->a].ended == EFL_EV_ROOT_EXCEPTION;
}


/* Children lists, built once per walk: first child and next sibling. */
struct tree {
    uint32_t *first, *next;
};

static efl_status build_tree(const struct efl_profile *p, struct tree *t)
{
    t->first = malloc(p->nnodes * sizeof *t->first);
    t->next = malloc(p->nnodes * sizeof *t->next);
    if (t->first == NULL || t->next == NULL) {
        free(t->first);
        free(t->next);
        return EFL_ERR_NOMEM;
    }
    memset(t->first, 0, p->nnodes * sizeof *t->first);
    /* Node 0 is the root, never anyone's child: 0 ends a list. Children
     * are prepended in reverse index order, so lists come out in index
     * order (creation order). */
    for (uint32_t n = p->nnodes; n-- > 1;) {
        uint32_t parent = p->nodes[n].parent;
        t->next[n] = t->first[parent];
        t->first[parent] = n;
    }
    return EFL_OK;
}

efl_status efl_walk_stacks(const struct efl_profile *p, uint32_t root, const char *sep,
                           efl_stack_visitor visit, void *ctx)
{
    if (p->nnodes == 0)
        return EFL_OK;
    struct tree t;
    EFL_FORWARD_IF_ERROR(build_tree(p, &t));
    struct efl_buf path = {0};
    /* The walk's stack: a node and the path length before its name. */
    struct frame {
        uint32_t node;
        size_t len;
    } *stack = malloc((EFL_FOLD_MAX_DEPTH + 8) * sizeof *stack);
    size_t depth = 0, sep_len = strlen(sep);
    efl_status s = stack ? EFL_OK : EFL_ERR_NOMEM;
    uint32_t n = s == EFL_OK ? t.first[root] : 0;
    while (s == EFL_OK && n != 0) {
        size_t before = path.len;
        const struct efl_frame *fr = &p->frames[p->nodes[n].frame];
        if (fr->kind != EFL_FRAME_WINDOW) {
            if (path.len > 0)
                s = efl_buf_append(&path, sep, sep_len);
            if (s == EFL_OK)
                s = efl_profile_frame_name(p, p->nodes[n].frame, &path);
            if (s == EFL_OK && efl_ended_by_exception(p, n))
                s = efl_buf_puts(&path, " (exception)");
        }
        if (s == EFL_OK)
            s = visit(ctx, p, n, (const char *)path.data, path.len);
        if (s != EFL_OK)
            break;
        if (t.first[n] != 0 && depth < EFL_FOLD_MAX_DEPTH + 8) {
            stack[depth++] = (struct frame){n, before};
            n = t.first[n];
            continue;
        }
        /* No children: on to the next sibling, or back up. */
        path.len = before;
        while (n != 0 && t.next[n] == 0) {
            if (depth == 0) {
                n = 0;
                break;
            }
            depth--;
            n = stack[depth].node;
            path.len = stack[depth].len;
        }
        if (n != 0)
            n = t.next[n];
    }
    free(stack);
    efl_buf_free(&path);
    free(t.first);
    free(t.next);
    return s;
}
