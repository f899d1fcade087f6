/* pprof's profile.proto (github.com/google/pprof, proto/profile.proto),
 * gzipped, as go tool pprof, Pyroscope, Parca, Grafana and speedscope read
 * it: one sample per distinct stack (its frames leaf first, the process
 * at the root as in every other format), with its time in nanoseconds
 * three ways (wall: all of it, as the flamegraph; cpu: when a function or
 * gc was on top; off_cpu: sleep, runnable, [os preempted], [queued]), the
 * calls that made it where the run traced calls, and labels naming the
 * process (and what it is called, where the archive says), the node (the
 * header's, or the name above the process in a cluster's profile), and
 * the profiled call. A function and a location
 * per frame, both with the frame's index + 1 as id; a function's source
 * file and first line where the site table gives them. A differential
 * profile: New's samples and Base's negated (labelled pprof::base=true),
 * as go tool pprof -diff_base makes them: -top shows the changes.
 *
 * Streamed: the message is a sequence of fields, which protobuf lets
 * repeat and interleave, so strings, functions and locations are written
 * as a sample first needs them, and everything goes through zlib in
 * chunks. */
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "efl_writer.h"

/* profile.proto's field numbers. */
enum {
    PROFILE_SAMPLE_TYPE = 1, PROFILE_SAMPLE = 2, PROFILE_MAPPING = 3, PROFILE_LOCATION = 4,
    PROFILE_FUNCTION = 5,
    PROFILE_STRING = 6, PROFILE_PERIOD_TYPE = 11, PROFILE_PERIOD = 12,
    PROFILE_COMMENT = 13, PROFILE_DEFAULT_TYPE = 14,
    VALUE_TYPE_TYPE = 1, VALUE_TYPE_UNIT = 2,
    SAMPLE_LOCATION = 1, SAMPLE_VALUE = 2, SAMPLE_LABEL = 3,
    LABEL_KEY = 1, LABEL_STR = 2, LABEL_NUM = 3,
    MAPPING_ID = 1, MAPPING_FILENAME = 5, MAPPING_HAS_FUNCTIONS = 7,
    LOCATION_ID = 1, LOCATION_MAPPING = 2, LOCATION_LINE = 4,
    LINE_FUNCTION = 1, LINE_LINE = 2,
    FUNCTION_ID = 1, FUNCTION_NAME = 2, FUNCTION_FILENAME = 4, FUNCTION_START_LINE = 5
};

#define CHUNK (256 * 1024)

struct pprof {
    const struct efl_profile *p;
    struct efl_buf *out;
    z_stream z;
    struct efl_buf pending; /* encoded, not yet compressed */
    struct efl_buf msg, part, name, line; /* scratch: line is frame()'s */
    int64_t strings;        /* string table entries written */
    int64_t *frame_string;  /* by frame: its name's index, 0 until written */
    int64_t *file_string;   /* by profile file (index + 1): its name's index */
    uint8_t *frame_written; /* by frame: its function and location are out */
    uint32_t *call_index;   /* by window: its place in the call order, from 1 */
    int64_t s_process, s_node, s_call, s_ended, s_exception, s_unfinished, node_name;
    int64_t s_base, s_true; /* a diff's Base samples: pprof::base=true */
    int64_t s_process_name;
    int64_t *label_string;  /* by process id: what it is called's index, 0 until written */
    int with_calls;         /* a fourth sample type: the calls a traced run saw */
};

static efl_status put_varint_field(struct efl_buf *b, unsigned field, uint64_t v)
{
    EFL_FORWARD_IF_ERROR(efl_buf_put_varint(b, (uint64_t)field << 3));
    return efl_buf_put_varint(b, v);
}

static efl_status put_bytes_field(struct efl_buf *b, unsigned field, const void *data, size_t len)
{
    EFL_FORWARD_IF_ERROR(efl_buf_put_varint(b, (uint64_t)field << 3 | 2));
    EFL_FORWARD_IF_ERROR(efl_buf_put_varint(b, len));
    return efl_buf_append(b, data, len);
}

/* Compresses what is pending into out (all of zlib's output with
 * `finish`), then lets out spill to its file. */
