/* static.c — the static-file backend (see static.h): the rest of the request
 * path names a file under the route's directory, sent with sendfile and with
 * ETag/Last-Modified, 304s and single byte ranges, so assets need neither
 * Python nor an upstream. It must never open anything that is not a regular
 * file under the directory once symlinks are resolved, and never list one. */
#include "proxy/static.h"
#include "proxy/http_check.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "proxy/log.h"
#include "proxy/server.h"

/* An open file under the folder and its validators. */
struct static_file {
    int fd;
    struct stat st;
    char etag[80];          /* quoted, strong */
    char last_modified[64]; /* IMF-fixdate */
};

static const char day_names[7][4] = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" };
static const char month_names[12][4] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                         "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };

static const struct {
    const char *ext, *type;
} mime_types[] = {
    { "html", "text/html; charset=utf-8" },   { "htm", "text/html; charset=utf-8" },
    { "css", "text/css; charset=utf-8" },     { "js", "application/javascript; charset=utf-8" },
    { "mjs", "application/javascript; charset=utf-8" },
    { "json", "application/json" },          { "map", "application/json" },
    { "txt", "text/plain; charset=utf-8" },   { "xml", "text/xml; charset=utf-8" },
    { "svg", "image/svg+xml" },              { "png", "image/png" },
    { "jpg", "image/jpeg" },                 { "jpeg", "image/jpeg" },
    { "gif", "image/gif" },                  { "ico", "image/x-icon" },
    { "webp", "image/webp" },                { "woff", "font/woff" },
    { "woff2", "font/woff2" },               { "ttf", "font/ttf" },
    { "otf", "font/otf" },                   { "pdf", "application/pdf" },
    { "zip", "application/zip" },            { "gz", "application/gzip" },
    { "wasm", "application/wasm" },          { "avif", "image/avif" },
    { "bmp", "image/bmp" },                  { "csv", "text/csv; charset=utf-8" },
    { "mp4", "video/mp4" },                  { "webm", "video/webm" },
    { "mp3", "audio/mpeg" },                 { "ogg", "audio/ogg" },
    { "wav", "audio/wav" },
};

/* --- the path: decode, check, resolve, open ------------------------------ */

/* Percent-decode raw into out (cap bytes). -1 for anything that could name
 * another path than it shows: %00, an encoded '/', a backslash (raw or
 * encoded), a malformed escape, or a result that does not fit. */
static int decode_path(const char *raw, char *out, size_t cap)
{
    size_t n = 0;
    for (const char *p = raw; *p; p++) {
        int c = (unsigned char)*p;
        if (c == '%') {
            int hi = tf_hex_value(p[1]), lo = hi < 0 ? -1 : tf_hex_value(p[2]);
            if (lo < 0)
                return -1;
            c = hi * 16 + lo;
            p += 2;
            if (c == 0 || c == '/')
                return -1;
        }
        if (c == '\\' || n + 1 >= cap)
            return -1;
        out[n++] = (char)c;
    }
    out[n] = '\0';
    return 0;
}

/* True if path is "" or "/"-led segments none of which is "." or "..". */
static bool segments_ok(const char *path)
{
    if (*path && *path != '/')
        return false;
    for (const char *s = path; *s;) {
        s++; /* the '/' */
        size_t len = strcspn(s, "/");
        if ((len == 1 && s[0] == '.') || (len == 2 && s[0] == '.' && s[1] == '.'))
            return false;
        s += len;
    }
    return true;
}

/* The status for a resolution or open() of path that failed with err: 403
 * when the server's user may not read it or search a folder on its way,
 * logged on each request as nginx does; 500 out of memory; 503 out of
 * descriptors; else 404, silent (missing, not a folder, a symlink loop). */
static unsigned failure_status(const struct tf_request *req, const char *path, int err)
{
    char shown[PATH_MAX];
    switch (err) {
    case EACCES: /* both escaped: the client chose the target and part of the path */
        tf_log_error("%s %s: cannot open \"%s\": %s; answered 403 (the server's user needs "
                     "read access to the file and search access to each folder above it)",
                     req->method, req->log_target,
                     tf_log_escape(path, shown, sizeof(shown)), strerror(err));
        return 403;
    case ENOMEM:
        return 500;
    case EMFILE:
    case ENFILE:
        return 503;
    default:
        return 404;
    }
}

