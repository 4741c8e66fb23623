/* profile_pages.c — the profiler's own pages on the server (see
 * server_internal.h): who may see them, the POST controls with their
 * cross-site check, the HTML/JSON/exports through the profiler controls,
 * the comparison of --mirror, and a worker relaying to its front. Answers
 * on the I/O thread, in the final access-handler call; never touches Python
 * (the controls do, on the Python side). */
#include "proxy/server_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "proxy/cidr.h"
#include "proxy/http_check.h"
#include "proxy/fetch.h"
#include "proxy/loop.h"
#include "proxy/log.h"
#include "proxy/mirror.h"
#include "profiler/compare.h"
#include "profiler/latency.h"
#include "profiler/query.h"
#include "profiler/text.h"

/* Does the raw target name the profile path or something under it? Sets
 * *sub to the rest of the path ("" or "/metrics"). */
bool tf_profile_path_match(const char *target, const char *profile, const char **sub)
{
    return tf_path_under_prefix(target, profile, strlen(profile), sub);
}

/* The profile path as a reference relative to the page at target (the raw
 * request target; sub where its profile path ends, as tf_profile_path_match
 * set it): a "../" for each '/' of the page's path after the profile path,
 * then the profile path's last segment as the target wrote it. At
 * /__profile__ that is "__profile__", at /__profile__/ or
 * /__profile__/request "../__profile__", and its links ("__profile__?sort=
 * calls", "../__profile__/pstats"), forms and redirects resolve where the
 * page was asked for: under the prefix a reverse proxy strips, which the
 * page never learns (RFC 3986 5.2; RFC 9110 10.2.2 allows it in Location).
 * malloc'd; NULL on out of memory. */
static char *link_base(const char *target, const char *sub)
{
    const char *segment = sub;
    while (segment > target && segment[-1] != '/') /* target starts with '/' */
        segment--;
    size_t ups = 0, len = (size_t)(sub - segment);
    for (const char *c = sub; *c && *c != '?'; c++)
        ups += *c == '/';
    /* "a:b" alone would be read as a scheme; "./a:b" is the path */
    bool dot = !ups && memchr(segment, ':', len);
    char *base = malloc(3 * ups + 2 + len + 1);
    if (!base)
        return NULL;
    char *end = base;
    for (size_t i = 0; i < ups; i++, end += 3)
        memcpy(end, "../", 3);
    if (dot)
        end = (char *)memcpy(end, "./", 2) + 2;
    memcpy(end, segment, len);
    end[len] = '\0';
    return base;
}

/* NULL when req may see the profiler, else why not. By default loopback
 * may, but not a client a reverse proxy on this host (IIS ARR, Apache,
 * nginx: all of whose clients come from loopback) says it forwards. */
static const char *profile_refusal(const struct tf_server *server, const struct tf_request *req)
{
    static const char *const forwarded[] = { "X-Forwarded-For", "Forwarded", "X-Real-IP" };
    bool allowed = false;
    for (size_t i = 0; i < server->n_profile_allow && !allowed; i++)
        allowed = tf_cidr_match(&server->profile_allow[i], req->remote_addr);
    if (!allowed)
        return "The profiler is not open to this address (see --profile-allow).";
    for (size_t i = 0; server->profile_allow_default && i < 3; i++)
        if (tf_request_header(req, forwarded[i]))
            return "The profiler is not open to clients a proxy forwards (see --profile-allow).";
    return NULL;
}

/* --profile-allow, or loopback when none is given (always, on a control
 * port between a front and its workers). 0, or -1 on out of memory. */
int tf_profile_allow_init(struct tf_server *server, const struct tf_config *cfg, bool control)
{
    static const char *const loopback[] = { "127.0.0.0/8", "::1" };
    bool given = cfg->n_profile_allow && !control;
    server->profile_allow_default = !given && !control;
    size_t n = given ? cfg->n_profile_allow : 2;
    server->profile_allow = calloc(n, sizeof(*server->profile_allow));
    if (!server->profile_allow)
        return -1;
    for (size_t i = 0; i < n; i++) /* checked by the config parser */
        tf_cidr_parse(given ? cfg->profile_allow[i] : loopback[i],
                      &server->profile_allow[server->n_profile_allow++]);
    return 0;
}

/* Does authority (host[:port], len bytes) name the same place as the
 * header value want (Host, or the first of X-Forwarded-Host's list)? Hosts
 * are case-insensitive; a scheme's default port may be written or not. */
