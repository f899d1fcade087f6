/* perf.data: perf's own binary file (the one `perf record` writes), read by
 * `perf report`, `perf script` and hotspot. Each Erlang process is a
 * thread (its number as pid and tid, its name as command), each distinct
 * stack one sample whose period is the stack's time in microseconds, so the
 * periods add up to the folded output's totals. The Erlang function names
 * are the symbols of a small ELF file written next to it, FILE.syms, which
 * every process maps (an MMAP record naming its absolute path): function i
 * is the 16 bytes at SYM_BASE + 16 i. The ELF's build id, repeated in
 * perf.data's build-id table, finds it once the two files moved (perf
 * buildid-cache --add). perf.data needs a file: the writer takes its name
 * from the output buffer's path.
 *
 * Layout (tools/perf/Documentation/perf.data-file-format.txt): the file
 * header, one event attribute, then the data: per process a COMM and an
 * MMAP record, then its SAMPLE records (ip, pid/tid, time, period,
 * callchain); then the build-id feature's section. */
#include <limits.h>
#include <linux/perf_event.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "efl_writer.h"

#define SYM_BASE 0x1000u
#define SYM_SIZE 16u
#define MAP_START 0x400000u
#define HEADER_BYTES 104u
#define COMM_MAX 4000u
#define EVENT_ID 1u
/* The ELF's GNU build id, which perf.data's build-id table repeats: perf
 * finds the symbols by it in its cache once `perf buildid-cache --add`
 * put them there, wherever the two files went. */
#define BUILD_ID_BYTES 20u
#define NOTE_BYTES (12u + 4u + BUILD_ID_BYTES)
#define HEADER_BUILD_ID_FEATURE 2
#define BUILD_ID_MISC_SIZE (1u << 15) /* perf's PERF_RECORD_MISC_BUILD_ID_SIZE */
#define NAME_ALIGN 64u
/* What perf sees: a software event (cpu-clock), sampled with these. */
#define SAMPLE_TYPE (PERF_SAMPLE_IP | PERF_SAMPLE_TID | PERF_SAMPLE_TIME | PERF_SAMPLE_PERIOD | \
                     PERF_SAMPLE_CALLCHAIN)

struct perf_data {
    const struct efl_profile *p;
    struct efl_buf *out;
    uint32_t *procs;        /* the process nodes: perf's threads */
    size_t nprocs;
    uint32_t *nodes;        /* each process's subtree, in turn */
    size_t nnodes;
    uint32_t *symbol;       /* frame -> symbol number + 1; 0: not a symbol */
    uint32_t *frames;       /* symbol number -> frame */
    size_t nsymbols;
    uint64_t *chain;        /* one sample's callchain */
    size_t chain_cap;
    unsigned char build_id[BUILD_ID_BYTES]; /* the ELF's, from its contents */
};

static efl_status put(struct efl_buf *b, const void *p, size_t n)
{
    return efl_buf_append(b, p, n);
}

static efl_status put64(struct efl_buf *b, uint64_t v)
{
    return efl_buf_append(b, &v, 8);
}

static uint32_t thread_of(const struct perf_data *w, size_t i)
{
    const struct efl_frame *fr = &w->p->frames[w->p->nodes[w->procs[i]].frame];
    uint32_t n = efl_process_number(w->p->processes[fr->a]);
    return n ? n : (uint32_t)i + 1;
}

/* A string padded with NULs to a multiple of 8 bytes (at least one NUL). */
static size_t padded(size_t len)
{
    return (len + 8) & ~(size_t)7;
}

static efl_status put_padded(struct efl_buf *b, const char *s, size_t len)
{
    static const char zeros[8];
    EFL_FORWARD_IF_ERROR(put(b, s, len));
    return put(b, zeros, padded(len) - len);
}

/* A frame that a stack shows: not the process a stack belongs to. */
static int shown(const struct perf_data *w, uint32_t node, uint32_t proc)
{
    return node != proc && w->p->frames[w->p->nodes[node].frame].kind != EFL_FRAME_WINDOW;
}