/* The static folders that do not resolve now (deleted, a dangling
 * `current` symlink), each logged once until it resolves again. Any I/O
 * thread: the list is guarded by unresolved_lock; n_unresolved lets a
 * request skip the lock while every folder resolves. */
struct unresolved_dir {
    struct unresolved_dir *next;
    char dir[];
};
static pthread_mutex_t unresolved_lock = PTHREAD_MUTEX_INITIALIZER;
static struct unresolved_dir *unresolved;
static atomic_size_t n_unresolved;

/* Whether dir resolves (realpath's errno err, or 0): logged when that
 * changes. Out of memory, an unresolved folder is logged on each request. */
static void note_dir_resolves(const char *dir, int err)
{
    if (!err && atomic_load(&n_unresolved) == 0)
        return;
    pthread_mutex_lock(&unresolved_lock);
    struct unresolved_dir **link = &unresolved;
    while (*link && strcmp((*link)->dir, dir) != 0)
        link = &(*link)->next;
    struct unresolved_dir *u = *link;
    if (err && !u) {
        tf_log_error("static folder %s: %s; its files answer 404 until it is back (said once)",
                     dir, strerror(err));
        if ((u = malloc(sizeof(*u) + strlen(dir) + 1))) {
            strcpy(u->dir, dir);
            u->next = unresolved;
            unresolved = u;
            atomic_fetch_add(&n_unresolved, 1);
        }
    } else if (!err && u) {
        tf_log_info("static folder %s is back; serving its files", dir);
        *link = u->next;
        free(u);
        atomic_fetch_sub(&n_unresolved, 1);
    }
    pthread_mutex_unlock(&unresolved_lock);
}

/* Whether the first len bytes of path name root (rlen bytes, 0 for "/") or
 * something under it. */
static bool lies_under(const char *path, size_t len, const char *root, size_t rlen)
{
    return len >= rlen && !strncmp(path, root, rlen) && (len == rlen || path[rlen] == '/');
}

#define MAX_SYMLINKS 40 /* as Linux's own path lookup */

/* root + path resolved as realpath() does, one component at a time, into
 * resolved (PATH_MAX bytes): root is canonical (rlen bytes, 0 for "/"), path
 * "" or "/"-led. Returns 0 or an errno. On EACCES, *refused_inside says
 * whether the folder that refused a search is root or lies under it; if not,
 * a symlink led out of root, and what the folders out there allow is none of
 * the answer's business (realpath() cannot tell the two apart). */
static int resolve_under(const char *root, size_t rlen, const char *path, char *resolved,
                         bool *refused_inside)
{
    char todo[PATH_MAX], target[PATH_MAX];
    size_t n = rlen; /* resolved[0, n) is canonical, every symlink in it resolved */
    int links = 0;
    *refused_inside = false;
    if (strlen(path) >= sizeof(todo))
        return ENAMETOOLONG;
    memcpy(resolved, root, rlen);
    strcpy(todo, path);
    for (const char *p = todo;;) {
        while (*p == '/')
            p++;
        size_t len = strcspn(p, "/");
        if (len == 0)
            break;
        if (len <= 2 && !strncmp(p, "..", len)) { /* "." or ".." (from a symlink) */
            while (len == 2 && n > 0 && resolved[--n] != '/')
                ;
            p += len;
            continue;
        }
        if (n + 1 + len >= PATH_MAX)
            return ENAMETOOLONG;
        resolved[n] = '/';
        memcpy(resolved + n + 1, p, len);
        resolved[n + 1 + len] = '\0';
        p += len;
        struct stat st;
        if (lstat(resolved, &st) < 0) {
            int err = errno;
            *refused_inside = lies_under(resolved, n, root, rlen);
            return err;
        }
        if (S_ISLNK(st.st_mode)) { /* todo becomes its target + what is left */
            ssize_t k = readlink(resolved, target, sizeof(target));
            if (k < 0)
                return errno;
            size_t rest = strlen(p);
            if (++links > MAX_SYMLINKS)
                return ELOOP;
            if (k == 0 || (size_t)k + rest >= sizeof(todo))
                return k ? ENAMETOOLONG : ENOENT;
            memmove(todo + k, p, rest + 1);
            memcpy(todo, target, (size_t)k);
            p = todo;
            if (target[0] == '/')
                n = 0;
            continue;
        }
        n += 1 + len;
        if (*p && !S_ISDIR(st.st_mode)) /* "file/", "file/x" */
            return ENOTDIR;
    }
    if (n == 0)
        resolved[n++] = '/';
    resolved[n] = '\0';
    return 0;
}

