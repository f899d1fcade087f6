/* The BEAM reader: IFF chunks, the atom and import tables, and a walk over
 * the Code chunk's generic instructions in the compact term encoding. */
#include <stdlib.h>
#include <string.h>

#include "efl_beam.h"
#include "efl_buf.h"

/* Operand counts of the generic instructions, by opcode (1-based), from
 * the compiler's genop.tab: OTP 25's (opcodes 1-180), OTP 26's
 * update_record (5) and bs_match (3), OTP 27's executable_line (2), OTP
 * 28's debug_line (4). The generic instruction set only grows: a later
 * opcode is a newer compiler's, and its operand count unknown here. */
static const char op_arity[] =
    "x"
    "13023223245232321100" /* 1-20 */
    "00211244444444444333" /* 21-40 */
    "33332222222222222333" /* 41-60 */
    "12123333321101132225" /* 61-80 */
    "55421122555210122444" /* 81-100 */
    "43121112635122357775" /* 101-120 */
    "32256222213408626545" /* 121-140 */
    "45433333011715523340" /* 141-160 */
    "02223432243121116301" /* 161-180 */
    "5324";                /* 181-184 */

#define OP_MAX ((unsigned)sizeof op_arity - 2)

enum {
    OP_LABEL = 1, OP_FUNC_INFO = 2, OP_INT_CODE_END = 3,
    OP_CALL = 4, OP_CALL_LAST = 5, OP_CALL_ONLY = 6,
    OP_CALL_EXT = 7, OP_CALL_EXT_LAST = 8, OP_DEALLOCATE = 18, OP_RETURN = 19,
    OP_CALL_FUN = 75, OP_CALL_EXT_ONLY = 78, OP_APPLY = 112, OP_APPLY_LAST = 113,
    OP_LINE = 153, OP_CALL_FUN2 = 178
};

/* Compact term tags. */
enum { TAG_U, TAG_I, TAG_A, TAG_X, TAG_Y, TAG_F, TAG_H, TAG_Z };

/* Sizes a BEAM file may not exceed here (EFL_ERR_LIMIT): the largest OTP
 * modules are under 1 MB, their tables a few thousand entries. They bound
 * what a hostile file can make the reader allocate (an atom of one byte
 * takes 16 here) to about 100 MB. */
#define ATOMS_MAX (1u << 20)
#define LABELS_MAX (1u << 22)
#define FUNCTIONS_MAX (1u << 20)
#define SITES_MAX (1u << 22)
#define NESTING_MAX 4
#define LINES_MAX (1u << 22)

struct cursor {
    const unsigned char *p, *end;
};

static uint32_t get_be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* One operand: its tag and, when it fits in 64 bits, its value (large
 * integers are skipped, value 0). */
static efl_status operand(struct cursor *c, unsigned *tag, uint64_t *val, int depth);

static efl_status small_value(struct cursor *c, unsigned char b, uint64_t *val, int depth)
{
    if (!(b & 0x08)) {
        *val = b >> 4;
        return EFL_OK;
    }
    if (!(b & 0x10)) {
        EFL_RETURN_ERROR_IF(c->p >= c->end, EFL_ERR_ARG);
        *val = (uint64_t)(b & 0xe0) << 3 | *c->p++;
        return EFL_OK;
    }
    uint64_t n = (uint64_t)(b >> 5) + 2;
    if (n == 9) {
        /* The length itself follows, as an unsigned operand. */
        unsigned tag;
        EFL_FORWARD_IF_ERROR(operand(c, &tag, &n, depth - 1));
        EFL_RETURN_ERROR_IF(tag != TAG_U || n > EFL_BEAM_MAX_BYTES, EFL_ERR_ARG);
        n += 9;
    }
    EFL_RETURN_ERROR_IF(n > (uint64_t)(c->end - c->p), EFL_ERR_ARG);
    *val = 0;
    if (n <= 8)
        for (uint64_t i = 0; i < n; i++)
            *val = *val << 8 | c->p[i];
    c->p += n;
    return EFL_OK;
}

