/* The call-site table: built from BEAM code when a run ends, serialized
 * into the archive, asked by the folder for each call (efl_sites.h). */
#include <stdlib.h>
#include <string.h>

#include "efl_map.h"
#include "efl_sites.h"

/* Limits a serialized table may not exceed (the compiler's hundred modules
 * hold about 40,000 sites and 10,000 names). */
#define NAME_MAX_BYTES 1024
#define NAMES_MAX (1u << 22)
#define FUNCTIONS_MAX (1u << 22)
#define PAIRS_MAX (1u << 24)

enum { REC_NAME = 1, REC_FUNCTION = 2, REC_CALL = 3, REC_DYNAMIC = 4, REC_BIF = 5, REC_LINE = 6,
       REC_SOURCE = 7, REC_PROCESS = 8 };

struct function {
    uint32_t mod, fun;
    uint32_t line;     /* where its code begins; 0: unknown */
    uint32_t file;     /* name of the included file that line is in; 0: its module's */
    uint8_t arity;
    uint8_t bif;
    uint8_t dynamic;   /* kinds of its calls to funs and apply */
    uint8_t external;  /* kinds of its calls to other modules, and dynamic */
};

struct efl_sites {
    /* Names: open addressing on a hash of the text, texts compared. */
    char **names;          /* by id, [0] unused */
    uint32_t nnames, names_cap;
    uint32_t *name_slots;  /* id, 0: empty */
    size_t name_slots_cap; /* power of two */
    struct function *fns;  /* by id, [0] unused */
    uint32_t nfns, fns_cap;
    struct efl_map fn_ids; /* mod << 40 | fun << 16 | arity -> id */
    struct efl_map pairs;  /* caller << 32 | callee -> kinds */
    struct efl_map sources; /* module name -> its source file's name */
    struct efl_map processes; /* a process's name (<0.85.0>) -> what it is called */
};

efl_status efl_sites_new(struct efl_sites **tp)
{
    struct efl_sites *t = calloc(1, sizeof *t);
    EFL_RETURN_ERROR_IF(t == NULL, EFL_ERR_NOMEM);
    *tp = t;
    return EFL_OK;
}

void efl_sites_free(struct efl_sites *t)
{
    if (t == NULL)
        return;
    for (uint32_t i = 1; i <= t->nnames; i++)
        free(t->names[i]);
    free(t->names);
    free(t->name_slots);
    free(t->fns);
    efl_map_free(&t->fn_ids);
    efl_map_free(&t->pairs);
    efl_map_free(&t->sources);
    efl_map_free(&t->processes);
    free(t);
}

size_t efl_sites_pairs(const struct efl_sites *t)
{
    return t->pairs.count;
}

static uint64_t hash_text(const char *s, size_t len)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)s[i]) * 0x100000001b3ull;
    return h ^ h >> 29;
}

static uint32_t *name_slot(const struct efl_sites *t, const char *s, size_t len)
{
    size_t mask = t->name_slots_cap - 1;
    for (size_t i = hash_text(s, len) & mask;; i = (i + 1) & mask) {
        uint32_t id = t->name_slots[i];
        if (id == 0 || (strlen(t->names[id]) == len && memcmp(t->names[id], s, len) == 0))
            return &t->name_slots[i];
    }
}

uint32_t efl_sites_name(const struct efl_sites *t, const char *s, size_t len)
{
    return t->name_slots_cap ? *name_slot(t, s, len) : 0;
}

