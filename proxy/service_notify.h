/* service_notify.h — systemd's readiness protocol (sd_notify(3), a unit's
 * Type=notify) without libsystemd: with NOTIFY_SOCKET set, the main process
 * says READY=1 once it serves, RELOADING=1 and READY=1 around a reload of
 * the workers, STOPPING=1 when a stop begins. Without it, nothing. */
#ifndef TF_SERVICE_NOTIFY_H
#define TF_SERVICE_NOTIFY_H

/* Take NOTIFY_SOCKET out of the environment (the app, the programs it runs
 * and the workers must not speak for the service) and keep where it points.
 * Main thread, before any other starts and before the workers. */
void tf_notify_take(void);

/* RELOADING=1 with the MONOTONIC_USEC= that Type=notify-reload asks for
 * (systemd 253 and later; earlier ones ignore it). */
void tf_notify_reloading(void);

/* Send state (newline-separated VAR=value lines) to the socket taken, if
 * any, adding MAINPID. A failure is logged once as a [warn] (systemd then
 * waits for READY=1 until its TimeoutStartSec=): never fatal. */
void tf_notify(const char *state);

#endif
