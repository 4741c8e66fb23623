/* log.h — the error log and the access log. Both are files opened at start
 * (and again on SIGUSR1, after a log rotation), or stderr; every line is
 * formatted into a buffer and written with one write() (O_APPEND for a file)
 * under its log's lock, so lines from concurrent threads never interleave,
 * on a pipe either (where a write over PIPE_BUF goes in pieces). The lock is
 * held for that write alone. Never call these with the GIL held around slow
 * I/O other than the single write. */
#ifndef TF_LOG_H
#define TF_LOG_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Open the logs: "-" is stderr, "" (or "off") disables that log; NULL is
 * the default ("-" for the error log, off for the access log). "-" writes
 * to a private copy of descriptor 2 (tf_log_stderr_fd), so the logs stay
 * where they were whatever the app later closes. Before the app loads.
 * Returns 0, or -1 with a message in err. */
int tf_log_open(const char *error_path, const char *access_path, char *err, size_t errlen);
/* The stderr tracfront started with: its private copy once the logs were
 * opened, else 2. For what tracfront itself says on stderr (the listening
 * line, why it cannot start). */
int tf_log_stderr_fd(void);
/* Open the log files again by their names (logrotate moved them away): a
 * failure is logged and the old file kept. Main thread. 0 with what was
 * reopened in said ("log files reopened (...)", or that neither log is a
 * file: stderr or off), or -1 if one could not be reopened. */
int tf_log_reopen(char *said, size_t len);
void tf_log_close(void);

/* "[date] [level] message\n" to the error log. */
void tf_log_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void tf_log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* [warn], as nginx's: nothing failed, but the setup is likely wrong. */
void tf_log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* s for a log line, as the access log shows its fields: '"', '\\', control
 * bytes and bytes past 0x7e escaped ("\x0a"), "-" for "" or NULL, cut short
 * to fit cap bytes. Returns out. For bytes a client chose (a decoded path). */
const char *tf_log_escape(const char *s, char *out, size_t cap);

/* The most bytes of a client's string an error-log line of tracfront's
 * quotes: what the line says after it must fit (wsgi_log_exception's 1 KiB,
 * log lines' 8 KiB). */
#define TF_LOG_QUOTE_MAX 800
/* s as tracfront's error-log lines quote a client's string (a request
 * target): escaped as tf_log_escape does, and past TF_LOG_QUOTE_MAX bytes cut
 * and ended with "…" (UTF-8; a client's own would show escaped). Returns s
 * itself when it needs neither, else a malloc'ed copy, or NULL (out of
 * memory). */
char *tf_log_quote(const char *s);

/* Raw bytes to the error log (wsgi.errors, Python tracebacks), as one
 * record: no other thread's comes between its bytes. A record the log cannot
 * take (a full disk) is counted, said once on stderr, and one cut short is
 * ended with a newline before the next. */
void tf_log_raw(const char *data, size_t len);
/* The error log's descriptor (tf_log_stderr_fd() for "-"), or -1 when it
 * is off; the same number across tf_log_reopen(), which dup2()s the new
 * file onto it. */
int tf_log_error_fd(void);
/* The error log for Python code (sys.stderr.fileno()): a duplicate of the
 * error log's descriptor made at open and kept in step by tf_log_reopen()
 * (unless the app closed or replaced it), so what the app does to it never
 * reaches the logs' own (the logs' own only if no descriptor was left at
 * open); -1 when the log is off. */
int tf_log_python_fd(void);

int tf_log_access_enabled(void);

/* One Combined Log Format line plus the response time in microseconds. */
struct tf_access_entry {
    const char *remote_addr;
    const char *remote_user;  /* NULL → "-" */
    const char *method;
    const char *target;
    const char *version;
    unsigned status;
    uint64_t bytes;
    const char *referer;      /* NULL → "-" */
    const char *user_agent;   /* NULL → "-" */
    uint64_t duration_us;
};
void tf_log_access(const struct tf_access_entry *e);

#endif
