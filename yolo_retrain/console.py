"""What a person sees in the terminal: one progress bar per stage, then the summary; libraries' chatter in a file.

Three modes, chosen by the entry point:

- ``plain`` (default: a Prefect worker, the tests, the intake): no bars; Ultralytics' output goes where it always
  went *and* into ``train.log``.
- ``quiet`` (``yolo-retrain run`` / ``demo``): a bar per stage (dataset, evaluation, training epochs with loss and
  mAP); Ultralytics' model summary, argument dump and per-batch bars only into ``train.log``, which the retrain
  logs with its MLflow run; Prefect's per-task log lines and library warnings a user cannot act on are hidden
  (Prefect's UI still has every log line).
- ``verbose`` (``--verbose``): everything live on the terminal, and in ``train.log`` too; no bars of ours.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from pathlib import Path
from typing import IO, Literal

Mode = Literal["plain", "quiet", "verbose"]
_state: dict = {"mode": "plain", "terminal": None}

# Loggers whose INFO lines narrate internals ("Created version '2' of model ...", alembic migrations).
_CHATTY_LOGGERS = ("mlflow", "alembic", "httpx", "urllib3", "matplotlib", "PIL")


_QUIET_ENV = {
    # Prefect reads these when it sets its logging up (at import); its console handler then shows warnings only.
    "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL": "WARNING",
    "PREFECT_LOGGING_HANDLERS_CONSOLE_FLOW_RUNS_LEVEL": "WARNING",
    "PREFECT_LOGGING_HANDLERS_CONSOLE_TASK_RUNS_LEVEL": "WARNING",
    "MLFLOW_LOGGING_LEVEL": "WARNING",
}


def mode() -> Mode:
    return _state["mode"]


@contextmanager
def session(new_mode: Mode) -> Iterator[None]:
    """The terminal in ``new_mode`` while inside (a command's run); everything is as it was afterwards.

    ``quiet`` also hides Prefect's per-task console lines, MLflow's notices and library warnings. Best entered
    before Prefect and MLflow are imported (they read their logging settings then); handlers that already exist
    are lowered too.
    """
    saved_state = dict(_state)
    saved_env = {key: os.environ.get(key) for key in _QUIET_ENV}
    loggers = [logging.getLogger(name) for name in _CHATTY_LOGGERS]
    saved_levels = [logger.level for logger in loggers]
    consoles = [h for h in logging.getLogger().handlers if type(h).__name__ == "PrefectConsoleHandler"]
    saved_handler_levels = [h.level for h in consoles]
    _state.update(mode=new_mode, terminal=sys.stderr)
    with warnings.catch_warnings():
        if new_mode == "quiet":
            for key, value in _QUIET_ENV.items():
                os.environ.setdefault(key, value)
            for handler in consoles:
                handler.setLevel(logging.WARNING)
            for logger in loggers:
                logger.setLevel(logging.WARNING)
            # Deprecation and future notices from inside the libraries: nothing a user of this command can change.
            for category in (DeprecationWarning, FutureWarning, PendingDeprecationWarning, UserWarning):
                warnings.filterwarnings("ignore", category=category)
        try:
            yield
        finally:
            _state.update(saved_state)
            for key, value in saved_env.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
            for logger, level in zip(loggers, saved_levels):
                logger.setLevel(level)
            for handler, level in zip(consoles, saved_handler_levels):
                handler.setLevel(level)


class Bar:
    """One stage's progress bar; a no-op outside ``quiet`` mode, so callers never need to check."""

    def __init__(self, progress=None, task=None) -> None:
        self._progress, self._task = progress, task

    def update(self, completed: float | None = None, total: float | None = None, info: str | None = None) -> None:
        if self._progress is None:
            return
        fields = {"info": info} if info is not None else {}
        self._progress.update(self._task, completed=completed, total=total, **fields)


@contextmanager
def stage(label: str, total: float | None = None, info: str = "") -> Iterator[Bar]:
    """A bar for one stage, left on screen as one line once the stage ends (complete, or where it stopped)."""
    if mode() != "quiet":
        yield Bar()
        return
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

    terminal = _state["terminal"] or sys.stderr
    progress = Progress(
        TextColumn(f"{label:<22}"),
        BarColumn(bar_width=24),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[info]}"),
        console=Console(file=terminal, width=None if terminal.isatty() else 110),  # a pipe or file: no wrapping
        redirect_stdout=False,  # library output is redirected to train.log around the stage instead
        redirect_stderr=False,
    )
    task = progress.add_task(label, total=total, info=info)
    with progress:
        bar = Bar(progress, task)
        yield bar
        if progress.tasks[0].total is None:  # a stage without steps: full once done
            progress.update(task, total=1, completed=1)


class _Tee:
    """A text stream writing to a file and to another stream (``plain`` and ``verbose`` modes)."""

    def __init__(self, *streams: IO[str]) -> None:
        self.streams = streams

    def write(self, text: str) -> int:
        for stream in self.streams:
            stream.write(text)
        return len(text)

    def flush(self) -> None:
        for stream in self.streams:
            stream.flush()

    def isatty(self) -> bool:
        return False  # Ultralytics then writes its bars as plain lines, which read well in a file


class _CurrentStdout:
    """Writes wherever ``sys.stdout`` points at the time. Ultralytics' log handler keeps the stdout of its import
    time; pointed here, it follows ``redirect_stdout`` like ``print`` does, and never holds a stream that closed."""

    def write(self, text: str) -> int:
        return sys.stdout.write(text)

    def flush(self) -> None:
        sys.stdout.flush()


_CURRENT_STDOUT = _CurrentStdout()


@contextmanager
def library_output(log_file: Path | None) -> Iterator[None]:
    """Ultralytics' output (its logger, its bars, anything printed) into ``log_file``; on the terminal too unless
    ``quiet``. Our own bars write to the terminal kept by :func:`session`, so they stay visible."""
    if log_file is None:
        yield
        return
    log_file.parent.mkdir(parents=True, exist_ok=True)
    ultralytics_logger = logging.getLogger("ultralytics")
    _follow_stdout(ultralytics_logger)
    with open(log_file, "a", encoding="utf-8") as fh:
        quiet = mode() == "quiet"
        out = fh if quiet else _Tee(fh, sys.stdout)
        err = fh if quiet else _Tee(fh, sys.stderr)
        try:
            with redirect_stdout(out), redirect_stderr(err), warnings.catch_warnings():
                if quiet:
                    warnings.simplefilter("ignore")
                yield
        finally:
            _follow_stdout(ultralytics_logger)  # also a handler made inside (Ultralytics imported for the first time)


def _follow_stdout(logger: logging.Logger) -> None:
    """Point the console handler Ultralytics made (not a file's, nor one a test harness attached) at the current
    stdout. Assigned under the handler's lock: ``setStream`` would first flush the old stream, which may be closed."""
    for handler in logger.handlers:
        if type(handler) is logging.StreamHandler and handler.stream is not _CURRENT_STDOUT:
            with handler.lock:
                handler.stream = _CURRENT_STDOUT
