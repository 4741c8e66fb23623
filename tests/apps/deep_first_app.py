"""A thread that is deep in its C stack when the frame hook is installed
(test_profile_app_hooks): it recurses through C frames until about DEEP_LEFT
KiB of its DEEP_KIB KiB stack are left, touches DEEP_READY, waits for /go,
then unwinds and recurses DEEP_REC levels in Python."""
import ctypes
import sys
import threading
import time

sys.setrecursionlimit(100000)
libc = ctypes.CDLL(None)
libc.pthread_self.restype = ctypes.c_ulong
KIB = int(__import__("os").environ.get("DEEP_KIB", "256"))
AIM = int(__import__("os").environ.get("DEEP_LEFT", "20")) * 1024


def bounds():
    attr = ctypes.create_string_buffer(128)
    libc.pthread_getattr_np(ctypes.c_ulong(libc.pthread_self()), attr)
    low, size = ctypes.c_void_p(), ctypes.c_size_t()
    libc.pthread_attr_getstack(attr, ctypes.byref(low), ctypes.byref(size))
    libc.pthread_attr_destroy(attr)
    return low.value, size.value


def sp():
    with open("/proc/thread-self/syscall") as f:
        return int(f.read().split()[7], 16)


state = {"go": False, "left": None, "out": None, "size": None}


def check():
    return state["go"]


def rec(n):
    return 0 if n == 0 else 1 + rec(n - 1)


def descend(low):
    if sp() - low > AIM:
        return next(map(lambda _: descend(low), (0,)))  # each level a C frame
    state["left"] = sp() - low
    open(__import__("os").environ["DEEP_READY"], "w").close()
    while not check():  # after the hook is installed: the thread's first eval_frame, here
        time.sleep(0.01)
    return 0


def run():
    low, size = bounds()
    state["size"] = size
    descend(low)
    try:
        state["out"] = "%d" % rec(int(__import__("os").environ.get("DEEP_REC", "3000")))
    except RecursionError as e:
        state["out"] = "RecursionError: %s" % e


threading.stack_size(KIB * 1024)
T = threading.Thread(target=run, name="deepfirst", daemon=True)
T.start()
threading.stack_size(0)


def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/go":
        state["go"] = True
        T.join(30)
        body = "left at first call: %s; size %s; out: %s" % (state["left"], state["size"], state["out"])
    else:
        time.sleep(0.3)  # profiled: the hook is installed while T waits deep
        body = "left %s" % state["left"]
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body.encode()]
