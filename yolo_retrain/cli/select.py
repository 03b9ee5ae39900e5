"""``yolo-retrain select``: the champion picks which unlabelled images reviewers look at next."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from yolo_retrain.cli.common import exit_on_error, use_console
from yolo_retrain.config import get_settings


def select(
    sources: Annotated[Optional[list[str]], typer.Argument(help="Folders, globs ('cams/*.jpg') or list files of images (one path a line).", show_default=False)] = None,
    budget: Annotated[Optional[int], typer.Option("--budget", "-n", min=1, help="Images to pick (default YOLO_RETRAIN_SELECTION_BUDGET).")] = None,
    samples: Annotated[bool, typer.Option("--samples/--no-samples", help="Also the samples posted to the intake (POST /samples).")] = True,
    project: Annotated[Optional[int], typer.Option("--project", min=1, help="Label Studio project for the tasks (default YOLO_RETRAIN_LABEL_STUDIO_PROJECT; none: CSV only).")] = None,
) -> None:
    """Score the pool with the champion, pick the most informative images (diverse, every class covered, never one
    picked before), send them to Label Studio pre-annotated and write them as a CSV."""
    from yolo_retrain import console
    from yolo_retrain.selection.run import select_for_review

    settings = get_settings()
    with exit_on_error(), use_console(verbose=False), console.stage("scoring the pool") as bar:
        selection = select_for_review(
            settings, sources or [], budget, samples, project or settings.label_studio_project,
            progress=lambda done, total: bar.update(completed=done, total=total, info=f"{done}/{total} images"),
        )
    typer.echo(selection.summary())