static efl_status deflate_pending(struct pprof *w, int finish)
{
    w->z.next_in = w->pending.data;
    w->z.avail_in = (uInt)w->pending.len;
    int rc;
    do {
        EFL_FORWARD_IF_ERROR(efl_buf_reserve(w->out, CHUNK));
        w->z.next_out = w->out->data + w->out->len;
        w->z.avail_out = CHUNK;
        rc = deflate(&w->z, finish ? Z_FINISH : Z_NO_FLUSH);
        EFL_RETURN_ERROR_IF(rc == Z_STREAM_ERROR, EFL_ERR_ARG);
        w->out->len += CHUNK - w->z.avail_out;
    } while (w->z.avail_out == 0 || (finish && rc != Z_STREAM_END));
    w->pending.len = 0;
    return efl_buf_spill(w->out, finish);
}

/* A field of the profile message: encoded, compressed once a chunk. */
static efl_status emit(struct pprof *w, unsigned field, const struct efl_buf *m)
{
    EFL_FORWARD_IF_ERROR(put_bytes_field(&w->pending, field, m->data, m->len));
    return w->pending.len >= CHUNK ? deflate_pending(w, 0) : EFL_OK;
}

static efl_status string(struct pprof *w, const char *s, size_t len, int64_t *index)
{
    struct efl_buf m = {(unsigned char *)s, len, len, NULL, NULL};
    EFL_FORWARD_IF_ERROR(emit(w, PROFILE_STRING, &m));
    *index = w->strings++;
    return EFL_OK;
}

static efl_status cstring(struct pprof *w, const char *s, int64_t *index)
{
    return string(w, s, strlen(s), index);
}

static efl_status value_type(struct pprof *w, unsigned field, const char *type, const char *unit)
{
    int64_t t, u;
    EFL_FORWARD_IF_ERROR(cstring(w, type, &t));
    EFL_FORWARD_IF_ERROR(cstring(w, unit, &u));
    w->msg.len = 0;
    EFL_FORWARD_IF_ERROR(put_varint_field(&w->msg, VALUE_TYPE_TYPE, (uint64_t)t));
    EFL_FORWARD_IF_ERROR(put_varint_field(&w->msg, VALUE_TYPE_UNIT, (uint64_t)u));
    return emit(w, field, &w->msg);
}

/* A frame's name in the string table, and its function and location. */
static efl_status frame(struct pprof *w, uint32_t f)
{
    if (w->frame_written[f])
        return EFL_OK;
    if (w->frame_string[f] == 0) {
        w->name.len = 0;
        EFL_FORWARD_IF_ERROR(efl_frame_name(w->p, f, &w->name));
        EFL_FORWARD_IF_ERROR(string(w, (const char *)w->name.data, w->name.len,
                                    &w->frame_string[f]));
    }
    uint64_t id = (uint64_t)f + 1;
    /* Where the function is, when the site table says (its source file
     * and the line its code begins at). */
    const struct efl_profile *p = w->p;
    uint32_t line = p->frame_line ? p->frame_line[f] : 0;
    uint32_t file = p->frame_file ? p->frame_file[f] : 0;
    if (file != 0 && w->file_string[file] == 0)
        EFL_FORWARD_IF_ERROR(cstring(w, p->files[file - 1], &w->file_string[file]));
    w->msg.len = 0;
    EFL_FORWARD_IF_ERROR(put_varint_field(&w->msg, FUNCTION_ID, id));
    EFL_FORWARD_IF_ERROR(put_varint_field(&w->msg, FUNCTION_NAME, (uint64_t)w->frame_string[f]));
    if (file != 0)
        EFL_FORWARD_IF_ERROR(
            put_varint_field(&w->msg, FUNCTION_FILENAME, (uint64_t)w->file_string[file]));
    if (line != 0)
        EFL_FORWARD_IF_ERROR(put_varint_field(&w->msg, FUNCTION_START_LINE, line));
    /* No system_name: pprof's symbolizer "demangles" a name equal to it,
     * and takes <...> out of it as C++ template parameters (<0.85.0>). */
    EFL_FORWARD_IF_ERROR(emit(w, PROFILE_FUNCTION, &w->msg));
    w->line.len = 0;
    EFL_FORWARD_IF_ERROR(put_varint_field(&w->line, LINE_FUNCTION, id));
    if (line != 0)
        EFL_FORWARD_IF_ERROR(put_varint_field(&w->line, LINE_LINE, line));
    w->msg.len = 0;
    EFL_FORWARD_IF_ERROR(put_varint_field(&w->msg, LOCATION_ID, id));
    EFL_FORWARD_IF_ERROR(put_varint_field(&w->msg, LOCATION_MAPPING, 1));
    EFL_FORWARD_IF_ERROR(put_bytes_field(&w->msg, LOCATION_LINE, w->line.data, w->line.len));
    EFL_FORWARD_IF_ERROR(emit(w, PROFILE_LOCATION, &w->msg));
    w->frame_written[f] = 1;
    return EFL_OK;
}

