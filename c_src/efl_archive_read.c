/* The trace archive's reader (efl_archive.h): bounded, every length and
 * id an archive carries is checked; a file's frames are decompressed on a
 * second thread while the visitor works. Format: doc/archive-format.adoc. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zstd.h>

#include "efl_archive.h"
#include "efl_archive_format.h"
#include "efl_buf.h"

struct source {
    FILE *file;
    const unsigned char *mem;
    size_t len, pos;
};

/* Reads n bytes at offset (files: then back to the start). */
static int source_read_at(struct source *src, uint64_t offset, void *buf, size_t n)
{
    if (src->file) {
        int ok = fseeko(src->file, (off_t)offset, SEEK_SET) == 0 && fread(buf, 1, n, src->file) == n;
        return fseeko(src->file, 0, SEEK_SET) == 0 && ok;
    }
    if (offset > src->len || n > src->len - offset)
        return 0;
    memcpy(buf, src->mem + offset, n);
    return 1;
}

static efl_status source_size(struct source *src, uint64_t *size)
{
    if (src->file) {
        struct stat st;
        EFL_RETURN_ERROR_IF(fstat(fileno(src->file), &st) != 0, EFL_ERR_IO);
        *size = (uint64_t)st.st_size;
    } else {
        *size = src->len;
    }
    return EFL_OK;
}

static size_t source_read(struct source *src, void *buf, size_t n)
{
    if (src->file)
        return fread(buf, 1, n, src->file);
    size_t k = src->len - src->pos < n ? src->len - src->pos : n;
    memcpy(buf, src->mem + src->pos, k);
    src->pos += k;
    return k;
}

struct reader {
    const struct efl_archive_visitor *v;
    struct efl_archive_summary *sum;
    uint32_t symbols, processes;
    int have_ring;
    uint32_t ring;
    uint64_t ts;
};

static efl_status read_header(struct reader *r, struct source *src)
{
    unsigned char head[8];
    size_t got = source_read(src, head, sizeof head);
    EFL_RETURN_ERROR_IF(got == 0, EFL_ERR_EMPTY);
    EFL_RETURN_ERROR_IF(got < sizeof head || get_le32(head) != HEADER_MAGIC, EFL_ERR_NOT_ARCHIVE);
    uint32_t size = get_le32(head + 4);
    EFL_RETURN_ERROR_IF(size < 12, EFL_ERR_NOT_ARCHIVE);
    EFL_RETURN_ERROR_IF(size > HEADER_MAX, EFL_ERR_CORRUPT);
    unsigned char *payload = malloc(size);
    EFL_RETURN_ERROR_IF(payload == NULL, EFL_ERR_NOMEM);
    efl_status s = EFL_OK;
    if (source_read(src, payload, size) != size)
        s = EFL_ERR_CORRUPT;
    else if (memcmp(payload, HEADER_TAG, 8) != 0)
        s = EFL_ERR_NOT_ARCHIVE;
    else {
        r->sum->major = payload[8] | payload[9] << 8;
        r->sum->minor = payload[10] | payload[11] << 8;
        /* There never was a version 0. */
        if (r->sum->major == 0)
            s = EFL_ERR_CORRUPT;
        else if (r->sum->major > EFL_ARCHIVE_MAJOR)
            s = EFL_ERR_VERSION;
        else if (r->v->version)
            s = r->v->version(r->v->ctx, r->sum->major, r->sum->minor);
    }
    const char *p = (const char *)payload + 12, *end = (const char *)payload + size;
    while (s == EFL_OK && p < end && r->v->meta) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *stop = nl ? nl : end;
        s = r->v->meta(r->v->ctx, p, (size_t)(stop - p));
        p = nl ? nl + 1 : end;
    }
    free(payload);
    return s;
}


