/* auth.c — Basic and Digest authentication on tracd's login paths (see
 * auth.h). The password files live in passwd.c; this file decides whether a
 * request is a login path, reads the Authorization header, and builds the
 * 401 challenge; Digest nonces and their replay checks live in nonces.c.
 * It never logs a password, and never trusts a user name it did not verify. */
#include "proxy/auth.h"

#include <errno.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "proxy/hash.h"
#include "proxy/http_check.h"
#include "proxy/log.h"
#include "proxy/nonces.h"
#include "proxy/passwd.h"
#include "proxy/platform.h"
#include "proxy/server.h"
#include "proxy/trac_projects.h"

#define MAX_REALM 200          /* at most TF_NONCE_REALM_MAX */
#define MAX_PROJECT 255
#define MAX_CREDENTIALS 8192    /* longest Authorization value looked at (Apache: 8190) */

struct realm {
    char *project;              /* "*" or a project's folder name */
    char *name;                 /* the realm */
    bool digest;
    struct tf_passwd *file;
};

struct tf_auth {
    struct realm *realms;       /* read-only after tf_auth_new */
    size_t n;
    bool parent_dir;            /* /NAME/login (tf_trac_projects) */
    char *single_project;       /* else the one project's folder name, or "" */
    uint32_t nonce_lifetime;    /* seconds */
    const char *mount;          /* the config's; read-only */
    struct tf_nonces *nonces;   /* Digest's; safe from any thread */
};

/* --- the configuration ------------------------------------------------------ */

struct spec {
    const char *flag;
    bool digest;
    char *buf;                  /* owns project, file and realm */
    char *project, *file, *realm;
};

/* "PROJECT,FILE,REALM": split at the first two commas (a realm may hold
 * more). 0, or -1 with err. */
static int parse_spec(const char *flag, const char *text, struct spec *s, char *err,
                      size_t errlen)
{
    s->flag = flag;
    s->digest = !strcmp(flag, "--digest-auth");
    if (!(s->buf = strdup(text))) {
        snprintf(err, errlen, "%s: out of memory", flag);
        return -1;
    }
    char *c1 = strchr(s->buf, ','), *c2 = c1 ? strchr(c1 + 1, ',') : NULL;
    if (!c2 || c1 == s->buf || c2 == c1 + 1 || !c2[1]) {
        snprintf(err, errlen, "%s: '%s' is not PROJECT,%s,REALM (e.g. *,/srv/trac/%s,Trac)",
                 flag, text, s->digest ? "HTDIGEST" : "HTPASSWD",
                 s->digest ? "htdigest" : "htpasswd");
        return -1;
    }
    *c1 = *c2 = 0;
    s->project = s->buf;
    s->file = c1 + 1;
    s->realm = c2 + 1;
    if (strchr(s->project, '/') || strlen(s->project) > MAX_PROJECT ||
        !strcmp(s->project, ".") || !strcmp(s->project, "..")) {
        snprintf(err, errlen, "%s: '%s' is not a project (a Trac environment's folder name, "
                 "or * for all)", flag, s->project);
        return -1;
    }
    for (const char *p = s->realm; *p; p++)
        if (*p == '"' || *p == '\\' || (unsigned char)*p < 0x20 || *p == 0x7f ||
            p - s->realm >= MAX_REALM) {
            snprintf(err, errlen, "%s: the realm '%s' must be at most %d characters without "
                     "quotes, backslashes or control characters", flag, s->realm, MAX_REALM);
            return -1;
        }
    return 0;
}

/* FILE relative to the working directory at start, made absolute so a later
 * chdir (an app may do one) cannot change which file is re-read. */
static char *absolute(const char *file)
{
    if (file[0] == '/')
        return strdup(file);
    char *cwd = getcwd(NULL, 0);
    size_t n = cwd ? strlen(cwd) + strlen(file) + 2 : 0;
    char *out = cwd ? malloc(n) : NULL;
    if (out)
        snprintf(out, n, "%s/%s", cwd, file);
    free(cwd);
    return out;
}

/* --trac-env PATH serves the project named by the last component of PATH
 * made absolute (tracd: basename(abspath(path))): "." and ".." are taken
 * away by name, as abspath does, and a symlink keeps its own name (so
 * "--trac-env ." names the folder, "/srv/current" names "current"). */