/* The symbols: every frame the processes' stacks show, numbered. */
static efl_status number_symbols(struct perf_data *w)
{
    const struct efl_profile *p = w->p;
    w->symbol = calloc(p->nframes + 1, sizeof *w->symbol);
    w->frames = malloc((p->nframes + 1) * sizeof *w->frames);
    EFL_RETURN_ERROR_IF(w->symbol == NULL || w->frames == NULL, EFL_ERR_NOMEM);
    for (size_t i = 0; i < w->nprocs; i++) {
        free(w->nodes);
        w->nodes = NULL;
        EFL_FORWARD_IF_ERROR(efl_subtree(p, w->procs[i], &w->nodes, &w->nnodes));
        for (size_t k = 0; k < w->nnodes; k++) {
            uint32_t frame = p->nodes[w->nodes[k]].frame;
            if (shown(w, w->nodes[k], w->procs[i]) && w->symbol[frame] == 0) {
                w->frames[w->nsymbols] = frame;
                w->symbol[frame] = (uint32_t)++w->nsymbols;
            }
        }
    }
    return EFL_OK;
}

static uint64_t ip_of(const struct perf_data *w, uint32_t node)
{
    uint32_t sym = w->symbol[w->p->nodes[node].frame] - 1;
    return MAP_START + SYM_BASE + (uint64_t)sym * SYM_SIZE + SYM_SIZE / 2;
}

static uint64_t map_bytes(const struct perf_data *w)
{
    return SYM_BASE + (uint64_t)w->nsymbols * SYM_SIZE;
}

/* ---- the ELF file of symbols ---------------------------------------- */

static efl_status put16(struct efl_buf *b, uint16_t v) { return put(b, &v, 2); }
static efl_status put32(struct efl_buf *b, uint32_t v) { return put(b, &v, 4); }

static efl_status section(struct efl_buf *b, uint32_t name, uint32_t type, uint64_t flags,
                          uint64_t addr, uint64_t off, uint64_t size, uint32_t link,
                          uint32_t info, uint64_t align, uint64_t entsize)
{
    EFL_FORWARD_IF_ERROR(put32(b, name));
    EFL_FORWARD_IF_ERROR(put32(b, type));
    EFL_FORWARD_IF_ERROR(put64(b, flags));
    EFL_FORWARD_IF_ERROR(put64(b, addr));
    EFL_FORWARD_IF_ERROR(put64(b, off));
    EFL_FORWARD_IF_ERROR(put64(b, size));
    EFL_FORWARD_IF_ERROR(put32(b, link));
    EFL_FORWARD_IF_ERROR(put32(b, info));
    EFL_FORWARD_IF_ERROR(put64(b, align));
    return put64(b, entsize);
}

/* The symbol names, NUL-terminated one after the other, and where each
 * starts. */
static efl_status symbol_names(const struct perf_data *w, struct efl_buf *strtab, uint32_t *offsets)
{
    struct efl_buf name = {0};
    efl_status s = put(strtab, "", 1);
    for (size_t i = 0; s == EFL_OK && i < w->nsymbols; i++) {
        name.len = 0;
        offsets[i] = (uint32_t)strtab->len;
        s = efl_frame_name(w->p, w->frames[i], &name);
        if (s == EFL_OK)
            s = put(strtab, name.data, name.len);
        if (s == EFL_OK)
            s = put(strtab, "", 1);
    }
    efl_buf_free(&name);
    return s;
}

/* The build id: three FNV-1a hashes of what the symbols are (the same
 * names at the same addresses, the same id). */
static void make_build_id(struct perf_data *w, const struct efl_buf *strtab)
{
    static const uint64_t seeds[3] = {0xcbf29ce484222325u, 0x84222325cbf29ce4u,
                                      0x9e3779b97f4a7c15u};
    unsigned char id[24];
    for (int k = 0; k < 3; k++) {
        uint64_t h = seeds[k] ^ w->nsymbols;
        for (size_t i = 0; i < strtab->len; i++)
            h = (h ^ strtab->data[i]) * 0x100000001b3u;
        memcpy(id + 8 * k, &h, 8);
    }
    memcpy(w->build_id, id, BUILD_ID_BYTES);
}

/* A 64-bit little-endian shared object with one loadable segment (the
 * symbols' addresses, no bytes: elfutils, under hotspot, wants program
 * headers) and a note segment (the build id), a .text section of no
 * bytes, .symtab, and .note.gnu.build-id: what perf and elfutils read. */
