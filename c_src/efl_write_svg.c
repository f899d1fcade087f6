/* A self-contained interactive flamegraph in SVG: frames laid out from the
 * folded tree (children in name order, width by total time), colours from
 * a hash of the name (sleep and gc in colours of their own), and the
 * JavaScript of efl_svg.js in a <set> element's onbegin handler (see
 * there why). A differential profile's frames are coloured by the change
 * of their own time instead: red grew, blue shrank, white the same, the
 * shade by how much against the largest change; frames only one side has
 * are that side's colour (Base's blue, New's red) by their time in all,
 * outlined with dashes, and say so. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "efl_svg_js.h"
#include "efl_writer.h"

#define WIDTH 1200
#define PAD 10
#define ROW 16
#define TOP 40
#define BOTTOM 30
#define MIN_PX 0.1

struct svg {
    const struct efl_profile *p;
    struct efl_buf *out;
    uint32_t root;
    uint64_t *total;     /* ns: self plus descendants */
    uint64_t *cursor;    /* ns: where a node's next child starts */
    uint64_t *x;         /* ns from the left */
    uint32_t *row;       /* 0 for the root */
    uint32_t rows;
    double grand;        /* ns of the root */
    int drawing;         /* second pass */
    /* A diff: each side's time at and under a node, the largest change. */
    uint64_t *base_under, *new_under;
    uint64_t max_change;
};

static uint64_t change(const struct efl_diff *d, uint32_t node)
{
    return d->new_ns[node] > d->base_ns[node] ? d->new_ns[node] - d->base_ns[node]
                                              : d->base_ns[node] - d->new_ns[node];
}

/* A diff's colour, and what its tooltip adds: both times and the change. */
static efl_status diff_frame(const struct svg *w, uint32_t node, char fill[32],
                             struct efl_buf *note)
{
    const struct efl_diff *d = w->p->diff;
    uint64_t base = d->base_ns[node], new = d->new_ns[node];
    if (node == w->root) {
        /* All: both sides' totals, white. */
        snprintf(fill, 32, "rgb(255,255,255)");
        return efl_buf_printf(note, "base %llu \xc2\xb5s, new %llu \xc2\xb5s",
                              (unsigned long long)efl_ns_to_us(w->base_under[node]),
                              (unsigned long long)efl_ns_to_us(w->new_under[node]));
    }
    /* A frame only one side has: that side's colour, by its time in all. */
    int only_base = w->new_under[node] == 0, only_new = w->base_under[node] == 0;
    uint64_t by = only_base ? w->base_under[node] : only_new ? w->new_under[node] : change(d, node);
    double share = w->max_change > 0 ? (double)by / (double)w->max_change : 0;
    unsigned shade = 255 - (unsigned)(200.0 * (share < 1 ? share : 1) + 0.5);
    if (only_base)
        snprintf(fill, 32, "rgb(%u,%u,255)", shade, shade);
    else if (only_new || new > base)
        snprintf(fill, 32, "rgb(255,%u,%u)", shade, shade);
    else if (new < base)
        snprintf(fill, 32, "rgb(%u,%u,255)", shade, shade);
    else
        snprintf(fill, 32, "rgb(255,255,255)");
    EFL_FORWARD_IF_ERROR(efl_buf_printf(note, "base %llu \xc2\xb5s, new %llu \xc2\xb5s, ",
                                        (unsigned long long)efl_ns_to_us(base),
                                        (unsigned long long)efl_ns_to_us(new)));
    if (base > 0)
        EFL_FORWARD_IF_ERROR(
            efl_buf_printf(note, "%+.1f%%", 100.0 * ((double)new - (double)base) / (double)base));
    else
        EFL_FORWARD_IF_ERROR(
            efl_buf_printf(note, "+%llu \xc2\xb5s", (unsigned long long)efl_ns_to_us(new)));
    if (node != 0 && w->new_under[node] == 0)
        EFL_FORWARD_IF_ERROR(efl_buf_puts(note, "; only in base"));
    else if (node != 0 && w->base_under[node] == 0)
        EFL_FORWARD_IF_ERROR(efl_buf_puts(note, "; only in new"));
    return EFL_OK;
}

static uint32_t hash(const char *s, size_t len)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)s[i]) * 16777619u;
    return h;
}

