"""The peer for scripts/bench-profiler: an accumulating cProfile middleware
in the manner of repoze.profile's AccumulatingProfileMiddleware (one shared
cProfile.Profile, requests serialised by a lock because cProfile cannot
profile two at once), minus repoze's rewrite of the stats file after every
request, which would only make it slower."""
import cProfile
import threading

import tracshaped


class AccumulatingProfile:
    def __init__(self, app):
        self.app = app
        self.profiler = cProfile.Profile()
        self.lock = threading.Lock()

    def __call__(self, environ, start_response):
        with self.lock:
            return self.profiler.runcall(self.app, environ, start_response)


application = AccumulatingProfile(tracshaped.application)