/* The site table, if the archive ends with its locator. */
static efl_status read_sites(struct reader *r, struct source *src)
{
    uint64_t size;
    unsigned char loc[LOCATOR_BYTES], head[16];
    EFL_FORWARD_IF_ERROR(source_size(src, &size));
    if (size < LOCATOR_BYTES || !source_read_at(src, size - LOCATOR_BYTES, loc, sizeof loc) ||
        get_le32(loc) != SITES_MAGIC || get_le32(loc + 4) != 16 ||
        memcmp(loc + 8, LOCATOR_TAG, 8) != 0)
        return EFL_OK;
    uint64_t offset = get_le64(loc + 16);
    EFL_RETURN_ERROR_IF(offset > size - LOCATOR_BYTES || size - LOCATOR_BYTES - offset < 16,
                        EFL_ERR_CORRUPT);
    EFL_RETURN_ERROR_IF(!source_read_at(src, offset, head, sizeof head), EFL_ERR_IO);
    uint64_t framed = get_le32(head + 4);
    EFL_RETURN_ERROR_IF(get_le32(head) != SITES_MAGIC || memcmp(head + 8, SITES_TAG, 8) != 0 ||
                            framed < 8 || framed != size - LOCATOR_BYTES - offset - 8,
                        EFL_ERR_CORRUPT);
    EFL_RETURN_ERROR_IF(framed - 8 > SITES_MAX, EFL_ERR_LIMIT);
    size_t zlen = (size_t)(framed - 8);
    unsigned char *z = malloc(zlen ? zlen : 1);
    EFL_RETURN_ERROR_IF(z == NULL, EFL_ERR_NOMEM);
    efl_status s = source_read_at(src, offset + 16, z, zlen) ? EFL_OK : EFL_ERR_IO;
    unsigned long long plain = s == EFL_OK ? ZSTD_getFrameContentSize(z, zlen) : 0;
    if (s == EFL_OK && (plain == ZSTD_CONTENTSIZE_ERROR || plain == ZSTD_CONTENTSIZE_UNKNOWN))
        s = EFL_ERR_CORRUPT;
    else if (s == EFL_OK && plain > SITES_MAX)
        s = EFL_ERR_LIMIT;
    unsigned char *table = s == EFL_OK ? malloc(plain ? (size_t)plain : 1) : NULL;
    if (s == EFL_OK && table == NULL)
        s = EFL_ERR_NOMEM;
    if (s == EFL_OK) {
        size_t got = ZSTD_decompress(table, (size_t)plain, z, zlen);
        if (ZSTD_isError(got) || got != plain)
            s = EFL_ERR_CORRUPT;
    }
    if (s == EFL_OK && r->v->sites)
        s = r->v->sites(r->v->ctx, table, (size_t)plain);
    free(table);
    free(z);
    return s;
}

static efl_status read_id(struct efl_cursor *c, uint32_t limit, int zero_ok, uint32_t *id)
{
    uint64_t v;
    EFL_FORWARD_IF_ERROR(efl_cursor_varint(c, &v));
    EFL_RETURN_ERROR_IF(v > limit || (v == 0 && !zero_ok), EFL_ERR_CORRUPT);
    *id = (uint32_t)v;
    return EFL_OK;
}

static efl_status parse_named(struct reader *r, struct efl_cursor *c, uint32_t *count,
                              efl_status (*cb)(void *, uint32_t, const char *, size_t))
{
    uint64_t id, len;
    const unsigned char *name;
    EFL_FORWARD_IF_ERROR(efl_cursor_varint(c, &id));
    EFL_RETURN_ERROR_IF(id != (uint64_t)*count + 1, EFL_ERR_CORRUPT);
    EFL_RETURN_ERROR_IF(id >= IDS_MAX, EFL_ERR_LIMIT);
    EFL_FORWARD_IF_ERROR(efl_cursor_varint(c, &len));
    EFL_RETURN_ERROR_IF(len > NAME_MAX_BYTES, EFL_ERR_CORRUPT);
    EFL_FORWARD_IF_ERROR(efl_cursor_bytes(c, (size_t)len, &name));
    *count = (uint32_t)id;
    return cb ? cb(r->v->ctx, (uint32_t)id, (const char *)name, (size_t)len) : EFL_OK;
}

