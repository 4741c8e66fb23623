/* privileges.h — --user and --group: started as root, tracfront binds its
 * listening socket and opens its logs, then becomes USER (its groups, then
 * its gid, then its uid, as gunicorn and nginx do) before anything the user
 * controls runs: the app's import, the workers, the files it writes. There
 * is no way back: the switch is checked to be final. */
#ifndef TF_PRIVILEGES_H
#define TF_PRIVILEGES_H

#include <stddef.h>

#include "proxy/config.h"

/* Resolve cfg->user and cfg->group (a name, or a number) into cfg->uid,
 * cfg->gid and cfg->drop_privileges (config_check.c). Not root, --user must
 * name the user tracfront runs as (nothing to do, as gunicorn). 0, or -1
 * with err naming the flag (cfg's derived fields then unset). */
int tf_privileges_resolve(struct tf_config *cfg, char *err, size_t errlen);

/* With cfg->drop_privileges: initgroups (or only the gid, for a uid without
 * an /etc/passwd entry), setgid, setuid, then check that uid 0 cannot be
 * taken back. Main thread, before any other starts. 0 (also with nothing to
 * do), or -1 with err: the process must not go on. */
int tf_privileges_drop(const struct tf_config *cfg, char *err, size_t errlen);

#endif
