"""loading_apps' app, with faulthandler switched on at import as some apps do
(it writes to sys.stderr.fileno(), so that must be the error log)."""
import faulthandler

faulthandler.enable()

from loading_apps import app  # noqa: E402,F401
