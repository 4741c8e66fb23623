/* log_stamp.c — stamps and [error] lines with a block under them (see
 * log_stamp.h). It only formats: every byte goes out through tf_log_raw(). */
#include "proxy/log_stamp.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "proxy/log.h"

#define LINE_MAX_BYTES 8192 /* as log.c's own lines */

static char worker_tag[32]; /* "[worker 1234] " in a worker; set before threads start */
static bool forked;         /* set in a fork()'s child before it runs anything */
static long last_gmtoff;    /* atomic: the UTC offset of the last stamp in local time */

static void note_fork(void)
{
    forked = true;
}

__attribute__((constructor)) static void stamp_start(void)
{
    pthread_atfork(NULL, NULL, note_fork); /* no system call per stamp, as getpid() is */
    struct tm tm;
    time_t now = time(NULL);
    if (localtime_r(&now, &tm)) /* a child forked before any stamp has an offset too */
        last_gmtoff = tm.tm_gmtoff;
}

void tf_log_stamp_set_worker_tag(void)
{
    snprintf(worker_tag, sizeof(worker_tag), "[worker %d] ", (int)getpid());
}

const char *tf_log_worker_tag(void)
{
    return worker_tag;
}

/* t as a calendar date and time of day (UTC), computed here: libc's
 * gmtime_r takes the time-zone lock too. Howard Hinnant's civil_from_days. */
static void civil_time(long long t, struct tm *tm)
{
    long long days = t / 86400, secs = t % 86400;
    if (secs < 0) {
        secs += 86400;
        days--;
    }
    days += 719468; /* from 0000-03-01 */
    long long era = (days >= 0 ? days : days - 146096) / 146097;
    long long doe = days - era * 146097;                                   /* [0, 146096] */
    long long yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365; /* [0, 399] */
    long long doy = doe - (365 * yoe + yoe / 4 - yoe / 100);               /* [0, 365] */
    long long mp = (5 * doy + 2) / 153;                                    /* March = 0 */
    long long month = mp < 10 ? mp + 3 : mp - 9;
    *tm = (struct tm){ .tm_year = (int)(yoe + era * 400 + (month <= 2) - 1900),
                       .tm_mon = (int)month - 1,
                       .tm_mday = (int)(doy - (153 * mp + 2) / 5 + 1),
                       .tm_hour = (int)(secs / 3600),
                       .tm_min = (int)(secs / 60 % 60),
                       .tm_sec = (int)(secs % 60) };
}

size_t tf_log_stamp(char *out, size_t cap, const char *level)
{
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    if (!forked) {
        localtime_r(&ts.tv_sec, &tm);
        __atomic_store_n(&last_gmtoff, tm.tm_gmtoff, __ATOMIC_RELAXED);
    } else {
        /* The child of the app's fork(): localtime_r takes glibc's time-zone
         * lock, which another thread may have held at the fork and nobody
         * unlocks here (its first print() hung). Local time still, at the
         * UTC offset of the parent's last stamp (a DST change since is not
         * seen), converted without any lock. */
        civil_time((long long)ts.tv_sec + __atomic_load_n(&last_gmtoff, __ATOMIC_RELAXED), &tm);
    }
    /* not strftime: it may call tzset(), which takes that lock */
    int m = snprintf(out, cap, "[%04d-%02d-%02d %02d:%02d:%02d.%03ld] [%s] %s",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                     tm.tm_sec, ts.tv_nsec / 1000000L, level, worker_tag);
    return m < 0 ? 0 : (size_t)m < cap ? (size_t)m : cap - 1;
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
