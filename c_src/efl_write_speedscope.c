/* speedscope's file format (https://www.speedscope.app/file-format-schema.json):
 * one evented profile per process, with the exact times each frame was
 * opened and closed, so speedscope's time-order view replays what the
 * process did. Needs the folder's timeline. Times in microseconds, every
 * process on the run's one clock. */
#include <stdlib.h>

#include "efl_map.h"
#include "efl_writer.h"

#define MAX_PATH (EFL_PROFILE_MAX_DEPTH + 8)

struct speedscope {
    struct efl_buf *out;
    const struct efl_profile *p;
    uint64_t base_ns;
    int first_event;
    /* One call of a capture lists only its own frames: frame id -> its
     * index in the file. Empty for the whole profile, whose file lists
     * every frame under its own id. */
    struct efl_map local;
};

static uint32_t frame_index(const struct speedscope *w, uint32_t node)
{
    uint32_t f = w->p->nodes[node].frame;
    return w->local.count ? efl_map_get(&w->local, f) : f;
}

static efl_status event(struct speedscope *w, char type, uint32_t node, uint64_t ts)
{
    uint64_t ns = ts - w->base_ns;
    EFL_FORWARD_IF_ERROR(efl_buf_printf(w->out, "%s{\"type\":\"%c\",\"frame\":%u,\"at\":%llu.%03llu}",
                                        w->first_event ? "" : ",", type, frame_index(w, node),
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

/* One process's profile, on the run's clock (w->base_ns): a process
 * spawned 10 ms into the run starts at 10 ms. */
static efl_status profile(struct speedscope *w, uint32_t proc, int first)
{
    const struct efl_profile *p = w->p;
    const size_t *changes;
    size_t nchanges;
    EFL_FORWARD_IF_ERROR(efl_process_changes(p, proc, &changes, &nchanges));
    uint64_t start = nchanges ? p->timeline[changes[0]].ts : w->base_ns;
    uint64_t end = nchanges ? p->timeline[changes[nchanges - 1]].ts : w->base_ns;
    EFL_FORWARD_IF_ERROR(efl_buf_puts(w->out, first ? "{\"type\":\"evented\",\"name\":\""
                                                    : ",{\"type\":\"evented\",\"name\":\""));
    struct efl_buf name = {0};
    efl_status s = efl_node_name(p, proc, &name);
    if (s == EFL_OK)
        s = efl_json_escape(w->out, (const char *)name.data, name.len);
    efl_buf_free(&name);
    EFL_FORWARD_IF_ERROR(s);
    EFL_FORWARD_IF_ERROR(efl_buf_printf(w->out,
                                        "\",\"unit\":\"microseconds\",\"startValue\":%llu.%03llu,"
                                        "\"endValue\":%llu.%03llu,\"events\":[",
                                        (unsigned long long)((start - w->base_ns) / 1000),
                                        (unsigned long long)((start - w->base_ns) % 1000),
                                        (unsigned long long)((end - w->base_ns) / 1000),
                                        (unsigned long long)((end - w->base_ns) % 1000)));
    w->first_event = 1;
    uint32_t current = proc;
    for (size_t i = 0; i < nchanges; i++) {
        const struct efl_change *c = &p->timeline[changes[i]];
        EFL_FORWARD_IF_ERROR(move(w, proc, current, c->node, c->ts));
        EFL_FORWARD_IF_ERROR(efl_buf_spill(w->out, 0));
        current = c->node;
    }
    /* A process still inside something when the trace ended. */
    EFL_FORWARD_IF_ERROR(move(w, proc, current, proc, end));
    return efl_buf_puts(w->out, "]}");
}

/* The frames the file lists, in order: all of them for the whole
 * profile, else those of root's subtree (and w->local maps them). */
static efl_status list_frames(struct speedscope *w, uint32_t root, uint32_t **frames, size_t *n)
{
    const struct efl_profile *p = w->p;
    if (root == 0) {
        *frames = malloc((p->nframes + 1) * sizeof **frames);
        EFL_RETURN_ERROR_IF(*frames == NULL, EFL_ERR_NOMEM);
        for (uint32_t i = 0; i < p->nframes; i++)
            (*frames)[i] = i;
        *n = p->nframes;
        return EFL_OK;
    }
    EFL_FORWARD_IF_ERROR(efl_subtree(p, root, frames, n));
    size_t k = 0;
    for (size_t i = 0; i < *n; i++) {
        uint32_t f = p->nodes[(*frames)[i]].frame;
        if (efl_map_get(&w->local, f) == EFL_MAP_NONE) {
            EFL_FORWARD_IF_ERROR(efl_map_put(&w->local, f, (uint32_t)k));
            (*frames)[k++] = f;
        }
    }
    *n = k;
    return EFL_OK;
}

efl_status efl_write_speedscope(const struct efl_profile *p, uint32_t root, struct efl_buf *out)
{
    uint32_t *procs, *frames = NULL;
    size_t nprocs, nframes = 0;
    EFL_FORWARD_IF_ERROR(efl_process_nodes(p, root, &procs, &nprocs));
    struct speedscope w = {.out = out, .p = p, .base_ns = efl_run_start(p, procs, nprocs)};
    struct efl_buf name = {0};
    efl_status s = list_frames(&w, root, &frames, &nframes);
    if (s == EFL_OK)
        s = efl_buf_puts(out, "{\"$schema\":\"https://www.speedscope.app/file-format-schema.json\","
                              "\"exporter\":\"eflambe\",\"name\":\"eflambe");
    if (s == EFL_OK)
        s = efl_append_caveats(p, out);
    if (s == EFL_OK)
        s = efl_buf_puts(out, "\",\"activeProfileIndex\":0,\"shared\":{\"frames\":[");
    for (uint32_t i = 0; s == EFL_OK && i < nframes; i++) {
        name.len = 0;
        s = efl_frame_name(p, frames[i], &name);
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
    efl_map_free(&w.local);
    free(frames);
    free(procs);
    return s;
}
