/* Growable buffers (optionally spilling into a file created O_EXCL |
 * O_NOFOLLOW), arrays and varints: efl_buf.h. */
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "efl_buf.h"

void efl_buf_free(struct efl_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

/* Large enough that a write costs little, small enough to stay in cache. */
#define SPILL_BYTES (1u << 20)

efl_status efl_buf_spill(struct efl_buf *b, int all)
{
    if (b->sink == NULL || b->len == 0 || (!all && b->len < SPILL_BYTES))
        return EFL_OK;
    size_t n = b->len;
    b->len = 0;
    return fwrite(b->data, 1, n, b->sink) == n ? EFL_OK : EFL_ERR_IO;
}

efl_status efl_buf_reserve(struct efl_buf *b, size_t extra)
{
    EFL_RETURN_ERROR_IF(extra > SIZE_MAX / 2 - b->len, EFL_ERR_NOMEM);
    if (b->len + extra <= b->cap)
        return EFL_OK;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + extra)
        cap *= 2;
    unsigned char *data = realloc(b->data, cap);
    EFL_RETURN_ERROR_IF(data == NULL, EFL_ERR_NOMEM);
    b->data = data;
    b->cap = cap;
    return EFL_OK;
}

efl_status efl_buf_append(struct efl_buf *b, const void *p, size_t n)
{
    EFL_FORWARD_IF_ERROR(efl_buf_reserve(b, n));
    if (n > 0)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    return EFL_OK;
}

efl_status efl_buf_puts(struct efl_buf *b, const char *s)
{
    return efl_buf_append(b, s, strlen(s));
}

efl_status efl_buf_printf(struct efl_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    EFL_RETURN_ERROR_IF(n < 0, EFL_ERR_ARG);
    EFL_FORWARD_IF_ERROR(efl_buf_reserve(b, (size_t)n + 1));
    va_start(ap, fmt);
    vsnprintf((char *)b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return EFL_OK;
}

efl_status efl_buf_put_varint(struct efl_buf *b, uint64_t v)
{
    EFL_FORWARD_IF_ERROR(efl_buf_reserve(b, 10));
    efl_buf_put_varint_unchecked(b, v);
    return EFL_OK;
}

efl_status efl_cursor_varint(struct efl_cursor *c, uint64_t *v)
{
    uint64_t x = 0;
    for (unsigned shift = 0; shift < 64; shift += 7) {
        EFL_RETURN_ERROR_IF(c->p >= c->end, EFL_ERR_CORRUPT);
        unsigned char byte = *c->p++;
        x |= (uint64_t)(byte & 0x7f) << shift;
        if (!(byte & 0x80)) {
            *v = x;
            return EFL_OK;
        }
    }
    return EFL_ERR_CORRUPT;
}

efl_status efl_cursor_bytes(struct efl_cursor *c, size_t n, const unsigned char **out)
{
    EFL_RETURN_ERROR_IF((size_t)(c->end - c->p) < n, EFL_ERR_CORRUPT);
    *out = c->p;
    c->p += n;
    return EFL_OK;
}

FILE *efl_buf_create_file(const char *path, unsigned mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, (mode_t)mode);
    FILE *f = fd >= 0 ? fdopen(fd, "wb") : NULL;
    if (fd >= 0 && f == NULL)
        close(fd);
    return f;
}
