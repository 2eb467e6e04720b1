"""Every error a client can cause becomes a 4xx JSON body that says what is wrong; nothing leaks a trace.
The statuses and bodies are in serving/error_shapes.py; this installs its one handler on the HTTP app."""

from fastapi import FastAPI

from ..errors import PredictorUnavailable, Unavailable  # noqa: F401 - old import path of these names
from .error_shapes import HANDLED, handle


def install_error_handlers(app: FastAPI) -> None:
    """Registered after kserve's own handlers, so ours replace kserve's (which log a traceback for every 4xx)."""
    for error_class in HANDLED:
        app.add_exception_handler(error_class, handle)
