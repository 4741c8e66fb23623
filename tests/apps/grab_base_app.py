"""Tries to reach tracfront's base environ at start-up (test_reuse.py). tracfront lists the loaded
modules' __file__ (wsgi_app_files_note) just before it builds the base: an
object in sys.modules whose __file__ is a property runs code there. From
then on, a gc callback empties the list free list after each collection and
the threshold is 1: the list that make_room allocates starts a collection
while the base is tracked (its (1, 0) tuple went in), and the callback finds
it in gc.get_objects()."""
import gc, sys
grabbed = []
keep = []
log = []
armed = [False]

def cb(phase, info):
    if not armed[0] or grabbed:
        return
    if phase == "start":
        objs = gc.get_objects(0)
        keep.append(objs)  # freed, it would refill the list free list
        for o in objs:
            if type(o) is dict and "SERVER_SOFTWARE" in o and "wsgi.version" in o:
                grabbed.append(o)
                armed[0] = False
                log.append("grabbed")
                return
    else:
        keep.append([[] for _ in range(100)])

class Trap:
    done = False
    @property
    def __file__(self):
        if Trap.done:
            return None
        Trap.done = True
        log.append("trap ran")
        keep.extend(r for r in gc.get_referrers(self) if type(r) is list)
        gc.callbacks.append(cb)
        armed[0] = True
        keep.append([[] for _ in range(100)])
        gc.set_threshold(1)
        return None

sys.modules["zz_trap"] = Trap()

def app(environ, start_response):
    armed[0] = False
    gc.set_threshold(700, 10, 10)
    del keep[:]
    start_response("200 OK", [("Content-Type", "text/plain")])
    if not grabbed:
        return [("hidden\n" + "\n".join(log[:50]) + "\n").encode()]
    base = grabbed[0]
    return [("found the base: tracked %s; REQUEST_METHOD %r; SERVER_PORT %r; same as environ %s\n" % (
        gc.is_tracked(base), base.get("REQUEST_METHOD"), base.get("SERVER_PORT"), base is environ)).encode()]
