/* The trace archive's writer (efl_archive.h): on the flusher thread,
 * varint records into zstd frames, names defined on first use, and the
 * site table appended after the end record. Format:
 * doc/archive-format.adoc. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zstd.h>

#include "efl_archive.h"
#include "efl_archive_format.h"
#include "efl_buf.h"
#include "efl_map.h"

/* The flusher compresses while the node runs, on a core its schedulers
 * may need: level 1 encodes 23 M events/s on one core where level 3 did
 * 15 M (bench_archive), for archives 9-11% larger (fib, the compiler). */
#ifndef ZSTD_LEVEL
#define ZSTD_LEVEL 1
#endif

struct efl_archive_writer {
    FILE *file;
    ZSTD_CCtx *cctx;
    struct efl_buf records;   /* encoded, not yet handed to zstd */
    size_t frame_bytes;       /* record bytes in the current frame */
    struct efl_buf out;       /* zstd output scratch */
    struct efl_map atoms;     /* raw atom -> symbol id */
    struct efl_map pids;      /* raw pid -> process id */
    uint32_t symbols, processes;
    uint64_t events, drops, bytes_written;
    struct efl_namer namer;
    /* The modules events named (raw atoms), for the site table. */
    uint8_t *is_module;       /* by symbol id */
    size_t is_module_cap;
    uint32_t *modules;
    size_t nmodules, modules_cap;
    /* The processes events came from (raw pids), by process id - 1: the
     * ones whose trace flags a run clears at its end. */
    uint64_t *pid_list;
    size_t pid_list_cap;
};



static efl_status write_bytes(struct efl_archive_writer *w, const void *p, size_t n)
{
    EFL_RETURN_ERROR_IF(n > 0 && fwrite(p, 1, n, w->file) != n, EFL_ERR_IO);
    w->bytes_written += n;
    return EFL_OK;
}

static efl_status write_header(struct efl_archive_writer *w, const char *meta)
{
    size_t meta_len = meta ? strlen(meta) : 0;
    size_t payload = 8 + 4 + meta_len;
    EFL_RETURN_ERROR_IF(payload > HEADER_MAX, EFL_ERR_LIMIT);
    unsigned char head[8 + 12];
    put_le32(head, HEADER_MAGIC);
    put_le32(head + 4, (uint32_t)payload);
    memcpy(head + 8, HEADER_TAG, 8);
    head[16] = EFL_ARCHIVE_MAJOR & 0xff;
    head[17] = EFL_ARCHIVE_MAJOR >> 8;
    head[18] = EFL_ARCHIVE_MINOR & 0xff;
    head[19] = EFL_ARCHIVE_MINOR >> 8;
    EFL_FORWARD_IF_ERROR(write_bytes(w, head, sizeof head));
    return write_bytes(w, meta, meta_len);
}

/* Hands the pending records to zstd; ZSTD_e_end closes the frame. */
static efl_status compress(struct efl_archive_writer *w, ZSTD_EndDirective mode)
{
    ZSTD_inBuffer in = {w->records.data, w->records.len, 0};
    for (;;) {
        ZSTD_outBuffer out = {w->out.data, w->out.cap, 0};
        size_t left = ZSTD_compressStream2(w->cctx, &out, &in, mode);
        EFL_RETURN_ERROR_IF(ZSTD_isError(left), EFL_ERR_ZSTD);
        EFL_FORWARD_IF_ERROR(write_bytes(w, out.dst, out.pos));
        int done = mode == ZSTD_e_end ? left == 0 : in.pos == in.size;
        if (done)
            break;
    }
    w->records.len = 0;
    return EFL_OK;
}

static efl_status after_record(struct efl_archive_writer *w, size_t before)
{
    w->frame_bytes += w->records.len - before;
    if (w->records.len >= COMPRESS_CHUNK)
        EFL_FORWARD_IF_ERROR(compress(w, ZSTD_e_continue));
    return EFL_OK;
}

