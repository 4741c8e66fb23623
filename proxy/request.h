/* request.h — one HTTP request as every backend sees it: what the client sent
 * (method, target, headers, body spool), and the way back (an MHD response,
 * plus a bounded chunk channel for streamed bodies).
 *
 * Lifetime: reference counted. The I/O side holds one reference from the
 * URI-log callback to the request-completed callback (the one place MHD state
 * is released); a backend task, a streamed response and wsgi.input, until
 * its task ends with the response, its iterable closed (an app may keep it
 * in a reference cycle: what the request holds, a spilled answer, a spooled
 * body, must not wait for Python's collector), hold one each. The last
 * tf_request_unref() frees it, on whichever thread that happens. Nothing in
 * struct tf_request is a Python object, so freeing never needs the GIL.
 *
 * Threads: the request part is written by the I/O thread before dispatch and
 * read-only afterwards. The channel fields are guarded by `lock`. */
#ifndef TF_REQUEST_H
#define TF_REQUEST_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "proxy/body_hash.h"
#include "proxy/spool.h"

struct MHD_Connection;
struct MHD_Response;
struct tf_server;
struct tf_daemon;
struct tf_route;
struct tf_upstream_pin;
struct tf_connection;

struct tf_header {
    const char *name, *value;   /* NUL-terminated, inside tf_request.header_store */
    size_t name_len, value_len;
};

struct tf_chunk {
    struct tf_chunk *next;
    size_t len, off;
    char data[];
};

/* Channel high/low water marks. Past HIGH queued bytes a proxied upstream's
 * transfer parks (its loop goes on to other work) until the reader has
 * drained the queue to LOW. A WSGI body, which stays on its thread (write()
 * and iterables alike), spills to a temporary file instead, up to its cap
 * (--max-spill), and past that waits for the reader: a slow reader costs
 * disk up to the cap, then the app thread. */
#define TF_CHANNEL_HIGH (512u * 1024u)
/* A reader that took nothing for this long has stalled: a WSGI producer at
 * the memory mark spills then; before, it waits for the reader to take
 * bytes (a fast client costs no disk). */
#define TF_READER_STALL_US 20000u
#define TF_CHANNEL_LOW (128u * 1024u)
/* An inline run (server.c) holds its network thread, and nothing of its
 * answer goes out before it returns: a stream of unknown length still
 * producing this long after it began is cut (an event stream must not hold
 * the thread for ever; a finite page of its route that takes this long has
 * stalled the other connections a second already, which a cut page does
 * not make worse than a lost one: 1 ms cut ordinary pages). */
#define TF_INLINE_STREAM_US 1000000u

/* A tap watches one response go by — status, body size and hash, when it
 * ended — for --mirror's comparison. done() is called exactly once, after
 * which the tap is not touched: when the response has ended (on the thread
 * that ends it), or for a client's request, if later, when its connection
 * is done with it (the I/O thread), so that whether the client got the
 * answer whole is known. */
struct tf_tap {
    void (*done)(struct tf_tap *tap);
    void *owner;
    unsigned status;
    char encoding[32];          /* the answer's Content-Encoding, "" for none */
    struct tf_body_hash body;   /* the body's size (body.bytes) and hash; the tap's
                                   owner inits it */
    uint64_t t_end;             /* monotonic us: the body was produced (not yet hashed, for
                                   a file: tf_request_tap_file) */
    bool error;                 /* the body ended with an error */
    char why[128];              /* with error, if known: what went wrong (the backend's
                                   words: tf_request_tap_failed) */
    bool abandoned;             /* the client left before its answer was complete */
    bool held_back;             /* the producer waited for a slow client (parked, or past
                                   --max-spill): its
                                   time includes the client's */
    uint64_t stop_at;           /* a --mirror copy's, atomic, set by its pair (mirror.c)
                                   when the primary ends: monotonic us from which the
                                   copy counts as gone (tf_request_client_gone); 0: never */
    bool stopped;               /* a copy's: it was gone so (under its request's lock) */
};

