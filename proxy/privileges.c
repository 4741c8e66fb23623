/* privileges.c — becoming --user/--group after a root start (see
 * privileges.h). Runs on the main thread only, before other threads (the
 * results of getpwnam and the like are static). Never switches back to root. */
#include "proxy/privileges.h"

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static bool is_number(const char *s)
{
    return s[0] && s[strspn(s, "0123456789")] == 0 && strlen(s) < 10;
}

/* --group's gid (a group of /etc/group, or a number). -1 with err. */
static int resolve_group(const char *group, gid_t *gid, char *err, size_t errlen)
{
    struct group *gr = is_number(group) ? getgrgid((gid_t)strtoul(group, NULL, 10))
                                        : getgrnam(group);
    if (!gr && !is_number(group)) {
        snprintf(err, errlen, "--group: no group '%s' (a name of /etc/group, or a gid)", group);
        return -1;
    }
    *gid = gr ? gr->gr_gid : (gid_t)strtoul(group, NULL, 10);
    return 0;
}

int tf_privileges_resolve(struct tf_config *cfg, char *err, size_t errlen)
{
    const char *user = cfg->user;
    if (!user)
        return 0;
    struct passwd *pw = is_number(user) ? getpwuid((uid_t)strtoul(user, NULL, 10))
                                        : getpwnam(user);
    if (!pw && !(is_number(user) && cfg->group)) {
        snprintf(err, errlen, "--user: no user '%s' (a name or uid of /etc/passwd; a uid "
                 "without an entry there needs --group)", user);
        return -1;
    }
    uid_t uid = pw ? pw->pw_uid : (uid_t)strtoul(user, NULL, 10);
    gid_t gid = pw ? pw->pw_gid : 0;
    if (cfg->group && resolve_group(cfg->group, &gid, err, errlen) < 0)
        return -1;
    if (uid == 0) {
        snprintf(err, errlen, "--user: '%s' is root (uid 0): nothing would be dropped; name "
                 "the user the app should run as", user);
        return -1;
    }
    bool already = getuid() == uid && geteuid() == uid && getgid() == gid && getegid() == gid;
    if (!already && geteuid() != 0) {
        snprintf(err, errlen, "--user %s needs root to switch to (tracfront runs as uid %u, "
                 "gid %u): start it as root, or leave --user out", user, (unsigned)geteuid(),
                 (unsigned)getegid());
        return -1;
    }
    cfg->uid = uid;
    cfg->gid = gid;
    cfg->drop_privileges = !already;
    return 0;
}

int tf_privileges_drop(const struct tf_config *cfg, char *err, size_t errlen)
{
    if (!cfg->drop_privileges)
        return 0;
    /* the name given: another name of the same uid may have other groups */
    struct passwd *pw = is_number(cfg->user) ? getpwuid(cfg->uid) : getpwnam(cfg->user);
    const char *step = pw ? "initgroups" : "setgroups";
    if ((pw ? initgroups(pw->pw_name, cfg->gid) : setgroups(1, &cfg->gid)) < 0)
        goto failed;
    step = "setgid";
    if (setgid(cfg->gid) < 0)
        goto failed;
    step = "setuid";
    if (setuid(cfg->uid) < 0)
        goto failed;
    if (setuid(0) == 0 || seteuid(0) == 0 || getuid() != cfg->uid || geteuid() != cfg->uid ||
        getgid() != cfg->gid || getegid() != cfg->gid) {
        snprintf(err, errlen, "--user %s: root could be taken back after setuid(%u); not "
                 "going on", cfg->user, (unsigned)cfg->uid);
        return -1;
    }
    return 0;
failed:
    snprintf(err, errlen, "--user %s: %s failed: %s", cfg->user, step, strerror(errno));
    return -1;
}
