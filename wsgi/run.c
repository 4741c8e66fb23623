/* run.c — driving one WSGI call (see run.h). Fast paths first: a list or
 * tuple of bytes is sent as one buffer with Content-Length, a file_wrapper on
 * a regular file with sendfile; any other iterable streams through the
 * request channel chunk by chunk as it is produced (PEP 3333 forbids holding
 * a chunk back to learn the length). Whatever happens, the iterable's close()
 * is called exactly once. */
#include "wsgi/run.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "proxy/log.h"
#include "proxy/platform.h"
#include "proxy/request.h"
#include "profiler/hook.h"
#include "wsgi/app.h"
#include "wsgi/environ.h"
#include "wsgi/errors.h"
#include "wsgi/filewrapper.h"
#include "wsgi/gc_freeze.h"
#include "wsgi/input.h"
#include "wsgi/interp.h"
#include "wsgi/pool.h"
#include "wsgi/response.h"
#include "wsgi/watchdog.h"

/* Stop profiling task's request: its calls join the accumulated profile. */
static void profile_end(struct wsgi_task *task)
{
    int said = prof_hook_end(task->profile);
    if (said & PROF_END_CAP_REACHED)
        tf_log_error("profile: --profile-max-nodes (%u) reached: calls on call paths not yet "
                     "recorded are counted, not recorded, until Clear (the profile page says "
                     "how many)", wsgi_ctx.cfg->profile_max_nodes);
    if (said & PROF_END_HOOK_REPLACED) {
        tf_log_error("profile: the app replaced the profile hook (cProfile's enable() or "
                     "sys.setprofile()) in %s %s and did not give it back, or not in the call "
                     "that took it: the request is left out of the profile, as is any other "
                     "that does so (%s); the next request is profiled again", task->req->method,
                     task->req->log_target, wsgi_ctx.cfg->worker ? "with --workers the profile page does not count "
                                            "them: each worker logs its first"
                                          : "the profile page says how many");
    }
    task->profile = NULL;
}

static void finish(struct wsgi_task *task)
{
    struct tf_request *req = task->req;
    profile_end(task);
    wsgi_start_response_detach(task->start_response);
    Py_CLEAR(task->iterator);
    Py_CLEAR(task->result);
    Py_CLEAR(task->environ);
    Py_CLEAR(task->status);
    Py_CLEAR(task->headers);
    Py_CLEAR(task->stop_error);
    if (task->input) /* last, after what its deallocs ran: the app may keep it (Trac's
                        environ cycles), not what it reads (the body's spool) */
        wsgi_input_release(task->input);
    task->input = NULL;
    wsgi_start_response_release(task); /* after every other reference the task held */
    req->backend_state = NULL; /* its block is req's (start) */
    tf_request_note_streamed(req); /* before note_call (pool.c), on the thread that ran it */
    tf_request_unref(req);
    wsgi_gc_request_done();
}

/* Call result.close() if it has one; an exception there is logged. */
static void close_result(struct wsgi_task *task)
{
    PyObject *result = task->result;
    if (!result || PyList_CheckExact(result) || PyTuple_CheckExact(result))
        return;
    PyObject *close = PyObject_GetAttrString(result, "close"); /* new ref */
    if (!close) {
        PyErr_Clear();
        return;
    }
    PyObject *r = PyObject_CallNoArgs(close);
    Py_DECREF(close);
    wsgi_task_exit_if_forked(task);
    if (!r) {
        prof_hook_pause(task->profile); /* as in failed() */
        wsgi_log_exception("%s %s: the response's close() raised", task->req->method,
                           task->req->log_target);
        prof_hook_resume(task->profile);
    }
    Py_XDECREF(r);
}

static void end(struct wsgi_task *task)
{
    close_result(task);
    finish(task);
}

/* The app (or its iterable) raised: log the traceback; a 500 if nothing was
 * sent yet, else abort the connection. The watchdog's RequestTimeout
 * (--request-timeout-action 504) is a 504 instead, with no traceback: the
 * watchdog has logged the stack; write()'s OSError that stopped the body (the
 * client left, or a HEAD was answered) ends the request, with no traceback. */
static void failed(struct wsgi_task *task, const char *what)
{
    if (wsgi_watchdog_timed_out()) {
        PyErr_Clear();
        tf_log_error("%s %s: interrupted after --request-timeout; %s%s", task->req->method,
                     task->req->log_target, task->sent ? "connection aborted" : "answered 504",
                     task->req->connection ? "" : " (in a --mirror copy; no client waits for it)");
        wsgi_response_send_error(task, 504,
                                 "The application did not answer within --request-timeout.");
        end(task);
        return;
    }
    if (wsgi_response_stopped(task)) { /* write()'s own: the answer has ended */
        PyErr_Clear();
        if (!task->head_answered) /* the client left, the answer was cut (logged), or a
                                     --mirror copy was stopped (the compare page says) */
            tf_log_info("%s %s: the answer ended early%s; the app did not catch write()'s "
                        "OSError('%s')", task->req->method, task->req->log_target,
                        task->req->connection ? "" : " (a --mirror copy its pair stopped)",
                        wsgi_response_stop_reason(task));
        end(task);
        return;
    }
    /* tracfront's own Python (--profile-unwind profiles the body, and close()
     * after it, not the traceback's formatting: 341 functions the first time) */
    prof_hook_pause(task->profile);
    wsgi_log_exception("%s %s: %s%s", task->req->method, task->req->log_target, what,
                       task->req->connection ? "" : " (in a --mirror copy; no client waits for it)");
    prof_hook_resume(task->profile);
    wsgi_response_send_error(task, 500, NULL);
    end(task);
}

