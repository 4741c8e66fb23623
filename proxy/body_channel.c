/* body_channel.c — a request's streamed-body channel (see request.h).
 * The channel is a linked list of copied chunks between one producer (an app
 * thread) and one reader (libmicrohttpd's content-reader callback on an I/O
 * thread). An empty queue suspends the connection instead of busy-waiting; a
 * full one parks a proxied upstream's transfer, so a slow reader holds
 * memory, not a thread. A WSGI producer (write() or an iterable: it stays on
 * its thread) waits at that mark while the reader keeps taking bytes, goes
 * on into a file of at most --max-spill bytes once it stalls, and then
 * sleeps until the reader has taken half of it: a slow reader holds that
 * much disk, then the app thread, never more. */
#include "proxy/request.h"

#include <errno.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "proxy/log.h"
#include "proxy/platform.h"

void tf_request_drop_chunks(struct tf_request *req)
{
    struct tf_chunk *c = req->head;
    while (c) {
        struct tf_chunk *next = c->next;
        free(c);
        c = next;
    }
    req->head = req->tail = NULL;
    req->queued = 0;
}

/* The body failed after its headers went out: the client must see the
 * connection end. libmicrohttpd 0.9.75 does not always close it after
 * END_WITH_ERROR (the client then waits for the idle timeout), so shut the
 * socket down here; libmicrohttpd still owns and closes the descriptor (its
 * loop sees the socket fail, also when this runs on another thread). With
 * the lock held and the client not gone (the connection still exists). */
static void abort_connection(struct tf_request *req)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(req->connection, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (ci)
        shutdown(ci->connect_fd, SHUT_RDWR);
}

/* With the lock held: copy spilled bytes (always newer than the memory
 * chunks) after the memory ones, up to the ring's end (the rest comes on the
 * next call). Returns bytes copied, or -1 on a read error. */
static ssize_t read_spill(struct tf_request *req, char *buf, size_t max)
{
    if (req->spill_read >= req->spill_ready)
        return 0;
    uint64_t at = req->spill_read % req->spill_cap;
    uint64_t avail = req->spill_ready - req->spill_read;
    if (avail > req->spill_cap - at)
        avail = req->spill_cap - at;
    size_t want = avail < max ? (size_t)avail : max;
    ssize_t got;
    do
        got = pread(req->spill_fd, buf, want, (off_t)at);
    while (got < 0 && errno == EINTR);
    if (got <= 0)
        return -1;
    req->spill_read += (uint64_t)got;
    if (req->spill_read == req->spill_end) /* drained: a new ring from the file's start */
        req->spill_read = req->spill_ready = req->spill_end = 0;
    return got;
}

/* With the lock held: may a write() producer waiting for room go on? Once
 * the reader has taken half of the file (not at every read: a producer woken
 * for a few KiB would sleep again at once), or without a file, once it has
 * drained the memory queue to the low-water mark. */
static bool writer_may_go_on(const struct tf_request *req)
{
    if (req->spill_end == 0)
        return req->queued <= TF_CHANNEL_LOW;
    return req->spill_end - req->spill_read <= req->spill_cap / 2;
}

/* With the lock held: is the reader taking bytes (not stalled)? Never for an
 * inline run's answer: its reader is the thread that runs it. */
static bool reader_keeps_up(const struct tf_request *req)
{
    return !__atomic_load_n(&req->answering_inline, __ATOMIC_SEQ_CST) &&
           tf_now_us() - req->last_read_us < TF_READER_STALL_US;
}

/* With the lock held: may a parked producer (an upstream's) go on? Once the
 * reader has drained the memory queue to the low-water mark. */
