"""What a long command prints: its progress and results on the console, libraries' log lines
in a file.

Prefect logs every task run and its temporary server's start and stop, MLflow its database
set-up; between a search's progress lines that is noise. :func:`quiet` raises the console
handlers of the root and ``mlflow`` loggers (where Prefect's and MLflow's lines go) to
WARNING, and writes everything at INFO and above to a log file instead. Warnings and errors
still reach the console; ``verbose`` leaves the console as it was.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["LOG_FILE", "quiet"]

LOG_FILE = "lionforge.log"
_LOGGERS = ("", "mlflow")  # the root (Prefect's console handler) and MLflow's own
_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def _console_handlers(logger: logging.Logger) -> list[logging.Handler]:
    return [h for h in logger.handlers
            if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)]


@contextmanager
def quiet(verbose: bool = False, log_file: str | os.PathLike | None = None,
          until_exit: bool = False) -> Iterator[None]:
    """Within it, only WARNING and above from libraries reach the console (unless
    ``verbose``), and INFO and above go to ``log_file`` (appended; its folder is made).

    ``until_exit``: leave it so after the block, for a process that ends there (Prefect's
    temporary server logs its stop at exit); logging's shutdown closes the file."""
    loggers = [logging.getLogger(name) for name in _LOGGERS]
    raised = [] if verbose else [(h, h.level) for lg in loggers for h in _console_handlers(lg)]
    for handler, level in raised:
        handler.setLevel(max(level, logging.WARNING))
    file_handler = None
    if log_file is not None:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        file_handler = logging.FileHandler(log_file, encoding="utf-8")
        file_handler.setLevel(logging.INFO)
        file_handler.setFormatter(logging.Formatter(_FORMAT))
        for lg in loggers:
            lg.addHandler(file_handler)
    try:
        yield
    finally:
        if not until_exit:
            for handler, level in raised:
                handler.setLevel(level)
            if file_handler is not None:
                for lg in loggers:
                    lg.removeHandler(file_handler)
                file_handler.close()
