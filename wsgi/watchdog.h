/* watchdog.h — stuck requests. Every WSGI request running on an app thread
 * is in a small registry (its request, thread and start time); a watchdog
 * thread (only with --request-timeout) scans it every 0.1 s and, once per
 * run, writes the Python stack of a request past the timeout to the error
 * log (every Python thread's with --dump-all) and, with
 * --request-timeout-action 504, raises tracfront.RequestTimeout in that
 * thread (PyThreadState_SetAsyncExc), then calls the wsgi_watchdog_on_interrupt
 * callback (a worker asks its front to replace it). The registry also feeds
 * the profiler's "In flight" report.
 *
 * Limit: an asynchronous exception is delivered only when the thread runs
 * Python bytecode, so an app blocked inside one C call (time.sleep(30), a
 * socket read, a database query) is interrupted when that call returns.
 *
 * Locks: the registry lock is taken with or without the GIL, but never held
 * while Python code may run nor while waiting for the GIL (order: GIL, then
 * registry lock). Registry entries leave only with the GIL held, so a thread
 * holding the GIL and the lock may raise in a registered thread safely. */
#ifndef WSGI_WATCHDOG_H
#define WSGI_WATCHDOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proxy/config.h"

struct _object; /* PyObject, without Python.h here */

struct tf_request;

/* One request on one app thread: lives on the stack of wsgi_run() between
 * wsgi_watchdog_enter() and wsgi_watchdog_leave(). Fields are private to
 * watchdog.c and guarded by its registry lock. */
struct wsgi_watch {
    struct wsgi_watch *prev, *next;
    struct tf_request *req;     /* own reference while registered */
    unsigned long thread_id;    /* PyThread_get_thread_ident() of the app thread */
    uint64_t started;           /* monotonic us: this run on the thread began */
    bool reported;              /* the stuck stack was logged */
    bool interrupted;           /* RequestTimeout was raised in the thread */
    uint64_t completed_before;  /* requests the process had completed not interrupted
                                   when this run began (the guard against replacing
                                   workers whose start-up outlasts the timeout) */
};

/* Main thread, after the app is loaded and before requests run: with
 * cfg->request_timeout, start the watchdog thread. Returns 0, or -1 with the
 * reason in err. */
int wsgi_watchdog_start(const struct tf_config *cfg, char *err, size_t errlen);

/* Before wsgi_watchdog_start: fn(completed) is called on the watchdog
 * thread, without the GIL or any lock, after a scan raised RequestTimeout in
 * one request or more (whether the app then swallows it or not), with how
 * many requests of this process had left the registry not interrupted when
 * the earliest-begun of them began (what completed beside a cold start's
 * first request does not make that start any shorter).
 * A worker asks its front to replace it there (the interrupt may have left
 * the app half set up); the watchdog looks at no request until fn returns. */
void wsgi_watchdog_on_interrupt(void (*fn)(uint64_t completed));

/* With the GIL, before the app is imported (so its module can `import
 * tracfront` at the top, as `import uwsgi` under uWSGI): the module
 * `tracfront` in sys.modules, with RequestTimeout. 0, or -1 with the
 * exception set. */
int wsgi_watchdog_python_init(void);
/* Stop the watchdog thread (before the app threads stop). GIL not held. */
void wsgi_watchdog_stop(void);

/* App thread, GIL held: req starts / stops running on this thread. leave
 * also swallows a RequestTimeout raised too late to hit the request, so the
 * thread's next request never sees it. */
void wsgi_watchdog_enter(struct wsgi_watch *w, struct tf_request *req);
void wsgi_watchdog_leave(struct wsgi_watch *w);

/* GIL held: is the pending exception the watchdog's RequestTimeout? */
bool wsgi_watchdog_timed_out(void);
/* GIL held: is value (an exception instance; a PyObject *, named so that
 * this header needs no Python.h) a RequestTimeout? */
bool wsgi_watchdog_is_timeout(struct _object *value);
/* GIL held: raise the RequestTimeout the watchdog set for this thread now
 * (its request's write() failed for it: tf_request_interrupt), or a new one
 * if it is not pending here. Returns -1, the exception set. */
int wsgi_watchdog_raise(void);

/* Any thread without the GIL (it is taken briefly): the In flight report as
 * an HTML fragment or JSON (malloc'd, *len set), NULL on out of memory. */
char *wsgi_watchdog_inflight(bool json, size_t *len);

#endif
