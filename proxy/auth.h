/* auth.h — who is this client, on a project's login path: HTTP Basic and
 * Digest authentication as tracd does it (--basic-auth / --digest-auth
 * PROJECT,FILE,REALM). Credentials are asked for only on `<mount>/login`
 * (--trac-env, --app, --wsgi-file) or `<mount>/NAME/login`
 * (--trac-env-parent-dir, or --env trac.env_parent_dir=DIR), and a user name reaches the app (REMOTE_USER)
 * only after its password was verified. Nothing a client sends is ever
 * taken as a user name without that check, and no password is ever logged. */
#ifndef TF_AUTH_H
#define TF_AUTH_H

#include <stdbool.h>
#include <stddef.h>

#include "proxy/config.h"
#include "proxy/request.h"

struct MHD_Response;
struct tf_auth;

/* At configuration load: check every --basic-auth / --digest-auth (the
 * PROJECT,FILE,REALM shape, that PROJECT is served, that FILE can be read).
 * Returns 0, or -1 with a message naming the flag in err. */
int tf_auth_config_check(const struct tf_config *cfg, char *err, size_t errlen);

/* --workers: the front's secret, so a Digest nonce one worker made is good
 * at every other. Call before any tf_auth_new(). */
void tf_auth_share_key(const char *secret);

/* Read the password files. NULL with err on failure; NULL with err "" when
 * no authentication is configured. Free with tf_auth_free(). */
struct tf_auth *tf_auth_new(const struct tf_config *cfg, char *err, size_t errlen);
void tf_auth_free(struct tf_auth *auth);

/* For a request the app will answer (before dispatch). Not a
 * login path with authentication: 0, nothing changes. Verified credentials:
 * 0, and req->remote_user / req->auth_type are set. Otherwise the status to
 * answer with (401 with a WWW-Authenticate challenge, 400 for a Digest
 * answer to another URI, 500 out of memory) and *response to send it with
 * (NULL when even that could not be built); req->bytes_out is its body
 * length. A refused password or unknown user writes one line to the error
 * log (user name and client address). Safe from any number of threads. */
unsigned tf_auth_check(struct tf_auth *auth, struct tf_request *req,
                       struct MHD_Response **response);

/* May tf_auth_check(req) take long? True for Basic credentials on a login
 * path: checking a bcrypt or SHA-crypt hash costs milliseconds (a quarter
 * second at bcrypt cost 12), so the caller runs it away from its network
 * thread. Digest answers and refusals without credentials are quick. */
bool tf_auth_may_block(const struct tf_auth *auth, const struct tf_request *req);

/* Is target (a raw request target) a tracd login path under mount?
 * parent_dir: `/NAME/login...` (project NAME copied into project, cap bytes);
 * else `/login...` (project ""). Decodes %XX as the app's PATH_INFO would. */
bool tf_auth_login_path(const char *target, const char *mount, bool parent_dir, char *project,
                        size_t cap);

/* The RFC 2617 qop=auth response: MD5(HA1:nonce:nc:cnonce:qop:MD5(method:uri))
 * as 32 lowercase hex digits. */
void tf_auth_digest_response(const char *ha1, const char *nonce, const char *nc,
                             const char *cnonce, const char *qop, const char *method,
                             const char *uri, char out[33]);

#endif