static efl_status label(struct efl_buf *sample, struct efl_buf *part, int64_t key, int64_t str,
                        int64_t num)
{
    part->len = 0;
    EFL_FORWARD_IF_ERROR(put_varint_field(part, LABEL_KEY, (uint64_t)key));
    if (str != 0)
        EFL_FORWARD_IF_ERROR(put_varint_field(part, LABEL_STR, (uint64_t)str));
    else
        EFL_FORWARD_IF_ERROR(put_varint_field(part, LABEL_NUM, (uint64_t)num));
    return put_bytes_field(sample, SAMPLE_LABEL, part->data, part->len);
}

static int on_cpu(uint8_t kind)
{
    return kind == EFL_FRAME_MFA || kind == EFL_FRAME_GC;
}

static int off_cpu(uint8_t kind)
{
    return kind == EFL_FRAME_SLEEP || kind == EFL_FRAME_RUNNABLE || kind == EFL_FRAME_OS ||
           kind == EFL_FRAME_QUEUED;
}

/* One stack: its frames from the node up, leaf first, stopping at its
 * process (under the root or a window); the labels of that process. */
/* One stack's sample, of ns (a diff's Base side: negated, and labelled
 * so, as go tool pprof -diff_base writes it). */
static efl_status sample(struct pprof *w, uint32_t node, uint64_t ns, int base)
{
    const struct efl_profile *p = w->p;
    uint8_t top = p->frames[p->nodes[node].frame].kind;
    w->part.len = 0;
    uint32_t process = 0, window = UINT32_MAX, named = 0;
    for (uint32_t n = node; n != 0; n = p->nodes[n].parent) {
        const struct efl_frame *fr = &p->frames[p->nodes[n].frame];
        if (fr->kind == EFL_FRAME_WINDOW) {
            window = fr->a;
            continue;
        }
        EFL_FORWARD_IF_ERROR(frame(w, p->nodes[n].frame));
        EFL_FORWARD_IF_ERROR(efl_buf_put_varint(&w->part, (uint64_t)p->nodes[n].frame + 1));
        if (fr->kind == EFL_FRAME_PROCESS)
            process = n;
        else if (fr->kind == EFL_FRAME_NAME && p->nodes[n].parent == 0)
            named = n; /* a cluster's profile: the node it ran on */
    }
    w->msg.len = 0;
    EFL_FORWARD_IF_ERROR(put_bytes_field(&w->msg, SAMPLE_LOCATION, w->part.data, w->part.len));
    w->part.len = 0;
    /* int64 values: a negative one as its two's complement. */
    uint64_t v = base ? 0 - ns : ns;
    EFL_FORWARD_IF_ERROR(efl_buf_put_varint(&w->part, v));
    EFL_FORWARD_IF_ERROR(efl_buf_put_varint(&w->part, on_cpu(top) ? v : 0));
    EFL_FORWARD_IF_ERROR(efl_buf_put_varint(&w->part, off_cpu(top) ? v : 0));
    if (w->with_calls)
        EFL_FORWARD_IF_ERROR(efl_buf_put_varint(&w->part, p->nodes[node].calls));
    EFL_FORWARD_IF_ERROR(put_bytes_field(&w->msg, SAMPLE_VALUE, w->part.data, w->part.len));
    if (base)
        EFL_FORWARD_IF_ERROR(label(&w->msg, &w->part, w->s_base, w->s_true, 0));
    if (process != 0) {
        EFL_FORWARD_IF_ERROR(label(&w->msg, &w->part, w->s_process,
                                   w->frame_string[p->nodes[process].frame], 0));
        /* Its registered name or initial call, when the archive says. */
        uint32_t id = p->frames[p->nodes[process].frame].a;
        const char *called = p->process_labels ? p->process_labels[id] : NULL;
        if (called != NULL && w->label_string[id] == 0)
            EFL_FORWARD_IF_ERROR(cstring(w, called, &w->label_string[id]));
        if (called != NULL)
            EFL_FORWARD_IF_ERROR(
                label(&w->msg, &w->part, w->s_process_name, w->label_string[id], 0));
    }
    int64_t node_name = named ? w->frame_string[p->nodes[named].frame] : w->node_name;
    if (node_name != 0)
        EFL_FORWARD_IF_ERROR(label(&w->msg, &w->part, w->s_node, node_name, 0));
    if (window != UINT32_MAX) {
        EFL_FORWARD_IF_ERROR(label(&w->msg, &w->part, w->s_call, 0, w->call_index[window]));
        /* How the call ended, when it did not return. */
        uint8_t ended = p->windows[window].ended;
        if (ended == EFL_EV_ROOT_EXCEPTION || ended == 0)
            EFL_FORWARD_IF_ERROR(label(&w->msg, &w->part, w->s_ended,
                                       ended == 0 ? w->s_unfinished : w->s_exception, 0));
    }
    return emit(w, PROFILE_SAMPLE, &w->msg);
}