static efl_status intern_name(struct efl_sites *t, struct efl_name n, uint32_t *id)
{
    EFL_RETURN_ERROR_IF(n.len > NAME_MAX_BYTES || memchr(n.s, 0, n.len) != NULL, EFL_ERR_CORRUPT);
    if ((size_t)t->nnames * 2 + 2 > t->name_slots_cap) {
        EFL_RETURN_ERROR_IF(t->nnames >= NAMES_MAX, EFL_ERR_LIMIT);
        size_t cap = t->name_slots_cap ? t->name_slots_cap * 2 : 1024;
        uint32_t *slots = calloc(cap, sizeof *slots);
        EFL_RETURN_ERROR_IF(slots == NULL, EFL_ERR_NOMEM);
        free(t->name_slots);
        t->name_slots = slots;
        t->name_slots_cap = cap;
        for (uint32_t i = 1; i <= t->nnames; i++)
            *name_slot(t, t->names[i], strlen(t->names[i])) = i;
    }
    uint32_t *slot = name_slot(t, n.s, n.len);
    if (*slot == 0) {
        EFL_GROW(t->names, t->nnames + 1, t->names_cap);
        char *copy = malloc(n.len + 1);
        EFL_RETURN_ERROR_IF(copy == NULL, EFL_ERR_NOMEM);
        memcpy(copy, n.s, n.len);
        copy[n.len] = 0;
        t->names[++t->nnames] = copy;
        *slot = t->nnames;
    }
    *id = *slot;
    return EFL_OK;
}

static uint64_t fn_key(uint32_t mod, uint32_t fun, unsigned arity)
{
    return (uint64_t)mod << 40 | (uint64_t)fun << 16 | arity;
}

uint32_t efl_sites_function(const struct efl_sites *t, uint32_t mod, uint32_t fun, unsigned arity)
{
    if (mod == 0 || fun == 0 || arity > 255)
        return 0;
    uint32_t id = efl_map_get(&t->fn_ids, fn_key(mod, fun, arity));
    return id == EFL_MAP_NONE ? 0 : id;
}

static efl_status intern_function(struct efl_sites *t, struct efl_name mod, struct efl_name fun,
                                  unsigned arity, uint32_t *id)
{
    uint32_t m, f;
    EFL_RETURN_ERROR_IF(arity > 255, EFL_ERR_CORRUPT);
    EFL_FORWARD_IF_ERROR(intern_name(t, mod, &m));
    EFL_FORWARD_IF_ERROR(intern_name(t, fun, &f));
    *id = efl_sites_function(t, m, f, arity);
    if (*id != 0)
        return EFL_OK;
    EFL_RETURN_ERROR_IF(t->nfns >= FUNCTIONS_MAX, EFL_ERR_LIMIT);
    EFL_GROW(t->fns, t->nfns + 1, t->fns_cap);
    *id = ++t->nfns;
    t->fns[*id] = (struct function){.mod = m, .fun = f, .arity = (uint8_t)arity};
    return efl_map_put(&t->fn_ids, fn_key(m, f, arity), *id);
}

static efl_status add_call(struct efl_sites *t, uint32_t caller, uint32_t callee, unsigned kind)
{
    EFL_RETURN_ERROR_IF(kind == 0 || kind > (EFL_CALL_BODY | EFL_CALL_TAIL), EFL_ERR_CORRUPT);
    struct function *c = &t->fns[caller];
    if (callee == 0) {
        c->dynamic |= (uint8_t)kind;
        c->external |= (uint8_t)kind;
        return EFL_OK;
    }
    if (t->fns[callee].mod != c->mod)
        c->external |= (uint8_t)kind;
    uint64_t key = (uint64_t)caller << 32 | callee;
    uint32_t have = efl_map_get(&t->pairs, key);
    if (have == EFL_MAP_NONE) {
        EFL_RETURN_ERROR_IF(t->pairs.count >= PAIRS_MAX, EFL_ERR_LIMIT);
        return efl_map_put(&t->pairs, key, kind);
    }
    return have & kind ? EFL_OK : efl_map_put(&t->pairs, key, have | kind);
}

/* ---- from code ------------------------------------------------------ */

struct module_ctx {
    struct efl_sites *t;
    struct efl_name mod;
};

static efl_status on_module(void *ctx, struct efl_name mod)
{
    ((struct module_ctx *)ctx)->mod = mod;
    return EFL_OK;
}

static efl_status on_call(void *ctx, const struct efl_beam_call *c)
{
    struct module_ctx *m = ctx;
    uint32_t caller, callee = 0;
    EFL_FORWARD_IF_ERROR(intern_function(m->t, m->mod, c->caller_fun, c->caller_arity, &caller));
    if (!c->dynamic)
        EFL_FORWARD_IF_ERROR(intern_function(m->t, c->mod, c->fun, c->arity, &callee));
    return add_call(m->t, caller, callee, c->kind);
}

