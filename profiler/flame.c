/* flame.c — see flame.h. Two walks: the first numbers nodes in preorder to
 * find the zoomed one, the second draws from it. Frames under half a pixel
 * are not drawn (their time still counts in their parent's width), nor
 * frames past MAX_ROWS deep: the page says so, and zooming in on a frame of
 * the last rows draws what is under it. Neither walk recurses (a call tree
 * can be as deep as its node cap). */
#include "profiler/flame.h"

#include <stdlib.h>
#include <string.h>

#include "profiler/export.h"
#include "profiler/text.h"

#define WIDTH 1200.0
#define ROW 17
#define MAX_ROWS 1000

struct flame {
    struct prof_text out;
    const char *base_href;
    double scale;              /* px per ns */
    unsigned max_depth;
    bool cut;                  /* a frame wide enough to draw was past MAX_ROWS */
    double *x_at;              /* MAX_ROWS + 1: where the next frame at each depth starts */
};

/* The node with preorder number want (1-based) under root, or NULL. */
static const struct prof_node *find(const struct prof_node *root, unsigned long want)
{
    unsigned long id = 0;
    struct prof_walk w;
    prof_walk_children(&w, root);
    while (prof_walk_next(&w))
        if (!w.leaving && ++id == want)
            return w.node;
    return NULL;
}

/* How many nodes n's subtree holds, n included. */
static unsigned long subtree_size(const struct prof_node *n)
{
    unsigned long k = 0;
    struct prof_walk w;
    prof_walk_subtree(&w, n);
    while (prof_walk_next(&w))
        k += !w.leaving;
    return k;
}

static unsigned hue_of(const char *s)
{
    unsigned h = 2166136261u;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

/* One frame: n at depth, x, w pixels wide, preorder number id. */
static void draw_frame(struct flame *f, const struct prof_node *n, double x, double w,
                       unsigned depth, unsigned long id, uint64_t total_ns)
{
    struct prof_label_text lt; /* the short name, written in the frame */
    prof_label_text(n->label, &lt);
    PyObject *lname = prof_frame_name(n->label);
    const char *s = lt.name, *l = lname ? PyUnicode_AsUTF8(lname) : NULL;
    PyErr_Clear();
    unsigned h = hue_of(s);
    prof_text_add(&f->out, "<a href=\"");
    prof_text_escaped(&f->out, f->base_href, PROF_ESC_HTML);
    prof_text_add(&f->out, "zoom=%lu#flame\"><g><title>", id);
    prof_text_escaped(&f->out, l ? l : "?", PROF_ESC_HTML);
    prof_text_add(&f->out, ": %.3f ms, %llu calls, %.1f%%</title>"
                           "<rect x=\"%.1f\" y=\"%u\" width=\"%.1f\" height=\"%d\" "
                           "fill=\"rgb(%u,%u,%u)\"/>",
                  (double)n->total_ns / 1e6, (unsigned long long)n->calls,
                  total_ns ? 100.0 * (double)n->total_ns / (double)total_ns : 0.0, x,
                  depth * ROW, w, ROW - 1, 205 + h % 50, 80 + (h >> 8) % 120, 40 + (h >> 16) % 40);
    size_t fit = (size_t)(w / 7.0);
    if (fit >= 3) {
        size_t len = strlen(s), cut = len <= fit ? len : fit - 2;
        while (cut < len && cut > 0 && ((unsigned char)s[cut] & 0xc0) == 0x80)
            cut--; /* never inside a UTF-8 sequence */
        prof_text_add(&f->out, "<text x=\"%.1f\" y=\"%u\">", x + 3, depth * ROW + 12);
        char buf[256];
        snprintf(buf, sizeof(buf), "%.*s%s", (int)cut, s, len <= fit ? "" : "..");
        prof_text_escaped(&f->out, buf, PROF_ESC_HTML);
        prof_text_add(&f->out, "</text>");
    }
    prof_text_add(&f->out, "</g></a>\n");
    prof_label_text_free(&lt);
    Py_XDECREF(lname);
}

/* Draw the nodes w walks, the first numbered id; every node is numbered,
 * drawn or not, so that the numbers are the tree's preorder. */
static void draw(struct flame *f, struct prof_walk *w, unsigned long id, uint64_t total_ns)
{
    f->x_at[0] = 0;
    for (; prof_walk_next(w); id += !w->leaving) {
        if (w->leaving)
            continue;
        const struct prof_node *n = w->node;
        double width = (double)n->total_ns * f->scale, x = f->x_at[w->depth];
        f->x_at[w->depth] += width; /* its next sibling's place */
        if (width < 0.5 || w->depth >= MAX_ROWS) {
            f->cut |= width >= 0.5;
            prof_walk_skip(w);
            id += subtree_size(n) - 1;
            continue;
        }
        if (w->depth > f->max_depth)
            f->max_depth = w->depth;
        draw_frame(f, n, x, width, w->depth, id, total_ns);
        f->x_at[w->depth + 1] = x; /* its first child's */
    }
}

char *prof_flame_html(const struct prof_tree *t, unsigned long zoom, const char *base_href,
                      size_t *len)
{
    struct flame f = { .base_href = base_href };
    const struct prof_node *top = zoom ? find(&t->root, zoom) : NULL;
    uint64_t total = 0;
    if (top)
        total = top->total_ns;
    else
        for (const struct prof_node *c = t->root.child; c; c = c->sibling)
            total += c->total_ns;
    prof_text_add(&f.out, "<h2 id=flame>Flame graph</h2><p>Width is inclusive time; click a frame "
                          "to zoom in%s", top ? ", <a href=\"" : ".");
    if (top) {
        prof_text_escaped(&f.out, base_href, PROF_ESC_HTML);
        prof_text_add(&f.out, "zoom=0#flame\">back to all</a>.");
    }
    prof_text_add(&f.out, "</p>\n");
    if (total == 0) {
        prof_text_add(&f.out, "<p>No function profile yet: with profiling on (Start, or "
                              "--profile), the next requests fill it.</p>\n");
        return prof_text_finish_len(&f.out, len);
    }
    f.scale = WIDTH / (double)total;
    struct prof_text frames = f.out;
    f.out = (struct prof_text){ 0 };
    f.x_at = calloc(MAX_ROWS + 1, sizeof(*f.x_at));
    struct prof_walk w;
    if (top)
        prof_walk_subtree(&w, top);
    else
        prof_walk_children(&w, &t->root);
    if (f.x_at)
        draw(&f, &w, top ? zoom : 1, total);
    else
        f.out.failed = true;
    free(f.x_at);
    prof_text_add(&frames, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%u\" "
                           "font-family=\"monospace\" font-size=\"11\">\n%s</svg>\n",
                  WIDTH, (f.max_depth + 1) * ROW, f.out.p ? f.out.p : "");
    if (f.cut)
        prof_text_add(&frames, "<p>Frames deeper than the %d rows drawn are not shown: click a "
                               "frame in the last rows to zoom in to what is under it.</p>\n",
                      MAX_ROWS);
    if (f.out.failed)
        frames.failed = true;
    free(f.out.p);
    return prof_text_finish_len(&frames, len);
}
