/* libFuzzer target: folded stacks read back, alone and as either side of
 * a diff, then written in every format a diff or a conversion takes. They
 * answer a status; they never crash, hang or leak (under ASan and UBSan).
 * The first byte splits the input into Base and New. */
#include <stddef.h>
#include <stdint.h>

#include "efl_folded.h"
#include "efl_writer.h"

static void write_all(const struct efl_profile *p, int diff)
{
    static const char *formats[] = {"brendan_gregg", "svg", "pprof", "speedscope", "perf"};
    for (size_t i = 0; i < (diff ? 3u : 5u); i++) {
        struct efl_buf out = {0};
        (void)efl_writer_find(formats[i])->write(p, 0, &out);
        efl_buf_free(&out);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    size_t cut = 1 + (size - 1) * data[0] / 256;
    const char *text = (const char *)data + 1;
    struct efl_profile *p = NULL;
    if (efl_profile_from_folded(text, size - 1, "node=n@h\n", 1, &p) == EFL_OK)
        write_all(p, 0);
    efl_profile_free(p);
    p = NULL;
    if (efl_profile_diff_folded(text, cut - 1, text + cut - 1, size - cut, data[0] & 1, NULL, &p) ==
        EFL_OK)
        write_all(p, 1);
    efl_profile_free(p);
    return 0;
}
