"""loading_apps' app, with faulthandler switched on at import as some apps do
(it writes to sys.stderr.fileno(), so that must be the error log), and
sys.stdout reconfigured as container apps do at their top."""
import faulthandler
import sys

faulthandler.enable()
sys.stdout.reconfigure(line_buffering=True)
sys.stderr.reconfigure(encoding="utf-8", write_through=True)

from loading_apps import app  # noqa: E402,F401