static efl_status put_elf(const struct perf_data *w, struct efl_buf *elf,
                          const struct efl_buf *strtab, const uint32_t *offsets)
{
    static const char shstrtab[] = "\0.text\0.symtab\0.strtab\0.shstrtab\0.note.gnu.build-id";
    static const unsigned char ident[16] = {0x7f, 'E', 'L', 'F', 2, 1, 1, 0};
    uint64_t note_off = 64 + 2 * 56, symtab_off = note_off + ((NOTE_BYTES + 7) & ~7u);
    uint64_t symtab_len = 24 * ((uint64_t)w->nsymbols + 1);
    uint64_t strtab_off = symtab_off + symtab_len, shstr_off = strtab_off + strtab->len;
    uint64_t sh_off = (shstr_off + sizeof shstrtab + 7) & ~(uint64_t)7;
    /* ELF header: ET_DYN, x86-64 (perf does not mind the machine). */
    EFL_FORWARD_IF_ERROR(put(elf, ident, 16));
    EFL_FORWARD_IF_ERROR(put16(elf, 3));
    EFL_FORWARD_IF_ERROR(put16(elf, 62));
    EFL_FORWARD_IF_ERROR(put32(elf, 1));
    EFL_FORWARD_IF_ERROR(put64(elf, 0));      /* entry */
    EFL_FORWARD_IF_ERROR(put64(elf, 64));     /* program headers */
    EFL_FORWARD_IF_ERROR(put64(elf, sh_off)); /* section headers */
    EFL_FORWARD_IF_ERROR(put32(elf, 0));
    EFL_FORWARD_IF_ERROR(put16(elf, 64));
    EFL_FORWARD_IF_ERROR(put16(elf, 56));
    EFL_FORWARD_IF_ERROR(put16(elf, 2));
    EFL_FORWARD_IF_ERROR(put16(elf, 64));
    EFL_FORWARD_IF_ERROR(put16(elf, 6));
    EFL_FORWARD_IF_ERROR(put16(elf, 4));      /* .shstrtab */
    /* PT_LOAD, R+X: the symbols' range, no bytes in the file. */
    EFL_FORWARD_IF_ERROR(put32(elf, 1));
    EFL_FORWARD_IF_ERROR(put32(elf, 5));
    for (int i = 0; i < 4; i++) /* offset, vaddr, paddr, filesz */
        EFL_FORWARD_IF_ERROR(put64(elf, 0));
    EFL_FORWARD_IF_ERROR(put64(elf, map_bytes(w)));
    EFL_FORWARD_IF_ERROR(put64(elf, 0x1000));
    /* PT_NOTE, R: the build id. */
    EFL_FORWARD_IF_ERROR(put32(elf, 4));
    EFL_FORWARD_IF_ERROR(put32(elf, 4));
    for (int i = 0; i < 3; i++) /* offset, vaddr, paddr */
        EFL_FORWARD_IF_ERROR(put64(elf, note_off));
    EFL_FORWARD_IF_ERROR(put64(elf, NOTE_BYTES));
    EFL_FORWARD_IF_ERROR(put64(elf, NOTE_BYTES));
    EFL_FORWARD_IF_ERROR(put64(elf, 4));
    /* The note: name "GNU", type NT_GNU_BUILD_ID (3). */
    EFL_FORWARD_IF_ERROR(put32(elf, 4));
    EFL_FORWARD_IF_ERROR(put32(elf, BUILD_ID_BYTES));
    EFL_FORWARD_IF_ERROR(put32(elf, 3));
    EFL_FORWARD_IF_ERROR(put(elf, "GNU", 4));
    EFL_FORWARD_IF_ERROR(put(elf, w->build_id, BUILD_ID_BYTES));
    while (elf->len < symtab_off)
        EFL_FORWARD_IF_ERROR(put(elf, "", 1));
    /* .symtab: the null symbol, then the functions (GLOBAL FUNC, .text). */
    static const unsigned char null_symbol[24];
    EFL_FORWARD_IF_ERROR(put(elf, null_symbol, sizeof null_symbol));
    for (size_t i = 0; i < w->nsymbols; i++) {
        static const unsigned char info_other[2] = {(1 << 4) | 2, 0};
        EFL_FORWARD_IF_ERROR(put32(elf, offsets[i]));
        EFL_FORWARD_IF_ERROR(put(elf, info_other, 2));
        EFL_FORWARD_IF_ERROR(put16(elf, 1));
        EFL_FORWARD_IF_ERROR(put64(elf, SYM_BASE + (uint64_t)i * SYM_SIZE));
        EFL_FORWARD_IF_ERROR(put64(elf, SYM_SIZE));
    }
    EFL_FORWARD_IF_ERROR(put(elf, strtab->data, strtab->len));
    EFL_FORWARD_IF_ERROR(put(elf, shstrtab, sizeof shstrtab));
    while (elf->len < sh_off)
        EFL_FORWARD_IF_ERROR(put(elf, "", 1));
    EFL_FORWARD_IF_ERROR(section(elf, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0));
    /* .text: NOBITS, ALLOC | EXECINSTR. */
    EFL_FORWARD_IF_ERROR(section(elf, 1, 8, 6, SYM_BASE, SYM_BASE, map_bytes(w) - SYM_BASE, 0, 0,
                                 16, 0));
    EFL_FORWARD_IF_ERROR(section(elf, 7, 2, 0, 0, symtab_off, symtab_len, 3, 1, 8, 24));
    EFL_FORWARD_IF_ERROR(section(elf, 15, 3, 0, 0, strtab_off, strtab->len, 0, 0, 1, 0));
    EFL_FORWARD_IF_ERROR(section(elf, 23, 3, 0, 0, shstr_off, sizeof shstrtab, 0, 0, 1, 0));
    /* .note.gnu.build-id: NOTE, ALLOC. */
    return section(elf, 33, 7, 2, note_off, note_off, NOTE_BYTES, 0, 0, 4, 0);
}