static bool same_authority(const char *authority, size_t len, const char *default_port,
                           const char *want)
{
    if (!want)
        return false;
    size_t want_len = strcspn(want, ","), port_len = strlen(default_port);
    while (want_len && want[want_len - 1] == ' ')
        want_len--;
    if (len > port_len && !memcmp(authority + len - port_len, default_port, port_len))
        len -= port_len;
    if (want_len > port_len && !memcmp(want + want_len - port_len, default_port, port_len))
        want_len -= port_len;
    return len == want_len && !strncasecmp(authority, want, len);
}

/* A POST that changes the profiler must come from the profiler's own page.
 * A browser that sends Sec-Fetch-Site says so itself (same-origin, or none
 * for what the user typed). Else its Origin, if any, must be this server as
 * the browser reached it: the Host, or the X-Forwarded-Host a reverse proxy
 * that rewrites Host passes on, over http or https (TLS in front). */
static bool same_origin(const struct tf_request *req)
{
    const char *site = tf_request_header(req, "Sec-Fetch-Site");
    if (site)
        return !strcmp(site, "same-origin") || !strcmp(site, "none");
    const char *origin = tf_request_header(req, "Origin");
    if (!origin)
        return true;
    bool tls = !strncmp(origin, "https://", 8);
    if (!tls && strncmp(origin, "http://", 7) != 0)
        return false;
    const char *authority = origin + (tls ? 8 : 7), *port = tls ? ":443" : ":80";
    size_t len = strlen(authority);
    return same_authority(authority, len, port, tf_request_header(req, "Host")) ||
           same_authority(authority, len, port, tf_request_header(req, "X-Forwarded-Host"));
}

/* body (malloc'd, taken) as a report; filename: an export, downloaded
 * under the name its tool expects (else a browser saves "pstats"). */
static enum MHD_Result send_report(struct tf_request *req, unsigned status, char *body,
                                   size_t len, const char *type, const char *filename)
{
    if (!body)
        return tf_server_reply(req, 500, "Out of memory building the report.", false);
    req->bytes_out = len;
    struct MHD_Response *r = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(r, "Content-Type", type);
    MHD_add_response_header(r, "Cache-Control", "no-store");
    if (filename) {
        char disposition[128];
        snprintf(disposition, sizeof(disposition), "attachment; filename=\"%s\"", filename);
        MHD_add_response_header(r, "Content-Disposition", disposition);
    }
    return tf_server_queue(req, status, r);
}

static enum MHD_Result send_body(struct tf_request *req, unsigned status, char *body,
                                 size_t len, const char *type)
{
    return send_report(req, status, body, len, type, NULL);
}

/* A front's page or save while its stop takes the workers' profiles over
 * (errno EAGAIN from the controls), or after a second signal cut that short
 * (EINTR): it would leave out the workers still running, so none is made. */
static enum MHD_Result refuse_while_stopping(struct tf_request *req)
{
    return tf_server_reply(req, 503, "The server is stopping: the workers' profiles are being "
                           "handed over, or a second signal cut that short; no profile is shown "
                           "from a part of them.", false);
}

/* Another page or export is reading the call tree (one copy of it at a
 * time: hook.h); a network thread does not wait for it. */
static bool busy(const char *made)
{
    return !made && errno == EBUSY;
}

static enum MHD_Result refuse_while_busy(struct tf_request *req)
{
    struct MHD_Response *r = tf_error_response(503, "Another profile page or export is being "
                                               "made (one at a time: each copies the call "
                                               "tree); try again in a moment.", false,
                                               &req->bytes_out);
    if (r)
        MHD_add_response_header(r, "Retry-After", "1");
    return tf_server_queue(req, 503, r);
}

/* A front's merge left a worker out: it sent no call tree in time
 * (errno ETIMEDOUT; the log names it). */
static bool worker_silent(const char *made)
{
    return !made && errno == ETIMEDOUT;
}

/* What worker_silent means, then end (HTML-safe). */
static void say_worker_silent(char *out, size_t size, const char *end)
{
    snprintf(out, size, "A worker did not send its call tree (none within %d s, or an error: "
             "the error log names it; a request may hold its GIL in a long call)%s",
             TF_FETCH_LIMIT_MS / 1000, end);
}

static enum MHD_Result refuse_while_worker_silent(struct tf_request *req)
{
    char why[256];
    say_worker_silent(why, sizeof(why), ": nothing is made from a part of the workers; try "
                                        "again.");
    return tf_server_reply(req, 504, why, false);
}

/* 405 with the methods the path takes: Allow is required there (RFC 9110
 * 15.5.6), and a client (or a person with curl) learns what to send. */