static efl_status header(struct pprof *w)
{
    int64_t empty, wall;
    EFL_FORWARD_IF_ERROR(cstring(w, "", &empty));
    EFL_FORWARD_IF_ERROR(value_type(w, PROFILE_SAMPLE_TYPE, "wall", "nanoseconds"));
    wall = w->strings - 2;
    EFL_FORWARD_IF_ERROR(value_type(w, PROFILE_SAMPLE_TYPE, "cpu", "nanoseconds"));
    EFL_FORWARD_IF_ERROR(value_type(w, PROFILE_SAMPLE_TYPE, "off_cpu", "nanoseconds"));
    if (w->with_calls)
        EFL_FORWARD_IF_ERROR(value_type(w, PROFILE_SAMPLE_TYPE, "calls", "count"));
    EFL_FORWARD_IF_ERROR(value_type(w, PROFILE_PERIOD_TYPE, "wall", "nanoseconds"));
    EFL_FORWARD_IF_ERROR(put_varint_field(&w->pending, PROFILE_PERIOD, 1));
    EFL_FORWARD_IF_ERROR(put_varint_field(&w->pending, PROFILE_DEFAULT_TYPE, (uint64_t)wall));
    /* One mapping, the VM's, whose functions are named already: readers
     * look for no binary to symbolize. */
    int64_t vm;
    EFL_FORWARD_IF_ERROR(cstring(w, "beam.smp", &vm));
    w->msg.len = 0;
    EFL_FORWARD_IF_ERROR(put_varint_field(&w->msg, MAPPING_ID, 1));
    EFL_FORWARD_IF_ERROR(put_varint_field(&w->msg, MAPPING_FILENAME, (uint64_t)vm));
    EFL_FORWARD_IF_ERROR(put_varint_field(&w->msg, MAPPING_HAS_FUNCTIONS, 1));
    EFL_FORWARD_IF_ERROR(emit(w, PROFILE_MAPPING, &w->msg));
    EFL_FORWARD_IF_ERROR(cstring(w, "process", &w->s_process));
    EFL_FORWARD_IF_ERROR(cstring(w, "process_name", &w->s_process_name));
    EFL_FORWARD_IF_ERROR(cstring(w, "node", &w->s_node));
    EFL_FORWARD_IF_ERROR(cstring(w, "call", &w->s_call));
    EFL_FORWARD_IF_ERROR(cstring(w, "ended", &w->s_ended));
    EFL_FORWARD_IF_ERROR(cstring(w, "exception", &w->s_exception));
    EFL_FORWARD_IF_ERROR(cstring(w, "unfinished", &w->s_unfinished));
    if (w->p->diff != NULL) {
        EFL_FORWARD_IF_ERROR(cstring(w, "pprof::base", &w->s_base));
        EFL_FORWARD_IF_ERROR(cstring(w, "true", &w->s_true));
    }
    size_t len;
    const char *node = w->p->meta ? efl_meta_value(w->p->meta, "node", &len) : NULL;
    if (node != NULL)
        EFL_FORWARD_IF_ERROR(string(w, node, len, &w->node_name));
    /* What was profiled, and how the profile is incomplete if it is. */
    const char *target = w->p->meta ? efl_meta_value(w->p->meta, "target", &len) : NULL;
    w->name.len = 0;
    EFL_FORWARD_IF_ERROR(efl_buf_puts(&w->name, "eflambe: "));
    if (target != NULL)
        EFL_FORWARD_IF_ERROR(efl_buf_append(&w->name, target, len));
    EFL_FORWARD_IF_ERROR(efl_append_caveats(w->p, &w->name));
    int64_t comment;
    EFL_FORWARD_IF_ERROR(string(w, (const char *)w->name.data, w->name.len, &comment));
    return put_varint_field(&w->pending, PROFILE_COMMENT, (uint64_t)comment);
}

