/* upstream.h — the upstream backend: requests forwarded through libcurl to
 * --upstream. Each network thread's loop drives a curl multi handle, so a
 * request is forwarded by the thread that read it, and connections to the
 * upstream are pooled per thread and kept alive across requests; bodies
 * stream both ways through the request's channel with back-pressure (a slow
 * client pauses its transfer). Never touches Python. */
#ifndef TF_UPSTREAM_H
#define TF_UPSTREAM_H

#include <stddef.h>

#include "proxy/config.h"
#include "proxy/request.h"

struct tf_upstream;

struct tf_loop;

/* Set up a curl multi handle on each loop. cfg and the loops must outlive
 * the upstream. NULL with err on failure. */
struct tf_upstream *tf_upstream_start(const struct tf_config *cfg, struct tf_loop **loops,
                                      unsigned n_loops, char *err, size_t errlen);
/* A tf_dispatch_fn: forward req (a reference is taken). Returns 0, or -1 on
 * out of memory (the reference stays the caller's). */
int tf_upstream_submit(void *upstream, struct tf_request *req);
/* After the loops have stopped: abort what is still running, close the
 * pooled connections. */
void tf_upstream_stop(struct tf_upstream *up);
/* Log how many failed --mirror copies went unsaid since the last such line
 * (they are said once a second at most), if any: tf_upstream_stop does, and
 * a stop that exits without it must. */
void tf_upstream_say_unsaid(void);

/* --upstream-pin: one upstream connection for one client connection. The
 * server makes one when a client connects (req->pin for its requests) and
 * releases it when the client leaves; the upstream connection then closes. */
struct tf_upstream_pin *tf_upstream_pin_new(struct tf_upstream *up);
void tf_upstream_pin_release(struct tf_upstream_pin *pin);

#endif
