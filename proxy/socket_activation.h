/* socket_activation.h — the listening socket systemd passes (sd_listen_fds(3):
 * a .socket unit's ListenStream=, fd 3, named by LISTEN_PID and LISTEN_FDS),
 * served instead of binding --listen: systemd holds the port (below 1024
 * without any capability) and keeps it across restarts, queueing the
 * connections that arrive meanwhile. */
#ifndef TF_SOCKET_ACTIVATION_H
#define TF_SOCKET_ACTIVATION_H

#include <stddef.h>

/* Take the passed socket, and the variables out of the environment (the
 * app, its programs and the workers must not take it again). Returns -1
 * if none is passed to this process; the socket (non-blocking,
 * close-on-exec), its numeric host in host and its port in *port; or -2
 * with err saying why the socket passed cannot be served (more than one, not
 * a listening TCP socket). */
int tf_socket_activation_take(char *host, size_t hostlen, unsigned *port, char *err,
                              size_t errlen);

#endif