static enum MHD_Result refuse_method(struct tf_request *req, const char *allow, bool close)
{
    struct MHD_Response *r = tf_error_response(405, "The profiler's pages take GET (and "
                                               "POST for its controls).", close, &req->bytes_out);
    if (r)
        MHD_add_response_header(r, "Allow", allow);
    return tf_server_queue(req, 405, r);
}

/* Is sub[0..len) (a sub-path without its query) exactly path? */
static bool sub_is(const char *sub, size_t len, const char *path)
{
    return len == strlen(path) && !strncmp(sub, path, len);
}

/* Is sub[0..len) one of the n paths? */
static bool path_in(const char *sub, size_t len, const char *const *paths, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (sub_is(sub, len, paths[i]))
            return true;
    return false;
}

/* The controls (POST only): start, stop, clear, save, and between a front
 * and its workers quiesce, stopped and replace. */
static bool is_control(const char *sub, size_t len)
{
    static const char *const controls[] = { "/start", "/stop", "/clear", "/save", "/quiesce",
                                            "/stopped", "/replace" };
    return path_in(sub, len, controls, sizeof(controls) / sizeof(controls[0]));
}

/* The new file (fd) takes the mode of the one it replaces at path, and its
 * owner and group when running as root (a service's own file, saved by root,
 * stays the service's); a new one is 0644 less the umask, as nginx's logs. */
static void keep_mode_and_owner(int fd, const char *path)
{
    struct stat old;
    if (lstat(path, &old) != 0 || !S_ISREG(old.st_mode))
        return;
    if (geteuid() == 0 && fchown(fd, old.st_uid, old.st_gid) != 0)
        tf_log_error("profile: cannot give %s's owner to the new file: %m", path);
    if (fchmod(fd, old.st_mode & 0777) != 0) /* no set-id bits on a file root wrote */
        tf_log_error("profile: cannot give %s's mode to the new file: %m", path);
}

/* What a Save did with a file. */
enum saved { SAVED_NOTHING, SAVED_WRITTEN, SAVED_FAILED };

/* Write the export format to path, the file of option flag. With nothing
 * profiled, a file there is left as it is (an earlier run's profile).
 * *stopping set when that is because a front's stop is taking its
 * workers' profiles (none written: a part of them would stay). */
static int save_one(const struct tf_server *server, const char *path, const char *format,
                    const char *flag, bool *stopping, enum saved *outcome)
{
    *outcome = SAVED_NOTHING;
    if (!path || !server->profiler)
        return 0;
    size_t len = 0;
    errno = 0;
    char *data = server->profiler->export(format, &len);
    if (!data && errno == EINTR) {
        tf_log_error("profile: %s not written: the stop was told to end at once (a second "
                     "SIGINT/SIGTERM) before every worker had handed its profile over", flag);
        *stopping = true; /* a page's save: 503, as while they are handed over */
        return -1;
    }
    if (!data && errno == EBUSY) {
        tf_log_info("profile: %s not written now: another profile page or export was being "
                    "made; Save again", flag);
        errno = EBUSY; /* after the log's own calls: save_profile's 503 says so */
        return -1;
    }
    if (!data && errno == EAGAIN) {
        tf_log_error("profile: %s not written now: the server is stopping and some workers "
                     "have not handed their profiles over yet (the stop writes it once they "
                     "have)", flag);
        *stopping = true;
        return -1;
    }
    if (!data && errno == ETIMEDOUT) {
        tf_log_error("profile: %s not written: a worker did not send its call tree "
                     "(named above), and a file from part of the workers would pass for the "
                     "whole; Save again", flag);
        errno = ETIMEDOUT;
        return -1;
    }
    if (!data) {
        tf_log_error("profile: cannot build the %s export", format);
        return -1;
    }
    if (len == 0) {
        free(data);
        tf_log_info("profile: nothing profiled; %s not written", flag);
        return 0;
    }
    char tmp[4096];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    /* a new file: one left there (or planted: a symlink in /tmp) is removed, not written through */
    if (unlink(tmp) < 0 && errno != ENOENT)
        tf_log_error("profile: cannot remove %s: %m", tmp);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd >= 0)
        keep_mode_and_owner(fd, path);
    FILE *f = fd < 0 ? NULL : fdopen(fd, "wb");
    if (fd >= 0 && !f)
        close(fd);
    bool ok = f && fwrite(data, 1, len, f) == len;
    if (f && fclose(f) != 0)
        ok = false;
    free(data);
    if (!ok || rename(tmp, path) != 0) { /* whole file or nothing */
        tf_log_error("profile: cannot write %s: %m", path);
        unlink(tmp);
        return -1;
    }
    tf_log_info("profile: wrote %s (%s)", path, format);
    *outcome = SAVED_WRITTEN;
    return 0;
}