static efl_status parse_event(struct reader *r, struct efl_cursor *c, unsigned kind)
{
    struct efl_record e = {0};
    uint64_t delta;
    EFL_RETURN_ERROR_IF(!r->have_ring, EFL_ERR_CORRUPT);
    EFL_FORWARD_IF_ERROR(efl_cursor_varint(c, &delta));
    EFL_RETURN_ERROR_IF(delta > UINT64_MAX - r->ts, EFL_ERR_CORRUPT);
    r->ts += delta;
    e.ts = r->ts;
    e.kind = (uint8_t)kind;
    EFL_FORWARD_IF_ERROR(read_id(c, r->processes, kind == EFL_EV_LOST, &e.pid));
    /* A spawn carries the new process's id where others carry a module (a
     * followed call or request, the other process's); a loss, how many
     * events were lost. */
    if (efl_event_names_process(kind))
        EFL_FORWARD_IF_ERROR(read_id(c, r->processes, 0, &e.mod));
    if (kind == EFL_EV_LOST)
        EFL_FORWARD_IF_ERROR(read_id(c, UINT32_MAX, 1, &e.mod));
    if (has_cpu(kind, r->sum->major))
        EFL_FORWARD_IF_ERROR(efl_cursor_varint(c, &e.cpu));
    if (has_mfa(kind, r->sum->major)) {
        EFL_FORWARD_IF_ERROR(read_id(c, r->symbols, 1, &e.mod));
        if (e.mod != 0) {
            const unsigned char *arity;
            EFL_FORWARD_IF_ERROR(read_id(c, r->symbols, 0, &e.fun));
            EFL_FORWARD_IF_ERROR(efl_cursor_bytes(c, 1, &arity));
            e.arity = *arity;
        }
    }
    r->sum->events++;
    return r->v->event ? r->v->event(r->v->ctx, r->ring, &e) : EFL_OK;
}

static efl_status parse_frame(struct reader *r, const unsigned char *data, size_t len)
{
    struct efl_cursor c = {data, data + len};
    while (c.p < c.end) {
        unsigned tag = *c.p++;
        uint64_t a, b;
        switch (tag) {
        case EFL_REC_SYMBOL:
            EFL_FORWARD_IF_ERROR(parse_named(r, &c, &r->symbols, r->v->symbol));
            break;
        case EFL_REC_PROCESS:
            EFL_FORWARD_IF_ERROR(parse_named(r, &c, &r->processes, r->v->process));
            break;
        case EFL_REC_RING:
            EFL_FORWARD_IF_ERROR(efl_cursor_varint(&c, &a));
            EFL_FORWARD_IF_ERROR(efl_cursor_varint(&c, &b));
            EFL_RETURN_ERROR_IF(a > RING_MAX, EFL_ERR_CORRUPT);
            r->have_ring = 1;
            r->ring = (uint32_t)a;
            r->ts = b;
            break;
        case EFL_REC_DROPS:
            EFL_FORWARD_IF_ERROR(efl_cursor_varint(&c, &a));
            EFL_FORWARD_IF_ERROR(efl_cursor_varint(&c, &b));
            EFL_RETURN_ERROR_IF(a > RING_MAX, EFL_ERR_CORRUPT);
            r->sum->drops += b;
            if (r->v->drops)
                EFL_FORWARD_IF_ERROR(r->v->drops(r->v->ctx, (uint32_t)a, b));
            break;
        case EFL_REC_PASS:
            EFL_FORWARD_IF_ERROR(efl_cursor_varint(&c, &a));
            if (r->v->pass)
                EFL_FORWARD_IF_ERROR(r->v->pass(r->v->ctx, a));
            break;
        case EFL_REC_STOPPED:
            EFL_FORWARD_IF_ERROR(efl_cursor_varint(&c, &a));
            EFL_RETURN_ERROR_IF(a == EFL_STOP_NONE || a >= EFL_STOP_END, EFL_ERR_CORRUPT);
            r->sum->stopped = (unsigned)a;
            break;
        case EFL_REC_END:
            EFL_FORWARD_IF_ERROR(efl_cursor_varint(&c, &a));
            EFL_FORWARD_IF_ERROR(efl_cursor_varint(&c, &b));
            r->sum->ended = 1;
            r->sum->declared_events = a;
            break;
        default:
            EFL_RETURN_ERROR_IF(tag <= EFL_REC_EVENT ||
                                    tag >= EFL_REC_EVENT + (r->sum->major >= 3   ? EFL_EV_KIND_END
                                                            : r->sum->major == 2 ? EFL_EV_RECEIVE
                                                                                 : EFL_EV_FOLLOW_CALL),
                                EFL_ERR_CORRUPT);
            EFL_FORWARD_IF_ERROR(parse_event(r, &c, tag - EFL_REC_EVENT));
        }
    }
    return EFL_OK;
}

/* Decodes frame after frame and hands each complete one to on_frame, so a
 * cut-off tail is ignored as a whole. `frame` is on_frame's to swap for
 * an empty buffer. */
typedef efl_status (*frame_fn)(void *ctx, struct efl_buf *frame);

