/* static.h — the static-file backend (--static PREFIX=DIR): one GET or HEAD
 * answered from a file under DIR, with validators, conditional requests and
 * single byte ranges. It runs on the connection's I/O thread and never blocks
 * on anything but local file-system calls. */
#ifndef TF_STATIC_H
#define TF_STATIC_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "proxy/request.h"

struct MHD_Response;

struct tf_static_answer {
    struct MHD_Response *response; /* NULL only on out of memory */
    unsigned status;               /* 200, 206, 304, 403, 404, 405, 416, ... */
    uint64_t body_len;             /* bytes of body that will be sent (0 for HEAD/304) */
    int file_fd;                   /* they come from this file (owned by the response), */
    uint64_t file_end;             /* up to this offset; -1: no body from a file */
};

/* Answer req (GET or HEAD, else 405 with Allow: GET, HEAD) from the file
 * named by rel_raw under dir.
 * dir: the folder's absolute path. Its symlinks are resolved on every call,
 * so a deploy that swaps one (current -> releases/42) is served at once.
 * rel_raw: the raw request path after the route prefix, still
 * percent-encoded, query string removed, "" or beginning with "/".
 * The file is only ever one that lies under dir once every symlink is
 * resolved; anything else (dot segments, %2F, %00, backslash, directories,
 * symlinks leading out, whatever the folders they lead into allow) is a 404.
 * A file the server's user may not read, or one it cannot reach because dir,
 * a folder above it or one under it refuses a search, is a 403 with a line
 * in the error log; a dir that stops resolving answers 404, logged once
 * until it resolves again.
 * The response's body is sent from the file
 * descriptor (sendfile); the caller queues it and destroys it.
 * Returns 0 with *out filled; -1 only on out of memory (out->response NULL,
 * no descriptor left open). */
int tf_static_answer(const char *dir, const char *rel_raw, const struct tf_request *req,
                     struct tf_static_answer *out);

/* Does the static backend take req's method (GET or HEAD)? Else
 * tf_static_answer's answer is the 405, whatever the file: the server may
 * give it before the body is read. */
bool tf_static_takes_method(const struct tf_request *req);

/* t as an HTTP date (IMF-fixdate, "Sun, 06 Nov 1994 08:49:37 GMT"), with
 * English names whatever the locale; cap 30 holds it. Also for the answers
 * written by hand (tf_connection_refuse). */
void tf_http_date(time_t t, char *buf, size_t cap);

#endif
