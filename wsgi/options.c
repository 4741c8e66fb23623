/* options.c — checks of the Python-side options (see options.h).
 *
 * --venv: a virtual environment works only with the Python that made it.
 * pyvenv.cfg's `home` is where Python looks for its standard library, so a
 * venv from a pyenv 3.11.7 loads that build's library and extension modules
 * into Debian's 3.11.2 (seen: `import ssl` fails, _ssl's undefined symbol
 * _PyModule_Add), and one from 3.12 keeps its packages where 3.11 does not
 * look. Both used to start and break later; both are refused.
 *
 * --env: its entries go into the base environ that every request's starts
 * from, so it cannot own a key tracfront sets per request or one whose type
 * PEP 3333 fixes (it can only give strings), nor name another Trac
 * environment than --trac-env's (the one --reload and --basic-auth go by). */
#define PY_SSIZE_T_CLEAN
#include <Python.h> /* PY_VERSION, PY_MAJOR_VERSION, PY_MINOR_VERSION only */

#include "wsgi/options.h"

#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* What pyvenv.cfg says: home and version ("3.11.2"; virtualenv and uv write
 * version_info, "3.11.2.final.0"). Empty when it does not say. */
struct venv_cfg {
    char home[PATH_MAX];
    char version[64];
};

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n > 0 && strchr(" \t\r\n", s[n - 1]))
        s[--n] = 0;
    return s;
}

/* Returns 0, or -1 when DIR/pyvenv.cfg cannot be read. */
static int read_venv_cfg(const char *dir, struct venv_cfg *out)
{
    char path[PATH_MAX + 16], line[PATH_MAX + 64];
    snprintf(path, sizeof(path), "%s/pyvenv.cfg", dir);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    out->home[0] = out->version[0] = 0;
    while (fgets(line, sizeof(line), f)) {
        char *eq = strchr(line, '=');
        if (!eq)
            continue;
        *eq = 0;
        const char *key = trim(line), *value = trim(eq + 1);
        if (!strcmp(key, "home") && !out->home[0])
            snprintf(out->home, sizeof(out->home), "%s", value);
        else if ((!strcmp(key, "version") || !strcmp(key, "version_info")) && !out->version[0])
            snprintf(out->version, sizeof(out->version), "%s", value);
    }
    fclose(f);
    return 0;
}

/* "3.11.2" → 3, 11. Returns 0, or -1 if it is not a version. */
static int parse_major_minor(const char *version, unsigned *major, unsigned *minor)
{
    char *end;
    *major = (unsigned)strtoul(version, &end, 10);
    if (end == version || *end != '.')
        return -1;
    const char *rest = end + 1;
    *minor = (unsigned)strtoul(rest, &end, 10);
    return end == rest ? -1 : 0;
}

/* The venv's home is python's own folder, however spelled (/bin on a merged
 * /usr), or holds a link to python itself (/usr/local/bin/python3.11 ->
 * /usr/bin/python3.11): either way Python finds python's stdlib from it. */
static int same_python(const char *home, const char *python)
{
    char want[PATH_MAX], got[PATH_MAX], folder[PATH_MAX], candidate[PATH_MAX + 32];
    snprintf(candidate, sizeof(candidate), "%s/python%d.%d", home, PY_MAJOR_VERSION,
             PY_MINOR_VERSION);
    if (realpath(python, want) && realpath(candidate, got) && !strcmp(got, want))
        return 1;
    snprintf(folder, sizeof(folder), "%s", python);
    char *slash = strrchr(folder, '/');
    if (!slash || slash == folder)
        return 0;
    *slash = 0;
    return realpath(folder, want) && realpath(home, got) && !strcmp(got, want);
}

int wsgi_venv_check(const char *dir, const char *python, char *err, size_t errlen)
{
    struct venv_cfg venv;
    unsigned major, minor;
    if (!*dir) {
        snprintf(err, errlen, "--venv: empty; give the folder of a virtual environment made "
                 "with %s -m venv, or leave --venv out", python);
        return -1;
    }
    if (read_venv_cfg(dir, &venv) < 0) {
        snprintf(err, errlen, "--venv: '%s' is not a virtual environment (no pyvenv.cfg in it); "
                 "make one with %s -m venv %s", dir, python, dir);
        return -1;
    }
    if (parse_major_minor(venv.version, &major, &minor) < 0) {
        snprintf(err, errlen, "--venv: %s/pyvenv.cfg names no version of Python; make the "
                 "virtual environment again with %s -m venv %s", dir, python, dir);
        return -1;
    }
    if (major != PY_MAJOR_VERSION || minor != PY_MINOR_VERSION) {
        snprintf(err, errlen, "--venv: '%s' was made by Python %s, but tracfront embeds Python "
                 "%s (%s): packages installed for %u.%u do not load in %d.%d; make it with "
                 "%s -m venv %s", dir, venv.version, PY_VERSION, python, major, minor,
                 PY_MAJOR_VERSION, PY_MINOR_VERSION, python, dir);
        return -1;
    }
    if (!same_python(venv.home, python)) {
        snprintf(err, errlen, "--venv: '%s' was made by another Python %d.%d (%s, in %s) than "
                 "the one tracfront embeds (%s, %s): that one's standard library and extension "
                 "modules would be loaded into this one; make it with %s -m venv %s", dir,
                 PY_MAJOR_VERSION, PY_MINOR_VERSION, venv.version, venv.home[0] ? venv.home : "?",
                 PY_VERSION, python, python, dir);
        return -1;
    }
    char program[PATH_MAX + 16];
    snprintf(program, sizeof(program), "%s/bin/python3", dir);
    if (access(program, X_OK) != 0) {
        snprintf(err, errlen, "--venv: '%s' is not a virtual environment (no bin/python3)", dir);
        return -1;
    }
    return 0;
}

