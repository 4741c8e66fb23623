/* signal_stack.c — see signal_stack.h. */
#define _GNU_SOURCE
#include "wsgi/signal_stack.h"

#include <signal.h>
#include <stdlib.h>

/* faulthandler's own is 2 * SIGSTKSZ; its handler writes the stacks with
 * write(2) and then re-raises the signal. */
#define MIN_SIZE (64u * 1024u)

static _Thread_local void *own_stack; /* the one given here, NULL if none */

void wsgi_signal_stack_add(void)
{
    stack_t current;
    if (own_stack || sigaltstack(NULL, &current) != 0 || !(current.ss_flags & SS_DISABLE))
        return;
    size_t size = 4 * (size_t)SIGSTKSZ > MIN_SIZE ? 4 * (size_t)SIGSTKSZ : MIN_SIZE;
    stack_t st = { .ss_sp = malloc(size), .ss_size = size, .ss_flags = 0 };
    if (st.ss_sp && sigaltstack(&st, NULL) == 0)
        own_stack = st.ss_sp;
    else
        free(st.ss_sp);
}

void wsgi_signal_stack_remove(void)
{
    stack_t current, off = { .ss_flags = SS_DISABLE };
    if (!own_stack || sigaltstack(NULL, &current) != 0)
        return;
    if (current.ss_sp == own_stack && !(current.ss_flags & SS_DISABLE) &&
        sigaltstack(&off, NULL) != 0)
        return; /* still in use (a handler runs on it): leave it */
    free(own_stack);
    own_stack = NULL;
}
