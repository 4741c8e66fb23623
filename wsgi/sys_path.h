/* sys_path.h — where the app's imports are looked for: sys.path as
 * mod_wsgi's python-path and uWSGI/gunicorn make it. Runs once on the main
 * thread, with the GIL, before the app is imported. */
#ifndef WSGI_SYS_PATH_H
#define WSGI_SYS_PATH_H

#include "proxy/config.h"

/* Put the --pythonpath folders (each value split at ':'; their .pth files
 * read) first on sys.path, in the order given, then the working directory.
 * Returns 0, or -1 with a Python exception set (sys.path may then hold
 * some of them). */
int wsgi_sys_path_setup(const struct tf_config *cfg);

#endif