/* Keys tracfront sets for each request: an --env value would be overwritten
 * (SERVER_PORT by the real port) or, for HTTP_*, joined with the client's
 * header as if it were an earlier copy ("https, http"). */
/* SCRIPT_NAME and SERVER_NAME are not here: they are set once, and --env may
 * set them (SCRIPT_NAME=/trac behind a proxy that strips the prefix, as
 * nginx's proxy_pass http://host/ does, where --mount would answer 404). */
static const char *const request_keys[] = {
    "REQUEST_METHOD", "PATH_INFO",   "QUERY_STRING", "REQUEST_URI",     "CONTENT_TYPE",
    "CONTENT_LENGTH", "SERVER_PORT", "SERVER_PROTOCOL", "REMOTE_ADDR", "REMOTE_PORT",
    "REMOTE_USER",    "AUTH_TYPE",
};

/* Why --env may not set key (what to do instead), or NULL if it may. */
static const char *env_key_refusal(const char *key, size_t len, const struct tf_config *cfg)
{
    if (cfg->mount && cfg->mount[0] && len == 11 && !strncmp(key, "SCRIPT_NAME", 11))
        return "--mount sets it; give one of the two";
    if ((cfg->trac_env || cfg->trac_env_parent_dir) &&
        ((len == 13 && !strncmp(key, "trac.env_path", 13)) ||
         (len == 19 && !strncmp(key, "trac.env_parent_dir", 19))))
        return cfg->trac_env ? "--trac-env names the environment; give one of the two"
                             : "--trac-env-parent-dir names the environments; give one of the two";
    if (len == 14 && !strncmp(key, "trac.env_paths", 14))
        return "Trac takes a list there, which a string is not (it walks its letters); give "
               "--env trac.env_parent_dir=DIR (or --trac-env-parent-dir DIR) for several projects";
    if (len > 5 && !strncmp(key, "wsgi.", 5))
        return len == 15 && !strncmp(key, "wsgi.url_scheme", 15)
                   ? NULL /* "https" behind a TLS-terminating proxy */
                   : "PEP 3333 fixes its value and type, and tracfront sets it (of the wsgi.* "
                     "keys only wsgi.url_scheme may be given)";
    bool per_request = len > 5 && !strncmp(key, "HTTP_", 5);
    for (size_t i = 0; !per_request && i < sizeof(request_keys) / sizeof(*request_keys); i++)
        per_request = strlen(request_keys[i]) == len && !strncmp(key, request_keys[i], len);
    if (!per_request)
        return NULL;
    if ((len == 11 && !strncmp(key, "REMOTE_USER", 11)) || (len == 9 && !strncmp(key, "AUTH_TYPE", 9)))
        return "tracfront sets it for users it verified; see --basic-auth and --digest-auth";
    return "tracfront sets it for each request; for the address the app should put in its "
           "links behind a proxy, use --env trac.base_url=https://HOST/PATH (Trac) or "
           "--env wsgi.url_scheme=https";
}

/* Each --env entry is KEY=VALUE with a key tracfront leaves to it. */
static int check_env(const struct tf_config *cfg, char *err, size_t errlen)
{
    for (size_t i = 0; i < cfg->n_env; i++) {
        const char *entry = cfg->env[i], *eq = strchr(entry, '=');
        if (!eq || eq == entry) {
            snprintf(err, errlen, "--env: '%s' is not KEY=VALUE", entry);
            return -1;
        }
        const char *why = env_key_refusal(entry, (size_t)(eq - entry), cfg);
        if (!why && eq - entry == 15 && !strncmp(entry, "wsgi.url_scheme", 15) &&
            strcmp(eq + 1, "http") != 0 && strcmp(eq + 1, "https") != 0)
            why = "its value may be http or https only (PEP 3333)";
        if (why) {
            snprintf(err, errlen, "--env: '%.*s' cannot be set: %s", (int)(eq - entry), entry,
                     why);
            return -1;
        }
    }
    return 0;
}

const char *wsgi_app_spec_split(const char *spec, size_t *module_len)
{
    const char *colon = strchr(spec, ':');
    *module_len = colon ? (size_t)(colon - spec) : strlen(spec);
    return colon ? colon + 1 : "application";
}

/* A dotted name with no empty part ("a.b", not "a.", ".b", "a..b" or ""). */
static bool dotted_name_ok(const char *name, size_t len)
{
    if (!len || name[0] == '.' || name[len - 1] == '.')
        return false;
    for (size_t i = 1; i < len; i++)
        if (name[i] == '.' && name[i - 1] == '.')
            return false;
    return true;
}

/* --app MODULE[:CALLABLE], as uWSGI's and gunicorn's: without ':', the
 * callable is `application`. An empty part would be skipped by the lookup
 * (pkg:application. served pkg.application) or fail late. */
static int check_app(const char *spec, char *err, size_t errlen)
{
    size_t module_len;
    const char *callable = wsgi_app_spec_split(spec, &module_len);
    if (!dotted_name_ok(spec, module_len) || strchr(callable, ':') ||
        !dotted_name_ok(callable, strlen(callable))) {
        snprintf(err, errlen, "--app: '%s' is not MODULE or MODULE:CALLABLE with dotted names "
                 "(e.g. myapp, myapp:application, pkg.wsgi:app.wsgi_app)", spec);
        return -1;
    }
    return 0;
}

int wsgi_options_check(const struct tf_config *cfg, char *err, size_t errlen)
{
    if (cfg->app && check_app(cfg->app, err, errlen) < 0)
        return -1;
    if (cfg->venv && wsgi_venv_check(cfg->venv, TF_PY_EXECUTABLE, err, errlen) < 0)
        return -1;
    return check_env(cfg, err, errlen);
}
