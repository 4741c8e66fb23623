/* mhd_hello: plain libmicrohttpd hello-world server, the ceiling of the HTTP
 * layer for scripts/bench-hello.
 *
 *   mhd_hello PORT [THREADS]      (THREADS defaults to the number of CPUs)
 *
 * Listens on 127.0.0.1:PORT (0 = any free port) with an internal epoll thread
 * pool of THREADS and answers every request with one persistent response
 * object: 200, "Hello, World!\n", Content-Type: text/plain, Content-Length: 14
 * (MHD adds Content-Length and Date itself, as it does for tracfront).
 * MHD_USE_TURBO is on unless MHD_HELLO_TURBO=0 is set in the environment.
 * Prints "listening on http://127.0.0.1:PORT/" to stderr; SIGINT/SIGTERM stop.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <microhttpd.h>

#if MHD_VERSION < 0x00097002
typedef int MHD_Result_t;
#else
typedef enum MHD_Result MHD_Result_t;
#endif

static const char BODY[] = "Hello, World!\n";
static struct MHD_Response *hello;

static MHD_Result_t answer(void *cls, struct MHD_Connection *conn,
                           const char *url, const char *method,
                           const char *version, const char *upload_data,
                           size_t *upload_data_size, void **req_cls)
{
    static int marker;
    (void)cls; (void)url; (void)method; (void)version; (void)upload_data;
    if (*req_cls == NULL) {          /* headers complete: wait for the body */
        *req_cls = &marker;
        return MHD_YES;
    }
    if (*upload_data_size != 0) {    /* discard any request body */
        *upload_data_size = 0;
        return MHD_YES;
    }
    return MHD_queue_response(conn, MHD_HTTP_OK, hello);
}

int main(int argc, char **argv)
{
    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: %s PORT [THREADS]\n", argv[0]);
        return 2;
    }
    int port = atoi(argv[1]);
    long threads = argc > 2 ? atol(argv[2]) : sysconf(_SC_NPROCESSORS_ONLN);
    if (port < 0 || port > 65535 || threads < 1) {
        fprintf(stderr, "bad PORT or THREADS\n");
        return 2;
    }

    hello = MHD_create_response_from_buffer(sizeof BODY - 1, (void *)BODY,
                                            MHD_RESPMEM_PERSISTENT);
    if (!hello || MHD_add_response_header(hello, "Content-Type",
                                          "text/plain") != MHD_YES) {
        fprintf(stderr, "cannot create response\n");
        return 1;
    }

    /* Block the stop signals before MHD starts its threads, so only sigwait
     * below receives them. */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);
    signal(SIGPIPE, SIG_IGN);

    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((unsigned short)port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);

    const char *turbo_env = getenv("MHD_HELLO_TURBO");
    unsigned int flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL |
                         MHD_USE_ERROR_LOG;
    if (!turbo_env || strcmp(turbo_env, "0") != 0)
        flags |= MHD_USE_TURBO;

    struct MHD_Daemon *d = MHD_start_daemon(
        flags, 0, NULL, NULL, &answer, NULL,
        MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr,
        MHD_OPTION_THREAD_POOL_SIZE, (unsigned int)threads,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned int)10000,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)60,
        MHD_OPTION_LISTEN_BACKLOG_SIZE, (unsigned int)1024,
        MHD_OPTION_END);
    if (!d) {
        fprintf(stderr, "cannot start daemon on 127.0.0.1:%d\n", port);
        return 1;
    }
    const union MHD_DaemonInfo *info =
        MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    fprintf(stderr, "mhd_hello %s: %ld threads, listening on http://127.0.0.1:%u/\n",
            MHD_get_version(), threads, info ? info->port : (unsigned)port);

    int sig;
    sigwait(&stop, &sig);
    MHD_stop_daemon(d);
    MHD_destroy_response(hello);
    return 0;
}
