/* hook.h — the function profiler's Python side: a PyEval_SetProfile hook on
 * the app thread running a request builds that request's call tree, which is
 * merged into the accumulated tree when the request ends (the GIL guards the
 * accumulated tree, so concurrent requests are profiled with no other lock).
 * Events and names follow cProfile exactly, so call counts match it. The hook
 * never raises: a pending exception is saved and restored around it. Without
 * built-ins, the frame hook (frame_hook.h) feeds the same trees instead. */
#ifndef PROF_HOOK_H
#define PROF_HOOK_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Settings, before any request: node cap, whether the first profiled
 * request is thrown away (repoze's discard_first_request), how many of the
 * slowest profiled requests keep their own call tree, whether built-in
 * calls are profiled (PyEval_SetProfile, cProfile's events) or only Python
 * functions (the cheaper frame hook, see frame_hook.h), and whether calls
 * are timed by the thread's CPU time instead of the wall clock (clock.h).
 * Also tells the slowest-requests table (latency.h) which trees are kept. */
void prof_hook_configure(size_t max_nodes, bool discard_first, unsigned keep_slowest,
                         bool builtins, bool cpu_clock);

/* Function profiling on or off (any thread). */
void prof_hook_enable(bool on);
bool prof_hook_enabled(void);

/* GIL held. Start profiling the calling thread for request id: a new ref
 * to its collector, or NULL when profiling is off (or out of memory). */
PyObject *prof_hook_begin(uint64_t id);
/* GIL held, on the request's thread. The request is over: unhook, merge
 * its tree, drop the ref. Returns what the caller should say in its log,
 * each once since start or Clear: PROF_END_CAP_REACHED, this made the
 * accumulated profile reach its node cap (its first call not recorded);
 * PROF_END_HOOK_REPLACED, the app set its own profile function (cProfile,
 * sys.setprofile) and did not give tracfront's back, or gave it back in
 * another call than took it, so this request is left out (the next is
 * profiled again; the page and API count them). */
enum { PROF_END_CAP_REACHED = 1, PROF_END_HOOK_REPLACED = 2 };
int prof_hook_end(PyObject *collector);

/* GIL held, on the request's thread, with none of the app's frames running:
 * the Python that runs until prof_hook_resume is tracfront's own (logging a
 * traceback), left out of the request's profile. NULL: nothing to do. */
void prof_hook_pause(PyObject *collector);
void prof_hook_resume(PyObject *collector);

/* The exports and pages below each read a copy of the tree they show
 * (Python they run can let other threads change the shared one), one copy
 * at a time in the process: while one is made, another returns NULL with
 * errno EBUSY at once (its network thread does not wait; the client is
 * asked to try again). Call them without the GIL. */

/* Any thread without the GIL (it is taken here): the accumulated profile in
 * one format — "pstats" (marshal of cProfile's stats dict), "collapsed",
 * "speedscope", "callgrind", "tree" (for merging, see treeio.h) — malloc'd; NULL on error or an unknown name.
 * With nothing profiled (no call recorded since start or Clear) every format
 * but "tree" is empty, *len 0: pstats cannot load an empty profile, and
 * the others say nothing either, so there is nothing to export. */
char *prof_hook_export(const char *format, size_t *len);
/* Any thread without the GIL: the function table for the view in a raw
 * query string, as an HTML fragment or JSON; malloc'd, NULL on error.
 * *bad_view: the query's filter or sort key is invalid (the JSON is then
 * {"error": ...}; the HTML says so). profile_href, here and below: the
 * profile path as a reference relative to the page being made ("__profile__"
 * at /__profile__, "../__profile__" at /__profile__/request), the links'
 * start, so that they work under the prefix a reverse proxy strips. */
char *prof_hook_table(const char *query, bool json, const char *profile_href, size_t *len,
                      bool *bad_view);

/* Any thread without the GIL: a page with the call tree kept for request
 * id (a flame graph), or NULL when none was kept. */
char *prof_hook_request_html(uint64_t id, const char *query, const char *profile_href,
                             size_t *len);

/* Any thread without the GIL: add a tree exported by another process
 * (format "tree") to the accumulated profile. 0; 1 when some of its nodes
 * were past the node cap (counted, not recorded); or -1 when malformed. */
int prof_hook_import(const char *text, size_t len);

/* Once, before serving: exports and pages read the trees as they are, not
 * copied. Only for a process whose trees no thread changes while one is
 * read: a front (--workers), whose tree lock every reader and writer of
 * its trees holds, and which runs no app. */
void prof_hook_read_in_place(void);

/* Any thread without the GIL: forget the accumulated profile. */
void prof_hook_clear(void);

#endif