/* Open dir + path if, with every symlink resolved, it lies under dir and is
 * a regular file. Returns 0 with f->fd open and f->st filled, or the HTTP
 * status to answer with (nothing left open). O_NOFOLLOW guards the last
 * component against a swap after resolve_under(); O_NONBLOCK keeps a FIFO from
 * blocking the I/O thread before fstat() rejects it. */
static unsigned open_under(const struct tf_request *req, const char *dir, const char *path,
                           struct static_file *f)
{
    char root[PATH_MAX], full[PATH_MAX], resolved[PATH_MAX];
    if (!realpath(dir, root)) { /* each time: a deploy may have swapped a symlink in dir */
        if (errno == EACCES || errno == ENOMEM)
            return failure_status(req, dir, errno);
        note_dir_resolves(dir, errno);
        return 404;
    }
    note_dir_resolves(dir, 0);
    size_t rlen = strlen(root);
    if (rlen == 1) /* "/" */
        rlen = 0;
    int n = snprintf(full, sizeof(full), "%.*s%s", (int)rlen, root, path);
    if (n < 0 || (size_t)n >= sizeof(full))
        return 404;
    bool refused_inside;
    int err = resolve_under(root, rlen, path, resolved, &refused_inside);
    if (err == EACCES && !refused_inside)
        return 404; /* led out by a symlink: as if it led nowhere */
    if (err)
        return failure_status(req, full, err);
    if (!lies_under(resolved, strlen(resolved), root, rlen))
        return 404;
    f->fd = open(resolved, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY);
    if (f->fd < 0) {
        err = errno;
        struct stat st; /* a folder is a 404, readable or not */
        if (err == EACCES && stat(resolved, &st) == 0 && !S_ISREG(st.st_mode))
            return 404;
        return failure_status(req, resolved, err);
    }
    if (fstat(f->fd, &f->st) < 0 || !S_ISREG(f->st.st_mode)) {
        close(f->fd);
        f->fd = -1;
        return 404;
    }
    return 0;
}

static const char *mime_type(const char *path)
{
    const char *name = strrchr(path, '/');
    const char *dot = strrchr(name ? name : path, '.');
    if (dot)
        for (size_t i = 0; i < sizeof(mime_types) / sizeof(mime_types[0]); i++)
            if (!strcasecmp(dot + 1, mime_types[i].ext))
                return mime_types[i].type;
    return "application/octet-stream";
}

/* --- validators and conditional requests --------------------------------- */

