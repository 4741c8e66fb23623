/* passwd.c — htpasswd and htdigest files (see passwd.h). A file becomes a
 * table sorted by user name, swapped whole under the file's lock when the
 * file changes, so a lookup sees the old table or the new one, never half.
 * bcrypt and crypt go to libxcrypt's crypt_r; $apr1$ and {SHA} are computed
 * here with hash.c. Passwords never reach a log line or outlive a call. */
#include "proxy/passwd.h"

#include <crypt.h>
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "proxy/hash.h"
#include "proxy/http_check.h"
#include "proxy/log.h"
#include "proxy/platform.h"

/* How often a file's identity, size, mtime and ctime are looked at, at most. */
#define CHECK_INTERVAL_US 1000000u

static const char itoa64[] =
    "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

struct entry {
    char *user;                 /* one allocation: "user\0secret\0" */
    const char *secret;
    size_t line;
};

struct table {
    struct entry *entries;      /* sorted by user; one entry per user */
    size_t n;
};

struct signature {              /* what tells a changed file */
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtime;
    struct timespec ctime;      /* moves also when a rewrite keeps the mtime (cp -p,
                                   rsync -t) */
};

struct tf_passwd {
    char *path, *realm;         /* read-only */
    const char *flag;           /* read-only, static string */
    enum tf_passwd_kind kind;   /* read-only */
    pthread_mutex_t lock;       /* guards everything below */
    struct table table;
    struct signature seen;      /* of the file the table came from */
    uint64_t checked_us;        /* last look at the file */
    int failed_errno;           /* why the last look could not read the file (logged
                                   once); 0 = it could */
};

static void table_free(struct table *t)
{
    for (size_t i = 0; i < t->n; i++)
        free(t->entries[i].user);
    free(t->entries);
    t->entries = NULL;
    t->n = 0;
}

static int by_user_then_line(const void *a, const void *b)
{
    const struct entry *x = a, *y = b;
    int c = strcmp(x->user, y->user);
    return c ? c : (x->line > y->line) - (x->line < y->line);
}

/* Sort, and keep the first line of a user given twice (as Apache does). */
static void table_finish(struct tf_passwd *pw, struct table *t)
{
    qsort(t->entries, t->n, sizeof(*t->entries), by_user_then_line);
    size_t kept = 0;
    for (size_t i = 0; i < t->n; i++) {
        if (kept && !strcmp(t->entries[kept - 1].user, t->entries[i].user)) {
            tf_log_error("%s %s, line %zu: that user is already on line %zu; line ignored",
                         pw->flag, pw->path, t->entries[i].line, t->entries[kept - 1].line);
            free(t->entries[i].user);
            continue;
        }
        t->entries[kept++] = t->entries[i];
    }
    t->n = kept;
}

/* Parse one trimmed, non-comment line into user and secret (pointers into
 * line, which is modified). NULL on success, else why it was skipped. */
static const char *parse_line(const struct tf_passwd *pw, char *line, char **user,
                              char **secret)
{
    char *colon = strchr(line, ':');
    if (!colon || colon == line)
        return pw->kind == TF_PASSWD_HTPASSWD ? "not USER:HASH" : "not USER:REALM:HA1";
    *colon = 0;
    *user = line;
    char *rest = colon + 1;
    if (pw->kind == TF_PASSWD_HTPASSWD) {
        rest[strcspn(rest, ":")] = 0; /* extra fields (comments) are ignored */
        *secret = rest;
        return tf_passwd_hash_known(rest) ? NULL
            : "the password hash is not bcrypt ($2y$), Apache MD5 ($apr1$), SHA-1 ({SHA}) "
              "or crypt (DES, $1$, $5$, $6$)";
    }
    char *realm_end = strchr(rest, ':');
    if (!realm_end)
        return "not USER:REALM:HA1";
    *realm_end = 0;
    *secret = realm_end + 1;
    (*secret)[strcspn(*secret, ":")] = 0;
    if (!tf_is_hex(*secret, 32))
        return "the hash is not 32 hex digits (MD5 of USER:REALM:PASSWORD)";
    for (char *p = *secret; *p; p++)
        if (*p >= 'A' && *p <= 'F')
            *p = (char)(*p - 'A' + 'a');
    if (strcmp(rest, pw->realm) != 0)
        *secret = NULL; /* another realm's user: not ours, not an error */
    return NULL;
}

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n && (s[n - 1] == '\n' || s[n - 1] == '\r' || s[n - 1] == ' ' || s[n - 1] == '\t'))
        s[--n] = 0;
    return s;
}