static efl_status build_elf(struct perf_data *w, struct efl_buf *elf)
{
    struct efl_buf strtab = {0};
    uint32_t *offsets = malloc((w->nsymbols + 1) * sizeof *offsets);
    efl_status s = offsets ? symbol_names(w, &strtab, offsets) : EFL_ERR_NOMEM;
    if (s == EFL_OK) {
        make_build_id(w, &strtab);
        s = put_elf(w, elf, &strtab, offsets);
    }
    free(offsets);
    efl_buf_free(&strtab);
    return s;
}

/* Writes the ELF into a new file (O_EXCL) at path; removed if it fails. */
static efl_status write_elf(struct perf_data *w, const char *path)
{
    struct efl_buf elf = {0};
    efl_status s = build_elf(w, &elf);
    if (s != EFL_OK) {
        efl_buf_free(&elf);
        return s;
    }
    FILE *f = efl_buf_create_file(path, 0644);
    if (f == NULL) {
        efl_buf_free(&elf);
        return EFL_ERR_IO;
    }
    int ok = fwrite(elf.data, 1, elf.len, f) == elf.len;
    ok = fclose(f) == 0 && ok;
    efl_buf_free(&elf);
    if (!ok)
        unlink(path);
    return ok ? EFL_OK : EFL_ERR_IO;
}

/* ---- perf.data ------------------------------------------------------- */

static efl_status record_header(struct efl_buf *b, uint32_t type, uint16_t misc, size_t size)
{
    struct perf_event_header h = {type, misc, (uint16_t)size};
    return put(b, &h, sizeof h);
}

/* sample_id_all: the pid/tid and time that other records carry too. */
static efl_status sample_id(struct efl_buf *b, uint32_t tid)
{
    EFL_FORWARD_IF_ERROR(put32(b, tid));
    EFL_FORWARD_IF_ERROR(put32(b, tid));
    return put64(b, 0);
}

/* The COMM record (the command: the process's name, as the other writers
 * show it) and the MMAP record of the symbols, for process i. */
static efl_status thread_records(struct perf_data *w, size_t i, const char *syms_path)
{
    struct efl_buf *b = w->out;
    uint32_t tid = thread_of(w, i);
    struct efl_buf comm = {0};
    efl_status s = efl_node_name(w->p, w->procs[i], &comm);
    /* A record's size is 16 bits. */
    size_t len = comm.len > COMM_MAX ? COMM_MAX : comm.len;
    if (s == EFL_OK)
        s = record_header(b, PERF_RECORD_COMM, 0, 8 + 8 + padded(len) + 16);
    if (s == EFL_OK)
        s = put32(b, tid);
    if (s == EFL_OK)
        s = put32(b, tid);
    if (s == EFL_OK)
        s = put_padded(b, (const char *)comm.data, len);
    if (s == EFL_OK)
        s = sample_id(b, tid);
    efl_buf_free(&comm);
    EFL_FORWARD_IF_ERROR(s);
    len = strlen(syms_path);
    EFL_FORWARD_IF_ERROR(record_header(b, PERF_RECORD_MMAP, PERF_RECORD_MISC_USER,
                                       8 + 8 + 24 + padded(len) + 16));
    EFL_FORWARD_IF_ERROR(put32(b, tid));
    EFL_FORWARD_IF_ERROR(put32(b, tid));
    EFL_FORWARD_IF_ERROR(put64(b, MAP_START));
    EFL_FORWARD_IF_ERROR(put64(b, map_bytes(w)));
    EFL_FORWARD_IF_ERROR(put64(b, 0));
    EFL_FORWARD_IF_ERROR(put_padded(b, syms_path, len));
    return sample_id(b, tid);
}

