"""What every command shares: errors a user can act on become one line and exit code 2, printed last."""

from __future__ import annotations

import atexit
import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated

import typer

from yolo_retrain.config import setup_logging
from yolo_retrain.errors import RetrainError

_last_words: list[str] = []


@atexit.register  # registered when the CLI starts, before Prefect's own exit handlers: so it runs after them
def _say_last_words() -> None:
    for line in _last_words:
        print(line, file=sys.stderr, flush=True)


VerboseOption = Annotated[
    bool, typer.Option("--verbose", "-v", help="Show Ultralytics' and Prefect's own output live (it is in train.log anyway).")
]


@contextmanager
def use_console(verbose: bool) -> Iterator[None]:
    """Commands that train: a progress bar per stage and the summary, or (``--verbose``) every library's output."""
    from yolo_retrain import console

    with console.session("verbose" if verbose else "quiet"):
        setup_logging(logging.INFO if verbose else logging.WARNING)
        yield


@contextmanager
def exit_on_error(defer: Callable[[], bool] | None = None) -> Iterator[None]:
    """A RetrainError becomes ``error: ...`` on stderr and exit code 2.

    The error must be the last thing a person reads: when ``defer()`` says something will still print at exit
    (Prefect stopping the temporary server a flow started, with a log line), the error is printed after it.
    """
    try:
        yield
    except RetrainError as exc:
        message = f"error: {exc}"
        if defer is not None and defer():
            _last_words.append(message)
        else:
            typer.echo(message, err=True)
        raise typer.Exit(code=2) from exc
