/* log.c — error and access logs (see log.h). A line is built in a stack buffer
 * and written with one write() (under its log's lock on a pipe); client-supplied strings
 * are escaped as Apache does (\" \\ \xhh) so a request can never forge a log
 * line. Never holds a log's lock while waiting for anything but the write. */
#define _GNU_SOURCE /* dup3 */
#include "proxy/log.h"
#include "proxy/log_stamp.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static int error_fd = 2;
static int access_fd = -1;
static char *error_path, *access_path; /* files to reopen: set at open, main thread */
/* The stderr tracfront was started with ("-"), on a close-on-exec copy
 * above 2 taken at open, before the app loads. An app may close descriptors
 * 1 and 2 (os.close(2), a daemonizing library); the next connection accepted
 * would take the number, and lines written to 2 would go to that client.
 * -1: none (out of descriptors at start: 2 itself). Main thread, at open. */
static int stderr_copy = -1;

/* What the writers of one log share. O_APPEND keeps a record whole in a file
 * however long, but a pipe (stderr under docker or systemd, `| logger`) takes
 * a write over PIPE_BUF (4 KiB) in pieces, and another thread's write came
 * between them: the lock lets one record be written at a time there (not
 * taken for a regular file). It is held for the write alone (never while
 * waiting for the GIL), so a thread that holds the GIL may wait for it.
 * Other processes (--workers) writing to the same pipe are not kept out. */
struct sink {
    pthread_mutex_t lock;
    int file;           /* atomic: 1 the descriptor is a regular file, else 0 (note_kinds) */
    bool torn;          /* atomic, written under lock: a record was cut short (a full
                           disk): the next starts on a new line */
    unsigned long lost; /* atomic: records lost since the first failure; 0: writing */
};
static struct sink error_sink = { PTHREAD_MUTEX_INITIALIZER, 0, false, 0 };
static struct sink access_sink = { PTHREAD_MUTEX_INITIALIZER, 0, false, 0 };

/* What fd is for its sink: 1 a regular file, else 0. */
static int kind_of(int fd)
{
    struct stat st;
    return fd >= 0 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
}

/* The main thread, as the logs' descriptors change (open, close, reopen:
 * taken as not files while swapped, then looked at): what each is. Not
 * left to the writers: one that looked at the old file during a reopen
 * would have cached it for the new one, a pipe. */
static void note_kinds(bool swapping)
{
    __atomic_store_n(&error_sink.file, swapping ? 0 : kind_of(error_fd), __ATOMIC_RELAXED);
    __atomic_store_n(&access_sink.file, swapping ? 0 : kind_of(access_fd), __ATOMIC_RELAXED);
}
/* The error log for Python code (sys.stderr.fileno()): a duplicate of
 * error_fd, never error_fd itself, which an app would close (or put
 * /dev/null on, as python-daemon does) through it. -1: log off, or out of
 * descriptors at start (then error_fd). Main thread, at open;
 * tf_log_reopen keeps it in step. */
static int python_fd = -1;

int tf_log_stderr_fd(void)
{
    return stderr_copy >= 0 ? stderr_copy : STDERR_FILENO;
}

static int open_target(const char *path, int *fd, char *err, size_t errlen, const char *what)
{
    if (!*path || !strcmp(path, "off")) {
        *fd = -1;
        return 0;
    }
    if (!strcmp(path, "-")) {
        *fd = tf_log_stderr_fd();
        return 0;
    }
    *fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (*fd < 0) {
        snprintf(err, errlen, "%s: cannot open '%s' for appending: %s", what, path,
                 strerror(errno));
        return -1;
    }
    return 0;
}

/* A file to reopen: a path, not stderr or off. */
static char *reopenable(const char *path)
{
    return *path && strcmp(path, "off") && strcmp(path, "-") ? strdup(path) : NULL;
}

int tf_log_open(const char *error, const char *access, char *err, size_t errlen)
{
    error = error ? error : "-";
    access = access ? access : "off";
    if (stderr_copy < 0)
        stderr_copy = fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, STDERR_FILENO + 1);
    if (open_target(error, &error_fd, err, errlen, "--error-log") < 0 ||
        open_target(access, &access_fd, err, errlen, "--access-log") < 0)
        return -1;
    python_fd = error_fd < 0 ? -1 : fcntl(error_fd, F_DUPFD_CLOEXEC, STDERR_FILENO + 1);
    error_path = reopenable(error);
    access_path = reopenable(access);
    note_kinds(false);
    return 0;
}