static efl_status operand(struct cursor *c, unsigned *tag, uint64_t *val, int depth)
{
    EFL_RETURN_ERROR_IF(c->p >= c->end || depth < 0, EFL_ERR_ARG);
    unsigned char b = *c->p++;
    *tag = b & 7;
    if (*tag != TAG_Z)
        return small_value(c, b, val, depth);
    EFL_RETURN_ERROR_IF(b & 0x08, EFL_ERR_ARG);
    unsigned t;
    uint64_t n;
    switch (b >> 4) {
    case 0: /* a float, 8 bytes (old compilers) */
        EFL_RETURN_ERROR_IF(c->end - c->p < 8, EFL_ERR_ARG);
        c->p += 8;
        return EFL_OK;
    case 1: /* a list of n operands */
    case 3: /* an allocation list of n (kind, count) pairs */
        EFL_FORWARD_IF_ERROR(operand(c, &t, &n, depth - 1));
        EFL_RETURN_ERROR_IF(t != TAG_U || n > (uint64_t)(c->end - c->p), EFL_ERR_ARG);
        if (b >> 4 == 3)
            n *= 2;
        for (uint64_t i = 0; i < n; i++)
            EFL_FORWARD_IF_ERROR(operand(c, &t, val, depth - 1));
        return EFL_OK;
    case 2: /* a float register */
    case 4: /* a literal's index */
        return operand(c, &t, val, depth - 1);
    case 5: /* a register with a type: the register, then the type's index */
        EFL_FORWARD_IF_ERROR(operand(c, &t, val, depth - 1));
        return operand(c, &t, val, depth - 1);
    default:
        return EFL_ERR_ARG;
    }
}

struct atom_table {
    struct efl_name *names; /* by index, 1-based */
    uint32_t count;
};

/* "AtU8" (or latin-1 "Atom"): a count, then each atom's length and bytes.
 * A negative count means lengths are compact unsigned operands (long atoms,
 * OTP 28). */
static efl_status read_atoms(struct cursor c, struct atom_table *t)
{
    EFL_RETURN_ERROR_IF(c.end - c.p < 4, EFL_ERR_ARG);
    uint32_t raw = get_be32(c.p);
    c.p += 4;
    int compact = (raw & 0x80000000u) != 0;
    uint32_t count = compact ? 0u - raw : raw;
    EFL_RETURN_ERROR_IF(count == 0 || count > (uint64_t)(c.end - c.p), EFL_ERR_ARG);
    EFL_RETURN_ERROR_IF(count > ATOMS_MAX, EFL_ERR_LIMIT);
    t->names = calloc((size_t)count + 1, sizeof *t->names);
    EFL_RETURN_ERROR_IF(t->names == NULL, EFL_ERR_NOMEM);
    t->count = count;
    for (uint32_t i = 1; i <= count; i++) {
        uint64_t len;
        if (compact) {
            unsigned tag;
            EFL_FORWARD_IF_ERROR(operand(&c, &tag, &len, 0));
            EFL_RETURN_ERROR_IF(tag != TAG_U, EFL_ERR_ARG);
        } else {
            EFL_RETURN_ERROR_IF(c.p >= c.end, EFL_ERR_ARG);
            len = *c.p++;
        }
        EFL_RETURN_ERROR_IF(len > (uint64_t)(c.end - c.p), EFL_ERR_ARG);
        t->names[i] = (struct efl_name){(const char *)c.p, (size_t)len};
        c.p += len;
    }
    return EFL_OK;
}

struct import {
    uint32_t mod, fun, arity;
};

struct function {
    uint32_t name, arity;
    uint32_t line_item; /* the line table's entry its code begins at; 0: none */
};

/* The "Line" chunk's entries (1-based, as `line` instructions name them):
 * a line, and the file it is in (0: the module's own source, else the
 * file table's entry). */
struct line_item {
    uint32_t line, file;
};

/* A call found in the code, its callee not yet resolved (a local call
 * names a label that may come later). */
struct site {
    uint32_t caller;  /* index into functions */
    uint32_t target;  /* label (local), import index (external), or 0 */
    uint8_t how;      /* LOCAL, EXTERNAL, DYNAMIC */
    uint8_t kind;
};

enum { LOCAL, EXTERNAL, DYNAMIC };

struct module {
    struct atom_table atoms;
    struct import *imports;
    uint32_t nimports;
    struct function *functions;
    uint32_t nfunctions, functions_cap;
    uint32_t *label_function; /* label -> function index + 1, 0: none */
    uint32_t nlabels;
    struct site *sites;
    size_t nsites, sites_cap;
    struct line_item *lines;
    uint32_t nlines;
    struct efl_name *files; /* the line table's other files, 1-based */
    uint32_t nfiles;
};

static void module_free(struct module *m)
{
    free(m->lines);
    free(m->files);
    free(m->atoms.names);
    free(m->imports);
    free(m->functions);
    free(m->label_function);
    free(m->sites);
}