static efl_status put_named(struct efl_archive_writer *w, unsigned tag, uint32_t id,
                            const char *name, size_t len)
{
    size_t before = w->records.len;
    EFL_FORWARD_IF_ERROR(efl_buf_reserve(&w->records, 1 + 20 + len));
    w->records.data[w->records.len++] = (unsigned char)tag;
    efl_buf_put_varint_unchecked(&w->records, id);
    efl_buf_put_varint_unchecked(&w->records, len);
    memcpy(w->records.data + w->records.len, name, len);
    w->records.len += len;
    return after_record(w, before);
}

static efl_status symbol_id(struct efl_archive_writer *w, uint32_t raw, uint32_t *id)
{
    if (raw == 0) {
        *id = 0;
        return EFL_OK;
    }
    *id = efl_map_get(&w->atoms, raw);
    if (*id != EFL_MAP_NONE)
        return EFL_OK;
    char name[NAME_MAX_BYTES];
    size_t len = w->namer.atom(w->namer.ctx, raw, name, sizeof name);
    *id = ++w->symbols;
    EFL_FORWARD_IF_ERROR(efl_map_put(&w->atoms, raw, *id));
    return put_named(w, EFL_REC_SYMBOL, *id, name, len < sizeof name ? len : sizeof name);
}

static efl_status process_id(struct efl_archive_writer *w, uint64_t raw, uint32_t *id)
{
    *id = efl_map_get(&w->pids, raw);
    if (*id != EFL_MAP_NONE)
        return EFL_OK;
    char name[NAME_MAX_BYTES];
    size_t len = w->namer.pid(w->namer.ctx, raw, name, sizeof name);
    EFL_GROW(w->pid_list, w->processes, w->pid_list_cap);
    w->pid_list[w->processes] = raw;
    *id = ++w->processes;
    EFL_FORWARD_IF_ERROR(efl_map_put(&w->pids, raw, *id));
    return put_named(w, EFL_REC_PROCESS, *id, name, len < sizeof name ? len : sizeof name);
}

static efl_status note_module(struct efl_archive_writer *w, uint32_t id, uint32_t raw)
{
    if (id >= w->is_module_cap) {
        size_t cap = w->is_module_cap ? w->is_module_cap * 2 : 1024;
        while (cap <= id)
            cap *= 2;
        uint8_t *m = realloc(w->is_module, cap);
        EFL_RETURN_ERROR_IF(m == NULL, EFL_ERR_NOMEM);
        memset(m + w->is_module_cap, 0, cap - w->is_module_cap);
        w->is_module = m;
        w->is_module_cap = cap;
    }
    EFL_GROW(w->modules, w->nmodules, w->modules_cap);
    w->is_module[id] = 1;
    w->modules[w->nmodules++] = raw;
    return EFL_OK;
}

void efl_archive_writer_take_modules(struct efl_archive_writer *w, uint32_t **raw, size_t *n)
{
    *raw = w->modules;
    *n = w->nmodules;
    w->modules = NULL;
    w->nmodules = w->modules_cap = 0;
}

void efl_archive_writer_take_pids(struct efl_archive_writer *w, uint64_t **raw, size_t *n)
{
    *raw = w->pid_list;
    *n = w->processes;
    w->pid_list = NULL;
    w->pid_list_cap = 0;
}

efl_status efl_archive_writer_open(struct efl_archive_writer **wp, const char *path,
                                   const char *meta, const struct efl_namer *namer)
{
    struct efl_archive_writer *w = calloc(1, sizeof *w);
    EFL_RETURN_ERROR_IF(w == NULL, EFL_ERR_NOMEM);
    w->namer = *namer;
    /* A new file only, never through a link, readable by its owner alone:
     * an archive holds what the traced code did. */
    w->file = efl_buf_create_file(path, 0600);
    w->cctx = ZSTD_createCCtx();
    efl_status s = EFL_OK;
    if (w->file == NULL)
        s = EFL_ERR_IO;
    else if (w->cctx == NULL || efl_buf_reserve(&w->out, ZSTD_CStreamOutSize()) != EFL_OK)
        s = EFL_ERR_NOMEM;
    else if (ZSTD_isError(ZSTD_CCtx_setParameter(w->cctx, ZSTD_c_compressionLevel, ZSTD_LEVEL)) ||
             ZSTD_isError(ZSTD_CCtx_setParameter(w->cctx, ZSTD_c_checksumFlag, 1)))
        s = EFL_ERR_ZSTD;
    else
        s = write_header(w, meta);
    if (s != EFL_OK) {
        efl_archive_writer_abort(w);
        return s;
    }
    *wp = w;
    return EFL_OK;
}

