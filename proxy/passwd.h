/* passwd.h — Apache password files: htpasswd (USER:HASH) for Basic and
 * htdigest (USER:REALM:MD5) for Digest authentication. A file is read at
 * start and re-read when it changes or disappears (its identity, size, mtime and ctime are
 * looked at no more than once a second); lookups are safe from any thread. Nothing
 * here ever logs, stores or returns a password a client sent. */
#ifndef TF_PASSWD_H
#define TF_PASSWD_H

#include <stdbool.h>
#include <stddef.h>

enum tf_passwd_kind {
    TF_PASSWD_HTPASSWD,         /* USER:HASH (bcrypt, $apr1$, {SHA}, crypt) */
    TF_PASSWD_HTDIGEST,         /* USER:REALM:HA1, only lines of one realm count */
};

struct tf_passwd;

/* Read path. realm: the htdigest lines that count (ignored for htpasswd);
 * flag names the option in messages ("--basic-auth"). Malformed lines are
 * skipped with a warning in the error log. NULL with err when the file
 * cannot be read or memory runs out. */
struct tf_passwd *tf_passwd_open(const char *path, enum tf_passwd_kind kind, const char *realm,
                                 const char *flag, char *err, size_t errlen);
void tf_passwd_free(struct tf_passwd *pw);

#define TF_PASSWD_UNREADABLE (-2)

/* Copy user's HASH (htpasswd) or lowercase HA1 (htdigest) into out (cap
 * bytes), first re-reading the file if it changed. Returns 0, -1 when there
 * is no such user, or TF_PASSWD_UNREADABLE while the file is gone or cannot
 * be read (its users are then forgotten, as Apache would not find them
 * either); out is then "". Any thread. */
int tf_passwd_lookup(struct tf_passwd *pw, const char *user, char *out, size_t cap);

/* Does password match an htpasswd HASH? 1 yes, 0 no, -1 when the format is
 * not one tf_passwd_hash_known() accepts (or out of memory). The final
 * comparison takes the same time wherever the hashes differ. */
int tf_passwd_verify(const char *hash, const char *password);

/* Is hash in a format tf_passwd_verify() handles: bcrypt ($2y$, $2b$, $2a$),
 * Apache MD5 ($apr1$), SHA-1 ({SHA}), crypt (DES, $1$, $5$, $6$)? */
bool tf_passwd_hash_known(const char *hash);

/* Users loaded now (for messages and tests). */
size_t tf_passwd_count(struct tf_passwd *pw);

#endif