static int table_add(struct table *t, size_t *cap, const char *user, const char *secret,
                     size_t line)
{
    if (t->n == *cap) {
        size_t grown = *cap ? *cap * 2 : 16;
        struct entry *e = realloc(t->entries, grown * sizeof(*e));
        if (!e)
            return -1;
        t->entries = e;
        *cap = grown;
    }
    size_t ulen = strlen(user), slen = strlen(secret);
    char *mem = malloc(ulen + slen + 2);
    if (!mem)
        return -1;
    memcpy(mem, user, ulen + 1);
    memcpy(mem + ulen + 1, secret, slen + 1);
    t->entries[t->n++] = (struct entry){ mem, mem + ulen + 1, line };
    return 0;
}

/* Read the whole file into a new table. 0, or -1 with errno set. */
static int load(struct tf_passwd *pw, FILE *f, struct table *out)
{
    struct table t = { 0 };
    size_t cap = 0, lineno = 0, len = 0;
    char *buf = NULL;
    int rc = 0;
    while (getline(&buf, &len, f) >= 0) {
        lineno++;
        char *line = trim(buf), *user = NULL, *secret = NULL;
        if (!*line || *line == '#')
            continue;
        const char *why = parse_line(pw, line, &user, &secret);
        if (why) {
            tf_log_error("%s %s, line %zu: %s; line skipped", pw->flag, pw->path, lineno, why);
            continue;
        }
        if (secret && table_add(&t, &cap, user, secret, lineno) < 0) {
            rc = -1;
            break;
        }
    }
    if (ferror(f) && rc == 0)
        rc = -1;
    int saved = rc < 0 ? (errno ? errno : ENOMEM) : 0;
    free(buf);
    if (rc < 0) {
        table_free(&t);
        errno = saved;
        return -1;
    }
    table_finish(pw, &t);
    if (t.n == 0)
        tf_log_error("%s %s: no users%s%s%s", pw->flag, pw->path,
                     pw->kind == TF_PASSWD_HTDIGEST ? " in realm \"" : "",
                     pw->kind == TF_PASSWD_HTDIGEST ? pw->realm : "",
                     pw->kind == TF_PASSWD_HTDIGEST ? "\"" : "");
    *out = t;
    return 0;
}

static void signature_of(const struct stat *st, struct signature *sig)
{
    *sig = (struct signature){ st->st_dev, st->st_ino, st->st_size, st->st_mtim, st->st_ctim };
}

static bool same_time(const struct timespec *a, const struct timespec *b)
{
    return a->tv_sec == b->tv_sec && a->tv_nsec == b->tv_nsec;
}

static bool same_signature(const struct signature *a, const struct signature *b)
{
    return a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
           same_time(&a->mtime, &b->mtime) && same_time(&a->ctime, &b->ctime);
}

/* Open and read the file; on success replace the table (lock held, or not
 * shared yet). 0, or -1 with errno set (table unchanged). */
static int reload(struct tf_passwd *pw)
{
    FILE *f = fopen(pw->path, "re");
    if (!f)
        return -1;
    struct stat st;
    struct table t;
    if (fstat(fileno(f), &st) < 0 || load(pw, f, &t) < 0) {
        int saved = errno;
        fclose(f);
        errno = saved;
        return -1;
    }
    fclose(f);
    table_free(&pw->table);
    pw->table = t;
    signature_of(&st, &pw->seen);
    return 0;
}

/* Lock held: re-read the file if it changed since the last look, which is
 * at most once per CHECK_INTERVAL_US. A file that cannot be read leaves no
 * users (failed_errno set) until it can, with one error line per new
 * failure. */
