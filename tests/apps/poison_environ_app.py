"""A hostile app that hunts tracfront's base environ (the dict every
request's environ is copied from, which keeps REQUEST_METHOD,
SERVER_PROTOCOL and REMOTE_ADDR while they repeat) and poisons it.

/hunt    looks for the base environ through gc.get_objects(), and through
         gc.get_referrers() of a value every environ shares; answers
         "hidden" when neither shows it. Else it puts str subclasses whose
         __del__ lets go of the GIL (sleeps SLEEP s) into it in place of
         REQUEST_METHOD, and answers "poisoned": the next request that
         replaces it in the base runs that __del__ in the middle of its
         update, and other requests run meanwhile.
/check   answers "hidden" or "found" (the same search, nothing changed)
other    answers "METHOD PROTOCOL ADDR" from its environ
"""
import gc
import time

SLEEP = 0.5


class Evil(str):
    def __del__(self):
        time.sleep(SLEEP)


def is_base(o):
    return (type(o) is dict and "SERVER_SOFTWARE" in o and
            isinstance(o.get("wsgi.input"), str))


def base_environ(environ):
    for o in gc.get_objects():
        if is_base(o):
            return o
    for o in gc.get_referrers(environ["SERVER_SOFTWARE"]):
        if is_base(o):
            return o
    return None


def app(environ, start_response):
    path = environ["PATH_INFO"]
    start_response("200 OK", [("Content-Type", "text/plain")])
    if path in ("/hunt", "/check"):
        base = base_environ(environ)
        if base is None:
            return [b"hidden"]
        if path == "/check":
            return [b"found"]
        base["REQUEST_METHOD"] = Evil(base["REQUEST_METHOD"])
        base = None
        return [b"poisoned"]
    return [("%s %s %s" % (environ["REQUEST_METHOD"], environ["SERVER_PROTOCOL"],
                           environ["REMOTE_ADDR"])).encode()]
