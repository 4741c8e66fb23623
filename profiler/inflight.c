/* inflight.c — the "In flight" report (see inflight.h). Stacks are text the
 * caller made from Python frames: escaped here, line by line, never trusted. */
#include "profiler/inflight.h"

#include <string.h>

#include "profiler/text.h"

/* Escape for HTML keeping the line breaks (prof_text_escaped shows '\n' as
 * the two characters "\n", right for one-line cells, wrong in a <pre>). */
static void html_lines(struct prof_text *t, const char *s)
{
    char piece[512];
    while (*s) {
        size_t n = strcspn(s, "\n");
        if (n > sizeof(piece) - 1) { /* a long line goes out in pieces, */
            n = sizeof(piece) - 1;
            while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
                n--; /* cut before a character, not inside one (each piece is escaped alone) */
            if (n == 0)
                n = sizeof(piece) - 1; /* no character starts in it: not UTF-8 anyway */
        }
        memcpy(piece, s, n);
        piece[n] = 0;
        prof_text_escaped(t, piece, PROF_ESC_HTML);
        s += n;
        if (*s == '\n') {
            prof_text_add(t, "\n");
            s++;
        }
    }
}

char *prof_inflight_html(const struct prof_inflight *list, size_t n, double timeout,
                         const char *action, unsigned worker_pid)
{
    struct prof_text t = { 0 };
    if (worker_pid)
        prof_text_add(&t, "<h3>Worker %u</h3><p>%zu request%s running on its app threads. ",
                      worker_pid, n, n == 1 ? "" : "s");
    else
        prof_text_add(&t, "<h2 id=inflight>In flight</h2><p>%zu request%s running on app "
                      "threads. ", n, n == 1 ? "" : "s");
    if (timeout > 0)
        prof_text_add(&t, "--request-timeout %gs (action: %s): past it a request is "
                      "<b>stuck</b>.</p>\n", timeout, action);
    else
        prof_text_add(&t, "--request-timeout is off.</p>\n");
    if (n == 0)
        return prof_text_finish(&t);
    prof_text_add(&t, "<table><tr><th>id<th>request<th>running (s)<th>state<th>Python stack "
                  "(most recent call last)\n");
    for (size_t i = 0; i < n; i++) {
        const struct prof_inflight *e = &list[i];
        prof_text_add(&t, "<tr><td>%llu<td><code>", (unsigned long long)e->id);
        prof_text_escaped(&t, e->method, PROF_ESC_HTML);
        prof_text_add(&t, " ");
        prof_text_escaped(&t, e->target, PROF_ESC_HTML);
        prof_text_add(&t, "</code><td>%.3f<td>%s<td style=\"text-align:left\"><pre>",
                      e->running_s, e->stuck ? "<b>stuck</b>" : "running");
        html_lines(&t, e->stack ? e->stack : "(no Python frame: in C code or between calls)");
        prof_text_add(&t, "</pre>\n");
    }
    prof_text_add(&t, "</table>\n");
    return prof_text_finish(&t);
}

char *prof_inflight_json(const struct prof_inflight *list, size_t n, double timeout,
                         const char *action, unsigned worker_pid)
{
    struct prof_text t = { 0 };
    if (worker_pid)
        prof_text_add(&t, "{\"pid\": %u, ", worker_pid);
    else
        prof_text_add(&t, "{");
    prof_text_add(&t, "\"request_timeout\": %g, \"action\": \"", timeout);
    prof_text_escaped(&t, action, PROF_ESC_JSON);
    prof_text_add(&t, "\", \"requests\": [");
    for (size_t i = 0; i < n; i++) {
        const struct prof_inflight *e = &list[i];
        prof_text_add(&t, "%s\n  {\"id\": %llu, \"method\": \"", i ? "," : "",
                      (unsigned long long)e->id);
        prof_text_escaped(&t, e->method, PROF_ESC_JSON);
        prof_text_add(&t, "\", \"target\": \"");
        prof_text_escaped(&t, e->target, PROF_ESC_JSON);
        prof_text_add(&t, "\", \"running_s\": %.6f, \"thread\": %lu, \"stuck\": %s, \"stack\": ",
                      e->running_s, e->thread, e->stuck ? "true" : "false");
        if (e->stack) {
            prof_text_add(&t, "\"");
            prof_text_escaped(&t, e->stack, PROF_ESC_JSON);
            prof_text_add(&t, "\"}");
        } else {
            prof_text_add(&t, "null}");
        }
    }
    prof_text_add(&t, "%s]}\n", n ? "\n" : "");
    return prof_text_finish(&t);
}
