/* options.h — the Python-side options checked before Python starts: --app,
 * --venv and --env. A mistake stops tracfront at once with exit status 2 and a
 * message naming the flag, as proxy/config.c does for the other options,
 * instead of an app that loads wrong or breaks on some later request.
 * Pure C: no Python runs here. */
#ifndef WSGI_OPTIONS_H
#define WSGI_OPTIONS_H

#include <stddef.h>

#include "proxy/config.h"

/* Returns 0, or -1 with a one-line message naming the flag in err. */
int wsgi_options_check(const struct tf_config *cfg, char *err, size_t errlen);

/* --venv DIR against the Python that python (an executable's path) is:
 * DIR/pyvenv.cfg must exist and name the same major.minor version (the
 * embedded one's, PY_VERSION) and a home that is python's folder. */
int wsgi_venv_check(const char *dir, const char *python, char *err, size_t errlen);

/* --app MODULE[:CALLABLE]: *module_len is MODULE's length; returns the
 * callable's dotted path, "application" when there is no ':' (a string
 * that lives as long as spec). */
const char *wsgi_app_spec_split(const char *spec, size_t *module_len);

#endif
