/* app.h — finding the WSGI callable: --app MODULE[:CALLABLE] (dotted
 * attributes allowed; `application` by default), --wsgi-file (executed as a module, as mod_wsgi does,
 * then `application` looked up), or Trac's dispatch_request for --trac-env and
 * --trac-env-parent-dir. Runs once on the main thread with the GIL held. */
#ifndef WSGI_APP_H
#define WSGI_APP_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdbool.h>
#include <stddef.h>

#include "proxy/config.h"

/* New ref to the callable, or NULL with a message naming the flag in err
 * (and the traceback, if any, written to the error log). */
PyObject *wsgi_app_load(const struct tf_config *cfg, char *err, size_t errlen);

/* The source files of every loaded module (and the --wsgi-file), one per
 * line, malloc'd (NULL on out of memory): what --reload watches. Any thread,
 * without the GIL and never waiting for it (the control port's): the list
 * as wsgi_app_files_note last made it, empty before. */
char *wsgi_app_files(size_t *len);
/* With the GIL: list them again for wsgi_app_files if now, or if a module
 * was added to or removed from sys.modules since, or a second has passed
 * (once the app is loaded, and after each request of a worker whose front
 * has --reload: a module a request imported shows from its end on). */
void wsgi_app_files_note(bool now);

#endif