struct tf_request {
    /* --- written by the I/O thread before dispatch, read-only afterwards --- */
    struct tf_server *server;
    uint64_t id;                /* unique in this process, from 1 */
    struct MHD_Connection *connection;
    struct tf_daemon *daemon;   /* the daemon serving the connection (server_internal.h) */
    char *target;               /* raw request target, as received (absolute-form: its path) */
    char *log_target;           /* target as error-log lines show it (tf_request_target_set) */
    char *sent_target;          /* an absolute-form target as sent, for the access log */
    unsigned refuse_status;     /* set before the headers: refuse the request with it */
    const char *wire_target;    /* the target in libmicrohttpd's read buffer, and its length,
                                   as the URI callback saw it: where the head's layout check
                                   (head_layout.h) starts; only until the head is taken */
    size_t wire_target_len;
    char *method, *version;     /* one block (tf_request_set_line): line_room, or a
                                   malloc'd one owned by method */
    char line_room[24];         /* method and version when they fit: no allocation */
    char target_room[64];       /* the target as received when it fits (tf_request_new):
                                   target or sent_target may point here, never freed */
    bool http11, is_head;
    struct tf_header *headers;
    size_t n_headers;
    char *header_store;         /* the strings, after headers in its allocation */
    size_t head_used;           /* bytes of libmicrohttpd's connection pool the request keeps
                                   while it is answered (tf_head_used); 0: none known */
    char remote_addr[64];
    unsigned remote_port;
    struct tf_spool body;
    uint64_t t_received, t_dispatched, t_responded; /* monotonic us; I/O thread, but the
                                   app thread that takes the request rewrites t_dispatched
                                   (atomic, wsgi/pool.c): the queue wait ends there */
    uint64_t t_ready;           /* monotonic us: handed to its backend, its body (if one is
                                   read first) in; the queue wait starts there; 0: unset,
                                   t_received stands for it */
    bool native;                /* answered by tracfront itself (profiler): not timed */
    const struct tf_route *route; /* the matched route; NULL = the fallback backend */
    int backend;                /* enum prof_backend that answers it */
    struct tf_upstream_pin *pin;/* --upstream-pin: the client connection's upstream link */
    struct tf_connection *conn; /* I/O thread only, until the request-completed callback:
                                   its connection's state (connection.h), or NULL */
    struct tf_tap *tap;         /* --mirror: set before dispatch; NULL otherwise */
    char *remote_user;          /* verified by tracfront's auth (or by the front); owned */
    const char *auth_type;      /* "Basic" or "Digest" when remote_user is set */
    bool auth_checked;          /* I/O thread only: tracfront's auth has looked at it */
    bool tap_streaming, tap_ended; /* guarded by lock */
    bool tap_hashing;           /* guarded by lock: the answer does not end the tap,
                                   tf_request_tap_file does */
    uint64_t upstream_connect_us, upstream_first_byte_us, upstream_total_us; /* set by the
                                   upstream backend before its last channel call */
    int phase;                  /* server.c's state machine; I/O thread only */
    bool ran_inline;            /* I/O thread only: answered inside the call that read it */
    bool answering_inline;      /* atomic: the backend runs inside that call: an answer
                                   needs no resume (the connection is not suspended) */
    bool has_body;              /* Content-Length or chunked framing (even if empty) */
    bool body_too_large;        /* I/O thread only: chunked body past --max-body */
    bool body_failed;           /* I/O thread only: the spool could not store the body */
    bool read_whole;            /* I/O thread only: the access handler's final call came:
                                   nothing of the request is left unread */
    uint64_t discarded;         /* I/O thread only: body bytes dropped */
    struct tf_request *watch_prev, *watch_next; /* I/O thread only: in its daemon's list
                                   of requests looked at once a second (daemon_loop.c) */
    int watch;                  /* I/O thread only: why it is in that list; 0 = it is not */
    bool abort_on_hangup;       /* set before dispatch: a client that hangs up while its
                                   connection is suspended ends the request (a proxied one,
                                   as nginx's proxy_ignore_client_abort off) */
    int hangup_fd;              /* I/O thread only: the client's socket, watched on its
                                   loop for a hang-up (tf_request_watch_hangup); -1: not */

