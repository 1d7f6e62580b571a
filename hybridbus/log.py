"""Logging in nats-server's shape.

    [4711] 2026/11/22 02:07:36.658121 [INF] Listening for client connections on 0.0.0.0:4222

`-D` turns on [DBG], `-V` turns on [TRC]. Every module logs through a child of
the ``hybridbus`` logger with %-style arguments, so a disabled level costs one
comparison and no formatting.
"""

from __future__ import annotations

import logging
import os
import sys
import time

TRACE = 5
logging.addLevelName(TRACE, "TRACE")

_LEVEL_TAGS = {
    TRACE: "TRC",
    logging.DEBUG: "DBG",
    logging.INFO: "INF",
    logging.WARNING: "WRN",
    logging.ERROR: "ERR",
    logging.CRITICAL: "FTL",
}


class NatsStyleFormatter(logging.Formatter):
    """`[pid] date time.micros [LVL] message`, or without the time when logtime is off."""

    def __init__(self, logtime: bool = True) -> None:
        super().__init__()
        self.logtime = logtime
        self.pid = os.getpid()

    def format(self, record: logging.LogRecord) -> str:
        tag = _LEVEL_TAGS.get(record.levelno, record.levelname[:3])
        message = record.getMessage()
        if record.exc_info:
            message = message + "\n" + self.formatException(record.exc_info)
        if not self.logtime:
            return f"[{self.pid}] [{tag}] {message}"
        t = record.created
        stamp = time.strftime("%Y/%m/%d %H:%M:%S", time.localtime(t))
        micros = int((t - int(t)) * 1_000_000)
        return f"[{self.pid}] {stamp}.{micros:06d} [{tag}] {message}"


def configure(
    *, debug: bool = False, trace: bool = False, logtime: bool = True, log_file: str | None = None
) -> None:
    """Send the ``hybridbus`` logger to stderr (or a file) at the chosen level."""
    root = logging.getLogger("hybridbus")
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    handler: logging.Handler
    if log_file:
        handler = logging.FileHandler(log_file)
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(NatsStyleFormatter(logtime))
    root.addHandler(handler)
    root.setLevel(TRACE if trace else logging.DEBUG if debug else logging.INFO)
    root.propagate = False
