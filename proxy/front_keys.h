/* front_keys.h — the settings a --workers front reads itself. A reload's
 * new workers read the config file again, the front does not: the keys
 * the front and its workers must agree on are given to every worker with
 * the front's values (flags, which win over the file), and a reload logs
 * each front key the file now changes ("a restart applies it") instead of
 * ignoring it without a word. */
#ifndef TF_FRONT_KEYS_H
#define TF_FRONT_KEYS_H

#include "proxy/config.h"

/* "--KEY=VALUE" for each key a worker takes from its front (one not set is
 * left to the worker), NULL-ended (malloc'd, as each string); NULL on out
 * of memory. */
char **tf_front_pinned_flags(const struct tf_config *front);
void tf_front_pinned_flags_free(char **flags);

/* The front keys' values as argv (the front's own: argc entries, without
 * the pinned flags) and its --config file give them now, one string per
 * key (malloc'd; tf_front_keys_free), or NULL when they cannot be read (the
 * new workers then say why). Read at start, they are what the front was
 * configured with (not what it made of them: an activated socket's address,
 * a default it chose). */
char **tf_front_keys_read(int argc, char **argv);
void tf_front_keys_free(char **values);

/* One info line for each front key whose value in now (a reload's
 * tf_front_keys_read) differs from at_start, naming the file. */
void tf_front_keys_say_changes(char *const *at_start, char *const *now, const char *config_file);

#endif
