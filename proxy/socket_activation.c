/* socket_activation.c — see socket_activation.h; the protocol as
 * sd_listen_fds(3) gives it: the variables name this process (LISTEN_PID),
 * the sockets start at fd 3 (SD_LISTEN_FDS_START). */
#include "proxy/socket_activation.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

enum { FIRST_FD = 3 };

/* A whole decimal number of text, or -1. */
static long number(const char *text)
{
    char *end;
    errno = 0;
    long n = text && *text ? strtol(text, &end, 10) : -1;
    return errno || n < 0 || *end ? -1 : n;
}

/* 0 if fd is a listening TCP socket, its address in host and *port. */
static int check_socket(int fd, char *host, size_t hostlen, unsigned *port, char *err,
                        size_t errlen)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    int type = 0, listening = 0;
    socklen_t ilen = sizeof(int);
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISSOCK(st.st_mode) ||
        getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &ilen) < 0 || type != SOCK_STREAM ||
        getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &ilen) < 0 || !listening ||
        getsockname(fd, (struct sockaddr *)&ss, &len) < 0 ||
        (ss.ss_family != AF_INET && ss.ss_family != AF_INET6)) {
        snprintf(err, errlen, "LISTEN_FDS: descriptor %d, which systemd should have passed, is "
                 "not a listening TCP socket (the .socket unit's ListenStream= must be an address "
                 "and port, and Accept=no)", fd);
        return -1;
    }
    const void *addr = ss.ss_family == AF_INET ? (const void *)&((struct sockaddr_in *)&ss)->sin_addr
                                               : (const void *)&((struct sockaddr_in6 *)&ss)->sin6_addr;
    inet_ntop(ss.ss_family, addr, host, (socklen_t)hostlen);
    *port = ntohs(ss.ss_family == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port
                                          : ((struct sockaddr_in6 *)&ss)->sin6_port);
    return 0;
}

int tf_socket_activation_take(char *host, size_t hostlen, unsigned *port, char *err,
                              size_t errlen)
{
    long pid = number(getenv("LISTEN_PID")), n = number(getenv("LISTEN_FDS"));
    bool ours = pid == (long)getpid();
    unsetenv("LISTEN_PID");
    unsetenv("LISTEN_FDS");
    unsetenv("LISTEN_FDNAMES");
    if (!ours || n <= 0)
        return -1;
    if (n > 1) {
        snprintf(err, errlen, "LISTEN_FDS=%ld: systemd passed %ld sockets, and tracfront serves "
                 "one (one ListenStream= in the .socket unit)", n, n);
        return -2;
    }
    if (check_socket(FIRST_FD, host, hostlen, port, err, errlen) < 0)
        return -2;
    int flags = fcntl(FIRST_FD, F_GETFL);
    if (flags < 0 || fcntl(FIRST_FD, F_SETFL, flags | O_NONBLOCK) < 0 ||
        fcntl(FIRST_FD, F_SETFD, FD_CLOEXEC) < 0) {
        snprintf(err, errlen, "LISTEN_FDS: cannot set up descriptor %d: %s", FIRST_FD,
                 strerror(errno));
        return -2;
    }
    return FIRST_FD;
}
