/* gc_freeze.h — --gc-freeze: keep Python's cyclic garbage collector from
 * walking the app's long-lived objects again and again.
 *
 * A Trac process holds some 60,000 container objects once warm (environment,
 * components, templates, caches), and each request allocates enough to set off
 * full collections that walk all of them: measured on Trac 1.6's WikiStart,
 * 10 of 18 ms per request were the collector's. gc.freeze() moves every
 * object alive at that moment into a permanent generation the collector skips
 * (reference counting still frees them). tracfront does it after the 1st,
 * 10th, 100th, 1000th and 10000th request of the process, so what Trac loads
 * lazily (a second project, a plugin's first use) is frozen too, each time
 * after a full collection so that no garbage is frozen with it. The price: a
 * reference cycle among frozen objects that later dies is never collected
 * (as in any process that calls gc.freeze(); Instagram's write-up is the
 * classic one), and that includes the objects of requests running on other
 * app threads at the moment of a freeze: at most five times per process.
 * Off by default. */
#ifndef WSGI_GC_FREEZE_H
#define WSGI_GC_FREEZE_H

/* GIL held: a request of the app has ended. */
void wsgi_gc_request_done(void);

#endif