/* Is there a profile file for Save to write? Else the page offers no
 * Save and a POST to it is refused (409) rather than answered as done. */
static bool has_profile_files(const struct tf_config *cfg)
{
    return cfg->profile_log || cfg->profile_callgrind;
}

/* What the last Save did, for the page (HTML, escaped); under save_lock. */
static pthread_mutex_t save_lock = PTHREAD_MUTEX_INITIALIZER;
static char *save_said;

static void remember_save(const struct tf_config *cfg, const enum saved outcome[2])
{
    const char *files[] = { cfg->profile_log, cfg->profile_callgrind };
    time_t now = time(NULL);
    struct tm tm;
    char when[16] = "";
    if (localtime_r(&now, &tm))
        strftime(when, sizeof(when), "%H:%M:%S", &tm);
    struct prof_text t = { 0 };
    prof_text_add(&t, "<p>Last Save (%s): ", when);
    for (size_t i = 0, said = 0; i < 2; i++) {
        if (!files[i])
            continue;
        prof_text_add(&t, "%s<code>", said++ ? "; " : "");
        prof_text_escaped(&t, files[i], PROF_ESC_HTML);
        prof_text_add(&t, "</code> %s", outcome[i] == SAVED_WRITTEN ? "written"
                                        : outcome[i] == SAVED_FAILED
                                            ? "could not be written (see the error log)"
                                            : "not written: nothing profiled (an earlier "
                                              "file stays)");
    }
    prof_text_add(&t, ".</p>\n");
    char *said = prof_text_finish(&t);
    pthread_mutex_lock(&save_lock);
    free(save_said);
    save_said = said;
    pthread_mutex_unlock(&save_lock);
}

/* Write the configured profile files (--profile-log, --profile-callgrind)
 * from the accumulated profile; with nothing profiled, none (a file there
 * stays as it is; logged). Returns 0, or -1 with the reason logged (errno
 * EAGAIN: a front's stop is taking its workers' profiles, none written;
 * EBUSY: another page or export was reading the tree; ETIMEDOUT: a front's
 * worker sent no tree in time, none written). */
static int save_profile(const struct tf_server *server)
{
    bool stopping = false, busy_now = false;
    enum saved outcome[2];
    int a = save_one(server, server->cfg->profile_log, "pstats", "--profile-log", &stopping,
                     &outcome[0]);
    busy_now |= a < 0 && errno == EBUSY;
    bool silent = a < 0 && errno == ETIMEDOUT;
    outcome[0] = a < 0 ? SAVED_FAILED : outcome[0];
    /* the second file after the first's refusal, or a worker's silence (which
     * would hold it up as long again), would be from another moment */
    int b = 0;
    outcome[1] = server->cfg->profile_callgrind ? SAVED_FAILED : SAVED_NOTHING;
    if (!stopping && !busy_now && !silent) {
        b = save_one(server, server->cfg->profile_callgrind, "callgrind",
                     "--profile-callgrind", &stopping, &outcome[1]);
        busy_now |= b < 0 && errno == EBUSY;
        silent |= b < 0 && errno == ETIMEDOUT;
        outcome[1] = b < 0 ? SAVED_FAILED : outcome[1];
    } else if (server->cfg->profile_callgrind) {
        tf_log_error("profile: --profile-callgrind not written either");
        b = -1;
    }
    if (!stopping && !busy_now) /* refused, nothing was tried: the last note stands */
        remember_save(server->cfg, outcome);
    if (a == 0 && b == 0)
        return 0;
    errno = stopping ? EAGAIN : busy_now ? EBUSY : silent ? ETIMEDOUT : EIO;
    return -1;
}

