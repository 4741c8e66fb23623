/* mirror.h — --mirror: a GET or HEAD going to its primary backend gets a
 * detached copy sent to the other one (app ↔ upstream); both answers are
 * watched by taps, and when both have ended the pair is recorded in the
 * profiler's comparison (profiler/compare.h). Copies in flight are bounded
 * (--mirror-queue), and copies to the app to half its --threads (at least
 * one); past that they are dropped and counted, so mirroring never queues
 * the primary, or a request for an app route, behind its copies. A copy
 * is stopped when its primary's client leaves, or a while after its
 * primary ended (mirror.c: stop_copy). Copies are not requests in flight:
 * a stop abandons them. */
#ifndef TF_MIRROR_H
#define TF_MIRROR_H

#include <stdbool.h>

#include "proxy/config.h"
#include "proxy/request.h"
#include "proxy/route.h"

struct tf_backends;
struct tf_mirror;

/* NULL on out of memory. cfg and backends must outlive it. */
struct tf_mirror *tf_mirror_new(const struct tf_config *cfg, const struct tf_backends *backends);
/* The server is done with m; pairs still in flight (copies a stop
 * abandoned) keep it until they end. */
void tf_mirror_free(struct tf_mirror *m);
/* The backend that answers clients (TF_ROUTE_APP or TF_ROUTE_UPSTREAM). */
enum tf_backend_kind tf_mirror_primary(const struct tf_mirror *m);
/* Is req one that gets a copy (a GET or HEAD), room in the queue aside? */
bool tf_mirror_copies(const struct tf_request *req);
/* I/O thread, before req is dispatched to the primary: tap it and send the
 * copy, when tf_mirror_copies and the queue has room. */
void tf_mirror_attach(struct tf_mirror *m, struct tf_request *req);

#endif
