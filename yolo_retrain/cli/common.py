"""What every command shares: errors a user can act on become one line and exit code 2."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import typer

from yolo_retrain.errors import RetrainError


@contextmanager
def exit_on_error() -> Iterator[None]:
    try:
        yield
    except RetrainError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=2) from exc
