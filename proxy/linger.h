/* linger.h — a lingering close, as nginx's lingering_close and Apache's
 * lingering close. An answer given before the client's request was read
 * whole (413 for --max-body, a refused upload's 401, a 400, 431 or 503 with
 * Connection: close) is followed by a close while the client may still be
 * sending; the kernel answers a close with unread data by a reset, and a
 * client that sends its whole body before reading (Python's http.client,
 * requests) then gets ECONNRESET or EPIPE instead of the answer. So such a
 * socket is handed here: its sending side is shut down (the answer and a FIN
 * go out) and whatever the client still sends is read and dropped until it
 * closes, bounded in time, in bytes and in sockets. A lingerer belongs to one
 * loop and is used on that loop's thread only. */
#ifndef TF_LINGER_H
#define TF_LINGER_H

#include <stdbool.h>
#include <stdint.h>

struct tf_loop;
struct tf_lingerer;

struct tf_linger_limits {
    unsigned max_sockets;   /* lingering at once; past it a socket is closed at once */
    uint64_t max_bytes;     /* read and dropped per socket, then it is closed */
    uint64_t total_us;      /* per socket, from its hand-over (nginx's lingering_time) */
    uint64_t quiet_us;      /* with nothing read (nginx's lingering_timeout) */
};

/* The limits tracfront uses: 64 sockets per network thread, 64 MiB, 30 s,
 * 5 s without a byte. */
extern const struct tf_linger_limits tf_linger_default;

/* A lingerer on loop (its thread only). Every time it looks at comes from
 * clock (monotonic us; NULL: tf_now_us), called on that thread. NULL on out
 * of memory. */
struct tf_lingerer *tf_linger_new(struct tf_loop *loop, const struct tf_linger_limits *limits,
                                  uint64_t (*clock)(void));
/* Close every socket still lingering (no lingering for them), and free l. */
void tf_linger_free(struct tf_lingerer *l);

/* Take fd (it is closed here in every case): shut down its sending side and
 * drain it until the client closes or a limit is reached. 0 when it
 * lingers, -1 when it was closed at once (max_sockets reached, or out of
 * memory). */
int tf_linger_add(struct tf_lingerer *l, int fd);
/* Close the socket that has lingered longest, at once (room is wanted for
 * a connection or a descriptor). False when none lingers (or l is NULL). */
bool tf_linger_close_oldest(struct tf_lingerer *l);
/* Close the sockets past their time. Returns the ms until a socket's time
 * may be up, or -1 when none lingers. */
long tf_linger_sweep(struct tf_lingerer *l);
/* Sockets lingering now (0 for a NULL l). */
unsigned tf_linger_count(const struct tf_lingerer *l);

#endif
