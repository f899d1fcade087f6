/* speedscope's file format (https://www.speedscope.app/file-format-schema.json):
 * one evented profile per process, with the exact times each frame was
 * opened and closed, so speedscope's time-order view replays what the
 * process did. Needs the folder's timeline. Times in microseconds. */
#include <stdlib.h>

#include "efl_writer.h"

#define MAX_PATH (EFL_FOLD_MAX_DEPTH + 8)

struct speedscope {
    struct efl_buf *out;
    const struct efl_profile *p;
    uint64_t base_ns;
    int first_event;
};

static efl_status event(struct speedscope *w, char type, uint32_t node, uint64_t ts)
{
    uint64_t ns = ts - w->base_ns;
    EFL_FORWARD_IF_ERROR(efl_buf_printf(w->out, "%s{\"type\":\"%c\",\"frame\":%u,\"at\":%llu.%03llu}",
                                        w->first_event ? "" : ",", type, w->p->nodes[node].frame,
                                        (unsigned long long)(ns / 1000),
                                        (unsigned long long)(ns % 1000)));
    w->first_event = 0;
    return EFL_OK;
}

/* From stack `from` to stack `to` (both nodes under proc) at ts: close the
 * frames down to their common part, open the rest. */
static efl_status move(struct speedscope *w, uint32_t proc, uint32_t from, uint32_t to, uint64_t ts)
{
    const struct efl_node *nodes = w->p->nodes;
    uint32_t a = from, b = to, opened[MAX_PATH];
    size_t nopen = 0;
    while (nodes[a].depth > nodes[b].depth) {
        EFL_FORWARD_IF_ERROR(event(w, 'C', a, ts));
        a = nodes[a].parent;
    }
    while (nodes[b].depth > nodes[a].depth && nopen < MAX_PATH) {
        opened[nopen++] = b;
        b = nodes[b].parent;
    }
    while (a != b && a != proc) {
        EFL_FORWARD_IF_ERROR(event(w, 'C', a, ts));
        a = nodes[a].parent;
        if (nopen < MAX_PATH)
            opened[nopen++] = b;
        b = nodes[b].parent;
    }
    while (nopen > 0)
        EFL_FORWARD_IF_ERROR(event(w, 'O', opened[--nopen], ts));
    return EFL_OK;
}

static efl_status profile(struct speedscope *w, uint32_t proc, int first)
{
    const struct efl_profile *p = w->p;
    uint64_t start = 0, end = 0;
    int seen = 0;
    for (size_t i = 0; i < p->ntimeline; i++) {
        if (p->timeline[i].proc != proc)
            continue;
        if (!seen)
            start = p->timeline[i].ts;
        end = p->timeline[i].ts;
        seen = 1;
    }
    w->base_ns = start;
    EFL_FORWARD_IF_ERROR(efl_buf_puts(w->out, first ? "{\"type\":\"evented\",\"name\":\""
                                                    : ",{\"type\":\"evented\",\"name\":\""));
    struct efl_buf name = {0};
    efl_status s = efl_node_name(p, proc, &name);
    if (s == EFL_OK)
        s = efl_json_escape(w->out, (const char *)name.data, name.len);
    efl_buf_free(&name);
    EFL_FORWARD_IF_ERROR(s);
    EFL_FORWARD_IF_ERROR(efl_buf_printf(w->out,
                                        "\",\"unit\":\"microseconds\",\"startValue\":0,"
                                        "\"endValue\":%llu.%03llu,\"events\":[",
                                        (unsigned long long)((end - start) / 1000),
                                        (unsigned long long)((end - start) % 1000)));
    w->first_event = 1;
    uint32_t current = proc;
    for (size_t i = 0; i < p->ntimeline; i++) {
        const struct efl_change *c = &p->timeline[i];
        if (c->proc != proc)
            continue;
        EFL_FORWARD_IF_ERROR(move(w, proc, current, c->node, c->ts));
        EFL_FORWARD_IF_ERROR(efl_buf_spill(w->out, 0));
        current = c->node;
    }
    /* A process still inside something when the trace ended. */
    EFL_FORWARD_IF_ERROR(move(w, proc, current, proc, end));
    return efl_buf_puts(w->out, "]}");
}

efl_status efl_write_speedscope(const struct efl_profile *p, uint32_t root, struct efl_buf *out)
{
    uint32_t *procs;
    size_t nprocs;
    EFL_FORWARD_IF_ERROR(efl_process_nodes(p, root, &procs, &nprocs));
    struct speedscope w = {.out = out, .p = p};
    struct efl_buf name = {0};
    efl_status s = efl_buf_puts(out, "{\"$schema\":\"https://www.speedscope.app/file-format-schema.json\","
                                     "\"exporter\":\"eflambe\",\"name\":\"eflambe");
    if (s == EFL_OK)
        s = efl_append_caveats(p, out);
    if (s == EFL_OK)
        s = efl_buf_puts(out, "\",\"activeProfileIndex\":0,\"shared\":{\"frames\":[");
    /* Frame indexes are the profile's own frame ids. */
    for (uint32_t i = 0; s == EFL_OK && i < p->nframes; i++) {
        name.len = 0;
        s = efl_profile_frame_name(p, i, &name);
        if (s == EFL_OK)
            s = efl_buf_puts(out, i ? ",{\"name\":\"" : "{\"name\":\"");
        if (s == EFL_OK)
            s = efl_json_escape(out, (const char *)name.data, name.len);
        if (s == EFL_OK)
            s = efl_buf_puts(out, "\"}");
        if (s == EFL_OK)
            s = efl_buf_spill(out, 0);
    }
    if (s == EFL_OK)
        s = efl_buf_puts(out, "]},\"profiles\":[");
    for (size_t i = 0; s == EFL_OK && i < nprocs; i++)
        s = profile(&w, procs[i], i == 0);
    if (s == EFL_OK)
        s = efl_buf_puts(out, "]}\n");
    efl_buf_free(&name);
    free(procs);
    return s;
}