static efl_status on_function(void *ctx, struct efl_name fun, unsigned arity, unsigned line,
                              struct efl_name file)
{
    struct module_ctx *m = ctx;
    uint32_t id, file_id = 0;
    if (line == 0)
        return EFL_OK;
    /* A name the table cannot hold (too long): the line without its file. */
    if (file.len > 0 && intern_name(m->t, file, &file_id) != EFL_OK)
        file_id = 0;
    EFL_FORWARD_IF_ERROR(intern_function(m->t, m->mod, fun, arity, &id));
    m->t->fns[id].line = line;
    m->t->fns[id].file = file_id;
    return EFL_OK;
}

efl_status efl_sites_add_module(struct efl_sites *t, const void *beam, size_t len)
{
    /* efl_beam_read reports calls only once the whole module was read. */
    struct module_ctx m = {t, {"", 0}};
    struct efl_beam_visitor v = {.ctx = &m, .module = on_module, .call = on_call,
                                 .function = on_function};
    return efl_beam_read(beam, len, &v);
}

/* One name's other name in m (a module's source, a process's label). */
static efl_status add_name_pair(struct efl_sites *t, struct efl_map *m, struct efl_name key,
                                struct efl_name val)
{
    uint32_t k, v;
    EFL_FORWARD_IF_ERROR(intern_name(t, key, &k));
    EFL_FORWARD_IF_ERROR(intern_name(t, val, &v));
    return efl_map_put(m, k, v);
}

efl_status efl_sites_add_source(struct efl_sites *t, struct efl_name mod, struct efl_name file)
{
    return add_name_pair(t, &t->sources, mod, file);
}

efl_status efl_sites_add_process(struct efl_sites *t, struct efl_name pid, struct efl_name label)
{
    return add_name_pair(t, &t->processes, pid, label);
}

const char *efl_sites_process(const struct efl_sites *t, const char *pid)
{
    uint32_t p = t ? efl_sites_name(t, pid, strlen(pid)) : 0;
    uint32_t l = p ? efl_map_get(&t->processes, p) : EFL_MAP_NONE;
    return l == EFL_MAP_NONE ? NULL : t->names[l];
}

unsigned efl_sites_line(const struct efl_sites *t, uint32_t fn, const char **file)
{
    *file = NULL;
    if (t == NULL || fn == 0 || fn > t->nfns || t->fns[fn].line == 0)
        return 0;
    const struct function *f = &t->fns[fn];
    uint32_t source = f->file ? f->file : efl_map_get(&t->sources, f->mod);
    if (source != EFL_MAP_NONE)
        *file = t->names[source];
    return f->line;
}

efl_status efl_sites_add_call(struct efl_sites *t, struct efl_name caller_mod,
                              struct efl_name caller_fun, unsigned caller_arity,
                              struct efl_name mod, struct efl_name fun, unsigned arity,
                              unsigned kind, int dynamic)
{
    struct module_ctx m = {t, caller_mod};
    struct efl_beam_call c = {caller_fun, caller_arity, mod, fun, arity, kind, dynamic};
    return on_call(&m, &c);
}

efl_status efl_sites_add_bif(struct efl_sites *t, struct efl_name mod, struct efl_name fun,
                             unsigned arity)
{
    uint32_t id;
    EFL_FORWARD_IF_ERROR(intern_function(t, mod, fun, arity, &id));
    t->fns[id].bif = 1;
    return EFL_OK;
}

/* ---- lookups -------------------------------------------------------- */

unsigned efl_sites_kind(const struct efl_sites *t, uint32_t caller, uint32_t callee,
                        int any_external)
{
    if (t == NULL || callee > t->nfns || caller > t->nfns)
        return 0;
    if (callee != 0 && t->fns[callee].bif)
        return EFL_CALL_BODY;
    if (caller == 0)
        return 0;
    if (any_external)
        return t->fns[caller].external;
    if (callee != 0) {
        uint32_t k = efl_map_get(&t->pairs, (uint64_t)caller << 32 | callee);
        if (k != EFL_MAP_NONE)
            return k;
    }
    return t->fns[caller].dynamic;
}