static char *env_basename(const char *given)
{
    char *path = absolute(given);
    if (!path)
        return NULL;
    size_t n = strlen(path), depth = 0, pos = 0;
    const char **start = calloc(n / 2 + 2, sizeof(*start)); /* the segments kept */
    size_t *len = calloc(n / 2 + 2, sizeof(*len));
    while (start && len && pos < n) {
        const char *seg = path + pos + strspn(path + pos, "/");
        size_t k = strcspn(seg, "/");
        pos = (size_t)(seg - path) + k;
        if (k == 2 && !strncmp(seg, "..", 2))
            depth -= depth > 0;
        else if (k && !(k == 1 && seg[0] == '.')) {
            start[depth] = seg;
            len[depth++] = k;
        }
    }
    char *name = start && len ? strndup(depth ? start[depth - 1] : "", depth ? len[depth - 1] : 0)
                              : NULL;
    free(start);
    free(len);
    free(path);
    return name;
}

/* Is PROJECT one this configuration serves? 0, or -1 with err. */
static int check_project(const struct tf_config *cfg, const struct spec *s, char *err,
                         size_t errlen)
{
    if (!cfg->have_app) {
        snprintf(err, errlen, "%s: needs an application (--trac-env, --trac-env-parent-dir, "
                 "--app or --wsgi-file): credentials are asked for on its /login path", s->flag);
        return -1;
    }
    struct tf_trac_projects served = tf_trac_projects(cfg);
    if (served.parent_dir || !strcmp(s->project, "*"))
        return 0;
    if (!served.env_path) {
        snprintf(err, errlen, "%s: with --app or --wsgi-file there is one project: use * for "
                 "PROJECT, not '%s' (for Trac's projects in folders under DIR, as mod_wsgi's "
                 "SetEnv trac.env_parent_dir, give --env trac.env_parent_dir=DIR)", s->flag,
                 s->project);
        return -1;
    }
    char *name = env_basename(served.env_path);
    int rc = name && !strcmp(name, s->project) ? 0 : -1;
    if (rc < 0)
        snprintf(err, errlen, "%s: project '%s' is not served: %s serves '%s' (use %s or *)",
                 s->flag, s->project, served.named_by, name ? name : "?", name ? name : "?");
    free(name);
    return rc;
}

static int add_realm(struct tf_auth *auth, const struct spec *s, char *err, size_t errlen)
{
    char *path = absolute(s->file);
    struct realm *r = &auth->realms[auth->n];
    *r = (struct realm){ strdup(s->project), strdup(s->realm), s->digest, NULL };
    auth->n++;
    if (!path || !r->project || !r->name) {
        free(path);
        snprintf(err, errlen, "%s: out of memory", s->flag);
        return -1;
    }
    r->file = tf_passwd_open(path, s->digest ? TF_PASSWD_HTDIGEST : TF_PASSWD_HTPASSWD,
                             s->realm, s->flag, err, errlen);
    free(path);
    return r->file ? 0 : -1;
}

/* Check one spec against the configuration and the specs before it; with
 * auth, also read its file into auth. 0, or -1 with err. */