    /* --- the answer: written by the backend before tf_request_respond() --- */
    struct MHD_Response *response;
    unsigned status;
    int file_fd;                /* the answer's body is sent from this file (sendfile), up */
    uint64_t file_end;          /* to this offset; the response owns it. -1: no file */
    bool hangup_ends_stream;    /* a client that closes its connection while its streamed
                                   answer waits for the producer's next bytes ends the
                                   connection then (tf_request_watch_stream_wait): a WSGI
                                   app's, whose thread cannot be woken, so that its next
                                   write() fails, not one after a send to the client failed */

    /* --- streamed body channel, guarded by lock --- */
    pthread_mutex_t lock;
    struct tf_chunk *head, *tail;
    size_t queued;              /* bytes in memory chunks */
    int spill_fd;               /* -1 until a WSGI body outruns a stalled reader */
    uint64_t spill_read, spill_ready, spill_end; /* spilled bytes: read, written, reserved;
                                   byte n is at offset n % spill_cap of the file (a ring) */
    uint64_t spill_cap;         /* the file's size at most (tf_request_write) */
    unsigned spill_writing;     /* reservations being written (write() from two threads) */
    int spill_errno;            /* the spill failed (ENOSPC...): the answer ends with an error */
    unsigned writers_waiting;   /* WSGI producers in tf_request_wait_room */
    uint64_t last_read_us;      /* the reader last took bytes (or the stream began) */
    bool writer_waited;         /* one did (logged once) */
    pthread_cond_t room;        /* signalled for them: drained enough, or the client left */
    uint64_t bytes_out;         /* body bytes handed to MHD (or known size) */
    uint64_t t_first_byte;
    bool stream_end, stream_error, client_gone, reader_suspended, producer_parked;
    bool stream_unsized;        /* the stream has no known length (tf_request_stream_response) */
    bool client_left;           /* the connection ended before the answer was complete */
    bool client_hung_up;        /* the client closed its connection while it was suspended
                                   (abort_on_hangup): the backend ends the request */
    bool stream_peeked;         /* I/O thread: tf_request_peek_half_close done */
    bool sent_all_first;        /* I/O thread: the client had half-closed its side then
                                   (its end of stream is no hang-up, only a reset is) */
    bool interrupted;           /* the producer ran past --request-timeout (action 504):
                                   write() fails, a waiting one at once */

    /* Backend's per-request state and its "run me again" hook (a proxied
     * upstream's): called without the lock when a parked producer may
     * continue (drained, or client gone), or the client hung up. */
    void *backend_state;
    void (*producer_wake)(struct tf_request *req);
    /* Room for the backend's state in the request's own block, so that it
     * need not allocate (wsgi/run.c's task): the backend's while it runs
     * req, which outlives it. */
    _Alignas(16) unsigned char backend_room[160];

    int refs;                   /* atomic */
};

/* Request ids start after base (a worker's are unique across the server).
 * Call before any request. */
void tf_request_id_base(uint64_t base);
/* New request with one reference (the I/O side's). NULL on out of memory. */
struct tf_request *tf_request_new(struct tf_server *server, const char *target);
/* req->target is now target (malloc'ed, owned by req from here, or
 * req->target_room; the old one is the caller's, and freed with req when it
 * becomes sent_target); log_target follows (tf_log_quote): the target itself, or
 * a copy escaped as the access log escapes it when it holds a byte that
 * changes (a byte a terminal could read as a control: tf_check_target lets
 * bytes >= 0x80 through, UTF-8 and C1 controls; a quote; a backslash, so that
 * the text "\x9b" cannot pass for an escaped byte), cut with "…" past
 * TF_LOG_QUOTE_MAX bytes so that the line's reason still fits. Error-log
 * lines name a request by method and log_target.
 * -1 (out of memory: log_target is "-"), else 0. */