/* The app broke the protocol (no exception): log why, answer 500. */
static void bad_app(struct wsgi_task *task, const char *why, PyObject *obj)
{
    tf_log_error("%s %s: %s%s%s", task->req->method, task->req->log_target, why,
                 obj ? Py_TYPE(obj)->tp_name : "", obj ? " (the body must be bytes)" : "");
    wsgi_response_send_error(task, 500, NULL);
    end(task);
}

static bool ready_to_send(struct wsgi_task *task)
{
    if (task->status)
        return true;
    bad_app(task, "the app returned a body without calling start_response()", NULL);
    return false;
}

/* A list or tuple of bytes: one buffer. Returns true if it handled the task. */
static bool send_sequence(struct wsgi_task *task)
{
    PyObject *seq = task->result;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    PyObject **items = PySequence_Fast_ITEMS(seq);
    size_t total = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (!PyBytes_Check(items[i])) {
            bad_app(task, "the app's response contains ", items[i]);
            return true;
        }
        total += (size_t)PyBytes_GET_SIZE(items[i]);
    }
    if (!ready_to_send(task))
        return true;
    int rc;
    if (n == 1) {
        rc = wsgi_response_send_buffer(task, PyBytes_AS_STRING(items[0]), total);
    } else {
        char *buf = malloc(total ? total : 1);
        if (!buf) {
            PyErr_NoMemory();
            failed(task, "out of memory joining the body");
            return true;
        }
        size_t off = 0;
        for (Py_ssize_t i = 0; i < n; i++) {
            memcpy(buf + off, PyBytes_AS_STRING(items[i]), (size_t)PyBytes_GET_SIZE(items[i]));
            off += (size_t)PyBytes_GET_SIZE(items[i]);
        }
        rc = wsgi_response_send_buffer(task, buf, total);
        free(buf);
    }
    if (rc < 0)
        failed(task, "sending the response failed");
    else
        end(task);
    return true;
}

static bool send_file(struct wsgi_task *task)
{
    int fd;
    uint64_t offset, size;
    bool is_file = wsgi_filewrapper_file(task->result, &fd, &offset, &size);
    wsgi_task_exit_if_forked(task); /* its fileno() and tell() are the app's */
    if (!is_file)
        return false;
    if (!ready_to_send(task)) {
        close(fd);
        return true;
    }
    if (wsgi_response_send_file(task, fd, offset, size) < 0)
        failed(task, "sending the file failed");
    else
        end(task);
    return true;
}

/* Next non-empty bytes item: 1 with *item (new ref), 0 at the end, -1 when
 * the task was ended (error reported). */
static int next_chunk(struct wsgi_task *task, PyObject **item)
{
    for (;;) {
        PyObject *it = PyIter_Next(task->iterator); /* new ref */
        wsgi_task_exit_if_forked(task);
        if (!it) {
            if (!PyErr_Occurred())
                return 0;
            failed(task, "the response iterable raised");
            return -1;
        }
        if (!PyBytes_Check(it)) {
            bad_app(task, "the app's response yielded ", it);
            Py_DECREF(it);
            return -1;
        }
        if (PyBytes_GET_SIZE(it) > 0) {
            *item = it;
            return 1;
        }
        Py_DECREF(it);
    }
}

/* The watchdog interrupted the request (--request-timeout-action 504) and
 * the app went on: it dropped the RequestTimeout (Trac's dispatch_request
 * ends in `finally: return resp`, which drops any exception). Still a 504,
 * or a connection aborted when the head is out, as when the app raises it:
 * never a clean answer cut at the timeout. true when the task was ended. */
static bool timeout_dropped(struct wsgi_task *task)
{
    const struct tf_config *cfg = wsgi_ctx.cfg; /* "504" or "log" (config_check.c) */
    bool may = cfg->request_timeout > 0 && cfg->request_timeout_action &&
               cfg->request_timeout_action[0] == '5'; /* else no lock per request */
    if (!may || !tf_request_interrupted(task->req))
        return false;
    wsgi_watchdog_raise(); /* the pending one, if it has not come yet: never the next request's */
    if (task->timeout_answered || task->head_answered || task->head_refused) {
        PyErr_Clear(); /* the app's own answer to it, or one already complete, stands */
        return false;
    }
    failed(task, "the app was interrupted");
    return true;
}

