/* trac_projects.c — the Trac projects a configuration serves (see
 * trac_projects.h). */
#include "proxy/trac_projects.h"

#include <string.h>

/* The value the last --env KEY=... gives key (the environ takes them in
 * order), or NULL. */
static const char *env_entry(const struct tf_config *cfg, const char *key)
{
    const char *value = NULL;
    size_t n = strlen(key);
    for (size_t i = 0; i < cfg->n_env; i++)
        if (!strncmp(cfg->env[i], key, n) && cfg->env[i][n] == '=')
            value = cfg->env[i] + n + 1;
    return value;
}

struct tf_trac_projects tf_trac_projects(const struct tf_config *cfg)
{
    struct tf_trac_projects p = { cfg->trac_env, "--trac-env", cfg->trac_env_parent_dir };
    if (cfg->trac_env || cfg->trac_env_parent_dir)
        return p;
    const char *path = env_entry(cfg, "trac.env_path");
    const char *parent = env_entry(cfg, "trac.env_parent_dir");
    p.env_path = path && path[0] ? path : NULL;
    p.named_by = "--env trac.env_path";
    p.parent_dir = !p.env_path && parent && parent[0] ? parent : NULL;
    return p;
}
