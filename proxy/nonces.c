/* nonces.c — Digest nonces and the table of nonce counts taken (see
 * nonces.h). The table is one block of plain atomics, so the same code works
 * on a process's own copy and on the one the front shares with its workers:
 * no lock that a worker dying mid-way could leave held. A slot is one 64-bit
 * word, the nonce's counter and the highest nc taken, changed by
 * compare-and-swap. This file never logs and never sees a password. */
#define _GNU_SOURCE /* memfd_create */
#include "proxy/nonces.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "proxy/hash.h"
#include "proxy/http_check.h"
#include "proxy/platform.h"

#define SLOTS 4096u             /* nonces whose nc is tracked at once */
#define HEAD 24                 /* the hex before the HMAC */
/* A shared table's memfd has exactly these (no other descriptor has): its
 * size cannot change, nor its seals. */
#define TABLE_SEALS (F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW)
/* Linux 6.3: a memfd that may never be executed (F_SEAL_EXEC, which the
 * vm.memfd_noexec sysctl adds to every memfd); older kernels refuse the flag. */
#ifndef MFD_NOEXEC_SEAL
#define MFD_NOEXEC_SEAL 0x0008U
#endif
#ifndef F_SEAL_EXEC
#define F_SEAL_EXEC 0x0020
#endif

struct table {
    uint32_t id;                /* random, written once by its maker; in every nonce */
    uint32_t counter;           /* atomic: nonces issued */
    uint64_t slots[SLOTS];      /* atomic: counter << 32 | highest nc taken (0: none) */
};

static struct table *shared_table; /* a worker's: set once before any tf_nonces_new */

struct tf_nonces {
    unsigned char key[32];      /* read-only */
    uint32_t lifetime;          /* read-only: seconds */
    struct table *table;        /* shared_table, or own */
    struct table *own;          /* owned; NULL when shared */
};

int tf_nonces_table_create(char *err, size_t errlen)
{
    const char *step = "memfd_create";
    struct table *t = MAP_FAILED;
    unsigned flags = MFD_CLOEXEC | MFD_ALLOW_SEALING;
    int fd = memfd_create("tracfront-digest-nonces", flags | MFD_NOEXEC_SEAL);
    if (fd < 0 && errno == EINVAL) /* before Linux 6.3 */
        fd = memfd_create("tracfront-digest-nonces", flags);
    if (fd < 0)
        goto fail;
    if ((step = "ftruncate", ftruncate(fd, sizeof(*t)) < 0) ||
        (step = "mmap", t = mmap(NULL, sizeof(*t), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0))
            == MAP_FAILED ||
        (step = "getrandom", tf_random_bytes(&t->id, sizeof(t->id)) < 0) ||
        (step = "F_ADD_SEALS", fcntl(fd, F_ADD_SEALS, TABLE_SEALS) < 0))
        goto fail;
    munmap(t, sizeof(*t)); /* the front itself never checks a nonce */
    return fd;
fail:
    snprintf(err, errlen, "%s: %s", step, strerror(errno));
    if (t != MAP_FAILED)
        munmap(t, sizeof(*t));
    if (fd >= 0)
        close(fd);
    return -1;
}

/* The number in value: decimal digits and nothing else; -1 if it is not. */
static int descriptor_in(const char *value)
{
    size_t n = value ? strspn(value, "0123456789") : 0;
    if (n == 0 || n > 9 || value[n] != '\0')
        return -1;
    return atoi(value);
}

int tf_nonces_table_share(const char *value, bool use)
{
    struct stat st;
    int fd = descriptor_in(value);
    if (fd < 0) {
        errno = EINVAL;
        return -1;
    }
    if (fcntl(fd, F_SETFD, FD_CLOEXEC) < 0) /* whatever it is, the app's programs never get it */
        return -1;
    int seals = fcntl(fd, F_GET_SEALS); /* EINVAL but on a memfd */
    if (seals < 0)
        return -1;
    if ((seals & ~F_SEAL_EXEC) != TABLE_SEALS || fstat(fd, &st) < 0 ||
        st.st_size != (off_t)sizeof(struct table)) {
        errno = EINVAL;
        return -1;
    }
    void *t = use ? mmap(NULL, sizeof(struct table), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)
                  : NULL;
    if (t == MAP_FAILED)
        return -1; /* the descriptor is left as it was (close-on-exec) */
    close(fd);
    if (t)
        shared_table = t; /* kept for the process's life */
    return 0;
}

