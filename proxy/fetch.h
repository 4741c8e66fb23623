/* fetch.h — one blocking HTTP request to a process of this server on
 * loopback (a front asking its workers, a worker relaying to its front).
 * For small internal answers only: the caller's thread waits for it. */
#ifndef TF_FETCH_H
#define TF_FETCH_H

#include <stddef.h>

struct tf_fetched {
    unsigned status;          /* 0: no answer */
    char *body;               /* malloc'd, NUL-terminated; may be NULL when empty */
    size_t len;
    char *content_type, *location, *content_disposition, *allow; /* malloc'd, or NULL */
};

/* method and path ("/__profile__/tree?x") to origin ("http://127.0.0.1:PORT").
 * Returns 0, or -1 when there was no answer (f->status 0). Free f either way. */
int tf_fetch(const char *origin, const char *method, const char *path, struct tf_fetched *f);
void tf_fetched_free(struct tf_fetched *f);

#endif