/* flamegraph.pl's warm palette; sleep blue, runnable purple, gc green,
 * lost events grey, the OS's time blue-grey. */
static void colour(const struct efl_frame *fr, const char *name, size_t len, char out[32])
{
    uint32_t h = hash(name, len);
    unsigned a = h & 0xff, b = (h >> 8) & 0xff, c = (h >> 16) & 0xff;
    if (fr->kind == EFL_FRAME_SLEEP)
        snprintf(out, 32, "rgb(%u,%u,%u)", 80 + a % 40, 150 + b % 40, 220 + c % 30);
    else if (fr->kind == EFL_FRAME_OS)
        snprintf(out, 32, "rgb(%u,%u,%u)", 150 + a % 20, 150 + a % 20, 170 + a % 20);
    else if (fr->kind == EFL_FRAME_RUNNABLE)
        snprintf(out, 32, "rgb(%u,%u,%u)", 160 + a % 40, 120 + b % 30, 210 + c % 40);
    else if (fr->kind == EFL_FRAME_GC)
        snprintf(out, 32, "rgb(%u,%u,%u)", 90 + a % 40, 190 + b % 40, 90 + c % 40);
    else if (fr->kind == EFL_FRAME_DROPPED)
        snprintf(out, 32, "rgb(%u,%u,%u)", 120 + a % 20, 120 + a % 20, 120 + a % 20);
    else if (fr->kind == EFL_FRAME_PROCESS)
        snprintf(out, 32, "rgb(%u,%u,%u)", 190 + a % 30, 190 + b % 30, 190 + c % 30);
    else
        snprintf(out, 32, "rgb(%u,%u,%u)", 205 + a % 50, b * 230 / 255, c * 55 / 255);
}

static efl_status frame(struct svg *w, uint32_t node, const char *name, size_t len)
{
    double share = w->grand > 0 ? (double)w->total[node] / w->grand : 0;
    double px = share * (WIDTH - 2 * PAD);
    if (px < MIN_PX)
        return EFL_OK;
    double fx = w->grand > 0 ? (double)w->x[node] / w->grand : 0;
    double y = TOP + (double)(w->rows - w->row[node]) * ROW;
    char fill[32];
    const struct efl_frame *fr = node ? &w->p->frames[w->p->nodes[node].frame] : NULL;
    struct efl_frame all = {.kind = EFL_FRAME_MFA};
    struct efl_buf note = {0};
    efl_status s = EFL_OK;
    if (w->p->diff != NULL)
        s = diff_frame(w, node, fill, &note);
    else
        colour(fr ? fr : &all, name, len, fill);
    struct efl_buf *o = w->out;
    if (s == EFL_OK)
        s = efl_buf_printf(o, "<g class=\"f\" data-x=\"%.9f\" data-w=\"%.9f\" data-row=\"%u\" "
                              "data-us=\"%llu\" data-fill=\"%s\" data-name=\"",
                           fx, share, w->row[node],
                           (unsigned long long)efl_ns_to_us(w->total[node]), fill);
    if (s == EFL_OK)
        s = efl_xml_escape(o, name, len);
    if (s == EFL_OK && note.len > 0) {
        s = efl_buf_puts(o, "\" data-diff=\"");
        if (s == EFL_OK)
            s = efl_xml_escape(o, (const char *)note.data, note.len);
    }
    if (s == EFL_OK)
        s = efl_buf_puts(o, "\"><title>");
    if (s == EFL_OK)
        s = efl_xml_escape(o, name, len);
    if (s == EFL_OK)
        s = efl_buf_printf(o, " (%llu \xc2\xb5s, %.2f%%",
                           (unsigned long long)efl_ns_to_us(w->total[node]), 100 * share);
    if (s == EFL_OK && note.len > 0) {
        s = efl_buf_puts(o, "; ");
        if (s == EFL_OK)
            s = efl_xml_escape(o, (const char *)note.data, note.len);
    }
    /* A frame only one side has: outlined with dashes. */
    int dashed = w->p->diff != NULL && node != w->root &&
                 (w->new_under[node] == 0 || w->base_under[node] == 0);
    efl_buf_free(&note);
    EFL_FORWARD_IF_ERROR(s);
    EFL_FORWARD_IF_ERROR(efl_buf_puts(o, ")</title>"));
    EFL_FORWARD_IF_ERROR(efl_buf_printf(o, "<rect x=\"%.2f\" y=\"%.1f\" width=\"%.2f\" height=\"%d\" "
                                           "fill=\"%s\" rx=\"2\"%s/>",
                                        PAD + fx * (WIDTH - 2 * PAD), y, px, ROW - 1, fill,
                                        dashed ? " stroke=\"#555\" stroke-dasharray=\"3,2\"" : ""));
    /* The label is set by the script; a first one for viewers without it. */
    size_t fit = px > 3 ? (size_t)((px - 3) / 7) : 0;
    EFL_FORWARD_IF_ERROR(efl_buf_printf(o, "<text x=\"%.2f\" y=\"%.1f\">",
                                        PAD + fx * (WIDTH - 2 * PAD) + 3, y + ROW - 4.5));
    if (fit >= len)
        EFL_FORWARD_IF_ERROR(efl_xml_escape(o, name, len));
    else if (fit >= 3) {
        EFL_FORWARD_IF_ERROR(efl_xml_escape(o, name, fit - 2));
        EFL_FORWARD_IF_ERROR(efl_buf_puts(o, ".."));
    }
    return efl_buf_puts(o, "</text></g>\n");
}

