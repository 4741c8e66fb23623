/* front_keys.h — the settings a --workers front reads itself. A reload's
 * new workers read the config file again, the front does not: the keys
 * the front and its workers must agree on are given to every worker with
 * the front's values (flags, which win over the file), and a reload logs
 * each front key the file now changes ("only a restart applies it")
 * instead of ignoring it without a word. */
#ifndef TF_FRONT_KEYS_H
#define TF_FRONT_KEYS_H

#include "proxy/config.h"

/* "--KEY=VALUE" for each key a worker takes from its front, NULL-ended
 * (malloc'd, as each string); NULL on out of memory. */
char **tf_front_pinned_flags(const struct tf_config *front);
void tf_front_pinned_flags_free(char **flags);

/* At a reload: the configuration read again from argv (the front's own,
 * argc entries, without what tf_front_pinned_flags adds) as the new
 * workers will, one info line for each front key whose value it changes.
 * Nothing when it cannot be read (the new workers say why). */
void tf_front_keys_say_changes(const struct tf_config *front, int argc, char **argv);

#endif
