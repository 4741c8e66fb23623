/* fastpath.h — which WSGI requests may run inline: inside the network
 * thread's libmicrohttpd call that read them, with no suspend and resume of
 * their connection (three system calls fewer per request).
 *
 * A request runs inline when the app answered its method and target quickly
 * (under WSGI_FASTPATH_LONG_US) on each of their last WSGI_FASTPATH_STREAK
 * calls, and no inline call elsewhere has been running that long. A call
 * predicted fast that runs long anyway holds up the other connections of
 * its network thread until it returns; it resets its key's streak, so the
 * next ones run away from the loop again (see pool.c). Pure logic, no
 * Python; lock-free, callable from any thread. */
#ifndef WSGI_FASTPATH_H
#define WSGI_FASTPATH_H

#include <stdbool.h>
#include <stdint.h>

#define WSGI_FASTPATH_LONG_US 1000 /* as long as a loop may be away before a rescue */
#define WSGI_FASTPATH_STREAK 8     /* fast calls in a row before a key runs inline */
#define WSGI_FASTPATH_RUNNERS 128  /* network threads tracked (loop indexes below this) */
#define WSGI_FASTPATH_SLOT(key) (((key) >> 48) & 4095) /* keys in one slot evict each other */

/* The key of a request: its method and target, the query included (what a
 * call costs may depend on it: Trac's /query?..., /timeline?...). */
uint64_t wsgi_fastpath_key(const char *method, const char *target);

/* May a request with this key run inline now (monotonic us)? */
bool wsgi_fastpath_ok(uint64_t key, uint64_t now_us);

/* An app call for key took this long: a fast one extends its streak, a long
 * one ends it. */
void wsgi_fastpath_note(uint64_t key, uint64_t took_us);

/* An inline call starts (0; -1 when runner is not tracked: do not run
 * inline) and ends on network thread number runner. */
int wsgi_fastpath_begin(unsigned runner, uint64_t now_us);
void wsgi_fastpath_end(unsigned runner);

/* Forget every streak (tests). */
void wsgi_fastpath_reset(void);

#endif