static bool producer_may_go_on(const struct tf_request *req)
{
    return req->queued <= TF_CHANNEL_LOW;
}

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    (void)pos;
    struct tf_request *req = cls;
    size_t n = 0;
    bool wake = false;
    tf_request_unwatch_hangup(req); /* libmicrohttpd's again */
    if (req->hangup_ends_stream && !req->stream_peeked)
        tf_request_peek_half_close(req);
    if (req->hangup_ends_stream)
        tf_request_watch_stream_wait(req, false);
    pthread_mutex_lock(&req->lock);
    while (n < max && req->head) {
        struct tf_chunk *c = req->head;
        size_t take = c->len - c->off;
        if (take > max - n)
            take = max - n;
        memcpy(buf + n, c->data + c->off, take);
        n += take;
        c->off += take;
        if (c->off == c->len) {
            req->head = c->next;
            if (!req->head)
                req->tail = NULL;
            free(c);
        }
    }
    req->queued -= n;
    while (n < max && !req->head) { /* twice where the ring wraps */
        ssize_t got = read_spill(req, buf + n, max - n);
        if (got < 0) {
            pthread_mutex_unlock(&req->lock);
            tf_log_error("%s %s: cannot read the response spill file: %m", req->method,
                         req->log_target);
            tf_daemon_log_explained(true);
            return MHD_CONTENT_READER_END_WITH_ERROR;
        }
        if (got == 0)
            break;
        n += (size_t)got;
    }
    if (n)
        req->last_read_us = tf_now_us();
    if (req->writers_waiting && writer_may_go_on(req))
        pthread_cond_broadcast(&req->room);
    if (n == 0) {
        ssize_t rc = 0;
        bool hung_up = false, waits = false;
        if (req->stream_error || req->spill_errno) { /* a failed spill: what it lost is a gap */
            rc = MHD_CONTENT_READER_END_WITH_ERROR; /* the backend logged why */
            tf_daemon_log_explained(true);
            abort_connection(req);
        }
        else if (req->stream_end)
            rc = MHD_CONTENT_READER_END_OF_STREAM;
        else if ((hung_up = req->hangup_ends_stream && req->client_hung_up))
            rc = MHD_CONTENT_READER_END_WITH_ERROR; /* the producer's next write fails */
        else {
            req->reader_suspended = true;
            MHD_suspend_connection(req->connection);
            waits = req->hangup_ends_stream;
        }
        pthread_mutex_unlock(&req->lock);
        if (hung_up) { /* libmicrohttpd's line would call it the application's error */
            tf_log_info("%s %s: the client closed its connection while the answer waited for "
                        "its next bytes", req->method, req->log_target);
            tf_daemon_log_explained(true);
        }
        if (waits)
            tf_request_watch_stream_wait(req, true);
        return rc;
    }
    if (!req->t_first_byte)
        req->t_first_byte = tf_now_us();
    req->bytes_out += n;
    if (req->producer_parked && producer_may_go_on(req)) {
        req->producer_parked = false;
        wake = true;
    }
    pthread_mutex_unlock(&req->lock);
    if (wake)
        req->producer_wake(req);
    return (ssize_t)n;
}

static void stream_free(void *cls)
{
    tf_request_unref(cls);
}

static __thread bool thread_streamed; /* tf_request_thread_streamed */

bool tf_request_thread_streamed(void)
{
    bool streamed = thread_streamed;
    thread_streamed = false;
    return streamed;
}

void tf_request_note_streamed(struct tf_request *req)
{
    if (__atomic_load_n(&req->stream_unsized, __ATOMIC_ACQUIRE)) /* no lock: every request */
        thread_streamed = true;
}

struct MHD_Response *tf_request_stream_response(struct tf_request *req, uint64_t size)
{
    /* libmicrohttpd allocates and zeroes the block per response: no bigger
     * than the body needs */
    size_t block = size < 64 * 1024 ? (size_t)size + 1 : 64 * 1024;
    struct MHD_Response *r = MHD_create_response_from_callback(
        size == UINT64_MAX ? MHD_SIZE_UNKNOWN : size, block, stream_read, req, stream_free);
    if (r)
        tf_request_ref(req);
    pthread_mutex_lock(&req->lock);
    req->tap_streaming = r != NULL;
    __atomic_store_n(&req->stream_unsized, size == UINT64_MAX, __ATOMIC_RELEASE);
    req->last_read_us = tf_now_us(); /* the reader's grace starts with the stream */
    pthread_mutex_unlock(&req->lock);
    return r;
}

