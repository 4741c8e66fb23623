/* front_profile.h — the /__profile__ controls of a front (--workers): one
 * profile for the whole server, merged from every worker on demand. */
#ifndef TF_FRONT_PROFILE_H
#define TF_FRONT_PROFILE_H

#include "proxy/server.h"
#include "proxy/workers.h"

/* Controls for tf_server_set_profiler(); w and cfg must outlive them. With
 * latency accounting on (--profile-latency), a thread pulls each worker's
 * latency every few seconds, which the front keeps in case the worker dies
 * without handing it over. */
const struct tf_profiler_controls *tf_front_profile_controls(struct tf_workers *w,
                                                             const struct tf_config *cfg);
/* At the stop, before the workers are told to go: the pulling thread's and
 * the pages' requests to the workers give up at once, then and from then
 * on, and the thread is joined. A page (or POST save) that would then
 * leave out a worker still running answers 503 (export and table fail
 * with EAGAIN). The workers' hand-overs are still taken (the stop's
 * profile files are made of them). Before w and cfg are freed. */
void tf_front_profile_stop(void);
/* Main thread: a second SIGINT/SIGTERM ended the workers' stop before
 * every one had handed its profile over; from now on the export fails
 * with EINTR, so that no profile file is written from a part of them. */
void tf_front_profile_cut(void);

#endif
