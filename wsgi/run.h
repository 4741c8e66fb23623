/* run.h — one request through the WSGI app: build environ, call the app,
 * send what it returns. Called on an app thread with the GIL held. A body
 * that outruns its client parks the request (the thread goes on to other
 * work) and wsgi_run() is called again to continue it once the client has
 * read enough, or has gone. */
#ifndef WSGI_RUN_H
#define WSGI_RUN_H

struct tf_request;

/* Run or continue req. Consumes the backend reference when the request is
 * done with Python (not when it parks). GIL held. */
void wsgi_run(struct tf_request *req);

#endif