/* Body is complete: close the stream, or send an empty/whole body. */
static void body_done(struct wsgi_task *task)
{
    if (timeout_dropped(task))
        return;
    if (task->sent) {
        wsgi_response_end(task);
    } else if (!ready_to_send(task)) {
        return;
    } else if ((wsgi_response_bodyless(task) ? wsgi_response_send_head(task)
                                   : wsgi_response_send_buffer(task, "", 0)) < 0) {
        failed(task, "sending the response failed");
        return;
    }
    end(task);
}

/* Iterate until the body ends or the client leaves, on this thread: each
 * chunk goes out as soon as it is produced, as PEP 3333 asks, queued as
 * write() queues it (memory, then the spill file, then waiting for the
 * client past --max-spill), so the body never moves to another thread and
 * keeps its thread-locals and context (Flask's stream_with_context, Django's
 * per-thread state), as under gunicorn and mod_wsgi. A Content-Length comes
 * from the app, or from a list body (send_sequence). */
static void iterate(struct wsgi_task *task)
{
    struct tf_request *req = task->req;
    for (;;) {
        if (tf_request_client_gone(req)) {
            end(task);
            return;
        }
        PyObject *item = NULL;
        int rc = next_chunk(task, &item);
        if (rc < 0)
            return;
        if (rc == 0) {
            body_done(task);
            return;
        }
        if (!task->sent && timeout_dropped(task)) { /* its RequestTimeout is due, or was
                                                       dropped: 504 (once the head is out,
                                                       the write fails: aborted) */
            Py_DECREF(item);
            return;
        }
        if (!task->sent) {
            bool ok = ready_to_send(task); /* false: the task has been ended */
            if (ok && wsgi_response_start_stream(task) < 0) {
                if (task->head_refused) { /* answered 500 (logged): the body stops here */
                    PyErr_Clear();
                    end(task);
                } else {
                    failed(task, "starting the response failed");
                }
                ok = false;
            }
            if (!ok) {
                Py_DECREF(item);
                return;
            }
        }
        rc = wsgi_response_write(task, PyBytes_AS_STRING(item), (size_t)PyBytes_GET_SIZE(item));
        Py_DECREF(item);
        if (rc < 0 && wsgi_watchdog_timed_out()) {
            failed(task, "sending the response failed"); /* the 504 handling */
            return;
        }
        if (rc < 0) { /* the client left, a HEAD was answered, or the spill failed (logged),
                         or out of memory */
            PyErr_Clear();
            if (!task->head_answered && !tf_request_client_gone(req))
                tf_request_finish(req, true); /* its answer ends with an error, not a hang */
            end(task);
            return;
        }
    }
}

static void start(struct tf_request *req)
{
    _Static_assert(sizeof(struct wsgi_task) <= sizeof(req->backend_room) &&
                   _Alignof(struct wsgi_task) <= 16, "a task fits the request's backend_room");
    /* in the request's block, no allocation: req outlives its task (the
     * task's reference), and one task at a time runs it */
    struct wsgi_task *task = memset(req->backend_room, 0, sizeof(struct wsgi_task));
    task->req = req;
    task->content_length = -1;
    req->backend_state = task;
    bool outside_mount = false;
    task->input = wsgi_input_new(req); /* new ref */
    if (task->input)
        task->environ = wsgi_environ_build(req, task->input, &outside_mount);
    if (!task->environ) {
        failed(task, "building the WSGI environ failed");
        return;
    }
    if (outside_mount) {
        wsgi_response_send_error(task, 404, TF_OUTSIDE_MOUNT_DETAIL);
        end(task);
        return;
    }
    if (wsgi_start_response_new(task) < 0) {
        failed(task, "creating start_response failed");
        return;
    }
    PyObject *args[2] = { task->environ, task->start_response };
    task->profile = prof_hook_begin(req->id); /* NULL unless function profiling is on */
    task->result = PyObject_Vectorcall(wsgi_ctx.app, args, 2, NULL); /* new ref */
    wsgi_task_exit_if_forked(task);
    if (!wsgi_ctx.cfg->profile_unwind) { /* the app call only, as repoze without unwind */
        profile_end(task);
    }
    if (!task->result) {
        failed(task, "the app raised");
        return;
    }
    if (timeout_dropped(task))
        return;
    if ((PyList_CheckExact(task->result) || PyTuple_CheckExact(task->result)) && !task->sent &&
        send_sequence(task))
        return;
    if (!task->sent && send_file(task))
        return;
    task->iterator = PyObject_GetIter(task->result); /* new ref; runs its __iter__ */
    wsgi_task_exit_if_forked(task);
    if (!task->iterator) { /* a type with __iter__ is iterable: that raised */
        failed(task, Py_TYPE(task->result)->tp_iter ? "the response's __iter__ raised"
                                                    : "the app's return value is not iterable");
        return;
    }
    iterate(task);
}

void wsgi_run(struct tf_request *req)
{
    struct wsgi_watch watch; /* in the registry while this thread runs req */
    wsgi_watchdog_enter(&watch, req);
    start(req);
    wsgi_watchdog_leave(&watch);
    wsgi_errors_end_part();
    if (wsgi_ctx.cfg->modules_watched)
        wsgi_app_files_note(false); /* a module it imported is listed from now on */
}
