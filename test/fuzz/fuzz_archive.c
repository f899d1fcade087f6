/* libFuzzer target: the archive reader, the folder and the folded writer on
 * arbitrary bytes. Whatever the input, they answer a status; they never
 * crash, hang or leak (under ASan and UBSan). */
#include <stddef.h>
#include <stdint.h>

#include "efl_fold.h"
#include "efl_writer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct efl_profile *p = NULL;
    if (efl_fold_archive_mem(data, size, &(struct efl_fold_opts){.timeline = 1}, &p) == EFL_OK) {
        struct efl_buf out = {0};
        (void)efl_write_folded(p, 0, &out);
        for (uint32_t i = 0; i < p->nwindows; i++)
            (void)efl_write_folded(p, p->windows[i].node, &out);
        efl_buf_free(&out);
        efl_profile_free(p);
    }
    return 0;
}
