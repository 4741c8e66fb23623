"""start_response called from a second thread of the app, whose request ends on its own thread
while that call is still inside start_response: copying the headers allocates, the allocation
runs the collector, and a gc callback here sleeps with the GIL let go (as a finalizer that waits
or writes would). The ended request's task must not be touched after that: its memory may hold
the next request on the connection by then (/victim), whose answer must stay its own.

Routes: /race (?raise: the request's own thread raises instead of answering), /victim, others."""
import gc
import threading
import time

_state = {"armed": False, "t2": None, "said": ""}
_collecting = threading.Event()


def _on_gc(phase, info):
    if phase == "start" and _state["armed"] and threading.get_ident() == _state["t2"]:
        _state["armed"] = False
        gc.set_threshold(700, 10, 10)
        _collecting.set()
        time.sleep(0.5)  # the GIL is free: the request's own thread ends the request


gc.callbacks.append(_on_gc)


def _second_thread(start_response, headers):
    _state["t2"] = threading.get_ident()
    _state["armed"] = True
    hold = [[] for _ in range(200)]  # the list free list emptied: the copy allocates
    gc.set_threshold(1)
    try:
        write = start_response("200 OK", headers)
        try:
            write(b"INJECTED by the ended request's thread\n")
            _state["said"] = "its write() wrote"
        except Exception as e:  # noqa: BLE001 - said, not swallowed
            _state["said"] = "its write() raised %r" % (e,)
    except Exception as e:  # noqa: BLE001
        _state["said"] = "start_response raised %r" % (e,)
    del hold


def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/victim":
        start_response("200 OK", [("Content-Type", "text/plain"), ("X-From", "victim")])
        time.sleep(1.0)
        return [b"victim body\n"]
    if path == "/said":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [_state["said"].encode()]
    if path != "/race":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"plain"]
    _collecting.clear()
    headers = [("Content-Type", "text/plain"), ("X-From", "thread2")]
    t = threading.Thread(target=_second_thread, args=(start_response, headers))
    t.start()
    _collecting.wait(5)
    if environ["QUERY_STRING"] == "raise":
        raise RuntimeError("the request's own thread gives up")
    return [b"answered by the request's own thread"]
