/* run.h — one request through the WSGI app: build environ, call the app,
 * send what it returns, all on the calling thread (an app thread, or a
 * network thread running it), GIL held. A body that outruns its client is
 * buffered (response.h), and past --max-spill the thread waits for it. */
#ifndef WSGI_RUN_H
#define WSGI_RUN_H

struct tf_request;

/* Run req to its end. Consumes the backend reference when the request is
 * done with Python. GIL held. */
void wsgi_run(struct tf_request *req);

#endif