static efl_status read_imports(struct cursor c, struct module *m)
{
    EFL_RETURN_ERROR_IF(c.end - c.p < 4, EFL_ERR_ARG);
    uint32_t count = get_be32(c.p);
    c.p += 4;
    EFL_RETURN_ERROR_IF(count > (uint64_t)(c.end - c.p) / 12, EFL_ERR_ARG);
    m->imports = calloc((size_t)count + 1, sizeof *m->imports);
    EFL_RETURN_ERROR_IF(m->imports == NULL, EFL_ERR_NOMEM);
    m->nimports = count;
    for (uint32_t i = 0; i < count; i++, c.p += 12) {
        struct import im = {get_be32(c.p), get_be32(c.p + 4), get_be32(c.p + 8)};
        EFL_RETURN_ERROR_IF(im.mod == 0 || im.mod > m->atoms.count || im.fun == 0 ||
                                im.fun > m->atoms.count || im.arity > 255,
                            EFL_ERR_ARG);
        m->imports[i] = im;
    }
    return EFL_OK;
}

/* "Line": version 0, flags, the counts of line instructions, entries and
 * files, the entries (compact terms: an atom-tagged file index switches
 * the file, an integer-tagged line is an entry), then each file's name (a
 * 16-bit length and the bytes). Another version is left unread: no lines. */
static efl_status read_lines(struct cursor c, struct module *m)
{
    EFL_RETURN_ERROR_IF(c.end - c.p < 20, EFL_ERR_ARG);
    uint32_t version = get_be32(c.p), count = get_be32(c.p + 12), files = get_be32(c.p + 16);
    if (version != 0)
        return EFL_OK;
    c.p += 20;
    EFL_RETURN_ERROR_IF(count > (uint64_t)(c.end - c.p) || files > (uint64_t)(c.end - c.p) / 2,
                        EFL_ERR_ARG);
    EFL_RETURN_ERROR_IF(count > LINES_MAX, EFL_ERR_LIMIT);
    m->lines = calloc((size_t)count + 1, sizeof *m->lines);
    m->files = calloc((size_t)files + 1, sizeof *m->files);
    EFL_RETURN_ERROR_IF(m->lines == NULL || m->files == NULL, EFL_ERR_NOMEM);
    uint32_t file = 0;
    while (m->nlines < count) {
        unsigned tag;
        uint64_t v;
        EFL_FORWARD_IF_ERROR(operand(&c, &tag, &v, 0));
        if (tag == TAG_A) {
            EFL_RETURN_ERROR_IF(v > files, EFL_ERR_ARG);
            file = (uint32_t)v;
        } else {
            EFL_RETURN_ERROR_IF(tag != TAG_I || v > UINT32_MAX, EFL_ERR_ARG);
            m->lines[++m->nlines] = (struct line_item){(uint32_t)v, file};
        }
    }
    for (uint32_t i = 1; i <= files; i++) {
        EFL_RETURN_ERROR_IF(c.end - c.p < 2, EFL_ERR_ARG);
        size_t len = (size_t)c.p[0] << 8 | c.p[1];
        c.p += 2;
        EFL_RETURN_ERROR_IF(len > (size_t)(c.end - c.p), EFL_ERR_ARG);
        m->files[i] = (struct efl_name){(const char *)c.p, len};
        c.p += len;
    }
    m->nfiles = files;
    return EFL_OK;
}

static efl_status add_site(struct module *m, uint32_t target, unsigned how, unsigned kind)
{
    EFL_RETURN_ERROR_IF(m->nfunctions == 0, EFL_ERR_ARG);
    EFL_RETURN_ERROR_IF(m->nsites >= SITES_MAX, EFL_ERR_LIMIT);
    EFL_GROW(m->sites, m->nsites, m->sites_cap);
    m->sites[m->nsites++] = (struct site){m->nfunctions - 1, target, (uint8_t)how, (uint8_t)kind};
    return EFL_OK;
}

/* Does the code at c return at once ([deallocate N,] return)? A call just
 * before that is a tail call, though its instruction is the body form. */
static int returns_next(struct cursor c)
{
    if (c.p < c.end && *c.p == OP_DEALLOCATE) {
        unsigned tag;
        uint64_t v;
        c.p++;
        if (operand(&c, &tag, &v, 0) != EFL_OK)
            return 0;
    }
    return c.p < c.end && *c.p == OP_RETURN;
}

