/* front_keys.c — see front_keys.h. */
#include "proxy/front_keys.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/log.h"

/* A front key, and what a reload that finds it changed in the file does. */
struct front_key {
    const char *name;
    const char *after; /* the rest of the log line: what a restart applies */
    bool pinned;       /* given to every worker with the front's value */
};

#define KEPT_BOTH "a restart applies it; until then the front and its workers keep the old value"
#define SWITCHED "the new workers switch to it if they can; the front runs as before until a restart"
static const struct front_key front_keys[] = {
    /* the front's control requests go to the workers' profile path */
    { "profile-path", KEPT_BOTH, true },
    /* the front's stop bounds each worker's with its own */
    { "graceful-timeout", KEPT_BOTH, true },
    /* a worker waits for the front's go as long as the front waits for it */
    { "worker-start-timeout", KEPT_BOTH, true },
    /* the front watches the files a worker lists only with --reload */
    { "reload", KEPT_BOTH, true },
    /* the front merges what the workers measured into a registry and a
     * tree of its own, with these bounds, and pulls their latency */
    { "profile-max-routes", KEPT_BOTH, true },
    { "profile-slowest", KEPT_BOTH, true },
    { "profile-max-nodes", KEPT_BOTH, true },
    { "profile-latency", KEPT_BOTH, true },
    { "profile-clock", KEPT_BOTH, true },
    { "profile-builtins", KEPT_BOTH, true },
    { "listen", "a restart applies it; until then the front keeps its socket", false },
    { "workers", "a restart applies it; until then the front starts as many as before", false },
    /* the front writes the profile files: the workers hand their profile over */
    { "profile-log", "a restart applies it; until then the front writes the old file", false },
    { "profile-callgrind", "a restart applies it; until then the front writes the old file",
      false },
    { "profile-flush-at-shutdown", "a restart applies it; until then the front keeps the old "
                                   "value", false },
    { "error-log", "the new workers write to the new one; the front's own lines go to the old "
                   "one until a restart", false },
    { "user", SWITCHED, false },
    { "group", SWITCHED, false },
};
#define N_FRONT_KEYS (sizeof(front_keys) / sizeof(front_keys[0]))

char **tf_front_pinned_flags(const struct tf_config *front)
{
    char **flags = calloc(N_FRONT_KEYS + 1, sizeof(char *));
    size_t n = 0;
    for (size_t i = 0; flags && i < N_FRONT_KEYS; i++) {
        char value[4200];
        if (!front_keys[i].pinned ||
            !tf_config_value(front, front_keys[i].name, value, sizeof(value)) || !value[0])
            continue; /* not set: a flag cannot say so (--profile-clock= is refused) */
        size_t cap = strlen(front_keys[i].name) + strlen(value) + 4;
        if (!(flags[n] = malloc(cap))) {
            tf_front_pinned_flags_free(flags);
            return NULL;
        }
        snprintf(flags[n++], cap, "--%s=%s", front_keys[i].name, value);
    }
    return flags;
}

void tf_front_pinned_flags_free(char **flags)
{
    for (size_t i = 0; flags && flags[i]; i++)
        free(flags[i]);
    free(flags);
}

char **tf_front_keys_read(int argc, char **argv)
{
    struct tf_config cfg;
    char err[1024], value[4200];
    char **values = NULL;
    if (tf_config_load(&cfg, argc, argv, err, sizeof(err)) == 0 &&
        (values = calloc(N_FRONT_KEYS, sizeof(char *))))
        for (size_t i = 0; i < N_FRONT_KEYS; i++)
            if (!tf_config_value(&cfg, front_keys[i].name, value, sizeof(value)) ||
                !(values[i] = strdup(value))) {
                tf_front_keys_free(values);
                values = NULL;
                break;
            }
    tf_config_free(&cfg);
    return values;
}

void tf_front_keys_free(char **values)
{
    for (size_t i = 0; values && i < N_FRONT_KEYS; i++)
        free(values[i]);
    free(values);
}

void tf_front_keys_say_changes(char *const *at_start, char *const *now, const char *config_file)
{
    for (size_t i = 0; at_start && now && i < N_FRONT_KEYS; i++)
        if (strcmp(at_start[i], now[i]) != 0)
            tf_log_info("reload: %s changed in %s (%s -> %s): %s", front_keys[i].name,
                        config_file, at_start[i][0] ? at_start[i] : "not set",
                        now[i][0] ? now[i] : "not set", front_keys[i].after);
}