efl_status efl_archive_writer_events(struct efl_archive_writer *w, uint32_t ring,
                                     const struct efl_event *ev, size_t n)
{
    if (n == 0)
        return EFL_OK;
    size_t before = w->records.len;
    EFL_FORWARD_IF_ERROR(efl_buf_reserve(&w->records, 1 + 20));
    w->records.data[w->records.len++] = EFL_REC_RING;
    efl_buf_put_varint_unchecked(&w->records, ring);
    efl_buf_put_varint_unchecked(&w->records, ev[0].ts);
    EFL_FORWARD_IF_ERROR(after_record(w, before));

    uint64_t prev = ev[0].ts;
    for (size_t i = 0; i < n; i++) {
        const struct efl_event *e = &ev[i];
        uint32_t pid = 0, mod = 0, fun = 0, child = 0;
        /* A loss of several processes' events names none. */
        if (e->kind != EFL_EV_LOST || e->pid != 0)
            EFL_FORWARD_IF_ERROR(process_id(w, e->pid, &pid));
        if (efl_event_names_process(e->kind))
            EFL_FORWARD_IF_ERROR(process_id(w, (uint64_t)e->fun << 32 | e->mod, &child));
        if (has_mfa(e->kind, EFL_ARCHIVE_MAJOR)) {
            EFL_FORWARD_IF_ERROR(symbol_id(w, e->mod, &mod));
            if (mod != 0)
                EFL_FORWARD_IF_ERROR(symbol_id(w, e->fun, &fun));
            if (mod != 0 && (mod >= w->is_module_cap || !w->is_module[mod]))
                EFL_FORWARD_IF_ERROR(note_module(w, mod, e->mod));
        }
        /* One thread's clock never goes back; guard anyway so a delta is
         * never negative. */
        uint64_t delta = e->ts >= prev ? e->ts - prev : 0;
        prev = e->ts >= prev ? e->ts : prev;

        before = w->records.len;
        EFL_FORWARD_IF_ERROR(efl_buf_reserve(&w->records, 1 + 4 * 10 + 1));
        w->records.data[w->records.len++] = (unsigned char)(EFL_REC_EVENT + e->kind);
        efl_buf_put_varint_unchecked(&w->records, delta);
        efl_buf_put_varint_unchecked(&w->records, pid);
        if (efl_event_names_process(e->kind))
            efl_buf_put_varint_unchecked(&w->records, child);
        if (e->kind == EFL_EV_LOST)
            efl_buf_put_varint_unchecked(&w->records, e->mod);
        if (has_cpu(e->kind, EFL_ARCHIVE_MAJOR))
            efl_buf_put_varint_unchecked(&w->records, (uint64_t)e->fun << 32 | e->mod);
        if (has_mfa(e->kind, EFL_ARCHIVE_MAJOR)) {
            efl_buf_put_varint_unchecked(&w->records, mod);
            if (mod != 0) {
                efl_buf_put_varint_unchecked(&w->records, fun);
                w->records.data[w->records.len++] = e->arity;
            }
        }
        EFL_FORWARD_IF_ERROR(after_record(w, before));
    }
    w->events += n;
    if (w->frame_bytes >= FRAME_RECORD_BYTES)
        EFL_FORWARD_IF_ERROR(efl_archive_writer_end_frame(w));
    return EFL_OK;
}

efl_status efl_archive_writer_drops(struct efl_archive_writer *w, uint32_t ring, uint64_t count)
{
    if (count == 0)
        return EFL_OK;
    size_t before = w->records.len;
    EFL_FORWARD_IF_ERROR(efl_buf_reserve(&w->records, 1 + 20));
    w->records.data[w->records.len++] = EFL_REC_DROPS;
    efl_buf_put_varint_unchecked(&w->records, ring);
    efl_buf_put_varint_unchecked(&w->records, count);
    w->drops += count;
    return after_record(w, before);
}

