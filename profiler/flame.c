/* flame.c — see flame.h. Two walks: the first numbers nodes in preorder to
 * find the zoomed one, the second draws from it. Frames under half a pixel
 * are not drawn (their time still counts in their parent's width). */
#include "profiler/flame.h"

#include <stdlib.h>
#include <string.h>

#include "profiler/export.h"
#include "profiler/text.h"

#define WIDTH 1200.0
#define ROW 17

struct flame {
    struct prof_text out;
    const char *base_href;
    double scale;              /* px per ns */
    unsigned long next_id;
    unsigned max_depth;
};

/* Preorder numbering (1-based): the node with number want, or NULL. */
static const struct prof_node *find(const struct prof_node *parent, unsigned long want,
                                    unsigned long *next)
{
    for (const struct prof_node *n = parent->child; n; n = n->sibling) {
        if (++*next == want)
            return n;
        const struct prof_node *hit = find(n, want, next);
        if (hit)
            return hit;
    }
    return NULL;
}

static unsigned hue_of(const char *s)
{
    unsigned h = 2166136261u;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

static unsigned long subtree_size(const struct prof_node *n)
{
    unsigned long k = 1;
    for (const struct prof_node *c = n->child; c; c = c->sibling)
        k += subtree_size(c);
    return k;
}

/* Draw n (preorder number id) and what it calls; returns the number of
 * nodes in its subtree, drawn or not, so siblings keep their numbers. */
static unsigned long draw(struct flame *f, const struct prof_node *n, double x, unsigned depth,
                          unsigned long id, uint64_t total_ns)
{
    double w = (double)n->total_ns * f->scale;
    if (w < 0.5)
        return subtree_size(n);
    if (depth > f->max_depth)
        f->max_depth = depth;
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
    double cx = x;
    unsigned long size = 1;
    for (const struct prof_node *c = n->child; c; c = c->sibling) {
        size += draw(f, c, cx, depth + 1, id + size, total_ns);
        cx += (double)c->total_ns * f->scale;
    }
    return size;
}

char *prof_flame_html(const struct prof_tree *t, unsigned long zoom, const char *base_href,
                      size_t *len)
{
    struct flame f = { .base_href = base_href };
    unsigned long counter = 0;
    const struct prof_node *top = zoom ? find(&t->root, zoom, &counter) : NULL;
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
        prof_text_add(&f.out, "<p>No function profile yet: press Start, or run with --profile.</p>\n");
        return prof_text_finish_len(&f.out, len);
    }
    f.scale = WIDTH / (double)total;
    struct prof_text frames = f.out;
    f.out = (struct prof_text){ 0 };
    if (top) {
        draw(&f, top, 0, 0, zoom, total);
    } else {
        double x = 0;
        unsigned long id = 1;
        for (const struct prof_node *c = t->root.child; c; c = c->sibling) {
            id += draw(&f, c, x, 0, id, total);
            x += (double)c->total_ns * f.scale;
        }
    }
    prof_text_add(&frames, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%u\" "
                           "font-family=\"monospace\" font-size=\"11\">\n%s</svg>\n",
                  WIDTH, (f.max_depth + 1) * ROW, f.out.p ? f.out.p : "");
    if (f.out.failed)
        frames.failed = true;
    free(f.out.p);
    return prof_text_finish_len(&frames, len);
}