static int take_spec(const struct tf_config *cfg, struct tf_auth *auth, struct spec *all,
                     size_t i, char *err, size_t errlen)
{
    struct spec *s = &all[i];
    if (check_project(cfg, s, err, errlen) < 0)
        return -1;
    for (size_t j = 0; j < i; j++)
        if (!strcmp(all[j].project, s->project)) {
            snprintf(err, errlen, "%s: project '%s' already has a %s; give one per project",
                     s->flag, s->project, all[j].flag);
            return -1;
        }
    if (auth)
        return add_realm(auth, s, err, errlen);
    if (cfg->drop_privileges && geteuid() == 0)
        return 0; /* root does not open what USER may have put there: main.c checks it as USER */
    /* not blocking: a FIFO there would hang the start, deaf to SIGTERM */
    int fd = open(s->file, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    struct stat st;
    char byte;
    bool regular = fd >= 0 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
    if (regular && read(fd, &byte, 1) >= 0)
        return close(fd), 0;
    snprintf(err, errlen, "%s: cannot read '%s': %s%s%s%s", s->flag, s->file,
             fd >= 0 && !regular ? "not a regular file" : strerror(errno),
             cfg->drop_privileges ? " (read as --user " : "",
             cfg->drop_privileges ? cfg->user : "", cfg->drop_privileges ? ")" : "");
    if (fd >= 0)
        close(fd);
    return -1;
}

/* Walk every --basic-auth and --digest-auth. 0, or -1 with err. */
static int walk_specs(const struct tf_config *cfg, struct tf_auth *auth, char *err, size_t errlen)
{
    size_t n = cfg->n_basic_auth + cfg->n_digest_auth, parsed = 0;
    struct spec *all = calloc(n ? n : 1, sizeof(*all));
    int rc = all ? 0 : -1;
    if (!all)
        snprintf(err, errlen, "--basic-auth: out of memory");
    for (size_t i = 0; rc == 0 && i < n; i++) {
        bool basic = i < cfg->n_basic_auth;
        const char *text = basic ? cfg->basic_auth[i] : cfg->digest_auth[i - cfg->n_basic_auth];
        parsed++;
        rc = parse_spec(basic ? "--basic-auth" : "--digest-auth", text, &all[i], err, errlen);
        if (rc == 0)
            rc = take_spec(cfg, auth, all, i, err, errlen);
    }
    for (size_t i = 0; all && i < parsed; i++)
        free(all[i].buf);
    free(all);
    return rc;
}

int tf_auth_config_check(const struct tf_config *cfg, char *err, size_t errlen)
{
    if (cfg->digest_nonce_lifetime < 1 || cfg->digest_nonce_lifetime > 86400) {
        snprintf(err, errlen, "--digest-nonce-lifetime: %g is not from 1 to 86400 seconds",
                 cfg->digest_nonce_lifetime);
        return -1;
    }
    if (walk_specs(cfg, NULL, err, errlen) < 0)
        return -1;
    /* Trac's dispatch_request takes TRAC_ENV for trac.env_path when the
     * environ has none, and a path wins over a parent dir: it would serve
     * that one project at every path, which the logins per project do not
     * match (a user checked against one project's file, logged in to it). */
    const char *trac_env = getenv("TRAC_ENV");
    if (cfg->n_basic_auth + cfg->n_digest_auth > 0 && !cfg->trac_env_parent_dir &&
        tf_trac_projects(cfg).parent_dir && trac_env && trac_env[0]) {
        snprintf(err, errlen, "--env trac.env_parent_dir with --basic-auth/--digest-auth: "
                 "TRAC_ENV is set in tracfront's environment ('%s'), and Trac then serves that "
                 "one project at every path, not one per folder as the logins are asked for; "
                 "unset TRAC_ENV", trac_env);
        return -1;
    }
    return 0;
}

static unsigned char shared_key[32]; /* set once before any server starts */
static bool shared_key_set;

void tf_auth_share_key(const char *secret)
{
    size_t n = strlen(secret);
    memset(shared_key, 0, sizeof(shared_key));
    memcpy(shared_key, secret, n < sizeof(shared_key) ? n : sizeof(shared_key));
    shared_key_set = n >= 32;
}

struct tf_auth *tf_auth_new(const struct tf_config *cfg, char *err, size_t errlen)
{
    err[0] = 0;
    size_t n = cfg->n_basic_auth + cfg->n_digest_auth;
    if (n == 0)
        return NULL;
    struct tf_trac_projects served = tf_trac_projects(cfg);
    struct tf_auth *auth = calloc(1, sizeof(*auth));
    if (!auth || !(auth->realms = calloc(n, sizeof(*auth->realms))) ||
        !(auth->single_project = served.env_path ? env_basename(served.env_path) : strdup(""))) {
        snprintf(err, errlen, "--basic-auth: out of memory");
        tf_auth_free(auth);
        return NULL;
    }
    auth->parent_dir = served.parent_dir != NULL;
    auth->mount = cfg->mount;
    unsigned char key[32];
    if (shared_key_set) /* --workers: one key for every worker */
        memcpy(key, shared_key, sizeof(key));
    else if (tf_random_bytes(key, sizeof(key)) < 0) {
        snprintf(err, errlen, "--digest-auth: no random numbers from the system: %m");
        tf_auth_free(auth);
        return NULL;
    }
    auth->nonces = tf_nonces_new(key, (uint32_t)cfg->digest_nonce_lifetime);
    explicit_bzero(key, sizeof(key));
    if (!auth->nonces) {
        snprintf(err, errlen, "--digest-auth: cannot make the nonces' table: %m");
        tf_auth_free(auth);
        return NULL;
    }
    if (walk_specs(cfg, auth, err, errlen) < 0) {
        tf_auth_free(auth);
        return NULL;
    }
    return auth;
}

void tf_auth_free(struct tf_auth *auth)
{
    if (!auth)
        return;
    for (size_t i = 0; i < auth->n; i++) {
        free(auth->realms[i].project);
        free(auth->realms[i].name);
        tf_passwd_free(auth->realms[i].file);
    }
    tf_nonces_free(auth->nonces);
    free(auth->realms);
    free(auth->single_project);
    free(auth);
}

/* --- which requests are login paths ------------------------------------------ */

/* The next non-empty '/'-separated segment of p[0..n) from *pos; its length. */
static size_t next_segment(const char *p, size_t n, size_t *pos, const char **seg)
{
    while (*pos < n && p[*pos] == '/')
        (*pos)++;
    *seg = p + *pos;
    size_t start = *pos;
    while (*pos < n && p[*pos] != '/')
        (*pos)++;
    return *pos - start;
}

bool tf_auth_login_path(const char *target, const char *mount, bool parent_dir, char *project,
                        size_t cap)
{
    const char *path = target; /* origin-form: the server rewrote absolute URLs */
    if (target[0] != '/')
        return false; /* "*" */
    size_t raw = strcspn(path, "?"), n = 0, mlen = strlen(mount), pos = 0;
    char *p = malloc(raw + 1);
    if (!p)
        return false;
    n = tf_percent_decode(path, raw, p); /* as PATH_INFO is decoded */
    bool found = false;
    const char *seg0, *seg1;
    if (n >= mlen && !memcmp(p, mount, mlen) && (n == mlen || p[mlen] == '/')) {
        pos = mlen;
        size_t len0 = next_segment(p, n, &pos, &seg0);
        size_t len1 = parent_dir ? next_segment(p, n, &pos, &seg1) : len0;
        const char *login = parent_dir ? seg1 : seg0;
        found = len1 == 5 && !memcmp(login, "login", 5) &&
                (!parent_dir || (len0 < cap && !memchr(seg0, 0, len0)));
        if (found) {
            size_t keep = parent_dir ? len0 : 0;
            memcpy(project, seg0, keep);
            project[keep] = 0;
        }
    }
    free(p);
    return found;
}

static const struct realm *find_realm(const struct tf_auth *auth, const char *project)
{
    const struct realm *any = NULL;
    for (size_t i = 0; i < auth->n; i++) {
        if (!strcmp(auth->realms[i].project, project))
            return &auth->realms[i];
        if (!strcmp(auth->realms[i].project, "*"))
            any = &auth->realms[i];
    }
    return any;
}

/* --- verdicts and the log ---------------------------------------------------- */

struct verdict {
    unsigned status;            /* 0 = verified, else 401, 400 or 500 */
    bool stale;                 /* Digest: right password, old nonce */
    bool file_unreadable;       /* the 500 is for the password file */
    char *user;                 /* verified user name; owned (tf_auth_check takes it) */
};

/* A client-supplied name made safe for one log line. */
static void printable(const char *in, char *out, size_t cap)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    for (; *in && o + 5 < cap; in++) {
        unsigned char c = (unsigned char)*in;
        if (c < 0x20 || c >= 0x7f || c == '"' || c == '\\') {
            out[o++] = '\\';
            out[o++] = 'x';
            out[o++] = hex[c >> 4];
            out[o++] = hex[c & 15];
        } else
            out[o++] = (char)c;
    }
    out[o] = 0;
}