/* First pass: x and row of each node; second: draw. */
static efl_status visit(void *ctx, const struct efl_profile *p, uint32_t node, const char *path,
                        size_t len)
{
    struct svg *w = ctx;
    uint32_t parent = p->nodes[node].parent;
    if (!w->drawing) {
        w->x[node] = w->cursor[parent];
        w->cursor[parent] += w->total[node];
        w->cursor[node] = w->x[node];
        int window = p->frames[p->nodes[node].frame].kind == EFL_FRAME_WINDOW;
        w->row[node] = w->row[parent] + (window ? 0 : 1);
        if (w->row[node] > w->rows)
            w->rows = w->row[node];
        return EFL_OK;
    }
    if (p->frames[p->nodes[node].frame].kind == EFL_FRAME_WINDOW)
        return EFL_OK;
    /* The node's own name: the path's last element (an empty path may
     * have no text at all). */
    if (len == 0)
        return frame(w, node, "", 0);
    const char *name = path + len;
    while (name > path && name[-1] != ';')
        name--;
    EFL_FORWARD_IF_ERROR(frame(w, node, name, (size_t)(path + len - name)));
    return efl_buf_spill(w->out, 0);
}

/* A diff's sides summed under each node of the subtree, and the largest
 * change of a node's own time there. */
static efl_status diff_totals(struct svg *w, const uint32_t *sub, size_t nsub)
{
    const struct efl_profile *p = w->p;
    w->base_under = calloc(p->nnodes, sizeof *w->base_under);
    w->new_under = calloc(p->nnodes, sizeof *w->new_under);
    EFL_RETURN_ERROR_IF(w->base_under == NULL || w->new_under == NULL, EFL_ERR_NOMEM);
    for (size_t i = nsub; i-- > 0;) {
        uint32_t n = sub[i], parent = p->nodes[n].parent;
        w->base_under[n] += p->diff->base_ns[n];
        w->new_under[n] += p->diff->new_ns[n];
        w->base_under[parent] += w->base_under[n];
        w->new_under[parent] += w->new_under[n];
        if (change(p->diff, n) > w->max_change)
            w->max_change = change(p->diff, n);
    }
    return EFL_OK;
}