/* POST start / stop / clear: act, then send the browser back to the page. */
static enum MHD_Result control_profile(struct tf_server *server, struct tf_request *req,
                                       const char *action, size_t len, const char *base)
{
    const struct tf_profiler_controls *p = __atomic_load_n(&server->profiler, __ATOMIC_ACQUIRE);
    if (!same_origin(req))
        return tf_server_reply(req, 403, "Cross-site request refused.", false);
    if (sub_is(action, len, "/start") && p)
        p->enable(true);
    else if (sub_is(action, len, "/stop") && p)
        p->enable(false);
    else if (sub_is(action, len, "/save") && !has_profile_files(server->cfg))
        return tf_server_reply(req, 409, "No profile file to save to: start tracfront with "
                               "--profile-log FILE (pstats) or --profile-callgrind FILE; the "
                               "exports download the profile meanwhile.", false);
    else if (sub_is(action, len, "/save")) {
        if (save_profile(server) < 0)
            return errno == EAGAIN ? refuse_while_stopping(req)
                   : errno == EBUSY ? refuse_while_busy(req)
                   : errno == ETIMEDOUT ? refuse_while_worker_silent(req)
                                   : tf_server_reply(req, 500, "The profile files could not be "
                                                     "written (see the error log).", false);
    } else if (sub_is(action, len, "/quiesce") && server->control && server->cfg->worker) {
        /* a worker's control port: its front reloads or stops; 202 when asked
         * just after it was told to go: it quiesces once its server runs */
        if (!tf_server_quiesce_twin(server))
            return tf_server_reply(req, 202, "Stops accepting as soon as it starts.", false);
    } else if (sub_is(action, len, "/stopped") && p && p->absorb) {
        /* a front: one of its workers, stopping, hands its profile over */
        unsigned port = 0;
        if (sscanf(action + len, "?port=%u", &port) != 1 || !p->absorb(port))
            return tf_server_reply(req, 404, "No such worker.", false);
    } else if (sub_is(action, len, "/replace") && p && p->replace) {
        /* a front: its watchdog interrupted a request in one of its workers */
        unsigned port = 0;
        unsigned long long completed = 0;
        if (sscanf(action + len, "?port=%u&completed=%llu", &port, &completed) != 2 ||
            !p->replace(port, completed))
            return tf_server_reply(req, 404, "No such worker.", false);
    } else if (sub_is(action, len, "/clear")) {
        prof_latency_reset();
        prof_compare_reset();
        if (p)
            p->clear();
    } else
        return tf_server_reply(req, 404, "No such profiler action.", false);
    /* back to the page, in the view its button was pressed in (its query),
     * relative to the action's own URL (link_base) */
    const char *view = action[len] == '?' ? action + len + 1 : "";
    size_t cap = strlen(base) + strlen(view) + 2;
    if (!tf_request_head_fits(req, sizeof("Location: \r\n") + cap)) { /* a huge query */
        view = "";
        cap = strlen(base) + 2;
    }
    char *location = malloc(cap);
    struct MHD_Response *r =
        location ? MHD_create_response_from_buffer(0, "", MHD_RESPMEM_PERSISTENT) : NULL;
    if (r) {
        snprintf(location, cap, "%s%s%s", base, view[0] ? "?" : "", view);
        MHD_add_response_header(r, "Location", location);
    }
    free(location);
    return r ? tf_server_queue(req, 303, r) : MHD_NO;
}

/* With --mirror the page links the comparison before the function table.
 * base: link_base's. */
static char *compare_link(const char *base, const char *table)
{
    struct prof_text t = { 0 };
    prof_text_add(&t, "<h2>App vs upstream</h2><p><a href=\"");
    prof_text_escaped(&t, base, PROF_ESC_HTML);
    prof_text_add(&t, "/compare\">Latency and answers compared, per route</a> (--mirror).</p>%s",
                  table ? table : "");
    return prof_text_finish(&t);
}

/* A worker passes profile pages to its front (which adds up every worker)
 * and sends back what it answered. The front may take a while (it asks every
 * worker), so the fetch runs away from the loop (tf_loop_step_away): this
 * worker's other connections go on meanwhile. */
#define MAX_RELAYS 4 /* profile pages relayed at once: each may hold a thread */
static int relays; /* atomic */

static void relay_away(void *arg)
{
    struct tf_request *req = arg;
    struct tf_fetched f = { 0 };
    char origin[64];
    snprintf(origin, sizeof(origin), "http://127.0.0.1:%u", req->server->relay_port);
    struct MHD_Response *r = NULL;
    /* a HEAD as a GET: its answer's length is the body's, which libmicrohttpd leaves out */
    if (tf_fetch(origin, req->is_head ? "GET" : req->method, req->target, TF_FETCH_RELAY_MS,
                 &f) == 0 && f.status &&
        (r = MHD_create_response_from_buffer(f.len, f.body, MHD_RESPMEM_MUST_FREE))) {
        f.body = NULL;
        if (f.content_type)
            MHD_add_response_header(r, "Content-Type", f.content_type);
        if (f.location)
            MHD_add_response_header(r, "Location", f.location);
        if (f.content_disposition)
            MHD_add_response_header(r, "Content-Disposition", f.content_disposition);
        if (f.allow)
            MHD_add_response_header(r, "Allow", f.allow);
        if (f.retry_after)
            MHD_add_response_header(r, "Retry-After", f.retry_after);
        MHD_add_response_header(r, "Cache-Control", "no-store");
        /* a view too long for this connection's head (the front's had room):
         * back to the bare page, as control_profile does (relative too) */
        if (f.location && !tf_request_head_fits(req, tf_response_headers_size(r))) {
            const char *sub = NULL; /* the target matched, or it would not be here */
            tf_profile_path_match(req->target, req->server->cfg->profile_path, &sub);
            char *base = sub ? link_base(req->target, sub) : NULL;
            MHD_del_response_header(r, "Location", f.location);
            MHD_add_response_header(r, "Location", base ? base : "./");
            free(base);
        }
        req->status = f.status;
        req->bytes_out = f.len;
    } else {
        r = tf_error_response(502, "The front process did not answer.", false, &req->bytes_out);
        req->status = 502; /* no response (out of memory): the connection is closed */
    }
    tf_fetched_free(&f);
    req->response = r;
    __atomic_sub_fetch(&relays, 1, __ATOMIC_RELAXED);
    tf_request_resume(req);
    tf_request_unref(req);
}

