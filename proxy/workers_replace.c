/* workers_replace.c — a worker whose watchdog interrupted a request is
 * replaced alone, as a reload replaces a generation (workers.h:
 * tf_workers_ask_replace), with a bound for an app whose start-up outlasts
 * --request-timeout. */
#include "proxy/workers.h"
#include "proxy/workers_internal.h"

#include <signal.h>
#include <string.h>

#include "proxy/log.h"
#include "proxy/platform.h"

/* Replace worker slot of the current generation the way a reload replaces
 * a generation, with a generation of one: once the new worker is ready, it
 * takes the old one's place in the current generation, and the old one, in
 * the new one's generation, retires (take_over: it stops accepting, the new
 * one starts, and it finishes its requests, hands its profile over and
 * exits). false if a SIGINT/SIGTERM came while the new one started
 * (pending again; the old one stays). */
static bool replace_one(struct tf_workers *w, unsigned slot, uint64_t completed)
{
    char err[512] = "";
    int stop;
    struct generation *g = w->current;
    pid_t old_pid = g->workers[slot].pid;
    struct generation *fresh = tf_workers_spawn(w, 1, &stop, err, sizeof(err));
    if (!fresh) {
        if (!stop)
            tf_log_error("worker %d: the watchdog interrupted a request in it, but no worker "
                         "could start to replace it (%s); it keeps serving", (int)old_pid, err);
        return !stop;
    }
    pthread_mutex_lock(&w->lock); /* the control server lists the workers */
    struct worker old = g->workers[slot];
    g->workers[slot] = fresh->workers[0];
    g->workers[slot].gen = g;
    /* one more in a row replaced before completing a request, or none */
    g->workers[slot].replaced_unserved = completed ? 0 : old.replaced_unserved + 1;
    fresh->workers[0] = old;
    fresh->workers[0].gen = fresh;
    fresh->number = g->number;
    fresh->one_replaced = true;
    fresh->next = w->retired;
    w->retired = fresh;
    pthread_mutex_unlock(&w->lock);
    bool gone = tf_workers_has_ended(old_pid); /* died while its replacement started */
    tf_workers_take_over(w, g, fresh, "replacement");
    tf_log_warn("worker %d was replaced by worker %d: the watchdog interrupted a request in it "
                "(--request-timeout-action 504), which may have left the app half done there; "
                "%s", (int)old_pid, (int)g->workers[slot].pid,
                gone ? "it had exited meanwhile" : "it finishes its other requests and exits");
    return true;
}

/* May worker k, which asked after its watchdog interrupted a request with
 * completed requests done, be replaced? Not when the REPLACED_UNSERVED_MAX
 * workers before it in its place were replaced before they completed a
 * request, and it has completed none either (said once per worker). */
static bool may_replace(const struct tf_workers *w, struct worker *k, uint64_t completed)
{
    if (completed)
        k->replaced_unserved = 0;
    else if (k->replaced_unserved >= REPLACED_UNSERVED_MAX) {
        if (!k->kept)
            tf_log_error("worker %d is not replaced, although the watchdog interrupted a request "
                         "in it: the %u workers before it in its place were each interrupted "
                         "before they completed a request (does the app's start-up take longer "
                         "than --request-timeout %gs?); it keeps serving with what the interrupt "
                         "left half done, and is replaced at an interrupt once it has completed "
                         "a request (SIGHUP replaces every worker now)", (int)k->pid,
                         k->replaced_unserved, w->cfg->request_timeout);
        k->kept = true;
        return false;
    }
    return true; /* replace_one counts it once a worker has replaced it */
}

bool tf_workers_replace_interrupted(struct tf_workers *w)
{
    for (unsigned i = 0; w->current && i < w->current->n; i++) {
        struct worker *k = &w->current->workers[i];
        pthread_mutex_lock(&w->lock);
        bool asked = k->replace_asked && !k->exited;
        uint64_t completed = k->completed;
        k->replace_asked = false;
        pthread_mutex_unlock(&w->lock);
        if (asked && may_replace(w, k, completed) && !replace_one(w, i, completed))
            return false;
    }
    return true;
}

bool tf_workers_ask_replace(struct tf_workers *w, const char *origin, uint64_t completed)
{
    struct generation *g;
    struct worker *k = NULL;
    pthread_mutex_lock(&w->lock);
    for (unsigned i = 0; (g = w->current) && !k && i < g->n; i++)
        if (!g->workers[i].exited && !strcmp(g->workers[i].origin, origin))
            k = &g->workers[i];
    if (k) {
        k->replace_asked = true;
        k->completed = completed;
    }
    pthread_mutex_unlock(&w->lock);
    if (k) /* the main thread ticks on SIGCHLD: it replaces it now, not in a second */
        tf_signals_requeue(SIGCHLD);
    return k != NULL;
}