/* ---- serialized form -------------------------------------------------
 * Records, each a tag byte then varints: NAME length bytes (ids 1, 2, ...
 * in order); FUNCTION mod fun arity (the caller of what follows); CALL
 * kinds mod fun arity; DYNAMIC kinds; BIF mod fun arity; LINE mod fun arity
 * line file (file 0: the module's source); SOURCE mod file; PROCESS pid
 * label (a process's registered name or initial call). */

static efl_status put_record(struct efl_buf *out, unsigned tag, size_t n, const uint64_t *v)
{
    EFL_FORWARD_IF_ERROR(efl_buf_reserve(out, 1 + 10 * n));
    out->data[out->len++] = (unsigned char)tag;
    for (size_t i = 0; i < n; i++)
        efl_buf_put_varint_unchecked(out, v[i]);
    return EFL_OK;
}

static efl_status put_function(struct efl_buf *out, unsigned tag, const struct function *f)
{
    uint64_t v[] = {f->mod, f->fun, f->arity};
    return put_record(out, tag, 3, v);
}

/* A record of each name pair of m: tag key val. */
static efl_status put_name_pairs(struct efl_buf *out, unsigned tag, const struct efl_map *m)
{
    for (size_t i = 0; i < m->cap; i++) {
        if (m->slots[i].val == EFL_MAP_NONE)
            continue;
        uint64_t v[] = {m->slots[i].key, m->slots[i].val};
        EFL_FORWARD_IF_ERROR(put_record(out, tag, 2, v));
    }
    return EFL_OK;
}

efl_status efl_sites_encode(const struct efl_sites *t, struct efl_buf *out)
{
    for (uint32_t i = 1; i <= t->nnames; i++) {
        size_t len = strlen(t->names[i]);
        uint64_t v[] = {len};
        EFL_FORWARD_IF_ERROR(put_record(out, REC_NAME, 1, v));
        EFL_FORWARD_IF_ERROR(efl_buf_append(out, t->names[i], len));
    }
    uint32_t current = 0;
    for (size_t i = 0; i < t->pairs.cap; i++) {
        const struct efl_map_slot *slot = &t->pairs.slots[i];
        if (slot->val == EFL_MAP_NONE)
            continue;
        uint32_t caller = (uint32_t)(slot->key >> 32);
        const struct function *callee = &t->fns[(uint32_t)slot->key];
        if (caller != current) {
            EFL_FORWARD_IF_ERROR(put_function(out, REC_FUNCTION, &t->fns[caller]));
            current = caller;
        }
        uint64_t v[] = {slot->val, callee->mod, callee->fun, callee->arity};
        EFL_FORWARD_IF_ERROR(put_record(out, REC_CALL, 4, v));
    }
    for (uint32_t i = 1; i <= t->nfns; i++) {
        if (t->fns[i].dynamic) {
            uint64_t v[] = {t->fns[i].dynamic};
            EFL_FORWARD_IF_ERROR(put_function(out, REC_FUNCTION, &t->fns[i]));
            EFL_FORWARD_IF_ERROR(put_record(out, REC_DYNAMIC, 1, v));
        }
        if (t->fns[i].bif)
            EFL_FORWARD_IF_ERROR(put_function(out, REC_BIF, &t->fns[i]));
        if (t->fns[i].line) {
            const struct function *f = &t->fns[i];
            uint64_t v[] = {f->mod, f->fun, f->arity, f->line, f->file};
            EFL_FORWARD_IF_ERROR(put_record(out, REC_LINE, 5, v));
        }
    }
    EFL_FORWARD_IF_ERROR(put_name_pairs(out, REC_SOURCE, &t->sources));
    return put_name_pairs(out, REC_PROCESS, &t->processes);
}

/* Reading: names are ids of the serialized table, defined before use. */
struct decoder {
    struct efl_sites *t;
    struct efl_cursor c;
};