static void check_changed(struct tf_passwd *pw)
{
    uint64_t now = tf_now_us();
    if (now - pw->checked_us < CHECK_INTERVAL_US)
        return;
    pw->checked_us = now;
    struct stat st;
    struct signature sig;
    if (stat(pw->path, &st) == 0) {
        signature_of(&st, &sig);
        if (same_signature(&sig, &pw->seen))
            return;
        if (reload(pw) == 0) {
            tf_log_info("%s %s: re-read, %zu users", pw->flag, pw->path, pw->table.n);
            pw->failed_errno = 0;
            return;
        }
    }
    int failure = errno ? errno : EIO;
    if (failure != pw->failed_errno)
        tf_log_error("%s %s: cannot re-read it (%s); its logins answer 500 until it can",
                     pw->flag, pw->path, strerror(failure));
    pw->failed_errno = failure;
    table_free(&pw->table);
    memset(&pw->seen, 0, sizeof(pw->seen)); /* the same file put back is read again */
}

struct tf_passwd *tf_passwd_open(const char *path, enum tf_passwd_kind kind, const char *realm,
                                 const char *flag, char *err, size_t errlen)
{
    struct tf_passwd *pw = calloc(1, sizeof(*pw));
    if (!pw || !(pw->path = strdup(path)) || !(pw->realm = strdup(realm ? realm : ""))) {
        snprintf(err, errlen, "%s: out of memory", flag);
        tf_passwd_free(pw);
        return NULL;
    }
    pw->flag = flag;
    pw->kind = kind;
    pthread_mutex_init(&pw->lock, NULL);
    if (reload(pw) < 0) {
        snprintf(err, errlen, "%s: cannot read '%s': %s", flag, path, strerror(errno));
        tf_passwd_free(pw);
        return NULL;
    }
    pw->checked_us = tf_now_us();
    return pw;
}

void tf_passwd_free(struct tf_passwd *pw)
{
    if (!pw)
        return;
    if (pw->flag)
        pthread_mutex_destroy(&pw->lock);
    table_free(&pw->table);
    free(pw->path);
    free(pw->realm);
    free(pw);
}

static int by_user(const void *key, const void *elem)
{
    return strcmp(key, ((const struct entry *)elem)->user);
}

int tf_passwd_lookup(struct tf_passwd *pw, const char *user, char *out, size_t cap)
{
    pthread_mutex_lock(&pw->lock);
    check_changed(pw);
    const struct entry *e = !pw->table.n ? NULL
                          : bsearch(user, pw->table.entries, pw->table.n,
                                    sizeof(*pw->table.entries), by_user);
    int rc = pw->failed_errno ? TF_PASSWD_UNREADABLE : -1;
    out[0] = 0;
    if (e && strlen(e->secret) < cap) {
        memcpy(out, e->secret, strlen(e->secret) + 1);
        rc = 0;
    }
    pthread_mutex_unlock(&pw->lock);
    return rc;
}

size_t tf_passwd_count(struct tf_passwd *pw)
{
    pthread_mutex_lock(&pw->lock);
    size_t n = pw->table.n;
    pthread_mutex_unlock(&pw->lock);
    return n;
}

/* --- the hash formats ------------------------------------------------------ */

static bool is_bcrypt(const char *h)
{
    return h[0] == '$' && h[1] == '2' && (h[2] == 'y' || h[2] == 'b' || h[2] == 'a') &&
           h[3] == '$';
}

static bool is_glibc_crypt(const char *h)
{
    return h[0] == '$' && (h[1] == '1' || h[1] == '5' || h[1] == '6') && h[2] == '$';
}

bool tf_passwd_hash_known(const char *h)
{
    size_t n = strlen(h);
    if (!strncmp(h, "{SHA}", 5))
        return n == 5 + 28;
    if (!strncmp(h, "$apr1$", 6)) {
        size_t salt = strcspn(h + 6, "$");
        return salt >= 1 && salt <= 8 && h[6 + salt] == '$' && strlen(h + 7 + salt) == 22;
    }
    if (is_bcrypt(h))
        return n == 60;
    if (is_glibc_crypt(h))
        return strchr(h + 3, '$') != NULL;
    return n == 13 && strspn(h, itoa64) == 13; /* traditional DES crypt */
}

static void to64(char **p, uint32_t v, int n)
{
    while (n-- > 0) {
        *(*p)++ = itoa64[v & 0x3f];
        v >>= 6;
    }
}

