/* head_layout.c — see head_layout.h. */
#include "proxy/head_layout.h"

#include <microhttpd.h>
#include <string.h>

/* A line of l's head that ends at line_end (its first NUL) ended with CR
 * LF: the start of the next line, else NULL. */
static const char *after_crlf(const struct tf_head_layout *l, const char *line_end)
{
    return line_end && line_end + 2 <= l->end && line_end[0] == 0 && line_end[1] == 0
               ? line_end + 2
               : NULL;
}

/* Whether [from, to) holds only spaces and tabs (none at all is fine). */
static bool only_blanks(const char *from, const char *to)
{
    if (to < from)
        return false;
    for (; from < to; from++)
        if (*from != ' ' && *from != '\t')
            return false;
    return true;
}

void tf_head_layout_start(struct tf_head_layout *l, const char *method, const char *target,
                          size_t target_len, const char *version, size_t head_size)
{
    l->next = l->end = NULL;
    if (!method || !target || !version || !head_size)
        return;
    l->end = method + head_size;
    const char *method_end = method + strnlen(method, head_size); /* the space libmicrohttpd cut */
    /* the version starts right after the space that ends the target (so
     * both are in the line), and libmicrohttpd skips spaces before the target */
    if (target <= method_end || version != target + target_len + 1 || version >= l->end ||
        target[target_len] != 0)
        return;
    for (const char *p = method_end + 1; p < target; p++)
        if (*p != ' ')
            return;
    l->next = after_crlf(l, version + strnlen(version, (size_t)(l->end - version)));
}

void tf_head_layout_header(struct tf_head_layout *l, const char *name, size_t name_len,
                           const char *value, size_t value_len)
{
    if (!l->next)
        return;
    /* the name where the line starts, then where its colon was, blanks, the value */
    if (name != l->next || !value || value <= name + name_len || value > l->end ||
        !only_blanks(name + name_len + 1, value) || value_len > (size_t)(l->end - value)) {
        l->next = NULL;
        return;
    }
    l->next = after_crlf(l, value + value_len);
}

bool tf_head_layout_whole(const struct tf_head_layout *l)
{
    return l->next && after_crlf(l, l->next) == l->end;
}

bool tf_head_layout_known(void)
{
    static int known = -1; /* racing first calls store the same answer */
    int k = __atomic_load_n(&known, __ATOMIC_RELAXED);
    if (k < 0) {
        const char *v = MHD_get_version();
        k = v && strcmp(v, "0.9.75") == 0;
        __atomic_store_n(&known, k, __ATOMIC_RELAXED);
    }
    return k;
}