static efl_status decode_frames(struct source *src, ZSTD_DCtx *d, struct efl_buf *in_buf,
                                struct efl_buf *frame, frame_fn on_frame, void *ctx)
{
    for (;;) {
        size_t got = source_read(src, in_buf->data, in_buf->cap);
        if (got == 0)
            return EFL_OK;
        ZSTD_inBuffer in = {in_buf->data, got, 0};
        while (in.pos < in.size) {
            if (frame->cap - frame->len < ZSTD_DStreamOutSize()) {
                EFL_RETURN_ERROR_IF(frame->len >= FRAME_DECODED_MAX, EFL_ERR_LIMIT);
                EFL_FORWARD_IF_ERROR(efl_buf_reserve(frame, ZSTD_DStreamOutSize()));
            }
            ZSTD_outBuffer out = {frame->data, frame->cap, frame->len};
            size_t ret = ZSTD_decompressStream(d, &out, &in);
            EFL_RETURN_ERROR_IF(ZSTD_isError(ret), EFL_ERR_CORRUPT);
            frame->len = out.pos;
            if (ret == 0) {
                EFL_FORWARD_IF_ERROR(on_frame(ctx, frame));
                frame->len = 0;
            }
        }
    }
}

static efl_status parse_whole_frame(void *ctx, struct efl_buf *frame)
{
    struct reader *r = ctx;
    EFL_FORWARD_IF_ERROR(parse_frame(r, frame->data, frame->len));
    r->sum->frames++;
    return EFL_OK;
}

/* ---- decoding on a second thread (files) ---------------------------
 * A helper thread reads and decompresses while the caller parses and
 * folds. Frames pass through a few slots, buffers swapped, not copied. */

#define SLOTS 4

struct pipeline {
    pthread_mutex_t lock;
    pthread_cond_t changed;
    struct efl_buf slot[SLOTS];
    int full[SLOTS];
    unsigned head, tail;   /* next slot to take / to fill */
    int done;              /* the decoder finished, with `status` */
    efl_status status;
    int cancel;            /* the parser failed: the decoder stops */
    struct source *src;
    ZSTD_DCtx *d;
    struct efl_buf *in_buf;
};

static efl_status hand_over(void *ctx, struct efl_buf *frame)
{
    struct pipeline *pl = ctx;
    pthread_mutex_lock(&pl->lock);
    while (pl->full[pl->tail] && !pl->cancel)
        pthread_cond_wait(&pl->changed, &pl->lock);
    efl_status s = pl->cancel ? EFL_ERR_ARG : EFL_OK;
    if (s == EFL_OK) {
        struct efl_buf spare = pl->slot[pl->tail];
        pl->slot[pl->tail] = *frame;
        spare.len = 0;
        *frame = spare;
        pl->full[pl->tail] = 1;
        pl->tail = (pl->tail + 1) % SLOTS;
        pthread_cond_broadcast(&pl->changed);
    }
    pthread_mutex_unlock(&pl->lock);
    return s;
}

static void *decoder(void *arg)
{
    struct pipeline *pl = arg;
    struct efl_buf frame = {0};
    efl_status s = decode_frames(pl->src, pl->d, pl->in_buf, &frame, hand_over, pl);
    efl_buf_free(&frame);
    pthread_mutex_lock(&pl->lock);
    pl->done = 1;
    pl->status = s;
    pthread_cond_broadcast(&pl->changed);
    pthread_mutex_unlock(&pl->lock);
    return NULL;
}

/* The caller's side: parses frames in order; then the decoder's status,
 * so an error after good frames comes after they were parsed, as when
 * reading on one thread. */
static efl_status parse_from(struct pipeline *pl, struct reader *r)
{
    efl_status s = EFL_OK;
    pthread_mutex_lock(&pl->lock);
    for (;;) {
        while (!pl->full[pl->head] && !pl->done)
            pthread_cond_wait(&pl->changed, &pl->lock);
        if (!pl->full[pl->head]) {
            s = pl->status;
            break;
        }
        struct efl_buf *frame = &pl->slot[pl->head];
        pthread_mutex_unlock(&pl->lock);
        s = parse_whole_frame(r, frame);
        pthread_mutex_lock(&pl->lock);
        if (s != EFL_OK) {
            pl->cancel = 1;
            pthread_cond_broadcast(&pl->changed);
            break;
        }
        pl->full[pl->head] = 0;
        pl->head = (pl->head + 1) % SLOTS;
        pthread_cond_broadcast(&pl->changed);
    }
    pthread_mutex_unlock(&pl->lock);
    return s;
}