static efl_status header(struct svg *w, int height)
{
    struct efl_buf *o = w->out;
    EFL_FORWARD_IF_ERROR(efl_buf_printf(o,
        "<?xml version=\"1.0\" standalone=\"no\"?>\n"
        "<svg version=\"1.1\" xmlns=\"http://www.w3.org/2000/svg\" class=\"eflambe\" width=\"%d\" "
        "height=\"%d\" viewBox=\"0 0 %d %d\" data-width=\"%d\">\n"
        "<set attributeName=\"data-started\" to=\"1\" begin=\"0s\" onbegin=\"", WIDTH, height, WIDTH,
        height, WIDTH));
    EFL_FORWARD_IF_ERROR(efl_xml_escape(o, efl_svg_js, strlen(efl_svg_js)));
    EFL_FORWARD_IF_ERROR(efl_buf_puts(o, "\"/>\n<style>"
        ".eflambe text{font-family:Verdana,sans-serif;font-size:12px;fill:#000}"
        ".eflambe .title{font-size:17px;text-anchor:middle}"
        ".eflambe .reset,.eflambe .search{cursor:pointer;fill:#33a}"
        ".eflambe .search,.eflambe .matched{text-anchor:end}"
        ".eflambe g.f{cursor:pointer}.eflambe g.f:hover rect{stroke:#000;stroke-width:0.5}"
        ".eflambe g.parent{opacity:0.5}.eflambe g.f text{pointer-events:none}"
        "</style>\n"));
    EFL_FORWARD_IF_ERROR(efl_buf_printf(o, "<rect width=\"100%%\" height=\"100%%\" fill=\"#f8f8f8\"/>\n"
                                           "<text class=\"title\" x=\"%d\" y=\"24\">", WIDTH / 2));
    size_t len = 0;
    const char *target = w->p->meta ? efl_meta_value(w->p->meta, "target", &len) : NULL;
    EFL_FORWARD_IF_ERROR(efl_buf_puts(o, w->p->diff ? "Differential flame graph" : "Flame graph"));
    if (target) {
        EFL_FORWARD_IF_ERROR(efl_buf_puts(o, " of "));
        EFL_FORWARD_IF_ERROR(efl_xml_escape(o, target, len));
    }
    EFL_FORWARD_IF_ERROR(efl_append_caveats(w->p, o));
    return efl_buf_printf(o, "</text>\n"
        "<text class=\"reset\" x=\"%d\" y=\"24\" style=\"visibility:hidden\">Reset Zoom</text>\n"
        "<text class=\"search\" x=\"%d\" y=\"24\">Search</text>\n"
        "<text class=\"details\" x=\"%d\" y=\"%d\"> </text>\n"
        "<text class=\"matched\" x=\"%d\" y=\"%d\"></text>\n",
        PAD, WIDTH - PAD, PAD, height - 10, WIDTH - PAD, height - 10);
}

efl_status efl_write_svg(const struct efl_profile *p, uint32_t root, struct efl_buf *out)
{
    if (p->nnodes == 0)
        return EFL_ERR_ARG;
    struct svg w = {.p = p, .out = out, .root = root};
    /* Indexed by node, but only root and its subtree are set and read
     * (one call of a capture is a small part of its profile). */
    w.total = malloc(p->nnodes * sizeof *w.total);
    w.cursor = malloc(p->nnodes * sizeof *w.cursor);
    w.x = malloc(p->nnodes * sizeof *w.x);
    w.row = malloc(p->nnodes * sizeof *w.row);
    uint32_t *sub = NULL;
    size_t nsub = 0;
    efl_status s = w.total && w.cursor && w.x && w.row ? EFL_OK : EFL_ERR_NOMEM;
    if (s == EFL_OK)
        s = efl_subtree(p, root, &sub, &nsub);
    if (s == EFL_OK) {
        w.total[root] = w.cursor[root] = w.x[root] = 0;
        w.row[root] = 0;
        for (size_t i = 0; i < nsub; i++)
            w.total[sub[i]] = 0;
        /* Children come after their parents: backwards, each is complete
         * before it is added to its parent. */
        for (size_t i = nsub; i-- > 0;) {
            uint32_t n = sub[i];
            w.total[n] += p->nodes[n].self_ns;
            w.total[p->nodes[n].parent] += w.total[n];
        }
        w.grand = (double)w.total[root];
        if (p->diff != NULL)
            s = diff_totals(&w, sub, nsub);
        if (s == EFL_OK)
            s = efl_walk_stacks(p, root, ";", visit, &w);
    }
    free(sub);
    if (s == EFL_OK)
        s = header(&w, TOP + (int)(w.rows + 1) * ROW + BOTTOM);
    if (s == EFL_OK)
        s = efl_buf_puts(out, "<g class=\"frames\">\n");
    if (s == EFL_OK) {
        w.drawing = 1;
        const char *all = "all";
        s = frame(&w, root, all, strlen(all));
    }
    if (s == EFL_OK)
        s = efl_walk_stacks(p, root, ";", visit, &w);
    if (s == EFL_OK)
        s = efl_buf_puts(out, "</g>\n</svg>\n");
    free(w.total);
    free(w.cursor);
    free(w.x);
    free(w.row);
    free(w.base_under);
    free(w.new_under);
    return s;
}
