/* service_notify.c — sd_notify(3)'s datagram to NOTIFY_SOCKET, as systemd
 * documents it: a path, or an abstract socket's name after '@'. The socket
 * is addressed at each send (sendto), so a path is checked against the user
 * tracfront runs as then (--user: after the switch; systemd's own socket is
 * writable by all). */
#include "proxy/service_notify.h"

#include <errno.h>
#include <stddef.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "proxy/log.h"

static struct sockaddr_un target;
static socklen_t target_len; /* 0: no NOTIFY_SOCKET */
static char target_name[sizeof(target.sun_path) + 1];
static bool failure_said;

void tf_notify_take(void)
{
    const char *name = getenv("NOTIFY_SOCKET");
    size_t n = name ? strlen(name) : 0;
    if (n >= 2 && n <= sizeof(target.sun_path) && (name[0] == '/' || name[0] == '@')) {
        target.sun_family = AF_UNIX;
        memcpy(target.sun_path, name, n);
        if (name[0] == '@')
            target.sun_path[0] = '\0'; /* abstract: the length counts the name, no NUL */
        target_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n +
                                 (name[0] == '/' && n < sizeof(target.sun_path)));
        memcpy(target_name, name, n + 1);
    } else if (name) {
        snprintf(target_name, sizeof(target_name), "%.*s", (int)sizeof(target.sun_path), name);
        target_len = 0;
        tf_log_warn("NOTIFY_SOCKET '%s' is not a socket's path or '@' name: systemd is not "
                    "told when tracfront is ready", target_name);
    }
    unsetenv("NOTIFY_SOCKET");
}

void tf_notify(const char *state)
{
    if (!target_len)
        return;
    char message[1024];
    int len = snprintf(message, sizeof(message), "%s\nMAINPID=%d", state, (int)getpid());
    if (len < 0 || (size_t)len >= sizeof(message))
        return; /* the states sent are short */
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    bool sent = fd >= 0 && sendto(fd, message, (size_t)len, MSG_NOSIGNAL,
                                  (const struct sockaddr *)&target, target_len) == len;
    int why = errno;
    if (fd >= 0)
        close(fd);
    if (!sent && !failure_said) {
        failure_said = true;
        tf_log_warn("NOTIFY_SOCKET '%s': cannot send systemd's notification (%.*s): %s",
                    target_name, (int)strcspn(state, "\n"), state, strerror(why));
    }
}

void tf_notify_reloading(void)
{
    struct timespec now;
    char state[64];
    clock_gettime(CLOCK_MONOTONIC, &now);
    snprintf(state, sizeof(state), "RELOADING=1\nMONOTONIC_USEC=%llu",
             (unsigned long long)now.tv_sec * 1000000ull + (unsigned long long)now.tv_nsec / 1000);
    tf_notify(state);
}