static efl_status read_frames_threaded(struct reader *r, struct source *src, ZSTD_DCtx *d,
                                       struct efl_buf *in_buf)
{
    struct pipeline pl = {.src = src, .d = d, .in_buf = in_buf};
    pthread_mutex_init(&pl.lock, NULL);
    pthread_cond_init(&pl.changed, NULL);
    pthread_t tid;
    efl_status s;
    if (pthread_create(&tid, NULL, decoder, &pl) != 0) {
        /* No thread: decode here. */
        struct efl_buf frame = {0};
        s = decode_frames(src, d, in_buf, &frame, parse_whole_frame, r);
        efl_buf_free(&frame);
    } else {
        s = parse_from(&pl, r);
        pthread_join(tid, NULL);
    }
    for (int i = 0; i < SLOTS; i++)
        efl_buf_free(&pl.slot[i]);
    pthread_mutex_destroy(&pl.lock);
    pthread_cond_destroy(&pl.changed);
    return s;
}

static efl_status read_source(struct source *src, const struct efl_archive_visitor *v,
                              struct efl_archive_summary *sum)
{
    memset(sum, 0, sizeof *sum);
    struct reader r = {.v = v, .sum = sum};
    /* The site table sits at the end; the folder needs it first. */
    EFL_FORWARD_IF_ERROR(read_sites(&r, src));
    EFL_FORWARD_IF_ERROR(read_header(&r, src));
    ZSTD_DCtx *d = ZSTD_createDCtx();
    EFL_RETURN_ERROR_IF(d == NULL, EFL_ERR_NOMEM);
    struct efl_buf in_buf = {0}, frame = {0};
    efl_status s = EFL_OK;
    if (ZSTD_isError(ZSTD_DCtx_setParameter(d, ZSTD_d_windowLogMax, 23)))
        s = EFL_ERR_ZSTD;
    else if (efl_buf_reserve(&in_buf, ZSTD_DStreamInSize()) != EFL_OK)
        s = EFL_ERR_NOMEM;
    else if (src->file != NULL)
        s = read_frames_threaded(&r, src, d, &in_buf);
    else
        s = decode_frames(src, d, &in_buf, &frame, parse_whole_frame, &r);
    if (s == EFL_OK)
        sum->truncated = !sum->ended;
    efl_buf_free(&in_buf);
    efl_buf_free(&frame);
    ZSTD_freeDCtx(d);
    return s;
}

/* Opens a regular file to read, or sets errno: a FIFO or a device would
 * block or never end (O_NONBLOCK keeps the open itself from waiting for a
 * FIFO's writer), a directory has no bytes. */
static FILE *open_regular(const char *path)
{
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    struct stat st;
    if (fd < 0)
        return NULL;
    int stat_ok = fstat(fd, &st) == 0;
    if (!stat_ok || !S_ISREG(st.st_mode)) {
        int e = !stat_ok ? errno : S_ISDIR(st.st_mode) ? EISDIR : EINVAL;
        close(fd);
        errno = e;
        return NULL;
    }
    FILE *f = fcntl(fd, F_SETFL, 0) == 0 ? fdopen(fd, "rb") : NULL;
    if (f == NULL)
        close(fd);
    return f;
}

efl_status efl_archive_read_file(const char *path, const struct efl_archive_visitor *v,
                                 struct efl_archive_summary *summary)
{
    struct source src = {.file = open_regular(path)};
    EFL_RETURN_ERROR_IF(src.file == NULL, EFL_ERR_IO);
    efl_status s = read_source(&src, v, summary);
    if (s == EFL_OK && ferror(src.file))
        s = EFL_ERR_IO;
    fclose(src.file);
    return s;
}

efl_status efl_archive_read_mem(const void *data, size_t len, const struct efl_archive_visitor *v,
                                struct efl_archive_summary *summary)
{
    struct source src = {.mem = data, .len = len};
    return read_source(&src, v, summary);
}

efl_status efl_archive_read_header(const char *path, const struct efl_archive_visitor *v,
                                   struct efl_archive_summary *summary)
{
    struct source src = {.file = open_regular(path)};
    EFL_RETURN_ERROR_IF(src.file == NULL, EFL_ERR_IO);
    memset(summary, 0, sizeof *summary);
    struct reader r = {.v = v, .sum = summary};
    efl_status s = read_header(&r, &src);
    fclose(src.file);
    return s;
}
