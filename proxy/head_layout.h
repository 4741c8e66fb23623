/* head_layout.h — did libmicrohttpd hand out the whole request head?
 *
 * libmicrohttpd 0.9.75 parses a head in place, line after line, in its read
 * buffer: each line's CR LF becomes two NULs, the space after the method
 * one, the colon after a header's name one, and what it hands out (method,
 * target, version, names, values) are pointers into that buffer, their
 * lengths counted up to the next NUL. So a NUL byte sent inside the head
 * cuts a piece short, a folded line (obs-fold) is glued onto the previous
 * line's name in another place, and a line with an empty name or one that
 * starts with NUL ends the head early — what follows becomes the next
 * request (README: Known limits) — with nothing said. The pointers show it:
 * in a head taken whole, each piece starts where the one before it ended
 * (with only the spaces the syntax allows between them), and the empty line
 * ends where libmicrohttpd says the head ends
 * (MHD_CONNECTION_INFO_REQUEST_HEADER_SIZE). Pure pointer arithmetic over
 * the bytes of that head: nothing outside it is read.
 *
 * Only CR LF ends a line here: a bare LF (which RFC 9112 2.2 lets a server
 * accept or refuse) is refused too. */
#ifndef TF_HEAD_LAYOUT_H
#define TF_HEAD_LAYOUT_H

#include <stdbool.h>
#include <stddef.h>

struct tf_head_layout {
    const char *next; /* where the next header line must start; NULL once a piece is off */
    const char *end;  /* just past the head's empty line */
};

/* The request line as libmicrohttpd left it: method (the line's start),
 * target as its URI callback saw it (target_len bytes then: strlen), and
 * version; head_size: libmicrohttpd's count of the head's bytes from the
 * method on, its empty line included. */
void tf_head_layout_start(struct tf_head_layout *l, const char *method, const char *target,
                          size_t target_len, const char *version, size_t head_size);
/* Each header, in the order received (MHD_get_connection_values_n). */
void tf_head_layout_header(struct tf_head_layout *l, const char *name, size_t name_len,
                           const char *value, size_t value_len);
/* After the last header: true when every piece was where it belongs and an
 * empty line ends the head where libmicrohttpd says it ends. */
bool tf_head_layout_whole(const struct tf_head_layout *l);

/* Whether the libmicrohttpd this process runs lays heads out as above
 * (0.9.75, which Debian 12 ships); with another, the check is not made. */
bool tf_head_layout_known(void);

#endif