struct MHD_Response *tf_request_whole_response(struct tf_request *req, uint64_t size)
{
    pthread_mutex_lock(&req->lock);
    bool all_here = req->spill_end == 0 && req->queued == size; /* nothing read or spilled */
    char *body = all_here ? malloc(size ? (size_t)size : 1) : NULL;
    if (!body) {
        pthread_mutex_unlock(&req->lock);
        return NULL;
    }
    size_t n = 0;
    for (struct tf_chunk *c = req->head; c; c = c->next) {
        memcpy(body + n, c->data + c->off, c->len - c->off);
        n += c->len - c->off;
    }
    struct MHD_Response *r = MHD_create_response_from_buffer(size, body, MHD_RESPMEM_MUST_FREE);
    if (r) {
        tf_request_drop_chunks(req);
        req->bytes_out = size;
    } else {
        free(body);
    }
    pthread_mutex_unlock(&req->lock);
    return r;
}

/* Unlock, resuming the connection if the reader was waiting for data. Call
 * with the lock held, after queueing data or ending the stream. */
static void unlock_and_wake_reader(struct tf_request *req)
{
    bool resume = req->reader_suspended;
    req->reader_suspended = false;
    pthread_mutex_unlock(&req->lock);
    if (resume)
        tf_request_resume(req);
}

/* Write [off, off+n) of the ring of cap bytes: at off % cap, wrapping to
 * the file's start. 0, or -1 with errno. */
static int pwrite_ring(int fd, const char *p, size_t n, uint64_t off, uint64_t cap)
{
    while (n > 0) {
        uint64_t at = off % cap;
        size_t piece = cap - at < n ? (size_t)(cap - at) : n;
        ssize_t w = pwrite(fd, p, piece, (off_t)at);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            if (w == 0)
                errno = EIO;
            return -1;
        }
        p += w;
        n -= (size_t)w;
        off += (uint64_t)w;
    }
    return 0;
}

/* With the lock held (released on return): the spill failed with error (an
 * errno). Later writes fail alike; the reader ends the answer with an error
 * once it has sent what came before, and is woken for that. */
static __thread uint64_t thread_waited_us; /* tf_request_thread_waited_us */

static ssize_t spill_failed(struct tf_request *req, int error, const char *what, int *err)
{
    req->spill_errno = *err = error;
    unlock_and_wake_reader(req);
    tf_log_error("%s %s: %s: %s", req->method, req->log_target, what, strerror(error));
    return -1;
}

/* With the lock held (released on return): append what fits of data to the
 * spill file, and return how much that is. The lock is not held while
 * writing: the reserved range [off, off+len) is ours, the reader reads only
 * up to spill_ready, and a reservation never reaches bytes it has not read.
 * write() from two threads at once: spill_ready moves only when no
 * reservation is still being written (one finishing first would otherwise
 * mark the other's bytes ready). */
static ssize_t spill(struct tf_request *req, const char *data, size_t len, int *err)
{
    if (req->spill_fd < 0 && (req->spill_fd = tf_tempfile()) < 0)
        return spill_failed(req, errno, "cannot create a file to buffer the response for a "
                                        "slow client", err);
    uint64_t room = req->spill_cap - (req->spill_end - req->spill_read);
    if (len > room)
        len = (size_t)room;
    if (len == 0 && __atomic_load_n(&req->answering_inline, __ATOMIC_SEQ_CST)) {
        thread_waited_us++; /* the call is not a fast one: no longer inline */
        return spill_failed(req, EFBIG, "an inline call's answer passed --max-spill before it "
                            "could be sent: cut (its target runs away from the network thread "
                            "from now on)", err);
    }
    uint64_t off = req->spill_end, cap = req->spill_cap;
    req->spill_end += len;
    req->spill_writing++;
    int fd = req->spill_fd;
    pthread_mutex_unlock(&req->lock);
    int rc = len ? pwrite_ring(fd, data, len, off, cap) : 0;
    int error = errno;
    pthread_mutex_lock(&req->lock);
    req->spill_writing--;
    if (rc < 0)
        return spill_failed(req, error, "cannot buffer the response for a slow client", err);
    if (req->spill_writing == 0 && !req->spill_errno) /* never over a range that failed */
        req->spill_ready = req->spill_end;
    unlock_and_wake_reader(req);
    return (ssize_t)len;
}

