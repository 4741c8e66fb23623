"""The floors for scripts/bench-profiler: the app named by $BENCH_PROFILED_APP
(module:callable) with a profiling hook that records nothing
(scripts/bench/null_hooks.c), installed as tracfront's profiler installs its
own. $BENCH_NULL_HOOK says which:

  profile  a do-nothing PyEval_SetProfile function on the thread for the app
           call, as --profile (and cProfile) do per request;
  frame    a pass-through frame-evaluation function for the interpreter, as
           --profile-builtins=false does while profiling is on.

Whatever a profiler records on top of these hooks, it costs at least this."""
import importlib
import os

import null_hooks

MODE = os.environ.get("BENCH_NULL_HOOK", "profile")


def wrapped_app():
    module, _, name = os.environ.get("BENCH_PROFILED_APP", "tracshaped:application").partition(":")
    return getattr(importlib.import_module(module), name)


app = wrapped_app()


def with_profile_hook(environ, start_response):
    null_hooks.profile_on()
    try:
        return app(environ, start_response)
    finally:
        null_hooks.profile_off()


if MODE == "frame":
    null_hooks.frame_hook_on()
    application = app
elif MODE == "profile":
    application = with_profile_hook
else:
    raise SystemExit("BENCH_NULL_HOOK must be profile or frame, not %r" % MODE)
