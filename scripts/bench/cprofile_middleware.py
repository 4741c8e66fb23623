"""The peer for scripts/bench-profiler: an accumulating cProfile middleware
in the manner of repoze.profile's AccumulatingProfileMiddleware (one shared
cProfile.Profile, requests serialised by a lock because cProfile cannot
profile two at once), minus repoze's rewrite of the stats file after every
request, which would only make it slower. It wraps the app named by
$BENCH_PROFILED_APP (module:callable; default tracshaped:application)."""
import cProfile
import importlib
import os
import threading


class AccumulatingProfile:
    def __init__(self, app):
        self.app = app
        self.profiler = cProfile.Profile()
        self.lock = threading.Lock()

    def __call__(self, environ, start_response):
        with self.lock:
            return self.profiler.runcall(self.app, environ, start_response)


def wrapped_app():
    module, _, name = os.environ.get("BENCH_PROFILED_APP", "tracshaped:application").partition(":")
    return getattr(importlib.import_module(module), name)


application = AccumulatingProfile(wrapped_app())