/* Apache's $apr1$: FreeBSD's md5crypt with "$apr1$" as its magic. out gets
 * "$apr1$SALT$" and 22 characters of hash. */
static void apr1(const char *password, const char *hash, char out[64])
{
    const char *salt = hash + 6;
    size_t slen = strcspn(salt, "$"), plen = strlen(password);
    unsigned char fin[16];
    struct tf_md5 ctx, alt;
    tf_md5_init(&alt);
    tf_md5_update(&alt, password, plen);
    tf_md5_update(&alt, salt, slen);
    tf_md5_update(&alt, password, plen);
    tf_md5_final(&alt, fin);
    tf_md5_init(&ctx);
    tf_md5_update(&ctx, password, plen);
    tf_md5_update(&ctx, "$apr1$", 6);
    tf_md5_update(&ctx, salt, slen);
    for (size_t left = plen; left > 0; left -= left > 16 ? 16 : left)
        tf_md5_update(&ctx, fin, left > 16 ? 16 : left);
    memset(fin, 0, sizeof(fin));
    for (size_t i = plen; i; i >>= 1)
        tf_md5_update(&ctx, (i & 1) ? (const void *)fin : (const void *)password, 1);
    tf_md5_final(&ctx, fin);
    for (int i = 0; i < 1000; i++) {
        tf_md5_init(&ctx);
        tf_md5_update(&ctx, (i & 1) ? (const void *)password : fin, (i & 1) ? plen : 16);
        if (i % 3)
            tf_md5_update(&ctx, salt, slen);
        if (i % 7)
            tf_md5_update(&ctx, password, plen);
        tf_md5_update(&ctx, (i & 1) ? (const void *)fin : password, (i & 1) ? 16 : plen);
        tf_md5_final(&ctx, fin);
    }
    char *p = out + snprintf(out, 64, "$apr1$%.*s$", (int)slen, salt);
    static const unsigned char groups[5][3] = {
        { 0, 6, 12 }, { 1, 7, 13 }, { 2, 8, 14 }, { 3, 9, 15 }, { 4, 10, 5 } };
    for (int g = 0; g < 5; g++)
        to64(&p, (uint32_t)fin[groups[g][0]] << 16 | (uint32_t)fin[groups[g][1]] << 8 |
                     fin[groups[g][2]], 4);
    to64(&p, fin[11], 2);
    *p = 0;
}

/* {SHA}: base64 of the SHA-1 of the password. out gets 28 characters. */
static void sha_base64(const char *password, char out[29])
{
    static const char b64[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    unsigned char d[21] = { 0 };
    struct tf_sha1 ctx;
    tf_sha1_init(&ctx);
    tf_sha1_update(&ctx, password, strlen(password));
    tf_sha1_final(&ctx, d);
    for (int i = 0; i < 7; i++) { /* 21 bytes (the last one padding) → 28 characters */
        uint32_t v = (uint32_t)d[3 * i] << 16 | (uint32_t)d[3 * i + 1] << 8 | d[3 * i + 2];
        for (int j = 0; j < 4; j++)
            out[4 * i + j] = b64[(v >> (18 - 6 * j)) & 0x3f];
    }
    out[27] = '=';
    out[28] = 0;
}

int tf_passwd_verify(const char *hash, const char *password)
{
    if (!tf_passwd_hash_known(hash))
        return -1;
    if (!strncmp(hash, "{SHA}", 5)) {
        char out[29];
        sha_base64(password, out);
        return tf_secret_equal(out, hash + 5);
    }
    if (!strncmp(hash, "$apr1$", 6)) {
        char out[64];
        apr1(password, hash, out);
        return tf_secret_equal(out, hash);
    }
    /* bcrypt, DES and glibc crypt: libxcrypt. Its scratch space is 32 KB,
     * too much for a network thread's stack. */
    struct crypt_data *data = calloc(1, sizeof(*data));
    if (!data)
        return -1;
    const char *out = crypt_r(password, hash, data);
    int ok = out && out[0] != '*' && tf_secret_equal(out, hash);
    explicit_bzero(data, sizeof(*data));
    free(data);
    return ok;
}