static bool same_file(int a, int b)
{
    struct stat sa, sb;
    return fstat(a, &sa) == 0 && fstat(b, &sb) == 0 && sa.st_dev == sb.st_dev &&
           sa.st_ino == sb.st_ino;
}

/* Put a fresh open of path where fd is: dup3 swaps it in one step, so a
 * thread writing meanwhile writes whole lines to the old file or the new.
 * The same on twin (-1: none) if it still is the old file: not if the app
 * closed or replaced it (its number may be a connection's now). The check
 * is made right before the swap; an app closing the number between the two
 * (a few instructions) is not guarded against. */
static int reopen_one(const char *path, int fd, int twin, const char *what)
{
    if (!path || fd < 0)
        return 0;
    int old = twin >= 0 ? fcntl(fd, F_DUPFD_CLOEXEC, 3) : -1;
    int fresh = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    int rc = fresh < 0 || dup3(fresh, fd, O_CLOEXEC) < 0 ? -1 : 0;
    if (rc == 0 && old >= 0 && same_file(twin, old))
        (void)dup3(fresh, twin, O_CLOEXEC);
    if (old >= 0)
        close(old);
    if (rc < 0)
        tf_log_error("%s: cannot reopen '%s': %s; still writing to the file it had", what, path,
                     strerror(errno));
    if (fresh >= 0)
        close(fresh);
    return rc;
}

int tf_log_reopen(char *said, size_t len)
{
    note_kinds(true);
    int error = reopen_one(error_path, error_fd, python_fd, "--error-log");
    int access = reopen_one(access_path, access_fd, -1, "--access-log");
    note_kinds(false);
    if (access < 0 || error < 0)
        return -1;
    const char *other_e = error_fd < 0 ? "off" : "stderr";
    const char *other_a = access_fd < 0 ? "off" : "stderr";
    if (error_path && access_path)
        snprintf(said, len, "log files reopened (--error-log and --access-log)");
    else if (error_path || access_path)
        snprintf(said, len, "log file reopened (%s; %s is %s)",
                 error_path ? "--error-log" : "--access-log",
                 error_path ? "--access-log" : "--error-log", error_path ? other_a : other_e);
    else
        snprintf(said, len, "no log file to reopen (--error-log is %s, --access-log is %s)",
                 other_e, other_a);
    return 0;
}

void tf_log_close(void)
{
    free(error_path);
    free(access_path);
    error_path = access_path = NULL;
    if (error_fd > 2 && error_fd != stderr_copy)
        close(error_fd);
    if (access_fd > 2 && access_fd != stderr_copy)
        close(access_fd);
    if (stderr_copy >= 0)
        close(stderr_copy);
    if (python_fd >= 0)
        close(python_fd);
    error_fd = 2;
    access_fd = stderr_copy = python_fd = -1;
    note_kinds(false);
}

/* n bytes to fd through short writes and EINTR; returns how many went
 * (fewer: errno says why). */
static size_t write_all(int fd, const char *p, size_t n)
{
    size_t done = 0;
    while (done < n) {
        ssize_t w = write(fd, p + done, n - done);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            if (w == 0)
                errno = EIO;
            break;
        }
        done += (size_t)w;
    }
    return done;
}

/* A fork() (the app's os.fork()) while another thread held a lock would leave
 * it held for good in the child, which logs why it exits: the child makes
 * them anew (no other thread runs there), as CPython does for its own. */
static void sinks_after_fork(void)
{
    pthread_mutex_init(&error_sink.lock, NULL);
    pthread_mutex_init(&access_sink.lock, NULL);
}

__attribute__((constructor)) static void sinks_watch_forks(void)
{
    pthread_atfork(NULL, NULL, sinks_after_fork);
}

/* One record (whole lines) to fd, alone, after the newline that ends one cut
 * short before: if that cannot be written, this record is not either (it
 * would go on from the cut one). Alone: on a pipe (docker's stderr, `|
 * logger`) a write over PIPE_BUF goes in pieces that another thread's write
 * could come between, so records take turns under the lock, and a writer,
 * a network thread too, waits while one drains into a slow reader (as any
 * writer waits for a reader that stalls). A regular file (O_APPEND) takes
 * each write() whole: no lock there. Returns, for the first record written
 * after a failure, how many were lost, else 0; *failed is errno for the
 * first record lost (to say once, outside the lock), else 0. */
