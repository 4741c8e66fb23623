/* signal_stack.h — an alternate signal stack for each thread that runs the
 * app's Python code (app threads, network threads running a request).
 *
 * faulthandler (enabled at start, see interp.c) writes every thread's Python
 * stack when a fatal signal arrives, its handler running on an alternate
 * signal stack (SA_ONSTACK) so that it can run after a stack overflow. But
 * sigaltstack() is per thread, and faulthandler gives one only to the thread
 * that enabled it: a stack overflow on any other thread left the kernel no
 * room for the handler, and the process died with nothing logged. */
#ifndef WSGI_SIGNAL_STACK_H
#define WSGI_SIGNAL_STACK_H

/* Give the calling thread an alternate signal stack, unless it has one (a
 * sanitizer's, say); without memory it stays without. */
void wsgi_signal_stack_add(void);
/* Before the calling thread ends: take back and free the stack
 * wsgi_signal_stack_add() gave it, if any. */
void wsgi_signal_stack_remove(void);

#endif