/* How the call instruction `op` calls, c being the code after it. */
static unsigned call_kind(unsigned op, struct cursor c)
{
    int body_form = op == OP_CALL || op == OP_CALL_EXT || op == OP_CALL_FUN ||
                    op == OP_CALL_FUN2 || op == OP_APPLY;
    return body_form && !returns_next(c) ? EFL_CALL_BODY : EFL_CALL_TAIL;
}

static efl_status walk_code(struct cursor c, struct module *m)
{
    EFL_RETURN_ERROR_IF(c.end - c.p < 20, EFL_ERR_ARG);
    uint32_t header = get_be32(c.p);
    uint32_t labels = get_be32(c.p + 12);
    EFL_RETURN_ERROR_IF(header < 16 || header > (uint64_t)(c.end - c.p) - 4, EFL_ERR_ARG);
    EFL_RETURN_ERROR_IF(labels > (uint64_t)(c.end - c.p), EFL_ERR_ARG);
    EFL_RETURN_ERROR_IF(labels > LABELS_MAX, EFL_ERR_LIMIT);
    m->nlabels = labels;
    m->label_function = calloc((size_t)labels + 1, sizeof *m->label_function);
    EFL_RETURN_ERROR_IF(m->label_function == NULL, EFL_ERR_NOMEM);
    c.p += 4 + header;
    int entry_next = 0; /* the next label is the function's entry */
    uint64_t line_item = 0; /* the last `line` since a function's first label */
    while (c.p < c.end) {
        unsigned op = *c.p++;
        EFL_RETURN_ERROR_IF(op == 0, EFL_ERR_ARG);
        EFL_RETURN_ERROR_IF(op > OP_MAX, EFL_ERR_VERSION);
        if (op == OP_INT_CODE_END)
            return EFL_OK;
        unsigned n = (unsigned)(op_arity[op] - '0');
        unsigned tag[3] = {0};
        uint64_t val[3] = {0};
        for (unsigned i = 0; i < n; i++) {
            unsigned t;
            uint64_t v = 0;
            EFL_FORWARD_IF_ERROR(operand(&c, &t, &v, NESTING_MAX));
            if (i < 3) {
                tag[i] = t;
                val[i] = v;
            }
        }
        switch (op) {
        case OP_FUNC_INFO:
            EFL_RETURN_ERROR_IF(tag[1] != TAG_A || val[1] == 0 || val[1] > m->atoms.count ||
                                    val[2] > 255,
                                EFL_ERR_ARG);
            EFL_RETURN_ERROR_IF(m->nfunctions >= FUNCTIONS_MAX, EFL_ERR_LIMIT);
            EFL_GROW(m->functions, m->nfunctions, m->functions_cap);
            m->functions[m->nfunctions++] =
                (struct function){(uint32_t)val[1], (uint32_t)val[2],
                                  line_item <= m->nlines ? (uint32_t)line_item : 0};
            entry_next = 1;
            break;
        case OP_LABEL:
            EFL_RETURN_ERROR_IF(val[0] > labels, EFL_ERR_ARG);
            if (entry_next)
                m->label_function[val[0]] = m->nfunctions;
            else
                line_item = 0; /* a function's first label, before its line */
            entry_next = 0;
            break;
        case OP_LINE:
            line_item = tag[0] == TAG_U ? val[0] : 0;
            break;
        case OP_CALL:
        case OP_CALL_LAST:
        case OP_CALL_ONLY:
            EFL_RETURN_ERROR_IF(tag[1] != TAG_F || val[1] > labels, EFL_ERR_ARG);
            EFL_FORWARD_IF_ERROR(add_site(m, (uint32_t)val[1], LOCAL, call_kind(op, c)));
            break;
        case OP_CALL_EXT:
        case OP_CALL_EXT_LAST:
        case OP_CALL_EXT_ONLY:
            EFL_RETURN_ERROR_IF(val[1] >= m->nimports, EFL_ERR_ARG);
            EFL_FORWARD_IF_ERROR(add_site(m, (uint32_t)val[1], EXTERNAL, call_kind(op, c)));
            break;
        case OP_CALL_FUN:
        case OP_CALL_FUN2:
        case OP_APPLY:
        case OP_APPLY_LAST:
            EFL_FORWARD_IF_ERROR(add_site(m, 0, DYNAMIC, call_kind(op, c)));
            break;
        default:
            break;
        }
    }
    return EFL_OK;
}

static int name_is(struct efl_name n, const char *s)
{
    return n.len == strlen(s) && memcmp(n.s, s, n.len) == 0;
}