static unsigned long sink_write(struct sink *s, int fd, const char *p, size_t n, int *failed)
{
    bool locked = !__atomic_load_n(&s->file, __ATOMIC_RELAXED) ||
                  __atomic_load_n(&s->torn, __ATOMIC_RELAXED);
    if (locked)
        pthread_mutex_lock(&s->lock);
    size_t done = 0;
    if (!locked || !__atomic_load_n(&s->torn, __ATOMIC_RELAXED) || write_all(fd, "\n", 1) == 1) {
        done = write_all(fd, p, n);
        /* set by any writer, cleared under the lock; on a file without the lock a
         * record may still join one cut at the same moment (a full disk: rare) */
        if (locked || (done > 0 && done < n))
            __atomic_store_n(&s->torn, done > 0 && done < n, __ATOMIC_RELAXED);
    }
    int why = errno;
    unsigned long was = done == n ? __atomic_exchange_n(&s->lost, 0, __ATOMIC_RELAXED)
                                  : __atomic_fetch_add(&s->lost, 1, __ATOMIC_RELAXED);
    if (locked)
        pthread_mutex_unlock(&s->lock);
    *failed = done < n && was == 0 ? why : 0;
    return done == n ? was : 0;
}


/* A record to the error log. One it cannot take (a full disk) is said on
 * stderr, once while it lasts; the count lost goes into the log when it
 * takes records again. */
static void write_error(const char *p, size_t n)
{
    int fd = error_fd, failed;
    if (fd < 0 || !n)
        return;
    unsigned long was = sink_write(&error_sink, fd, p, n, &failed);
    if (failed)
        dprintf(tf_log_stderr_fd(), "tracfront: %s--error-log: cannot write to %s: %s; "
                "messages are lost until it can (counted)\n", tf_log_worker_tag(),
                error_path ? error_path : "stderr", strerror(failed));
    if (was)
        tf_log_error("--error-log: writing again; %lu message%s lost", was, was == 1 ? "" : "s");
}

void tf_log_raw(const char *data, size_t len)
{
    write_error(data, len);
}

int tf_log_error_fd(void)
{
    return error_fd;
}

int tf_log_python_fd(void)
{
    return python_fd >= 0 ? python_fd : error_fd;
}

static void log_line(const char *level, const char *fmt, va_list ap)
{
    if (error_fd < 0)
        return;
    char line[8192];
    size_t n = tf_log_stamp(line, sizeof(line), level);
    int m = vsnprintf(line + n, sizeof(line) - n - 1, fmt, ap);
    if (m < 0)
        m = 0;
    n += (size_t)m < sizeof(line) - n - 1 ? (size_t)m : sizeof(line) - n - 2;
    line[n++] = '\n';
    write_error(line, n);
}

void tf_log_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_line("error", fmt, ap);
    va_end(ap);
}

void tf_log_info(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_line("info", fmt, ap);
    va_end(ap);
}

void tf_log_warn(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_line("warn", fmt, ap);
    va_end(ap);
}

int tf_log_access_enabled(void)
{
    return access_fd >= 0;
}

/* The bytes c takes escaped: \" \\ \xhh or itself. */
static size_t escaped_width(unsigned char c)
{
    return c == '"' || c == '\\' ? 2 : c < 0x20 || c >= 0x7f ? 4 : 1;
}

/* Append s escaped; stops (truncating) rather than overflow. */
static size_t put_escaped(char *out, size_t pos, size_t cap, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    if (!s || !*s)
        s = "-";
    for (; *s && pos + 5 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if (escaped_width(c) == 2) {
            out[pos++] = '\\';
            out[pos++] = (char)c;
        } else if (escaped_width(c) == 4) {
            out[pos++] = '\\';
            out[pos++] = 'x';
            out[pos++] = hex[c >> 4];
            out[pos++] = hex[c & 15];
        } else {
            out[pos++] = (char)c;
        }
    }
    return pos;
}

const char *tf_log_escape(const char *s, char *out, size_t cap)
{
    if (cap)
        out[put_escaped(out, 0, cap, s)] = '\0';
    return out;
}