/* One sample per stack of the process, in its subtree's order, each at
 * the end of the time before it (a running clock from 0). */
static efl_status samples(struct perf_data *w, size_t i, uint64_t *bytes, int write)
{
    const struct efl_profile *p = w->p;
    uint32_t proc = w->procs[i], tid = thread_of(w, i);
    uint64_t clock_us = 0;
    free(w->nodes);
    w->nodes = NULL;
    EFL_FORWARD_IF_ERROR(efl_subtree(p, proc, &w->nodes, &w->nnodes));
    for (size_t k = 0; k < w->nnodes; k++) {
        uint32_t node = w->nodes[k];
        uint64_t us = efl_ns_to_us(p->nodes[node].self_ns);
        if (us == 0 || !shown(w, node, proc))
            continue;
        size_t depth = 1; /* PERF_CONTEXT_USER */
        for (uint32_t n = node; n != proc && n != 0; n = p->nodes[n].parent)
            depth += shown(w, n, proc);
        size_t size = 8 + 8 + 8 + 8 + 8 + 8 + 8 * depth;
        *bytes += size;
        if (!write)
            continue;
        EFL_GROW(w->chain, depth, w->chain_cap);
        size_t d = 0;
        w->chain[d++] = PERF_CONTEXT_USER;
        for (uint32_t n = node; n != proc && n != 0; n = p->nodes[n].parent)
            if (shown(w, n, proc))
                w->chain[d++] = ip_of(w, n);
        clock_us += us;
        EFL_FORWARD_IF_ERROR(record_header(w->out, PERF_RECORD_SAMPLE, PERF_RECORD_MISC_USER, size));
        EFL_FORWARD_IF_ERROR(put64(w->out, ip_of(w, node)));
        EFL_FORWARD_IF_ERROR(put32(w->out, tid));
        EFL_FORWARD_IF_ERROR(put32(w->out, tid));
        EFL_FORWARD_IF_ERROR(put64(w->out, clock_us * 1000));
        EFL_FORWARD_IF_ERROR(put64(w->out, us));
        EFL_FORWARD_IF_ERROR(put64(w->out, d));
        EFL_FORWARD_IF_ERROR(put(w->out, w->chain, d * 8));
        EFL_FORWARD_IF_ERROR(efl_buf_spill(w->out, 0));
    }
    return EFL_OK;
}

/* After the data, the features' sections: where each is (one, the
 * build-id table), then the table: the symbols file's build id, as perf
 * record writes it for a host process's object (pid -1). */
static efl_status build_id_table(struct perf_data *w, uint64_t at, const char *syms_path)
{
    struct efl_buf *b = w->out;
    size_t len = strlen(syms_path), name_bytes = (len + NAME_ALIGN) & ~(size_t)(NAME_ALIGN - 1);
    size_t record = 8 + 4 + 24 + name_bytes;
    EFL_FORWARD_IF_ERROR(put64(b, at + 16));
    EFL_FORWARD_IF_ERROR(put64(b, record));
    EFL_FORWARD_IF_ERROR(record_header(b, 0, PERF_RECORD_MISC_USER | BUILD_ID_MISC_SIZE, record));
    EFL_FORWARD_IF_ERROR(put32(b, (uint32_t)-1));
    unsigned char id[24] = {0};
    memcpy(id, w->build_id, BUILD_ID_BYTES);
    id[BUILD_ID_BYTES] = BUILD_ID_BYTES; /* its size, with BUILD_ID_MISC_SIZE */
    EFL_FORWARD_IF_ERROR(put(b, id, sizeof id));
    EFL_FORWARD_IF_ERROR(put(b, syms_path, len));
    static const char zeros[NAME_ALIGN];
    return put(b, zeros, name_bytes - len);
}