void tf_http_date(time_t t, char *buf, size_t cap)
{
    struct tm tm;
    if (!gmtime_r(&t, &tm)) {
        snprintf(buf, cap, "Thu, 01 Jan 1970 00:00:00 GMT");
        return;
    }
    snprintf(buf, cap, "%s, %02d %s %04d %02d:%02d:%02d GMT", day_names[tm.tm_wday],
             tm.tm_mday, month_names[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min,
             tm.tm_sec);
}

static int month_number(const char *name)
{
    for (int m = 0; m < 12; m++)
        if (!strcmp(name, month_names[m]))
            return m;
    return -1;
}

/* Parse an HTTP date in any of RFC 9110 5.6.7's three forms: IMF-fixdate
 * ("Sun, 06 Nov 1994 08:49:37 GMT"), and the obsolete RFC 850
 * ("Sunday, 06-Nov-94 08:49:37 GMT", a two-digit year taken as 19xx from 70
 * on, as nginx does) and asctime ("Sun Nov  6 08:49:37 1994"). */
static bool parse_http_date(const char *s, time_t *out)
{
    char wday[10], mon[4];
    int day, year, hh, mm, ss, end = -1;
    bool ok = sscanf(s, "%3[A-Za-z], %2d %3[A-Za-z] %4d %2d:%2d:%2d GMT%n", wday, &day, mon,
                     &year, &hh, &mm, &ss, &end) == 7 && end > 0 && !s[end];
    if (!ok) {
        end = -1;
        ok = sscanf(s, "%9[A-Za-z], %2d-%3[A-Za-z]-%2d %2d:%2d:%2d GMT%n", wday, &day, mon,
                    &year, &hh, &mm, &ss, &end) == 7 && end > 0 && !s[end];
        if (ok)
            year += year < 70 ? 2000 : 1900;
    }
    if (!ok) {
        end = -1;
        ok = sscanf(s, "%3[A-Za-z] %3[A-Za-z] %2d %2d:%2d:%2d %4d%n", wday, mon, &day, &hh,
                    &mm, &ss, &year, &end) == 7 && end > 0 && !s[end];
    }
    if (!ok)
        return false;
    int m = month_number(mon);
    if (m < 0 || day < 1 || day > 31 || year < 1970 || hh < 0 || hh > 23 || mm < 0 ||
        mm > 59 || ss < 0 || ss > 60)
        return false;
    struct tm tm = { .tm_year = year - 1900, .tm_mon = m, .tm_mday = day,
                     .tm_hour = hh, .tm_min = mm, .tm_sec = ss };
    time_t t = timegm(&tm);
    if (t == (time_t)-1)
        return false;
    *out = t;
    return true;
}

static void make_validators(struct static_file *f)
{
    snprintf(f->etag, sizeof(f->etag), "\"%" PRIx64 "-%" PRIx64 "-%lx\"",
             (uint64_t)f->st.st_size, (uint64_t)f->st.st_mtim.tv_sec,
             (unsigned long)f->st.st_mtim.tv_nsec);
    tf_http_date(f->st.st_mtim.tv_sec, f->last_modified, sizeof(f->last_modified));
}

/* 1 if the list is "*" or names our tag: compared weakly (a W/ prefix is
 * ignored) for If-None-Match, strongly (a W/ tag never matches) for
 * If-Match; 0 if it does not; -1 if it is malformed before a match (it
 * matches nothing). */
static int etag_list_matches(const char *list, const char *etag, bool strong)
{
    size_t etag_len = strlen(etag);
    for (const char *p = list;;) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        if (*p == '\0')
            return 0;
        if (*p == '*')
            return 1;
        bool weak = !strncmp(p, "W/", 2);
        if (weak)
            p += 2;
        const char *close = *p == '"' ? strchr(p + 1, '"') : NULL;
        if (!close)
            return -1;
        size_t len = (size_t)(close - p) + 1;
        if (len == etag_len && !memcmp(p, etag, len) && !(strong && weak))
            return 1;
        p = close + 1;
    }
}

/* Whether header name (If-Match, If-None-Match) names our tag, its lines
 * read as the one list they make joined with ", " (RFC 9110 5.3): a tag on
 * any line before a malformed member counts. *present: req has the header. */
static bool etag_header_matches(const struct tf_request *req, const char *name,
                                const char *etag, bool strong, bool *present)
{
    size_t pos = 0;
    int found = 0;
    const char *list;
    *present = false;
    while (found == 0 && (list = tf_request_header_next(req, name, &pos))) {
        *present = true;
        found = etag_list_matches(list, etag, strong);
    }
    return found > 0;
}

/* RFC 9110 13.2.2, first: If-Match decides when present; otherwise
 * If-Unmodified-Since (a date it cannot read is ignored). True: 412. */
static bool precondition_failed(const struct tf_request *req, const struct static_file *f)
{
    bool present;
    bool match = etag_header_matches(req, "If-Match", f->etag, true, &present);
    if (present)
        return !match;
    const char *ius = tf_request_header(req, "If-Unmodified-Since");
    time_t t;
    return ius && parse_http_date(ius, &t) && f->st.st_mtim.tv_sec > t;
}

/* RFC 9110 13.2.2: If-None-Match decides when present; otherwise
 * If-Modified-Since, compared in whole seconds. */