char *tf_log_quote(const char *s)
{
    static const char ellipsis[] = "\xe2\x80\xa6"; /* U+2026: a client's would be escaped */
    size_t width = 0, i = 0;
    for (; s[i] && width <= TF_LOG_QUOTE_MAX; i++)
        width += escaped_width((unsigned char)s[i]);
    if (width == i && width <= TF_LOG_QUOTE_MAX) /* "" too */
        return (char *)s;
    char *out = malloc(TF_LOG_QUOTE_MAX + 4 + sizeof(ellipsis)); /* put_escaped ends 0-3 past */
    if (!out)
        return NULL;
    size_t n = put_escaped(out, 0, TF_LOG_QUOTE_MAX + 5, s); /* all of s when it fits */
    for (; s[i]; i++) /* the whole width: was all of s put? */
        width += escaped_width((unsigned char)s[i]);
    if (n < width)
        memcpy(out + n, ellipsis, sizeof(ellipsis));
    else
        out[n] = '\0';
    return out;
}

/* A field's room in the line: each byte may take 4 ("\xhh"). */
static size_t escaped_room(const char *s)
{
    return s && *s ? 4 * strlen(s) : 1;
}

/* The access log could not take a line (a full disk): said once in the
 * error log while it lasts, with the count lost when it takes lines again. */
static void write_access_line(const char *line, size_t n)
{
    int failed;
    unsigned long was = sink_write(&access_sink, access_fd, line, n, &failed);
    if (was)
        tf_log_error("--access-log: writing again; %lu line%s lost", was, was == 1 ? "" : "s");
    if (failed)
        tf_log_error("--access-log: cannot write: %s; lines are lost until it can (counted)",
                     strerror(failed));
}

/* snprintf at out + *pos, never past size (one byte kept for the newline). */
static void put_format(char *out, size_t *pos, size_t size, const char *fmt, ...)
{
    if (*pos + 2 >= size)
        return;
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(out + *pos, size - *pos - 1, fmt, ap);
    va_end(ap);
    if (m > 0)
        *pos += (size_t)m < size - *pos - 1 ? (size_t)m : size - *pos - 2;
}

void tf_log_access(const struct tf_access_entry *e)
{
    static const char months[12][4] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                        "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
    if (access_fd < 0)
        return;
    /* Whole, however long the client's fields (Apache writes them all): on
     * the stack when they fit, else on the heap. */
    char small[8192];
    size_t need = escaped_room(e->remote_addr) + escaped_room(e->remote_user) +
                  escaped_room(e->method) + escaped_room(e->target) + escaped_room(e->version) +
                  escaped_room(e->referer) + escaped_room(e->user_agent) + 128;
    char *line = need <= sizeof(small) ? small : malloc(need);
    size_t size = line ? need : sizeof(small); /* out of memory: fields cut to the stack line */
    if (!line)
        line = small;
    size_t cap = size - 64; /* kept for the numbers and separators after the fields */
    size_t n = 0;
    time_t now = time(NULL);
    struct tm tm;
    localtime_r(&now, &tm);
    n = put_escaped(line, n, cap, e->remote_addr);
    line[n++] = ' ';
    line[n++] = '-';
    line[n++] = ' ';
    n = put_escaped(line, n, cap, e->remote_user);
    /* the month from a table: strftime's %b follows the locale the app set */
    char zone[8];
    strftime(zone, sizeof(zone), "%z", &tm);
    put_format(line, &n, size, " [%02d/%s/%04d:%02d:%02d:%02d %s] \"", tm.tm_mday,
               months[tm.tm_mon % 12], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec, zone);
    n = put_escaped(line, n, cap, e->method);
    line[n++] = ' ';
    n = put_escaped(line, n, cap, e->target);
    line[n++] = ' ';
    n = put_escaped(line, n, cap, e->version);
    put_format(line, &n, size, "\" %u ", e->status);
    if (e->bytes)
        put_format(line, &n, size, "%llu \"", (unsigned long long)e->bytes);
    else
        put_format(line, &n, size, "- \"");
    n = put_escaped(line, n, cap, e->referer);
    line[n++] = '"';
    line[n++] = ' ';
    line[n++] = '"';
    n = put_escaped(line, n, cap, e->user_agent);
    put_format(line, &n, size, "\" %llu", (unsigned long long)e->duration_us);
    line[n++] = '\n';
    write_access_line(line, n);
    if (line != small)
        free(line);
}
