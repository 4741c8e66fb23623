/* fetch.h — blocking HTTP requests to processes of this server on loopback
 * (a front asking its workers, a worker relaying to its front): one, or one
 * to each of several at once. For small internal answers only: the
 * caller's thread waits for them. */
#ifndef TF_FETCH_H
#define TF_FETCH_H

#include <stdbool.h>
#include <stddef.h>

struct tf_fetched {
    unsigned status;          /* 0: no answer */
    bool refused;             /* no answer: nothing listens at origin (connection refused) */
    char *body;               /* malloc'd, NUL-terminated; may be NULL when empty */
    size_t len;
    /* malloc'd, or NULL */
    char *content_type, *location, *content_disposition, *allow, *retry_after;
};

/* What an answer is waited for: a worker's (a call tree included: it is
 * made with the GIL, which a request may hold for a while), or the
 * front's to a worker's hand-over; a worker stepping down (a reload) has
 * --graceful-timeout in all. */
#define TF_FETCH_LIMIT_MS 10000
/* What a worker waits for its front's answer to a page it relays: the
 * front may ask every worker (TF_FETCH_LIMIT_MS), then make the page from
 * their trees, which takes seconds for a big one. */
#define TF_FETCH_RELAY_MS 120000
/* What the front's main thread waits for its workers' answers (stop
 * accepting, at a stop or a reload; --reload's list of files): one stopped
 * (SIGSTOP) or stuck worker must not hold the others' stop up for long. */
#define TF_FETCH_QUICK_MS 2000

/* method and path ("/__profile__/tree?x") to origin ("http://127.0.0.1:PORT"),
 * the answer awaited limit_ms. Returns 0, or -1 when there was no answer
 * (f->status 0). Free f either way. */
int tf_fetch(const char *origin, const char *method, const char *path, long limit_ms,
             struct tf_fetched *f);
/* The same request to each of n origins at once (one curl multi handle),
 * the answers in f[i] (free each either way), each within limit_ms. While
 * they run, watch_fd (unless -1) is watched too: when it is readable,
 * give_up(arg) must take what it holds and say whether to give up those
 * still unanswered (their status stays 0). Returns how many answered. */
size_t tf_fetch_all(const char *const *origins, size_t n, const char *method, const char *path,
                    long limit_ms, struct tf_fetched *f, int watch_fd,
                    bool (*give_up)(void *arg), void *arg);
/* tf_fetch_all on the thread that reads the signal pipe (the main thread),
 * so that a wait for the workers never keeps it from its signals: a
 * SIGINT/SIGTERM meanwhile gives up on the rest. The signals it took are
 * put back for the next tf_signals_wait. Returns that SIGINT/SIGTERM, or 0. */
int tf_fetch_all_or_signal(const char *const *origins, size_t n, const char *method,
                           const char *path, long limit_ms, struct tf_fetched *f);
void tf_fetched_free(struct tf_fetched *f);

#endif