static efl_status write_perf_data(struct perf_data *w, const char *syms_path)
{
    struct efl_buf *b = w->out;
    /* The data section's size comes first: counted in a dry run. */
    uint64_t data = 0;
    size_t path_len = strlen(syms_path);
    for (size_t i = 0; i < w->nprocs; i++) {
        struct efl_buf comm = {0};
        efl_status s = efl_node_name(w->p, w->procs[i], &comm);
        size_t comm_len = comm.len > COMM_MAX ? COMM_MAX : comm.len;
        efl_buf_free(&comm);
        EFL_FORWARD_IF_ERROR(s);
        data += 16 + padded(comm_len) + 16;
        data += 16 + 24 + padded(path_len) + 16;
        EFL_FORWARD_IF_ERROR(samples(w, i, &data, 0));
    }
    struct perf_event_attr attr;
    memset(&attr, 0, sizeof attr);
    attr.type = PERF_TYPE_SOFTWARE;
    attr.size = sizeof attr;
    attr.config = PERF_COUNT_SW_CPU_CLOCK;
    attr.sample_period = 1;
    attr.sample_type = SAMPLE_TYPE;
    attr.sample_id_all = 1;
    uint64_t attr_bytes = sizeof attr + 16;
    EFL_FORWARD_IF_ERROR(put(b, "PERFILE2", 8));
    EFL_FORWARD_IF_ERROR(put64(b, HEADER_BYTES));
    EFL_FORWARD_IF_ERROR(put64(b, attr_bytes));
    EFL_FORWARD_IF_ERROR(put64(b, HEADER_BYTES)); /* attrs: offset, size */
    EFL_FORWARD_IF_ERROR(put64(b, attr_bytes));
    /* After the attribute, its one id (hotspot's parser knows an
     * attribute by its ids), then the data. */
    uint64_t ids_at = HEADER_BYTES + attr_bytes;
    EFL_FORWARD_IF_ERROR(put64(b, ids_at + 8)); /* data */
    EFL_FORWARD_IF_ERROR(put64(b, data));
    for (int i = 0; i < 2; i++) /* event types (unused) */
        EFL_FORWARD_IF_ERROR(put64(b, 0));
    /* Features: the build-id table only. */
    EFL_FORWARD_IF_ERROR(put64(b, (uint64_t)1 << HEADER_BUILD_ID_FEATURE));
    for (int i = 0; i < 3; i++)
        EFL_FORWARD_IF_ERROR(put64(b, 0));
    EFL_FORWARD_IF_ERROR(put(b, &attr, sizeof attr));
    EFL_FORWARD_IF_ERROR(put64(b, ids_at)); /* the attribute's ids: offset, size */
    EFL_FORWARD_IF_ERROR(put64(b, 8));
    EFL_FORWARD_IF_ERROR(put64(b, EVENT_ID));
    for (size_t i = 0; i < w->nprocs; i++) {
        EFL_FORWARD_IF_ERROR(thread_records(w, i, syms_path));
        uint64_t unused = 0;
        EFL_FORWARD_IF_ERROR(samples(w, i, &unused, 1));
    }
    return build_id_table(w, ids_at + 8 + data, syms_path);
}

efl_status efl_write_perf_data(const struct efl_profile *p, uint32_t root, struct efl_buf *out)
{
    EFL_RETURN_ERROR_IF(out->path == NULL, EFL_ERR_ARG);
    /* The symbols file's absolute name goes into the MMAP records. */
    char *real = realpath(out->path, NULL);
    EFL_RETURN_ERROR_IF(real == NULL, EFL_ERR_IO);
    struct efl_buf syms_path = {0};
    efl_status s = efl_buf_printf(&syms_path, "%s.syms%c", real, 0);
    free(real);
    struct perf_data w = {.p = p, .out = out};
    if (s == EFL_OK)
        s = efl_process_nodes(p, root, &w.procs, &w.nprocs);
    if (s == EFL_OK)
        s = number_symbols(&w);
    if (s == EFL_OK)
        s = write_elf(&w, (const char *)syms_path.data);
    if (s == EFL_OK) {
        s = write_perf_data(&w, (const char *)syms_path.data);
        if (s != EFL_OK)
            unlink((const char *)syms_path.data);
    }
    free(w.procs);
    free(w.nodes);
    free(w.symbol);
    free(w.frames);
    free(w.chain);
    efl_buf_free(&syms_path);
    return s;
}