int tf_request_target_set(struct tf_request *req, char *target);
/* Copy the method and version into req (line_room when they fit, else one
 * allocation; not req's own strings). 0, or -1 on out of memory. */
int tf_request_set_line(struct tf_request *req, const char *method, const char *version);
/* Room for n headers whose names and values take bytes (NULs included):
 * req->headers and req->header_store, in one allocation. 0, or -1. */
int tf_request_alloc_headers(struct tf_request *req, size_t n, size_t bytes);
/* Resume the suspended connection, from any thread, and have its daemon's
 * loop run (daemon_loop.c). */
void tf_request_resume(struct tf_request *req);
/* The I/O thread, the connection suspended (upstream.c: once it waited a
 * while): with abort_on_hangup,
 * watch the client's socket on its loop for a close or reset (EPOLLRDHUP,
 * EPOLLHUP, EPOLLERR; never for data: a pipelined request is not a close,
 * and libmicrohttpd, which owns the socket, reads it). On one, the watch
 * ends, client_hung_up is set and producer_wake called. No-op otherwise
 * (also when out of memory: the hang-up is then noticed at the next send). */
void tf_request_watch_hangup(struct tf_request *req);
/* The I/O thread: stop watching (libmicrohttpd has the connection back, or
 * ends it: before its socket closes). No-op when not watched. */
void tf_request_unwatch_hangup(struct tf_request *req);
/* The I/O thread, the stream's reader of a hangup_ends_stream request: it
 * waits for the producer's next bytes (the connection suspended), or no
 * longer does. While it waits, the client's socket is looked at once a
 * second (daemon_loop.c); once it has waited half a second, a close there
 * (or a reset) sets client_hung_up and resumes the reader, which ends the
 * connection (logged): the producer's next write fails, as after a failed
 * send. A client whose side had ended before the answer's first bytes (it
 * half-closed after its request, as `nc -q` and some HTTP/1.0 clients do)
 * gets the whole answer: only a reset counts for it, as under gunicorn. */
void tf_request_watch_stream_wait(struct tf_request *req, bool waiting);
/* The I/O thread, at the stream's first read (before any of its bytes):
 * notes whether the client has half-closed already (sent_all_first). */
void tf_request_peek_half_close(struct tf_request *req);
bool tf_request_hung_up(struct tf_request *req);
/* On: a request is given up (its access handler returns MHD_NO, or its
 * answer ends with an error) having logged why, so libmicrohttpd's own line
 * about the close that follows on this thread is not logged; off again when
 * the request completes (daemon_loop.c). */
void tf_daemon_log_explained(bool on);
void tf_request_ref(struct tf_request *req);
void tf_request_unref(struct tf_request *req);

/* A detached copy of a GET/HEAD request for --mirror: same method, target,
 * headers, body and client address, no connection (its answer goes only
 * to its tap). Call once req's body is complete. NULL on out of memory. */
struct tf_request *tf_request_clone_detached(const struct tf_request *req);
/* Backend side: a body a backend answers with in one piece (not through the
 * channel), shown to the tap. */
void tf_request_tap_body(struct tf_request *req, const char *data, size_t len);
/* Backend side, before it answers or finishes: the backend gave no whole
 * answer (the client may get an error page instead); why goes to the
 * comparison's list of failures. */
void tf_request_tap_failed(struct tf_request *req, const char *why);
/* End the tap now (a request answered without its backend, e.g. 503). */
void tf_request_tap_end(struct tf_request *req, unsigned status, bool error);
/* Backend side, a body sent from the file fd (sendfile): hashing it would
 * hold the answer back (a large file takes seconds), so the answer goes
 * first. Call before tf_request_respond(), while fd is still the caller's:
 * returns a duplicate of fd for tf_request_tap_file() and the answer does
 * not end the tap; or -1 (no tap; or no descriptor left: logged, the tap
 * ends with an error at the answer). */
