"""The logger of what happens before the server starts (download, model wait, warm-up), visible from the first line.

kserve configures logging only when its ModelServer is built, after the model is loaded, and nothing configures
the `hfserve` logger in the two kserve servers, so INFO lines logged at start-up would be dropped. This one logger
has its own stderr handler in kserve's format and does not propagate, so it prints once in every entry point (the
Triton launcher configures the root logger, which it would otherwise print through as well).
"""

import logging
import sys

FORMAT = "%(asctime)s.%(msecs)03d %(process)s %(name)s %(levelname)s %(message)s"


def startup_logger() -> logging.Logger:
    log = logging.getLogger("hfserve.startup")
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(FORMAT, "%Y-%m-%d %H:%M:%S"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False
    return log
