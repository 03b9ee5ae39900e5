"""A refused retrain reads as one line: its reason (``error: ...``, last), not Prefect's ERROR logs and tracebacks.

Prefect logs a failed task and flow at ERROR with the exception's traceback. For a refusal (bad input, a setup to
fix: a :class:`RetrainError` that is not transient) those lines are kept off the terminal; the Prefect UI (its API
log handler) still has them whole. A crash, or a transient fault that outlasted its retries, shows everything.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager

from yolo_retrain.errors import RetrainError, TransientError

# Prefect's summary of a failed task names the exception without carrying it: "... encountered an exception Name: ..."
_NAMED_EXCEPTION = re.compile(r"exception (\w+)[:(]|execution: (\w+)\(")


def is_refusal(exc: BaseException | None) -> bool:
    return isinstance(exc, RetrainError) and not isinstance(exc, TransientError)


def _refusal_names() -> set[str]:
    names, pending = set(), [RetrainError]
    while pending:
        cls = pending.pop()
        if not issubclass(cls, TransientError):
            names.add(cls.__name__)
        pending.extend(cls.__subclasses__())
    return names


class HideRefusalTracebacks(logging.Filter):
    """Drops Prefect's ERROR records about a refusal; every other record passes."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.ERROR or not record.name.startswith("prefect"):
            return True
        if record.exc_info and record.exc_info[1] is not None:
            return not is_refusal(record.exc_info[1])
        match = _NAMED_EXCEPTION.search(record.getMessage())
        return not (match and (match.group(1) or match.group(2)) in _refusal_names())


def _console_handlers() -> list[logging.Handler]:
    """The handlers that write to the terminal: the root's and Prefect's stream handlers (not its API handler)."""
    names = ("prefect", "prefect.flow_runs", "prefect.task_runs")
    loggers = [logging.getLogger(), *(logging.getLogger(n) for n in names)]
    found: list[logging.Handler] = []
    for logger in loggers:
        for handler in logger.handlers:
            to_terminal = isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler)
            if to_terminal and handler not in found:
                found.append(handler)
    return found


@contextmanager
def refusals_in_one_line() -> Iterator[None]:
    """While inside, the terminal's handlers leave out a refusal's Prefect ERROR lines (Prefect imported already);
    ``--verbose`` shows them."""
    from yolo_retrain import console

    handlers = [] if console.mode() == "verbose" else _console_handlers()
    hide = HideRefusalTracebacks()
    for handler in handlers:
        handler.addFilter(hide)
    try:
        yield
    finally:
        for handler in handlers:
            handler.removeFilter(hide)