int tf_request_tap_file_prepare(struct tf_request *req, int fd);
/* After tf_request_respond(): show the file's [offset, offset+size) to
 * the tap, then end it. Stops early (an error) when the client leaves
 * before its answer is complete (a copy: when its pair stops it). Closes
 * fd. Blocks while it reads: call without the GIL. */
void tf_request_tap_file(struct tf_request *req, int fd, uint64_t offset, uint64_t size);

/* Look up a request header (case-insensitive, first match); NULL if absent. */
const char *tf_request_header(const struct tf_request *req, const char *name);
/* Every line of a header in turn: start with *pos = 0; NULL after the last.
 * A list header sent on several lines is one list, the lines joined with
 * ", " (RFC 9110 5.3), as the app sees it. */
const char *tf_request_header_next(const struct tf_request *req, const char *name,
                                   size_t *pos);

/* Backend side, any thread: hand the response (status, headers, and for a
 * stream the reader made by tf_request_stream_response()) to the I/O thread.
 * Takes ownership of response. Call exactly once per request. */
void tf_request_respond(struct tf_request *req, struct MHD_Response *response, unsigned status);

/* An MHD response whose body is read from this request's channel (size
 * UINT64_MAX = unknown: chunked on HTTP/1.1, close-delimited on 1.0; such a
 * stream may never end, so an inline run's is cut once it has streamed for
 * TF_INLINE_STREAM_US, see tf_request_write, and the call that made it is
 * not a fast one, see tf_request_note_streamed). Takes a reference that
 * the response releases. NULL on failure. */
struct MHD_Response *tf_request_stream_response(struct tf_request *req, uint64_t size);
/* libmicrohttpd's memory pool per connection (MHD_OPTION_CONNECTION_MEMORY_LIMIT).
 * An answer's head is built in what the request left of it, and one that
 * does not fit closes the connection with nothing sent. */
#define TF_CONNECTION_POOL (32u * 1024u)
/* The longest method served (UPDATEREDIRECTREF, the longest registered, has
 * 17 bytes); longer: 501, before any log line names it. */
#define TF_METHOD_MAX 32u
/* The 404's text for a target outside --mount, which the app never sees
 * (wsgi/run.c; server.c for an upload, refused before its body). */
#define TF_OUTSIDE_MOUNT_DETAIL "This server serves only under its --mount prefix."
/* The most libmicrohttpd 0.9.75 adds to the headers given (build_header_response):
 * "HTTP/1.1 NNN " and a reason of up to 32 bytes, Date (37), "Connection:
 * Keep-Alive" (24), Content-Length with 20 digits (38), the blank line. */
#define TF_HEAD_ADDED 149u
/* The size of an answer's head whose headers take bytes ("Name: value\r\n"
 * each), at most, and whether it fits what req left of its connection's pool. */
size_t tf_request_head_size(size_t bytes);
bool tf_request_head_fits(const struct tf_request *req, size_t bytes);
/* The bytes r's headers take in its head ("Name: value\r\n" each). */
size_t tf_response_headers_size(struct MHD_Response *r);
/* MHD_add_response_header, empty values included: libmicrohttpd 0.9.75
 * refuses "", so it goes out as "Name:  " (the same field value, RFC 9110
 * 5.5: the whitespace around one is not part of it). */
enum MHD_Result tf_response_add_header(struct MHD_Response *r, const char *name,
                                       const char *value);

/* Producer side of the channel for a proxied upstream's body: queue a copy
 * of data; *over_high says the producer should stop (park). Returns 0, or -1
 * when the client has gone (nothing queued). (A WSGI body, the only one with
 * a spill file, goes through tf_request_write.) */