/* Append a copy of data to the memory queue. 0; 1 when write()'s file holds
 * bytes (read after the memory queue, so data would overtake them: nothing
 * queued); or -1 when the client has gone or out of memory. */
static int queue_copy(struct tf_request *req, const char *data, size_t len, bool *over_high)
{
    struct tf_chunk *c = malloc(sizeof(*c) + len);
    if (!c)
        return -1;
    c->next = NULL;
    c->len = len;
    c->off = 0;
    memcpy(c->data, data, len);
    pthread_mutex_lock(&req->lock);
    if (req->client_gone || req->spill_end > 0) {
        int rc = req->client_gone ? -1 : 1;
        pthread_mutex_unlock(&req->lock);
        free(c);
        return rc;
    }
    if (req->tail)
        req->tail->next = c;
    else
        req->head = c;
    req->tail = c;
    req->queued += len;
    *over_high = req->queued >= TF_CHANNEL_HIGH;
    unlock_and_wake_reader(req);
    return 0;
}

int tf_request_push(struct tf_request *req, const char *data, size_t len, bool *over_high)
{
    *over_high = false;
    if (!req->connection) { /* detached: the tap is the only reader */
        if (tf_request_client_gone(req)) /* a copy stopped */
            return -1;
        tf_request_tap_body(req, data, len);
        return 0;
    }
    if (len == 0)
        return tf_request_client_gone(req) ? -1 : 0;
    int rc = queue_copy(req, data, len, over_high);
    if (rc == 0)
        tf_request_tap_body(req, data, len); /* an ended tap's pair is gone: not fed */
    return rc;
}

/* With the lock held: a --mirror copy whose stop time has come is gone from
 * now on. Its tap, and so stop_at, lives until the tap ends (tap_ended). */
static void copy_may_stop(struct tf_request *req)
{
    if (req->connection || req->client_gone || !req->tap || req->tap_ended)
        return;
    uint64_t at = __atomic_load_n(&req->tap->stop_at, __ATOMIC_ACQUIRE);
    if (at && tf_now_us() >= at)
        req->client_gone = req->tap->stopped = true;
}

/* With the lock held: is this an inline run's stream of unknown length
 * (an event stream may never end) that began over TF_INLINE_STREAM_US ago?
 * Its reader is the thread that runs it, which holds the other connections
 * of its network thread and cannot hand the body over: it is cut instead.
 * last_read_us is the stream's start, since no reader ran since. */
static bool inline_stream_overdue(const struct tf_request *req)
{
    return req->stream_unsized && __atomic_load_n(&req->answering_inline, __ATOMIC_SEQ_CST) &&
           tf_now_us() - req->last_read_us >= TF_INLINE_STREAM_US;
}

