/* log_stamp.c — stamps and [error] lines with a block under them (see
 * log_stamp.h). It only formats: every byte goes out through tf_log_raw(). */
#include "proxy/log_stamp.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "proxy/log.h"

#define LINE_MAX_BYTES 8192 /* as log.c's own lines */

static char worker_tag[32]; /* "[worker 1234] " in a worker; set before threads start */

void tf_log_stamp_set_worker_tag(void)
{
    snprintf(worker_tag, sizeof(worker_tag), "[worker %d] ", (int)getpid());
}

const char *tf_log_worker_tag(void)
{
    return worker_tag;
}

size_t tf_log_stamp(char *out, size_t cap, const char *level)
{
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    localtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(out, cap, "[%Y-%m-%d %H:%M:%S", &tm);
    int m = snprintf(out + n, cap - n, ".%03ld] [%s] %s", ts.tv_nsec / 1000000L, level,
                     worker_tag);
    return m < 0 ? n : n + ((size_t)m < cap - n ? (size_t)m : cap - n - 1);
}

void tf_log_error_block(const char *block, size_t len, const char *fmt, ...)
{
    if (tf_log_error_fd() < 0)
        return;
    char line[LINE_MAX_BYTES];
    size_t n = tf_log_stamp(line, sizeof(line), "error");
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof(line) - n - 1, fmt, ap);
    va_end(ap);
    if (m > 0)
        n += (size_t)m < sizeof(line) - n - 1 ? (size_t)m : sizeof(line) - n - 2;
    line[n++] = '\n';
    char *whole = len ? malloc(n + len) : NULL;
    if (!whole) { /* nothing under it, or out of memory: two writes */
        tf_log_raw(line, n);
        tf_log_raw(block, len);
        return;
    }
    memcpy(whole, line, n);
    memcpy(whole + n, block, len);
    tf_log_raw(whole, n + len);
    free(whole);
}
