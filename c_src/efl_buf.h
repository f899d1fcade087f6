/* Growable byte buffer, growable arrays, and the LEB128 varints the
 * archive is made of. */
#ifndef EFL_BUF_H
#define EFL_BUF_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "efl_status.h"

struct efl_buf {
    unsigned char *data;
    size_t len;
    size_t cap;
    /* When set, what efl_buf_spill writes out goes here and leaves the
     * buffer: an output streams to its file instead of growing whole in
     * memory. Not closed by efl_buf_free. */
    FILE *sink;
    /* The name of the sink's file, when a writer needs it (perf.data
     * names a file of symbols after it). */
    const char *path;
};

void efl_buf_free(struct efl_buf *b);
/* With a sink, writes the buffer out once it holds more than a chunk
 * (all of it with `all`). Writers call it where nothing written before
 * will be touched again. EFL_ERR_IO when the write fails. */
efl_status efl_buf_spill(struct efl_buf *b, int all);

/* Creates a file to write, as a sink: a new file only (O_EXCL), never
 * through a link (O_NOFOLLOW), with the given mode. NULL and errno set if
 * it cannot. */
FILE *efl_buf_create_file(const char *path, unsigned mode);
efl_status efl_buf_reserve(struct efl_buf *b, size_t extra);
efl_status efl_buf_append(struct efl_buf *b, const void *p, size_t n);
efl_status efl_buf_puts(struct efl_buf *b, const char *s);
efl_status efl_buf_printf(struct efl_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Makes room in a realloc'd array for element `count` (and those before
 * it), doubling its capacity; returns EFL_ERR_NOMEM from the calling
 * function when it cannot. New elements are not initialised. */
#define EFL_GROW(arr, count, cap)                                               \
    do {                                                                        \
        if ((size_t)(count) >= (size_t)(cap)) {                                 \
            size_t ncap_ = (cap) ? (size_t)(cap) * 2 : 64;                      \
            while (ncap_ <= (size_t)(count))                                    \
                ncap_ *= 2;                                                     \
            void *np_ = realloc((arr), ncap_ * sizeof *(arr));                  \
            EFL_RETURN_ERROR_IF(np_ == NULL, EFL_ERR_NOMEM);                    \
            (arr) = np_;                                                        \
            (cap) = ncap_;                                                      \
        }                                                                       \
    } while (0)

/* Caller has reserved 10 bytes. */
static inline void efl_buf_put_varint_unchecked(struct efl_buf *b, uint64_t v)
{
    while (v >= 0x80) {
        b->data[b->len++] = (unsigned char)(v | 0x80);
        v >>= 7;
    }
    b->data[b->len++] = (unsigned char)v;
}

efl_status efl_buf_put_varint(struct efl_buf *b, uint64_t v);

/* A bounds-checked reader over bytes someone else owns. */
struct efl_cursor {
    const unsigned char *p;
    const unsigned char *end;
};

/* Both return EFL_ERR_CORRUPT when the input ends early or is malformed. */
efl_status efl_cursor_varint(struct efl_cursor *c, uint64_t *v);
efl_status efl_cursor_bytes(struct efl_cursor *c, size_t n, const unsigned char **out);

#endif
