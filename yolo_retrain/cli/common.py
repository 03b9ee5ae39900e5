"""What every command shares: errors a user can act on become one line and exit code 2."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer

from yolo_retrain.config import setup_logging
from yolo_retrain.errors import RetrainError

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
def exit_on_error() -> Iterator[None]:
    try:
        yield
    except RetrainError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=2) from exc
