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

efl_status efl_append_stack(const struct efl_profile *p, uint32_t node, const char *sep,
                            struct efl_buf *out)
{
    uint32_t path[EFL_FOLD_MAX_DEPTH + 4];
    size_t depth = 0;
    for (uint32_t n = node; n != 0 && depth < sizeof path / sizeof path[0]; n = p->nodes[n].parent)
        if (p->frames[p->nodes[n].frame].kind != EFL_FRAME_WINDOW)
            path[depth++] = n;
    for (size_t i = depth; i-- > 0;) {
        EFL_FORWARD_IF_ERROR(efl_profile_frame_name(p, p->nodes[path[i]].frame, out));
        if (efl_ended_by_exception(p, path[i]))
            EFL_FORWARD_IF_ERROR(efl_buf_puts(out, " (exception)"));
        if (i > 0)
            EFL_FORWARD_IF_ERROR(efl_buf_puts(out, sep));
    }
    return EFL_OK;
}