/* A record of one varint field. */
static efl_status put_record(struct efl_archive_writer *w, unsigned tag, uint64_t v)
{
    size_t before = w->records.len;
    EFL_FORWARD_IF_ERROR(efl_buf_reserve(&w->records, 1 + 10));
    w->records.data[w->records.len++] = (unsigned char)tag;
    efl_buf_put_varint_unchecked(&w->records, v);
    return after_record(w, before);
}

efl_status efl_archive_writer_pass(struct efl_archive_writer *w, uint64_t ts)
{
    return put_record(w, EFL_REC_PASS, ts);
}

efl_status efl_archive_writer_stopped(struct efl_archive_writer *w, unsigned reason)
{
    return put_record(w, EFL_REC_STOPPED, reason);
}

uint64_t efl_archive_writer_bytes(const struct efl_archive_writer *w)
{
    return w->bytes_written;
}

size_t efl_archive_writer_frame_bytes(const struct efl_archive_writer *w)
{
    return w->frame_bytes;
}

efl_status efl_archive_writer_end_frame(struct efl_archive_writer *w)
{
    if (w->frame_bytes == 0)
        return EFL_OK;
    EFL_FORWARD_IF_ERROR(compress(w, ZSTD_e_end));
    w->frame_bytes = 0;
    return fflush(w->file) == 0 ? EFL_OK : EFL_ERR_IO;
}

static void writer_free(struct efl_archive_writer *w)
{
    ZSTD_freeCCtx(w->cctx);
    efl_buf_free(&w->records);
    efl_buf_free(&w->out);
    efl_map_free(&w->atoms);
    efl_map_free(&w->pids);
    free(w->is_module);
    free(w->modules);
    free(w->pid_list);
    free(w);
}

efl_status efl_archive_writer_close(struct efl_archive_writer *w, uint64_t *bytes_written)
{
    size_t before = w->records.len;
    efl_status s = efl_buf_reserve(&w->records, 1 + 20);
    if (s == EFL_OK) {
        w->records.data[w->records.len++] = EFL_REC_END;
        efl_buf_put_varint_unchecked(&w->records, w->events);
        efl_buf_put_varint_unchecked(&w->records, w->drops);
        w->frame_bytes += w->records.len - before;
        s = efl_archive_writer_end_frame(w);
    }
    if (fclose(w->file) != 0 && s == EFL_OK)
        s = EFL_ERR_IO;
    if (bytes_written)
        *bytes_written = w->bytes_written;
    writer_free(w);
    return s;
}

void efl_archive_writer_abort(struct efl_archive_writer *w)
{
    if (w->file)
        fclose(w->file);
    writer_free(w);
}


efl_status efl_archive_append_sites(const char *path, const void *table, size_t len)
{
    EFL_RETURN_ERROR_IF(len > SITES_MAX, EFL_ERR_LIMIT);
    size_t bound = ZSTD_compressBound(len);
    unsigned char *frame = malloc(8 + 8 + bound + LOCATOR_BYTES);
    EFL_RETURN_ERROR_IF(frame == NULL, EFL_ERR_NOMEM);
    size_t z = ZSTD_compress(frame + 16, bound, table, len, 3);
    if (ZSTD_isError(z)) {
        free(frame);
        return EFL_ERR_ZSTD;
    }
    put_le32(frame, SITES_MAGIC);
    put_le32(frame + 4, (uint32_t)(8 + z));
    memcpy(frame + 8, SITES_TAG, 8);
    unsigned char *loc = frame + 16 + z;
    efl_status s = EFL_OK;
    int fd = open(path, O_WRONLY | O_APPEND | O_NOFOLLOW | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        s = EFL_ERR_IO;
    } else {
        put_le32(loc, SITES_MAGIC);
        put_le32(loc + 4, 16);
        memcpy(loc + 8, LOCATOR_TAG, 8);
        put_le64(loc + 16, (uint64_t)st.st_size);
        size_t total = 16 + z + LOCATOR_BYTES;
        if (write(fd, frame, total) != (ssize_t)total)
            s = EFL_ERR_IO;
    }
    if (fd >= 0 && close(fd) != 0 && s == EFL_OK)
        s = EFL_ERR_IO;
    free(frame);
    return s;
}