struct tf_nonces *tf_nonces_new(const unsigned char key[32], uint32_t lifetime_s)
{
    struct tf_nonces *n = calloc(1, sizeof(*n));
    if (!n)
        return NULL;
    memcpy(n->key, key, sizeof(n->key));
    n->lifetime = lifetime_s;
    n->table = shared_table;
    if (!n->table && (!(n->table = n->own = calloc(1, sizeof(*n->own))) ||
                      tf_random_bytes(&n->own->id, sizeof(n->own->id)) < 0)) {
        tf_nonces_free(n);
        return NULL;
    }
    return n;
}

void tf_nonces_free(struct tf_nonces *n)
{
    if (!n)
        return;
    free(n->own);
    explicit_bzero(n->key, sizeof(n->key));
    free(n);
}

/* HMAC over the nonce's head and the realm, as hex. */
static void mac_of(const struct tf_nonces *n, const char *head, const char *realm, char hex[33])
{
    char msg[HEAD + 1 + TF_NONCE_REALM_MAX + 1];
    int len = snprintf(msg, sizeof(msg), "%.*s:%.*s", HEAD, head, TF_NONCE_REALM_MAX, realm);
    unsigned char mac[16];
    tf_hmac_md5(n->key, sizeof(n->key), msg, (size_t)len, mac);
    tf_hex(mac, 16, hex);
}

static uint32_t now_s(void)
{
    return (uint32_t)(tf_now_us() / 1000000u);
}

void tf_nonces_make(struct tf_nonces *n, const char *realm, char out[TF_NONCE_LEN + 1])
{
    struct table *t = n->table;
    uint32_t counter = __atomic_add_fetch(&t->counter, 1, __ATOMIC_RELAXED);
    snprintf(out, TF_NONCE_LEN + 1, "%08x%08x%08x", now_s(), t->id, counter);
    mac_of(n, out, realm, out + HEAD);
    /* Only forward: a thread held up here while SLOTS newer nonces were made
     * must not give the slot back to its older one (the newer would be
     * answered stale). Counters wrap; a slot's is never 2^31 behind. */
    uint64_t *slot = &t->slots[counter % SLOTS];
    uint64_t seen = __atomic_load_n(slot, __ATOMIC_ACQUIRE);
    while ((int32_t)(counter - (uint32_t)(seen >> 32)) > 0 &&
           !__atomic_compare_exchange_n(slot, &seen, (uint64_t)counter << 32, false,
                                        __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
        ;
}

bool tf_nonces_ours(const struct tf_nonces *n, const char *realm, const char *nonce)
{
    char mac[33];
    if (!tf_is_hex(nonce, TF_NONCE_LEN))
        return false;
    mac_of(n, nonce, realm, mac);
    return tf_secret_equal(mac, nonce + HEAD);
}

static uint32_t hex8(const char *p)
{
    char part[9] = { 0 };
    memcpy(part, p, 8);
    return (uint32_t)strtoul(part, NULL, 16);
}

enum tf_nonce_state tf_nonces_take(struct tf_nonces *n, const char *nonce, const char *nc_hex)
{
    struct table *t = n->table;
    uint32_t issued = hex8(nonce), id = hex8(nonce + 8), counter = hex8(nonce + 16);
    uint32_t nc = hex8(nc_hex);
    if (now_s() - issued > n->lifetime)
        return TF_NONCE_OLD;
    if (id != t->id)
        return TF_NONCE_ELSEWHERE;
    if (nc == 0)
        return TF_NONCE_NC_ZERO;
    uint64_t *slot = &t->slots[counter % SLOTS];
    uint64_t seen = __atomic_load_n(slot, __ATOMIC_ACQUIRE);
    for (;;) { /* until this nc is taken, or another answer's is and this one is behind it */
        if (counter == 0 || (uint32_t)(seen >> 32) != counter)
            return TF_NONCE_FORGOTTEN;
        uint32_t highest = (uint32_t)seen;
        if (nc <= highest)
            return nc == highest ? TF_NONCE_NC_USED : TF_NONCE_NC_BEHIND;
        if (__atomic_compare_exchange_n(slot, &seen, (uint64_t)counter << 32 | nc, false,
                                        __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
            return TF_NONCE_FRESH;
    }
}