static efl_status call_indexes(struct pprof *w)
{
    uint32_t *order;
    size_t n;
    EFL_FORWARD_IF_ERROR(efl_call_order(w->p, &order, &n));
    w->call_index = calloc(w->p->nwindows + 1, sizeof *w->call_index);
    if (w->call_index != NULL)
        for (size_t i = 0; i < n; i++)
            w->call_index[order[i]] = (uint32_t)i + 1;
    free(order);
    return w->call_index != NULL ? EFL_OK : EFL_ERR_NOMEM;
}

static efl_status write_all(struct pprof *w, uint32_t root)
{
    const struct efl_profile *p = w->p;
    w->frame_string = calloc(p->nframes + 1, sizeof *w->frame_string);
    w->frame_written = calloc(p->nframes + 1, 1);
    w->file_string = calloc((size_t)p->nfiles + 1, sizeof *w->file_string);
    w->label_string = calloc((size_t)p->nprocesses + 1, sizeof *w->label_string);
    EFL_RETURN_ERROR_IF(w->frame_string == NULL || w->frame_written == NULL ||
                            w->file_string == NULL || w->label_string == NULL,
                        EFL_ERR_NOMEM);
    EFL_FORWARD_IF_ERROR(call_indexes(w));
    /* Samples are no calls: a sampled run's stacks are rebuilt at each
     * tick. */
    size_t len;
    const char *mode = p->meta ? efl_meta_value(p->meta, "mode", &len) : NULL;
    w->with_calls = p->calls > 0 && p->diff == NULL &&
                    !(mode != NULL && len == 6 && memcmp(mode, "sample", 6) == 0);
    EFL_FORWARD_IF_ERROR(header(w));
    uint32_t *nodes;
    size_t n;
    EFL_FORWARD_IF_ERROR(efl_subtree(p, root, &nodes, &n));
    /* No duration_nanos: the traced run's wall time, against weights with
     * the tracing cost taken out, would read as time missing. */
    efl_status s = EFL_OK;
    for (size_t i = 0; s == EFL_OK && i < n; i++) {
        uint32_t node = nodes[i];
        if (p->diff != NULL) {
            /* A diff: New's samples, and Base's negated. */
            if (p->diff->new_ns[node] > 0)
                s = sample(w, node, p->diff->new_ns[node], 0);
            if (s == EFL_OK && p->diff->base_ns[node] > 0)
                s = sample(w, node, p->diff->base_ns[node], 1);
        } else if (p->nodes[node].self_ns > 0 || (w->with_calls && p->nodes[node].calls > 0)) {
            s = sample(w, node, p->nodes[node].self_ns, 0);
        }
    }
    free(nodes);
    EFL_FORWARD_IF_ERROR(s);
    return deflate_pending(w, 1);
}

efl_status efl_write_pprof(const struct efl_profile *p, uint32_t root, struct efl_buf *out)
{
    struct pprof w = {.p = p, .out = out};
    /* 15 + 16: a gzip wrapper. Level 1: the output is mostly small
     * varints, and a profile of a compile is tens of MB before it. */
    if (deflateInit2(&w.z, 1, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        return EFL_ERR_NOMEM;
    efl_status s = write_all(&w, root);
    deflateEnd(&w.z);
    efl_buf_free(&w.pending);
    efl_buf_free(&w.msg);
    efl_buf_free(&w.part);
    efl_buf_free(&w.name);
    efl_buf_free(&w.line);
    free(w.frame_string);
    free(w.frame_written);
    free(w.file_string);
    free(w.label_string);
    free(w.call_index);
    return s;
}