static int relay_dispatch(void *backend, struct tf_request *req)
{
    (void)backend;
    struct tf_loop *loop = tf_loop_current();
    if (!loop)
        return -1;
    __atomic_add_fetch(&relays, 1, __ATOMIC_RELAXED);
    if (tf_loop_step_away(loop, relay_away, req) < 0) {
        __atomic_sub_fetch(&relays, 1, __ATOMIC_RELAXED);
        return -1;
    }
    return 0;
}

/* The pages made from the latency figures (a front fetches its workers'
 * for these only). */
static bool shows_latency(const char *sub, size_t len)
{
    static const char *const pages[] = { "", "/", "/metrics", "/api/latency", "/api/slowest",
                                         "/latency-dump" };
    return path_in(sub, len, pages, sizeof(pages) / sizeof(pages[0]));
}

/* Did a profiler control return NULL (made) because a front's stop is
 * taking its workers' profiles over (errno EAGAIN), or a second signal cut
 * that short (EINTR, export's only)? The caller clears errno before the
 * control's call: a stale EAGAIN would be a 503 for an out of memory. */
static bool stop_refuses(const char *made)
{
    return !made && (errno == EAGAIN || errno == EINTR);
}

/* A control's body (send_report's), or the 503 of stop_refuses or busy, or
 * the 504 of worker_silent: nothing is made from a part of the workers. */
static enum MHD_Result send_or_refuse(struct tf_request *req, unsigned status, char *body,
                                      size_t len, const char *type, const char *filename)
{
    if (stop_refuses(body))
        return refuse_while_stopping(req);
    if (busy(body))
        return refuse_while_busy(req);
    if (worker_silent(body))
        return refuse_while_worker_silent(req);
    return send_report(req, status, body, len, type, filename);
}

/* In the page, for the flame graph and function table, while another page
 * or export reads the call tree (busy), or when a front's merge left a
 * worker out (worker_silent): the rest of the page needs none. why is
 * HTML. */
static char *tree_missing_note(const char *base, const char *view, const char *why)
{
    struct prof_text t = { 0 };
    prof_text_add(&t, "<h2 id=functions>Functions</h2><p>%s; <a href=\"", why);
    prof_text_escaped(&t, base, PROF_ESC_HTML);
    prof_text_add(&t, "%s", view[0] ? "?" : "");
    prof_text_escaped(&t, view, PROF_ESC_HTML);
    prof_text_add(&t, "\">reload</a> in a moment for the flame graph and the functions.</p>\n");
    return prof_text_finish(&t);
}

/* The page itself: latency, the requests in flight, the function table
 * (the comparison's link before it with --mirror; a note instead while
 * another page or export reads the call tree), its links on base
 * (link_base's). NULL with errno EAGAIN when the stop refuses
 * (stop_refuses), else errno ENOMEM. */
static char *main_page(const struct tf_server *server, const struct tf_profiler_controls *p,
                       const char *query, const char *base, int in_flight)
{
    size_t n = 0;
    bool bad_view = false; /* the table says so */
    errno = 0;
    char *table = p ? p->table(query, false, base, &n, &bad_view) : NULL;
    if (p && stop_refuses(table))
        return NULL;
    if (p && busy(table)) {
        table = tree_missing_note(base, query, "Another profile page or an export is reading "
                                               "the call tree (one at a time)");
    } else if (p && worker_silent(table)) {
        char why[256];
        say_worker_silent(why, sizeof(why), "");
        table = tree_missing_note(base, query, why);
    }
    char *appendix = server->mirror ? compare_link(base, table) : NULL;
    errno = 0;
    char *running = p && p->inflight ? p->inflight(false, &n) : NULL;
    if (stop_refuses(running)) { /* the stop began after the table was made */
        free(table);
        free(appendix);
        errno = EAGAIN;
        return NULL;
    }
    struct prof_text all = { 0 }; /* the last Save, In flight, then the rest */
    pthread_mutex_lock(&save_lock);
    prof_text_add(&all, "%s", save_said ? save_said : "");
    pthread_mutex_unlock(&save_lock);
    prof_text_add(&all, "%s%s", running ? running : "", appendix ? appendix : table ? table : "");
    char *rest = prof_text_finish(&all);
    char *body = rest ? prof_latency_html(in_flight, base, query,
                                          p && p->enabled(), has_profile_files(server->cfg),
                                          rest) : NULL;
    free(rest);
    free(running);
    free(table);
    free(appendix);
    if (!body)
        errno = ENOMEM;
    return body;
}

