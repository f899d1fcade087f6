/* The profile model's lifetime: efl_profile.h. */
#include <stdlib.h>

#include "efl_profile.h"

void efl_profile_free(struct efl_profile *p)
{
    if (p == NULL)
        return;
    for (uint32_t i = 1; i <= p->nsymbols; i++)
        free(p->symbols[i]);
    for (uint32_t i = 1; i <= p->nprocesses; i++)
        free(p->processes[i]);
    free(p->symbols);
    free(p->processes);
    free(p->frames);
    free(p->nodes);
    free(p->windows);
    free(p->timeline);
    free(p->frame_line);
    free(p->frame_file);
    for (uint32_t i = 0; i < p->nfiles; i++)
        free(p->files[i]);
    free(p->files);
    for (uint32_t i = 0; p->process_labels != NULL && i <= p->nprocesses; i++)
        free(p->process_labels[i]);
    free(p->process_labels);
    free(p->meta);
    if (p->diff != NULL) {
        free(p->diff->base_ns);
        free(p->diff->new_ns);
        free(p->diff);
    }
    if (p->index != NULL)
        p->free_index(p->index);
    free(p);
}