static bool not_modified(const struct tf_request *req, const struct static_file *f)
{
    bool present;
    bool match = etag_header_matches(req, "If-None-Match", f->etag, false, &present);
    if (present)
        return match;
    /* a date ahead of the clock is ignored, as Apache does: a client's fast
     * clock would otherwise get 304s for a file changed meanwhile */
    const char *ims = tf_request_header(req, "If-Modified-Since");
    time_t t;
    return ims && parse_http_date(ims, &t) && f->st.st_mtim.tv_sec <= t && t <= time(NULL);
}

/* --- Range ----------------------------------------------------------------- */

enum range_kind { RANGE_NONE, RANGE_OK, RANGE_UNSATISFIABLE };

/* Digits at *p as a number (saturating at UINT64_MAX, which any clamp or
 * "past the end" test then handles); false if there are none. */
static bool parse_count(const char **p, uint64_t *v)
{
    const char *s = *p;
    uint64_t x = 0;
    for (; *s >= '0' && *s <= '9'; s++) {
        unsigned d = (unsigned)(*s - '0');
        x = x > (UINT64_MAX - d) / 10 ? UINT64_MAX : x * 10 + d;
    }
    bool any = s != *p;
    *p = s;
    *v = x;
    return any;
}

/* One "bytes=a-b", "bytes=a-" or "bytes=-n" against a file of size bytes.
 * Several ranges or anything malformed: RANGE_NONE (the whole file). A range
 * that holds no byte of the file is unsatisfiable, except one that starts at
 * 0, which can only be on an empty file ("bytes=0-", "-5", even "-0"): that
 * is the whole (empty) file, a 200, as nginx answers (RFC 9110 14.2 lets a
 * server ignore Range). */
static enum range_kind parse_range(const char *h, uint64_t size, uint64_t *first,
                                   uint64_t *last)
{
    if (strncasecmp(h, "bytes=", 6) != 0 || strchr(h, ','))
        return RANGE_NONE;
    const char *p = h + 6;
    while (*p == ' ' || *p == '\t')
        p++;
    uint64_t a, b;
    bool has_a = parse_count(&p, &a);
    if (*p++ != '-')
        return RANGE_NONE;
    bool has_b = parse_count(&p, &b);
    while (*p == ' ' || *p == '\t')
        p++;
    if (*p != '\0' || (!has_a && !has_b) || (has_a && has_b && b < a))
        return RANGE_NONE;
    uint64_t start = has_a ? a : b < size ? size - b : 0; /* suffix: the last b bytes */
    if (start >= size)
        return start == 0 ? RANGE_NONE : RANGE_UNSATISFIABLE;
    *first = start;
    *last = has_a && has_b && b < size - 1 ? b : size - 1;
    return RANGE_OK;
}

/* If-Range: the Range applies only if the validator is our (strong) ETag or
 * exactly our Last-Modified second. */
static bool if_range_allows(const char *if_range, const struct static_file *f)
{
    if (!if_range)
        return true;
    if (if_range[0] == '"')
        return strcmp(if_range, f->etag) == 0;
    time_t t;
    return strncmp(if_range, "W/", 2) != 0 && parse_http_date(if_range, &t) &&
           t == f->st.st_mtim.tv_sec;
}

static enum range_kind requested_range(const struct tf_request *req,
                                       const struct static_file *f, uint64_t *first,
                                       uint64_t *last)
{
    const char *range = tf_request_header(req, "Range");
    if (!range || !if_range_allows(tf_request_header(req, "If-Range"), f))
        return RANGE_NONE;
    return parse_range(range, (uint64_t)f->st.st_size, first, last);
}

/* --- answers --------------------------------------------------------------- */

static int error_answer(struct tf_static_answer *out, unsigned status, const char *detail,
                        bool head)
{
    out->status = status;
    out->response = tf_error_response(status, detail, false, &out->body_len);
    if (head)
        out->body_len = 0;
    return out->response ? 0 : -1;
}

/* Add headers (name, value pairs, NULL-terminated); on failure destroy the
 * response and return -1. */
static int add_headers(struct tf_static_answer *out, const char *const *nv)
{
    for (; nv[0]; nv += 2)
        if (MHD_add_response_header(out->response, nv[0], nv[1]) != MHD_YES) {
            MHD_destroy_response(out->response);
            out->response = NULL;
            return -1;
        }
    return 0;
}

