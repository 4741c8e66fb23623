/* unavailable.h — a front with no live worker (they died, and new ones
 * cannot start) answers each new connection on its public socket itself,
 * with a 503 and Retry-After, instead of leaving clients in the socket's
 * backlog where nobody accepts. It serves nothing else and never touches
 * the socket's ownership: the workers take it over again. */
#ifndef TF_UNAVAILABLE_H
#define TF_UNAVAILABLE_H

struct tf_unavailable;

/* Start answering on listen_fd (the public socket, which stays open and
 * the caller's) on a thread of its own; retry_after_s is the Retry-After.
 * NULL on failure (nothing started). Main thread. */
struct tf_unavailable *tf_unavailable_start(int listen_fd, unsigned retry_after_s);
/* Stop accepting at once (a worker accepts from now on); the requests it
 * has (an upload's body being drained) get their 503 on a thread of its
 * own, for up to FINISH_S (unavailable.c), then it is stopped and freed.
 * NULL is fine. Main thread. */
void tf_unavailable_stop(struct tf_unavailable *u);

#endif