/* One error line for a refusal answered with status. */
static void refuse_with(const struct tf_request *req, const struct realm *r, const char *user,
                        const char *why, unsigned status)
{
    char name[256];
    printable(user ? user : "", name, sizeof(name));
    tf_log_error("auth: %s: user \"%s\" from %s (%s realm \"%s\", %s %s); answered %u", why,
                 name, req->remote_addr, r->digest ? "Digest" : "Basic", r->name, req->method,
                 req->log_target, status);
}

static void refuse(const struct tf_request *req, const struct realm *r, const char *user,
                   const char *why)
{
    refuse_with(req, r, user, why, 401);
}

/* "Basic xyz" → "xyz" when scheme matches (case-insensitive), else NULL. */
static const char *credentials(const char *header, const char *scheme)
{
    size_t n = strlen(scheme);
    if (strncasecmp(header, scheme, n) != 0 || (header[n] != ' ' && header[n] != '\t'))
        return NULL;
    header += n;
    while (*header == ' ' || *header == '\t')
        header++;
    return header;
}

/* --- Basic ---------------------------------------------------------------------- */

/* Strict base64 (padding optional; trailing whitespace, which is not part
 * of a header's value, ignored) into out; its length, or -1. */
static long base64_decode(const char *in, unsigned char *out, size_t cap)
{
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t len = strlen(in), n = strcspn(in, "= \t"), o = 0;
    while (len > n && (in[len - 1] == ' ' || in[len - 1] == '\t'))
        len--;
    uint32_t acc = 0;
    int bits = 0;
    size_t pad = len - n;
    if (n % 4 == 1 || pad > 2 || strspn(in + n, "=") < pad)
        return -1;
    for (size_t i = 0; i < n; i++) {
        const char *c = memchr(alphabet, in[i], 64);
        if (!c)
            return -1;
        acc = acc << 6 | (uint32_t)(c - alphabet);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (o == cap)
                return -1;
            out[o++] = (unsigned char)(acc >> bits);
        }
    }
    return (long)o;
}