ssize_t tf_request_write(struct tf_request *req, const char *data, size_t len,
                         uint64_t spill_cap, int *err)
{
    *err = 0;
    if (!req->connection) { /* detached: the tap is the only reader */
        /* under the lock: write() from another thread of the app may race
         * the task's own end of the tap, after which its pair may be freed */
        pthread_mutex_lock(&req->lock);
        copy_may_stop(req); /* a copy stopped */
        bool gone = req->client_gone;
        if (!gone && req->tap && !req->tap_ended)
            tf_body_hash_feed(&req->tap->body, data, len);
        pthread_mutex_unlock(&req->lock);
        return gone ? -1 : (ssize_t)len;
    }
    pthread_mutex_lock(&req->lock);
    if (req->client_gone || req->interrupted || req->spill_errno) {
        *err = req->client_gone ? 0 : req->interrupted ? ECANCELED : req->spill_errno;
        pthread_mutex_unlock(&req->lock);
        return -1;
    }
    if (inline_stream_overdue(req)) { /* the reader ends the connection, as after a spill error */
        req->spill_errno = *err = ETIMEDOUT;
        unlock_and_wake_reader(req);
        tf_log_warn("%s %s: an inline call's answer of unknown length was still streaming a "
                    "second after it began: cut, not to hold the other connections of its "
                    "network thread for ever (its target runs away from that thread from now "
                    "on)", req->method, req->log_target);
        return -1;
    }
    /* Once spilling, everything goes to the file until the reader drains it,
     * so bytes stay in order; a ring's size is set when it starts, never
     * under bytes in it. */
    bool spilling = req->spill_end > 0;
    if (!spilling)
        req->spill_cap = spill_cap;
    ssize_t took;
    if (!spilling && req->queued < TF_CHANNEL_HIGH) {
        /* Memory up to the mark only, however large the write: the rest goes
         * to the file, or waits (the caller's loop). Only the reader lowers
         * queued meanwhile. */
        size_t fits = TF_CHANNEL_HIGH - req->queued;
        took = (ssize_t)(len < fits ? len : fits);
        pthread_mutex_unlock(&req->lock);
        bool over_high;
        int rc = queue_copy(req, data, (size_t)took, &over_high);
        if (rc < 0) {
            *err = tf_request_client_gone(req) ? 0 : ENOMEM;
            return -1;
        }
        if (rc == 1) /* another thread's write() started the file meanwhile: behind it */
            return tf_request_write(req, data, len, spill_cap, err);
    } else if (req->spill_cap == 0 || (!spilling && reader_keeps_up(req))) {
        pthread_mutex_unlock(&req->lock); /* wait at the memory queue's mark */
        took = 0;
    } else if ((took = spill(req, data, len, err)) < 0) {
        return -1;
    }
    tf_request_tap_body(req, data, (size_t)took);
    return took;
}


uint64_t tf_request_thread_waited_us(void)
{
    uint64_t us = thread_waited_us;
    thread_waited_us = 0;
    return us;
}

/* With the lock held: wait while the memory queue is full and its reader
 * keeps taking bytes, in slices, so that a stall is seen. */
static void wait_for_reader(struct tf_request *req)
{
    while (!req->client_gone && !req->interrupted && !writer_may_go_on(req) &&
           reader_keeps_up(req)) {
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_nsec += TF_READER_STALL_US * 250; /* a quarter of it, in ns */
        if (until.tv_nsec >= 1000000000) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000;
        }
        req->writers_waiting++;
        pthread_cond_timedwait(&req->room, &req->lock, &until);
        req->writers_waiting--;
    }
}

static void wait_room(struct tf_request *req);

void tf_request_wait_room(struct tf_request *req)
{
    uint64_t t0 = tf_now_us();
    wait_room(req);
    thread_waited_us += tf_now_us() - t0;
}

static void wait_room(struct tf_request *req)
{
    pthread_mutex_lock(&req->lock);
    if (req->spill_end == 0 && req->spill_cap > 0) { /* a fast reader: no file yet */
        wait_for_reader(req);
        pthread_mutex_unlock(&req->lock);
        return;
    }
    bool first = !req->client_gone && !req->interrupted && !writer_may_go_on(req) &&
                 !req->writer_waited;
    if (first) {
        req->writer_waited = true;
        /* The producer's own tap: the client sets its pace now. */
        if (req->tap)
            req->tap->held_back = true;
    }
    bool in_file = req->spill_end > 0;
    uint64_t cap = req->spill_cap;
    pthread_mutex_unlock(&req->lock);
    if (first && in_file)
        tf_log_info("%s %s: the response waits for the client: %llu bytes in a file (--max-spill)",
                    req->method, req->log_target, (unsigned long long)cap);
    else if (first)
        tf_log_info("%s %s: the response waits for the client: %u KiB in memory (--max-spill 0)",
                    req->method, req->log_target, TF_CHANNEL_HIGH / 1024);
    pthread_mutex_lock(&req->lock);
    while (!req->client_gone && !req->interrupted && !writer_may_go_on(req)) {
        req->writers_waiting++;
        pthread_cond_wait(&req->room, &req->lock);
        req->writers_waiting--;
    }
    pthread_mutex_unlock(&req->lock);
}

