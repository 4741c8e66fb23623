/* py_fnmatch.h — shell patterns as Python's fnmatch.fnmatchcase matches
 * them (fnmatch.translate's rules), for what tracfront must see as a Python
 * program does: Trac's .tracignore (trac.web.main get_environments). Not
 * fnmatch(3): there `[^x]` negates and `[[:alpha:]]` is a class, and `\`
 * escapes; here `[!x]` negates, `[^x]` is the class of '^' and 'x', no
 * character is special but `*`, `?` and `[`, and `*` matches '/' and a
 * leading dot too. Case-sensitive (fnmatch on POSIX). Names and patterns are
 * taken as UTF-8 (a byte that is not: one character of its own, as Python's
 * surrogateescape); `?` matches one character. Any thread. */
#ifndef TF_PY_FNMATCH_H
#define TF_PY_FNMATCH_H

#include <stdbool.h>

struct tf_py_pattern;

/* pattern compiled; NULL on out of memory. */
struct tf_py_pattern *tf_py_pattern_new(const char *pattern);
/* Does name match it whole? false on out of memory. */
bool tf_py_pattern_match(const struct tf_py_pattern *p, const char *name);
void tf_py_pattern_free(struct tf_py_pattern *p);

#endif