/* The body from fd (sendfile), or an empty buffer for an empty one. Takes fd:
 * the response closes it, or it is closed here. */
static struct MHD_Response *body_response(int fd, uint64_t offset, uint64_t len)
{
    struct MHD_Response *r;
    if (len == 0) {
        close(fd);
        return MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
    }
    r = MHD_create_response_from_fd_at_offset64(len, fd, offset);
    if (!r)
        close(fd);
    return r;
}

/* 304, 416, 206 or 200 for an open regular file. Takes f->fd. */
static int file_answer(const struct tf_request *req, const char *path, struct static_file *f,
                       bool head, struct tf_static_answer *out)
{
    make_validators(f);
    uint64_t size = (uint64_t)f->st.st_size, first = 0, last = 0;
    const char *validators[] = { "ETag", f->etag, "Last-Modified", f->last_modified, NULL };
    if (precondition_failed(req, f)) {
        close(f->fd);
        if (error_answer(out, 412, "The file does not match the request's If-Match or "
                         "If-Unmodified-Since.", head) < 0)
            return -1;
        return add_headers(out, validators);
    }
    enum range_kind range = RANGE_NONE;
    bool unchanged = not_modified(req, f);
    if (!unchanged)
        range = requested_range(req, f, &first, &last);
    if (range == RANGE_UNSATISFIABLE)
        close(f->fd);
    if (unchanged) { /* no body; its length, if any, is the 200's (RFC 9110 8.6), not 0 */
        out->status = 304;
        out->response = body_response(f->fd, 0, size);
        return out->response ? add_headers(out, validators) : -1;
    }
    if (range == RANGE_UNSATISFIABLE) {
        char content_range[48];
        snprintf(content_range, sizeof(content_range), "bytes */%" PRIu64, size);
        if (error_answer(out, 416, "The requested range is not within the file.", head) < 0)
            return -1;
        const char *nv[] = { "Content-Range", content_range, NULL };
        return add_headers(out, nv);
    }
    uint64_t len = range == RANGE_OK ? last - first + 1 : size;
    out->status = range == RANGE_OK ? 206 : 200;
    out->body_len = head ? 0 : len;
    out->response = body_response(f->fd, range == RANGE_OK ? first : 0, len);
    if (!out->response)
        return -1;
    if (!head && len) {
        out->file_fd = f->fd;
        out->file_end = first + len;
    }
    char content_range[80];
    snprintf(content_range, sizeof(content_range), "bytes %" PRIu64 "-%" PRIu64 "/%" PRIu64,
             first, last, size);
    const char *nv[] = { "Content-Type", mime_type(path), "ETag", f->etag,
                         "Last-Modified", f->last_modified, "Accept-Ranges", "bytes",
                         range == RANGE_OK ? "Content-Range" : NULL, content_range, NULL };
    return add_headers(out, nv);
}

static bool is_head(const struct tf_request *req)
{
    return req->is_head || (req->method && !strcmp(req->method, "HEAD"));
}

bool tf_static_takes_method(const struct tf_request *req)
{
    return is_head(req) || (req->method && !strcmp(req->method, "GET"));
}

int tf_static_answer(const char *dir, const char *rel_raw, const struct tf_request *req,
                     struct tf_static_answer *out)
{
    memset(out, 0, sizeof(*out));
    out->file_fd = -1;
    bool head = is_head(req);
    if (!tf_static_takes_method(req)) {
        if (error_answer(out, 405, "Only GET and HEAD are allowed here.", false) < 0)
            return -1;
        const char *nv[] = { "Allow", "GET, HEAD", NULL };
        return add_headers(out, nv);
    }
    char path[PATH_MAX];
    if (decode_path(rel_raw ? rel_raw : "", path, sizeof(path)) < 0 || !segments_ok(path))
        return error_answer(out, 404, NULL, head);
    struct static_file f = { .fd = -1 };
    unsigned status = open_under(req, dir, path, &f);
    if (status == 503)
        return error_answer(out, 503, "Too many open files; try again.", head);
    if (status)
        return error_answer(out, status, NULL, head);
    return file_answer(req, path, &f, head, out);
}