/* The password was right: user goes on (out of memory: a 500). */
static void verified(struct verdict *v, const char *user)
{
    v->user = strdup(user);
    v->status = v->user ? 0 : 500;
}

/* The password file is gone or unreadable: as Apache, a 500, not the users
 * read before (deleting the file must lock them out). */
static void file_unreadable(const struct tf_request *req, const struct realm *r,
                            const char *user, struct verdict *v)
{
    refuse_with(req, r, user, "the password file cannot be read", 500);
    v->status = 500;
    v->file_unreadable = true;
}

static void check_basic(const struct realm *r, const struct tf_request *req, const char *b64,
                        struct verdict *v)
{
    unsigned char buf[MAX_CREDENTIALS / 4 * 3 + 1]; /* any value up to the limit, decoded */
    if (strlen(b64) >= MAX_CREDENTIALS) {
        refuse(req, r, NULL, "Basic credentials too long");
        return;
    }
    long n = base64_decode(b64, buf, sizeof(buf) - 1);
    char *colon = n >= 0 ? memchr(buf, ':', (size_t)n) : NULL;
    if (!colon || memchr(buf, 0, (size_t)n) || colon == (char *)buf) {
        refuse(req, r, NULL, "malformed Basic credentials");
        goto out;
    }
    buf[n] = 0;
    *colon = 0;
    const char *user = (const char *)buf, *password = colon + 1;
    char hash[256];
    int found = tf_passwd_lookup(r->file, user, hash, sizeof(hash));
    if (found == TF_PASSWD_UNREADABLE)
        file_unreadable(req, r, user, v);
    else if (found < 0)
        refuse(req, r, user, "unknown user");
    else if (tf_passwd_verify(hash, password) != 1)
        refuse(req, r, user, "wrong password");
    else
        verified(v, user);
out:
    explicit_bzero(buf, sizeof(buf));
}

/* --- Digest --------------------------------------------------------------------- */

struct digest {
    char *username, *realm, *nonce, *uri, *response, *qop, *nc, *cnonce, *algorithm;
};

/* One value at *s: a quoted-string (unescaped in place) or a token. */
static char *param_value(char **s)
{
    char *p = *s, *value = p;
    if (*p == '"') {
        char *out = value = ++p;
        while (*p && *p != '"') {
            if (*p == '\\' && p[1])
                p++;
            *out++ = *p++;
        }
        if (*p != '"')
            return NULL;
        *out = 0;
        p++;
    } else {
        while (tf_is_token(p, 1))
            p++;
        if (p == value)
            return NULL;
    }
    if (*p && *p != ',' && *p != ' ' && *p != '\t')
        return NULL;
    if (*p)
        *p++ = 0;
    *s = p;
    return value;
}