static efl_status get_name(struct decoder *d, struct efl_name *n)
{
    uint64_t id;
    EFL_FORWARD_IF_ERROR(efl_cursor_varint(&d->c, &id));
    EFL_RETURN_ERROR_IF(id == 0 || id > d->t->nnames, EFL_ERR_CORRUPT);
    *n = (struct efl_name){d->t->names[id], strlen(d->t->names[id])};
    return EFL_OK;
}

static efl_status get_function(struct decoder *d, uint32_t *id)
{
    struct efl_name mod, fun;
    uint64_t arity;
    EFL_FORWARD_IF_ERROR(get_name(d, &mod));
    EFL_FORWARD_IF_ERROR(get_name(d, &fun));
    EFL_FORWARD_IF_ERROR(efl_cursor_varint(&d->c, &arity));
    EFL_RETURN_ERROR_IF(arity > 255, EFL_ERR_CORRUPT);
    return intern_function(d->t, mod, fun, (unsigned)arity, id);
}

efl_status efl_sites_decode(const void *data, size_t len, struct efl_sites **tp)
{
    struct decoder d = {.c = {data, (const unsigned char *)data + len}};
    EFL_FORWARD_IF_ERROR(efl_sites_new(&d.t));
    efl_status s = EFL_OK;
    uint32_t caller = 0, callee;
    uint64_t n;
    const unsigned char *bytes;
    while (s == EFL_OK && d.c.p < d.c.end) {
        unsigned tag = *d.c.p++;
        switch (tag) {
        case REC_NAME:
            s = efl_cursor_varint(&d.c, &n);
            if (s == EFL_OK)
                s = n > NAME_MAX_BYTES ? EFL_ERR_CORRUPT : efl_cursor_bytes(&d.c, (size_t)n, &bytes);
            /* Names are stored once: a repeat is damage. */
            if (s == EFL_OK && efl_sites_name(d.t, (const char *)bytes, (size_t)n) != 0)
                s = EFL_ERR_CORRUPT;
            if (s == EFL_OK)
                s = intern_name(d.t, (struct efl_name){(const char *)bytes, (size_t)n}, &callee);
            break;
        case REC_FUNCTION:
            s = get_function(&d, &caller);
            break;
        case REC_CALL:
            s = efl_cursor_varint(&d.c, &n);
            if (s == EFL_OK)
                s = get_function(&d, &callee);
            if (s == EFL_OK)
                s = caller == 0 ? EFL_ERR_CORRUPT : add_call(d.t, caller, callee, (unsigned)(n > 3 ? 0 : n));
            break;
        case REC_DYNAMIC:
            s = efl_cursor_varint(&d.c, &n);
            if (s == EFL_OK)
                s = caller == 0 ? EFL_ERR_CORRUPT : add_call(d.t, caller, 0, (unsigned)(n > 3 ? 0 : n));
            break;
        case REC_BIF:
            s = get_function(&d, &callee);
            if (s == EFL_OK)
                d.t->fns[callee].bif = 1;
            break;
        case REC_LINE: {
            uint64_t line, file;
            s = get_function(&d, &callee);
            if (s == EFL_OK)
                s = efl_cursor_varint(&d.c, &line);
            if (s == EFL_OK)
                s = efl_cursor_varint(&d.c, &file);
            if (s == EFL_OK && (line > UINT32_MAX || file > d.t->nnames))
                s = EFL_ERR_CORRUPT;
            if (s == EFL_OK) {
                d.t->fns[callee].line = (uint32_t)line;
                d.t->fns[callee].file = (uint32_t)file;
            }
            break;
        }
        case REC_SOURCE:
        case REC_PROCESS: {
            struct efl_name key, val;
            s = get_name(&d, &key);
            if (s == EFL_OK)
                s = get_name(&d, &val);
            if (s == EFL_OK)
                s = add_name_pair(d.t, tag == REC_SOURCE ? &d.t->sources : &d.t->processes,
                                  key, val);
            break;
        }
        default:
            s = EFL_ERR_CORRUPT;
        }
    }
    if (s != EFL_OK) {
        efl_sites_free(d.t);
        return s;
    }
    *tp = d.t;
    return EFL_OK;
}