int tf_request_push(struct tf_request *req, const char *data, size_t len, bool *over_high);
/* The producer side for write(), which cannot park: queue what fits of data
 * and return how many bytes that is: memory takes bytes up to the
 * high-water mark, then a temporary file ($TMPDIR) of at most spill_cap bytes
 * (0: no file; UINT64_MAX: no cap), reused as a ring. Fewer than len: call
 * again for the rest; 0: the rest must wait for the reader
 * (tf_request_wait_room). -1 when the client has gone
 * (*err = 0), the request was interrupted (*err = ECANCELED:
 * tf_request_interrupt), or spilling failed (*err = its errno; every later
 * call fails alike, and the answer ends with an error after what was queued
 * before).
 * Call without the GIL for large data. */
ssize_t tf_request_write(struct tf_request *req, const char *data, size_t len,
                         uint64_t spill_cap, int *err);
/* Block until a write() producer may go on (the reader took half of the
 * file, or the memory queue down to the low-water mark), the client has
 * gone or the request was interrupted, sleeping meanwhile. The client's own timeouts (--idle-timeout) bound
 * the wait. Never on a loop's thread; call without the GIL. The first wait
 * of a request is logged, and marks its tap held back. */
void tf_request_wait_room(struct tf_request *req);
/* How long the calling thread waited in tf_request_wait_room since the last
 * call (microseconds; the count restarts): a call's own time is its time
 * without these waits for its client. */
uint64_t tf_request_thread_waited_us(void);
/* Did a request the calling thread ran the app for (tf_request_note_streamed)
 * answer with a stream of unknown length since the last call (the answer
 * restarts)? Such a call is never a fast one: an event stream whose first
 * answers are short may later run for ever. */
bool tf_request_thread_streamed(void);
/* The thread that ran req's app, at its end: marks the thread if req's
 * answer was such a stream, whichever thread of the app wrote it. */
void tf_request_note_streamed(struct tf_request *req);
/* Any thread: the request ran past --request-timeout and its producer is
 * being interrupted (--request-timeout-action 504): a write() waiting for
 * room leaves its wait, and tf_request_write fails from now on. on=false:
 * the interruption came too late to be delivered (the thread's part of the
 * request had ended) and the request goes on. */
void tf_request_interrupt(struct tf_request *req, bool on);
bool tf_request_interrupted(struct tf_request *req);
/* End of body (error = abort the connection instead of ending cleanly: after
 * what was queued, or at once, dropping it, for an interrupted request). */
void tf_request_finish(struct tf_request *req, bool error);
/* Producer side, once the whole body (size bytes) is queued and nothing was
 * read yet: the body as one buffer response (sent with its head in one
 * write), the queue emptied. NULL when the queue does not hold exactly
 * size bytes (some spilled to a file, or read), or out of memory. */
struct MHD_Response *tf_request_whole_response(struct tf_request *req, uint64_t size);
/* Park an upstream's transfer until the reader has drained the queue to the
 * low-water mark: returns true if parked (producer_wake
 * will be called later), false if that happened already or the client left.
 * A parked producer's tap is marked held back. */
bool tf_request_park(struct tf_request *req);
/* A --mirror copy (no client) its pair stopped, as tf_request_client_gone
 * found it: without stopping it now (a copy's own failure says its own). */
bool tf_request_copy_stopped(struct tf_request *req);
/* The client has gone; for a --mirror copy (no client), its pair stopped
 * wanting it (tap->stop_at passed): its backend stops it as it stops a
 * request whose client left, and it stays gone. */
bool tf_request_client_gone(struct tf_request *req);

/* Free the channel's queued chunks (the lock held, or the last reference). */
void tf_request_drop_chunks(struct tf_request *req);

/* I/O side: the client connection ended (request-completed callback);
 * completed: the whole answer was sent. */
void tf_request_connection_closed(struct tf_request *req, bool completed);

#endif
