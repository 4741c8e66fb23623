/* forward.h — what crosses the proxy, both ways, as nginx and HAProxy do it:
 * the request target and headers sent upstream (hop-by-hop removed,
 * X-Forwarded-*, Forwarded and Via added) and the upstream's response head,
 * checked for framing that could smuggle and filtered on its way back.
 * No I/O and no threads here: pure functions over one request, unit-tested. */
#ifndef TF_FORWARD_H
#define TF_FORWARD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proxy/config.h"
#include "proxy/http_check.h"
#include "proxy/request.h"

/* Largest upstream response head passed on (libmicrohttpd must fit it in
 * the connection's 32 KiB pool with the rest of the connection state). */
#define TF_RESPONSE_HEAD_MAX (16u * 1024u)

struct curl_slist;
struct MHD_Response;

/* The request target to send: as received, with the route's prefix replaced
 * by the upstream URL's path when it has one. New string, NULL on OOM. */
char *tf_forward_target(const struct tf_request *req, const struct tf_config *cfg);

/* Request headers for curl (CURLOPT_HTTPHEADER). NULL on out of memory. */
struct curl_slist *tf_forward_request_headers(const struct tf_request *req,
                                              const struct tf_config *cfg);

/* The head of the upstream's final response, fed line by line as curl's
 * header callback sees them (interim 1xx heads are skipped). */
struct tf_response_head {
    unsigned status;
    char *lines;                /* "name\0value\0" records of the final head */
    size_t len, cap;
    struct tf_framing framing;  /* of the head so far: Content-Length, Transfer-Encoding */
    bool in_interim, done;
    const char *invalid;        /* why the head was refused, NULL while valid */
};

void tf_response_head_init(struct tf_response_head *h);
/* One raw line, terminator included. Returns 1 when a final head is complete,
 * 0 to go on, -1 when the head is invalid (h->invalid says why). */
int tf_response_head_feed(struct tf_response_head *h, const char *line, size_t len);
/* Add the end-to-end headers to r: hop-by-hop and framing headers dropped,
 * Location and the URL in Refresh mapped back to the client's prefix (as
 * nginx's proxy_redirect does), Via appended. */
void tf_response_head_apply(const struct tf_response_head *h, struct MHD_Response *r,
                            const struct tf_request *req, const struct tf_config *cfg);
void tf_response_head_free(struct tf_response_head *h);

#endif
