/* trac_projects.h — the Trac projects a configuration serves, read as
 * trac.web.main's dispatch_request reads its environ. Used by the logins per
 * project (auth.c) and by what --reload watches (reload_watch.c). Pure
 * reading of the configuration: no allocation, no file system. */
#ifndef TF_TRAC_PROJECTS_H
#define TF_TRAC_PROJECTS_H

#include "proxy/config.h"

struct tf_trac_projects {
    const char *env_path;       /* the one project's environment, or NULL */
    const char *named_by;       /* the flag that gave env_path */
    const char *parent_dir;     /* else a folder of projects served at /NAME/, or NULL */
};

/* A trac.env_path that is not empty is one project, named by its folder; else
 * a trac.env_parent_dir that is not empty holds one per folder. tracfront sets
 * them for --trac-env and --trac-env-parent-dir (where wsgi/options.c refuses
 * them in --env); with --app or --wsgi-file, --env may give them, as
 * mod_wsgi's SetEnv does to the trac.wsgi that `trac-admin deploy` writes.
 * Keys an app sets itself, and the TRAC_ENV and TRAC_ENV_PARENT_DIR
 * variables, are not seen: no project (both NULL). The strings are cfg's. */
struct tf_trac_projects tf_trac_projects(const struct tf_config *cfg);

#endif
