/* Output writers: each turns a folded profile into one file format. */
#ifndef EFL_WRITER_H
#define EFL_WRITER_H

#include "efl_buf.h"
#include "efl_fold.h"
#include "efl_status.h"

/* A writer writes the subtree of `root`: 0 for the whole profile, or a
 * window node for one profiled call. */
struct efl_writer {
    const char *format;     /* the output_format option's value */
    const char *extension;  /* the file name's usual extension, with its dot */
    efl_status (*write)(const struct efl_profile *p, uint32_t root, struct efl_buf *out);
};

/* NULL for an unknown format. */
const struct efl_writer *efl_writer_find(const char *format);

/* The writers. */
efl_status efl_write_folded(const struct efl_profile *p, uint32_t root, struct efl_buf *out);

/* Helpers shared by writers. */
uint64_t efl_ns_to_us(uint64_t ns);
/* Is node the process node of a profiled call that ended with an exception? */
int efl_ended_by_exception(const struct efl_profile *p, uint32_t node);
/* Appends the names of the frames from the process down to node, joined by
 * sep (window nodes have no name and are left out; the process of a call
 * that raised is marked " (exception)"). */
efl_status efl_append_stack(const struct efl_profile *p, uint32_t node, const char *sep,
                            struct efl_buf *out);

#endif
