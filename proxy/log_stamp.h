/* log_stamp.h — error-log lines built outside proxy/log.c: the stamp that
 * starts a line ("[date] [level] ", and "[worker PID] " in a worker), for
 * lines made elsewhere (the app's, stamped [app]), and an [error] line with
 * a block of text under it in one write() (a heading and its traceback or
 * stack), so that no other thread's line comes between them. log.c's own
 * lines are stamped here too. */
#ifndef TF_LOG_STAMP_H
#define TF_LOG_STAMP_H

#include <stddef.h>

/* The most a stamp takes. */
#define TF_LOG_STAMP_MAX 80

/* "[YYYY-mm-dd HH:MM:SS.mmm] [level] " (+ "[worker PID] ") into out (cap
 * bytes, TF_LOG_STAMP_MAX is enough), NUL-terminated. Returns its length. */
size_t tf_log_stamp(char *out, size_t cap, const char *level);
/* A worker process (--workers): its stamps, so every line of the error
 * log, carry "[worker PID]". Once, before other threads start. */
void tf_log_stamp_set_worker_tag(void);
/* "[worker PID] " in a worker, else "". */
const char *tf_log_worker_tag(void);

/* "[date] [error] message\n" (message cut as tf_log_error cuts it) and the
 * len bytes of block right under it, in one write() to the error log (two,
 * out of memory). Never with the GIL held (a log reader may stall). */
void tf_log_error_block(const char *block, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