/* The profile's exports, downloaded under the names their tools expect. */
static const struct profile_export {
    const char *path, *format, *type, *filename;
} exports[] = {
    { "/pstats", "pstats", "application/octet-stream", "tracfront.pstats" },
    { "/collapsed", "collapsed", "text/plain; charset=utf-8", "tracfront.collapsed" },
    { "/speedscope.json", "speedscope", "application/json", "tracfront.speedscope.json" },
    { "/callgrind", "callgrind", "text/plain; charset=utf-8", "callgrind.out.tracfront" },
    { "/tree", "tree", "text/plain; charset=utf-8", NULL }, /* for a front's merge */
};

static enum MHD_Result send_export(struct tf_request *req, const struct tf_profiler_controls *p,
                                   const struct profile_export *e)
{
    size_t n = 0;
    errno = 0;
    char *body = p->export(e->format, &n);
    if (!body && errno == EFBIG)
        return tf_server_reply(req, 500, "This export would pass its size limit: collapsed "
                               "stacks write each call path whole on every line, so deep "
                               "stacks grow with their depth squared. speedscope.json (it "
                               "grows with the call tree), pstats and callgrind hold the same "
                               "profile; or Clear and profile again.", false);
    if (body && n == 0) { /* nothing profiled: no export a tool could load */
        free(body);
        return tf_server_reply(req, 404, "Nothing has been profiled yet: start function "
                               "profiling (Start, or --profile) and make some requests (the "
                               "first profiled one is discarded unless "
                               "--profile-discard-first false).", false);
    }
    return send_or_refuse(req, 200, body, n, e->type, e->filename);
}

/* The answers the head alone decides (server_internal.h): at an upload's
 * head, before its body is read, and first thing at the final call. */
bool tf_profile_refused(struct tf_server *server, struct tf_request *req, const char *sub,
                        bool close, enum MHD_Result *result)
{
    req->native = true;
    const char *refusal = profile_refusal(server, req);
    size_t len = strcspn(sub, "?");
    bool control = is_control(sub, len), post = !strcmp(req->method, "POST");
    if (refusal)
        *result = tf_server_reply(req, 403, refusal, close);
    else if (server->relay_port && (sub_is(sub, len, "/stopped") || sub_is(sub, len, "/replace")))
        /* the front's alone */
        *result = tf_server_reply(req, 404, "No such profiler action.", close);
    else if (control ? !post : strcmp(req->method, "GET") != 0 && !req->is_head)
        *result = refuse_method(req, control ? "POST" : "GET, HEAD", close);
    else
        return false;
    return true;
}

/* A page, export or control of this process's (not a worker's relay);
 * base: link_base's, for its links and redirect. */
