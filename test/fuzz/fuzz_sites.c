/* libFuzzer target: the BEAM reader and the site table decoder on
 * arbitrary bytes (the first byte picks which). They answer a status; they
 * never crash, hang or leak (under ASan and UBSan). */
#include <stddef.h>
#include <stdint.h>

#include "efl_sites.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    struct efl_sites *t = NULL;
    if (data[0] & 1) {
        if (efl_sites_new(&t) == EFL_OK)
            (void)efl_sites_add_module(t, data + 1, size - 1);
    } else {
        (void)efl_sites_decode(data + 1, size - 1, &t);
    }
    if (t != NULL) {
        struct efl_buf out = {0};
        (void)efl_sites_encode(t, &out);
        efl_buf_free(&out);
        (void)efl_sites_kind(t, 1, 2, 0);
        efl_sites_free(t);
    }
    return 0;
}