/* Parse "k=v, k="v"" in place. 0, or -1 for anything malformed. */
static int parse_digest(char *s, struct digest *d)
{
    static const char *const names[] = { "username", "realm", "nonce", "uri", "response",
                                         "qop", "nc", "cnonce", "algorithm" };
    char **fields[] = { &d->username, &d->realm, &d->nonce, &d->uri, &d->response,
                        &d->qop, &d->nc, &d->cnonce, &d->algorithm };
    memset(d, 0, sizeof(*d));
    for (;;) {
        s += strspn(s, " \t,");
        if (!*s)
            return 0;
        char *name = s;
        while (tf_is_token(s, 1))
            s++;
        size_t nlen = (size_t)(s - name);
        s += strspn(s, " \t");
        if (nlen == 0 || *s != '=')
            return -1;
        s++;
        s += strspn(s, " \t");
        char *value = param_value(&s);
        if (!value)
            return -1;
        for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
            if (strlen(names[i]) != nlen || strncasecmp(name, names[i], nlen) != 0)
                continue;
            if (*fields[i])
                return -1; /* given twice */
            *fields[i] = value;
        }
    }
}

void tf_auth_digest_response(const char *ha1, const char *nonce, const char *nc,
                             const char *cnonce, const char *qop, const char *method,
                             const char *uri, char out[33])
{
    char ha2[33];
    struct tf_md5 ctx;
    unsigned char d[16];
    tf_md5_init(&ctx);
    tf_md5_update(&ctx, method, strlen(method));
    tf_md5_update(&ctx, ":", 1);
    tf_md5_update(&ctx, uri, strlen(uri));
    tf_md5_final(&ctx, d);
    tf_hex(d, 16, ha2);
    const char *parts[] = { ha1, nonce, nc, cnonce, qop, ha2 };
    tf_md5_init(&ctx);
    for (size_t i = 0; i < 6; i++) {
        if (i)
            tf_md5_update(&ctx, ":", 1);
        tf_md5_update(&ctx, parts[i], strlen(parts[i]));
    }
    tf_md5_final(&ctx, d);
    tf_hex(d, 16, out);
}

/* The parts every qop=auth answer must have, in the shape they must have. */
static const char *digest_shape(const struct digest *d, const struct realm *r)
{
    if (!d->username || !d->realm || !d->nonce || !d->uri || !d->response || !d->qop ||
        !d->nc || !d->cnonce)
        return "incomplete Digest credentials";
    if (strcmp(d->qop, "auth") != 0 || (d->algorithm && strcasecmp(d->algorithm, "MD5") != 0))
        return "Digest credentials with another qop or algorithm than auth and MD5";
    if (!tf_is_hex(d->nc, 8) || !tf_is_hex(d->response, 32))
        return "malformed Digest credentials";
    if (strcmp(d->realm, r->name) != 0)
        return "Digest credentials for another realm";
    return NULL;
}

static void check_digest(struct tf_auth *auth, const struct realm *r,
                         const struct tf_request *req, const char *value, struct verdict *v)
{
    char buf[MAX_CREDENTIALS], ha1[64], expected[33], response[33];
    struct digest d;
    if (strlen(value) >= sizeof(buf)) {
        refuse(req, r, NULL, "Digest credentials too long");
        return;
    }
    memcpy(buf, value, strlen(value) + 1);
    const char *why = parse_digest(buf, &d) < 0 ? "malformed Digest credentials"
                                                : digest_shape(&d, r);
    if (why) {
        refuse(req, r, d.username, why);
        return;
    }
    /* RFC 7616 3.4: the target as sent; origin-form also for an absolute-form one */
    if (strcmp(d.uri, req->target) != 0 &&
        (!req->sent_target || strcmp(d.uri, req->sent_target) != 0)) {
        refuse_with(req, r, d.username, "the Digest uri is not the request's target", 400);
        v->status = 400;
        return;
    }
    if (!tf_nonces_ours(auth->nonces, r->name, d.nonce)) {
        refuse(req, r, d.username, "a nonce this server did not issue");
        return;
    }
    int found = tf_passwd_lookup(r->file, d.username, ha1, sizeof(ha1));
    if (found < 0) {
        if (found == TF_PASSWD_UNREADABLE)
            file_unreadable(req, r, d.username, v);
        else
            refuse(req, r, d.username, "unknown user");
        return;
    }
    tf_auth_digest_response(ha1, d.nonce, d.nc, d.cnonce, d.qop, req->method, d.uri, expected);
    for (int i = 0; i < 33; i++)
        response[i] = (d.response[i] >= 'A' && d.response[i] <= 'F')
                          ? (char)(d.response[i] - 'A' + 'a') : d.response[i];
    if (!tf_secret_equal(expected, response)) {
        refuse(req, r, d.username, "wrong password");
        return;
    }
    enum tf_nonce_state state = tf_nonces_take(auth->nonces, d.nonce, d.nc);
    if (state == TF_NONCE_FRESH) {
        verified(v, d.username);
        return;
    }
    if (state == TF_NONCE_NC_USED) /* as Apache: a right answer seen before may be a replay */
        refuse(req, r, d.username, "a nonce count used before (a replayed answer?)");
    else if (state == TF_NONCE_NC_BEHIND)
        refuse(req, r, d.username, "a nonce count below the highest one taken (sent out of "
               "order?)");
    else if (state == TF_NONCE_NC_ZERO)
        refuse(req, r, d.username, "an invalid nonce count 00000000 (counts start at 1)");
    v->stale = true; /* the client retries with a new nonce, without asking its user */
}