static enum MHD_Result serve_here(struct tf_server *server, struct tf_request *req,
                                  const char *sub, const char *base)
{
    static const char html[] = "text/html; charset=utf-8", json[] = "application/json";
    size_t len = strcspn(sub, "?");
    if (is_control(sub, len)) /* a POST: the others were refused */
        return control_profile(server, req, sub, len, base);
    int in_flight = tf_server_in_flight(server);
    const struct tf_profiler_controls *p = __atomic_load_n(&server->profiler, __ATOMIC_ACQUIRE);
    if (p && p->refresh && shows_latency(sub, len)) /* a front: add up the workers' first */
        in_flight = p->refresh();
    if (sub_is(sub, len, "/latency-dump")) { /* for a front's refresh */
        /* a worker's requests are its public server's (not this control port's) */
        const struct tf_server *twin = __atomic_load_n(&server->twin, __ATOMIC_ACQUIRE);
        char *body = prof_latency_dump(twin ? tf_server_in_flight(twin) : in_flight - 1);
        return send_body(req, 200, body, body ? strlen(body) : 0, "text/plain; charset=utf-8");
    }
    const char *query = sub[len] == '?' ? sub + len + 1 : "";
    size_t n = 0;
    char *body = NULL;
    if (len == 0 || sub_is(sub, len, "/")) {
        body = main_page(server, p, query, base, in_flight);
        return send_or_refuse(req, 200, body, body ? strlen(body) : 0, html, NULL);
    }
    if (sub_is(sub, len, "/request") && p) {
        char id[24];
        errno = 0;
        body = prof_query_get(query, "id", id, sizeof(id))
                   ? p->request_html(strtoull(id, NULL, 10), query, base, &n)
                   : NULL;
        if (!body && !stop_refuses(body) && !busy(body) && !worker_silent(body))
            return tf_server_reply(req, 404, p->refresh /* a front */
                                   ? "No call tree was kept for that request (function profiling "
                                     "off, not among the slowest, or its worker has stopped)."
                                   : "No call tree was kept for that request (function profiling "
                                     "off, or not among the slowest).", false);
        return send_or_refuse(req, 200, body, n, html, NULL);
    }
    /* /inflight: the page's HTML section alone (a front merges them) */
    bool api = sub_is(sub, len, "/api/inflight");
    if ((api || sub_is(sub, len, "/inflight")) && p && p->inflight) {
        errno = 0;
        body = p->inflight(api, &n);
        return send_or_refuse(req, 200, body, n, api ? json : html, NULL);
    }
    if (sub_is(sub, len, "/api/functions") && p) {
        bool bad_view = false;
        errno = 0;
        body = p->table(query, true, base, &n, &bad_view);
        return send_or_refuse(req, bad_view ? 400 : 200, body, n, json, NULL);
    }
    api = sub_is(sub, len, "/api/compare");
    if (server->mirror && (api || sub_is(sub, len, "/compare"))) {
        const char *primary = tf_mirror_primary(server->mirror) == TF_ROUTE_APP ? "app" : "upstream";
        body = api ? prof_compare_json(primary)
                   : prof_compare_html(primary, base);
        return send_body(req, 200, body, body ? strlen(body) : 0, api ? json : html);
    }
    if (sub_is(sub, len, "/modules") && p && p->modules) { /* for --reload */
        body = p->modules(&n);
        return send_body(req, 200, body, n, "text/plain; charset=utf-8");
    }
    if (sub_is(sub, len, "/metrics")) {
        body = prof_latency_prometheus(in_flight);
        return send_body(req, 200, body, body ? strlen(body) : 0,
                         "text/plain; version=0.0.4; charset=utf-8");
    }
    if (sub_is(sub, len, "/api/latency")) {
        body = prof_latency_json(in_flight);
        return send_body(req, 200, body, body ? strlen(body) : 0, json);
    }
    if (sub_is(sub, len, "/api/slowest")) {
        body = prof_latency_slowest_json();
        return send_body(req, 200, body, body ? strlen(body) : 0, json);
    }
    for (size_t i = 0; p && i < sizeof(exports) / sizeof(exports[0]); i++)
        if (sub_is(sub, len, exports[i].path))
            return send_export(req, p, &exports[i]);
    return tf_server_reply(req, 404, "No such profiler page.", false);
}

/* Answer a request for the profile path (final access-handler call). */
enum MHD_Result tf_profile_serve(struct tf_server *server, struct tf_request *req,
                                     const char *sub)
{
    enum MHD_Result refused;
    if (tf_profile_refused(server, req, sub, false, &refused))
        return refused;
    if (server->relay_port) { /* a worker: the whole server's profile is its front's */
        if (!strcmp(req->method, "POST") && !same_origin(req))
            return tf_server_reply(req, 403, "Cross-site request refused.", false);
        if (__atomic_load_n(&relays, __ATOMIC_RELAXED) >= MAX_RELAYS)
            return tf_server_reply(req, 503, "Too many profile pages at once; try again.", false);
        return tf_server_dispatch(server, req, relay_dispatch, NULL);
    }
    char *base = link_base(req->target, sub);
    if (!base)
        return tf_server_reply(req, 500, "Out of memory building the page.", false);
    enum MHD_Result result = serve_here(server, req, sub, base);
    free(base);
    return result;
}

void tf_server_profile_shutdown(const struct tf_server *server)
{
    if (!server->cfg->profile_flush_at_shutdown) {
        save_profile(server);
        return;
    }
    const char *files[] = { server->cfg->profile_log, server->cfg->profile_callgrind };
    for (size_t i = 0; i < 2; i++)
        if (files[i] && unlink(files[i]) == 0)
            tf_log_info("profile: removed %s (--profile-flush-at-shutdown)", files[i]);
}