static efl_status report(const struct module *m, const struct efl_beam_visitor *v)
{
    EFL_FORWARD_IF_ERROR(v->module(v->ctx, m->atoms.names[1]));
    for (size_t i = 0; i < m->nsites; i++) {
        const struct site *s = &m->sites[i];
        const struct function *caller = &m->functions[s->caller];
        struct efl_beam_call c = {.caller_fun = m->atoms.names[caller->name],
                                  .caller_arity = caller->arity,
                                  .kind = s->kind};
        if (s->how == LOCAL) {
            uint32_t f = m->label_function[s->target];
            EFL_RETURN_ERROR_IF(f == 0, EFL_ERR_ARG);
            c.mod = m->atoms.names[1];
            c.fun = m->atoms.names[m->functions[f - 1].name];
            c.arity = m->functions[f - 1].arity;
        } else if (s->how == EXTERNAL) {
            const struct import *im = &m->imports[s->target];
            c.mod = m->atoms.names[im->mod];
            c.fun = m->atoms.names[im->fun];
            c.arity = im->arity;
            /* The loader turns calls of erlang:apply/2,3 into apply
             * instructions: the callee is known only at run time. */
            c.dynamic = name_is(c.mod, "erlang") && name_is(c.fun, "apply") &&
                        (c.arity == 2 || c.arity == 3);
        } else {
            c.dynamic = 1;
        }
        if (c.dynamic)
            c.mod = c.fun = (struct efl_name){"", 0}, c.arity = 0;
        EFL_FORWARD_IF_ERROR(v->call(v->ctx, &c));
    }
    for (uint32_t i = 0; v->function != NULL && i < m->nfunctions; i++) {
        const struct function *f = &m->functions[i];
        const struct line_item *l = f->line_item ? &m->lines[f->line_item] : NULL;
        struct efl_name file = l && l->file ? m->files[l->file] : (struct efl_name){"", 0};
        EFL_FORWARD_IF_ERROR(v->function(v->ctx, m->atoms.names[f->name], f->arity,
                                         l ? l->line : 0, file));
    }
    return EFL_OK;
}

efl_status efl_beam_read(const void *beam, size_t len, const struct efl_beam_visitor *v)
{
    const unsigned char *b = beam;
    EFL_RETURN_ERROR_IF(len > EFL_BEAM_MAX_BYTES, EFL_ERR_LIMIT);
    EFL_RETURN_ERROR_IF(len < 12, EFL_ERR_ARG);
    EFL_RETURN_ERROR_IF(memcmp(b, "FOR1", 4) != 0 || memcmp(b + 8, "BEAM", 4) != 0, EFL_ERR_ARG);
    uint32_t form = get_be32(b + 4);
    const unsigned char *end = b + 8 + (form < len - 8 ? form : len - 8);
    struct cursor atoms = {0}, imports = {0}, code = {0}, lines = {0};
    for (const unsigned char *p = b + 12; end - p >= 8;) {
        uint32_t size = get_be32(p + 4);
        EFL_RETURN_ERROR_IF(size > (uint64_t)(end - p) - 8, EFL_ERR_ARG);
        struct cursor chunk = {p + 8, p + 8 + size}, *slot = NULL;
        if (memcmp(p, "AtU8", 4) == 0 || memcmp(p, "Atom", 4) == 0)
            slot = &atoms;
        else if (memcmp(p, "ImpT", 4) == 0)
            slot = &imports;
        else if (memcmp(p, "Code", 4) == 0)
            slot = &code;
        else if (memcmp(p, "Line", 4) == 0)
            slot = &lines;
        /* A second table of a kind: which one the loader took, and which
         * one the code's MD5 covers, is not ours to guess. */
        if (slot != NULL) {
            EFL_RETURN_ERROR_IF(slot->p != NULL, EFL_ERR_ARG);
            *slot = chunk;
        }
        p += 8 + ((size + 3) & ~(uint64_t)3);
        if (p > end)
            break;
    }
    EFL_RETURN_ERROR_IF(atoms.p == NULL || imports.p == NULL || code.p == NULL, EFL_ERR_ARG);
    struct module m = {0};
    efl_status s = read_atoms(atoms, &m.atoms);
    if (s == EFL_OK)
        s = read_imports(imports, &m);
    /* Lines are read before the code, whose `line` instructions name them. */
    if (s == EFL_OK && lines.p != NULL)
        s = read_lines(lines, &m);
    if (s == EFL_OK)
        s = walk_code(code, &m);
    if (s == EFL_OK)
        s = report(&m, v);
    module_free(&m);
    return s;
}
