"""For tests/integration/test_gc_freeze.py. Every request makes a reference
cycle that is garbage when the request ends (as Trac's requests do);
GET /frozen answers gc.get_freeze_count() as the request starts, and
GET /collect runs a full collection and answers how many of the cycles made
so far are still alive: 0 means the collector still frees new garbage."""
import gc
import weakref

cycles = []  # weak references to every request's cycle


class Node:
    def __init__(self):
        self.me = self


def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/collect":
        gc.collect()
        body = str(sum(1 for ref in cycles if ref() is not None))
    else:
        body = str(gc.get_freeze_count())
    cycles.append(weakref.ref(Node()))
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body.encode()]