/* --- the answer ---------------------------------------------------------------- */

static unsigned challenge(struct tf_auth *auth, const struct realm *r, struct tf_request *req,
                          const struct verdict *v, struct MHD_Response **response)
{
    if (v->status == 400 || v->status == 500) {
        *response = tf_error_response(v->status, v->status == 400
                                      ? "The Digest uri does not match the request."
                                      : "The password file cannot be read.", false,
                                      &req->bytes_out);
        return *response ? v->status : 500;
    }
    char value[MAX_REALM + 200], nonce[TF_NONCE_LEN + 1];
    if (r->digest) {
        tf_nonces_make(auth->nonces, r->name, nonce);
        snprintf(value, sizeof(value), "Digest realm=\"%s\", qop=\"auth\", algorithm=MD5, "
                 "nonce=\"%s\", stale=%s", r->name, nonce, v->stale ? "true" : "false");
    } else
        snprintf(value, sizeof(value), "Basic realm=\"%s\", charset=\"UTF-8\"", r->name);
    *response = tf_error_response(401, "This page needs a user name and password.", false,
                                  &req->bytes_out);
    if (!*response)
        return 500;
    if (MHD_add_response_header(*response, "WWW-Authenticate", value) != MHD_YES) {
        MHD_destroy_response(*response);
        *response = NULL;
        return 500;
    }
    return 401;
}

/* The realm guarding req's login path, or NULL (not a login path, or tracd
 * would not authenticate this project: the app decides). */
static const struct realm *realm_for(const struct tf_auth *auth, const struct tf_request *req)
{
    char project[MAX_PROJECT + 1];
    if (!tf_auth_login_path(req->target, auth->mount, auth->parent_dir, project,
                            sizeof(project)))
        return NULL;
    return find_realm(auth, auth->parent_dir ? project : auth->single_project);
}

/* The credentials for realm r in req, after the scheme's name; NULL if none. */
static const char *credentials_for(const struct realm *r, const struct tf_request *req)
{
    const char *header = tf_request_header(req, "Authorization");
    return header ? credentials(header, r->digest ? "Digest" : "Basic") : NULL;
}

bool tf_auth_may_block(const struct tf_auth *auth, const struct tf_request *req)
{
    const struct realm *r = realm_for(auth, req);
    return r && !r->digest && credentials_for(r, req);
}

unsigned tf_auth_check(struct tf_auth *auth, struct tf_request *req,
                       struct MHD_Response **response)
{
    *response = NULL;
    const struct realm *r = realm_for(auth, req);
    if (!r)
        return 0;
    struct verdict v = { .status = 401 };
    const char *cred = credentials_for(r, req);
    if (cred && r->digest)
        check_digest(auth, r, req, cred, &v);
    else if (cred)
        check_basic(r, req, cred, &v);
    if (v.status == 500 && !v.file_unreadable) {
        *response = tf_error_response(500, "Out of memory.", false, &req->bytes_out);
        return 500;
    }
    if (v.status)
        return challenge(auth, r, req, &v, response);
    req->remote_user = v.user;
    req->auth_type = r->digest ? "Digest" : "Basic";
    return 0;
}