void tf_request_interrupt(struct tf_request *req, bool on)
{
    pthread_mutex_lock(&req->lock);
    req->interrupted = on;
    pthread_cond_broadcast(&req->room);
    pthread_mutex_unlock(&req->lock);
}

bool tf_request_interrupted(struct tf_request *req)
{
    pthread_mutex_lock(&req->lock);
    bool on = req->interrupted;
    pthread_mutex_unlock(&req->lock);
    return on;
}

void tf_request_finish(struct tf_request *req, bool error)
{
    if (req->tap)
        tf_request_tap_end(req, 0, error);
    if (!req->connection)
        return;
    pthread_mutex_lock(&req->lock);
    req->stream_end = true;
    req->stream_error = error;
    /* A stuck request's answer is cut anyway: its client, which may have
     * stopped reading (that is why write() waited), need not take what is
     * queued first. The connection is alive until client_gone. */
    if (error && req->interrupted && !req->client_gone)
        abort_connection(req);
    unlock_and_wake_reader(req);
}

bool tf_request_park(struct tf_request *req)
{
    pthread_mutex_lock(&req->lock);
    bool parked = !req->client_gone && !producer_may_go_on(req);
    req->producer_parked = parked;
    /* The producer's own tap: the client sets its pace now. Under the lock:
     * once it is released, a wake may run the producer elsewhere and end it. */
    if (parked && req->tap)
        req->tap->held_back = true;
    pthread_mutex_unlock(&req->lock);
    return parked;
}

bool tf_request_hung_up(struct tf_request *req)
{
    pthread_mutex_lock(&req->lock);
    bool hung_up = req->client_hung_up;
    pthread_mutex_unlock(&req->lock);
    return hung_up;
}


bool tf_request_copy_stopped(struct tf_request *req)
{
    pthread_mutex_lock(&req->lock);
    bool stopped = !req->connection && req->tap && !req->tap_ended && req->tap->stopped;
    pthread_mutex_unlock(&req->lock);
    return stopped;
}

bool tf_request_client_gone(struct tf_request *req)
{
    pthread_mutex_lock(&req->lock);
    copy_may_stop(req);
    bool gone = req->client_gone;
    pthread_mutex_unlock(&req->lock);
    return gone;
}

void tf_request_connection_closed(struct tf_request *req, bool completed)
{
    pthread_mutex_lock(&req->lock);
    req->client_gone = true;
    req->client_left = !completed;
    bool tap_done = req->tap && req->tap_ended; /* it waited for this (tf_request_tap_end) */
    if (tap_done) /* a backend that broke first closes the connection too: that is its
                     failure (tap->error), not a client that left */
        req->tap->abandoned = !completed && (!req->tap->error || req->client_hung_up);
    req->reader_suspended = false;
    tf_request_drop_chunks(req);
    bool wake = req->producer_parked;
    req->producer_parked = false;
    pthread_cond_broadcast(&req->room); /* a waiting write() fails now */
    /* an answer that came after the connection's last turn: never queued */
    struct MHD_Response *unsent = req->response;
    req->response = NULL;
    pthread_mutex_unlock(&req->lock);
    if (unsent)
        MHD_destroy_response(unsent);
    if (tap_done)
        req->tap->done(req->tap);
    if (wake)
        req->producer_wake(req);
}
