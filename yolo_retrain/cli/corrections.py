"""``yolo-retrain corrections ...``: add, import, list and count reviewers' corrections; review held ones."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from yolo_retrain import intake
from yolo_retrain.cli.common import exit_on_error
from yolo_retrain.config import get_settings
from yolo_retrain.formats import FORMAT_NAMES
from yolo_retrain.image_metadata import parse_pairs
from yolo_retrain.store import Correction, CorrectionStore, Status

app = typer.Typer(
    help="Store and inspect reviewers' box corrections (the input of every retrain).", no_args_is_help=True
)

AuthorOption = Annotated[
    str | None, typer.Option("--author", help="Who made the correction (free text, e.g. an e-mail).")
]
VersionOption = Annotated[
    str | None,
    typer.Option("--source-model-version", help="Model version whose predictions were corrected, if known."),
]


@contextmanager
def _store() -> Iterator[CorrectionStore]:
    """The configured store, closed afterwards; a refused input becomes ``error: ...`` on stderr and exit code 2."""
    with exit_on_error(), CorrectionStore.from_settings(get_settings()) as store:
        yield store


@app.command("add")
def add(
    image: Annotated[Path, typer.Argument(help="Image file (JPEG, PNG, BMP, WebP or TIFF).")],
    labels: Annotated[Path, typer.Argument(help="YOLO label file for the image: one 'class cx cy w h' line per box.")],
    author: AuthorOption = None,
    source_model_version: VersionOption = None,
    meta: Annotated[
        list[str] | None,
        typer.Option("--meta", help="Image metadata NAME=VALUE (e.g. camera=cam2), repeatable: the gate's slices."),
    ] = None,
) -> None:
    """Add one corrected image and its labels."""
    with _store() as store:
        added = intake.add_correction(
            store, get_settings(), image, labels, author=author, source_model_version=source_model_version,
            metadata=parse_pairs(meta or [], "--meta"),
        )
    correction = added.correction
    typer.echo(f"added {correction.id} ({correction.original_name}, {correction.num_boxes} boxes)")
    _warn(added.announcement)


@app.command("import")
def import_(
    path: Annotated[
        Path,
        typer.Argument(
            help="A labelling tool's export: a folder, its data.yaml, or the .zip as downloaded (Label Studio YOLO, "
            "CVAT YOLO 1.1 or Ultralytics YOLO Detection, Roboflow YOLOv5/v8/v11, an Ultralytics dataset, or "
            "images/ + labels/)."
        ),
    ],
    format: Annotated[
        str | None,
        typer.Option(
            "--format",
            help=f"The export's format, if detection guesses wrong: {', '.join(FORMAT_NAMES)}. Needed for an export "
            "that names no classes (e.g. plain images/ + labels/): it says its ids are the project's.",
        ),
    ] = None,
    images: Annotated[
        Path | None,
        typer.Option("--images", help="Folder with the images of an export without them (Label Studio YOLO, CVAT "
                     "annotations only): matched by file name."),
    ] = None,
    metadata: Annotated[
        Path | None,
        typer.Option("--metadata", help="A CSV of image metadata (image,camera,site...: image paths relative to the "
                     "CSV, or file names); default the export's own metadata.csv, if it has one."),
    ] = None,
    author: AuthorOption = None,
    source_model_version: VersionOption = None,
) -> None:
    """Import a whole export of corrections, classes matched by name: all of them, or none if any is refused."""
    with _store() as store:
        result = intake.import_corrections(
            store, get_settings(), path, format=format, images=images, report=typer.echo, metadata=metadata,
            author=author, source_model_version=source_model_version,
        )
    typer.echo(f"imported {len(result.added)} corrections from {path} ({result.format})")
    _warn(result.announcement)


def _warn(announcement: intake.Announcement) -> None:
    """What failed after the corrections were stored (they are): on stderr, the command still succeeds."""
    if announcement.problem:
        typer.echo(f"warning: {announcement.problem}", err=True)


@app.command("list")
def list_(
    status: Annotated[Status | None, typer.Option(help="Only corrections with this status.")] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="Show at most this many, newest first.")] = 20,
    source_deleted: Annotated[
        bool,
        typer.Option(
            "--source-deleted",
            help="Only corrections whose Label Studio annotation was deleted (accepted ones: a model learned them, review).",
        ),
    ] = False,
) -> None:
    """List corrections, newest first (held ones with the version and why: screening's reason per box)."""
    with _store() as store:
        rows = store.list(status=status, limit=limit, source_deleted=True if source_deleted else None)
    if not rows:
        typer.echo("no corrections")
        return
    columns: list[tuple[str, Callable[[Correction], str]]] = [
        ("ID", lambda c: c.id[:12]),
        ("CREATED (UTC)", lambda c: c.created_at.strftime("%Y-%m-%d %H:%M:%S")),
        ("STATUS", lambda c: c.status),
        ("BOXES", lambda c: str(c.num_boxes)),
        ("SIZE", lambda c: f"{c.width}x{c.height}"),
        ("IMAGE", lambda c: c.original_name),
        ("AUTHOR", lambda c: c.author or "-"),
        ("BATCH", lambda c: (c.batch_id or "-")[:8]),
        ("VERSION", lambda c: c.applied_version or "-"),
    ]
    if any(c.image_metadata for c in rows):  # camera, site...: the gate's slices
        columns.append(("METADATA", lambda c: ",".join(f"{k}={v}" for k, v in c.metadata.items()) or "-"))
    if any(c.status_reason for c in rows):
        columns.append(("WHY", lambda c: c.status_reason or "-"))
    table = [[title for title, _ in columns]] + [[cell(c) for _, cell in columns] for c in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(columns))]
    for row in table:
        typer.echo("  ".join(value.ljust(width) for value, width in zip(row, widths)).rstrip())


@app.command("stats")
def stats() -> None:
    """Count corrections by status (every status, zeros included)."""
    with _store() as store:
        counts = store.stats()
    width = max(map(len, counts))
    for name, count in counts.items():
        typer.echo(f"{name.ljust(width)}  {count}")


IdsArgument = Annotated[
    list[str] | None, typer.Argument(help="Correction ids (or unique prefixes, as `corrections list` shows them).")
]
BatchOption = Annotated[
    str | None,
    typer.Option("--batch", help="Every held (suspicious or rejected) correction of this batch (the retrain's flow run id, or a unique prefix)."),
]
ByOption = Annotated[str | None, typer.Option("--by", help="Who decides (recorded with the correction).")]


def _review(action: str, done: str, ids: list[str] | None, batch: str | None, by: str | None) -> None:
    with _store() as store:
        changed = getattr(store, action)(ids or (), batch=batch, by=by)
    typer.echo(f"{done} {len(changed)} correction(s): {', '.join(c.id[:12] for c in changed)}")


@app.command("requeue")
def requeue(ids: IdsArgument = None, batch: BatchOption = None, by: ByOption = None) -> None:
    """Held (suspicious or rejected) corrections back to pending: a person decided they are right; the next retrain takes them."""
    _review("requeue", "requeued", ids, batch, by)


@app.command("accept")
def accept(ids: IdsArgument = None, batch: BatchOption = None, by: ByOption = None) -> None:
    """Held (suspicious or rejected) corrections accepted as they are: every later retrain learns from them."""
    _review("accept", "accepted", ids, batch, by)


@app.command("drop")
def drop(ids: IdsArgument = None, batch: BatchOption = None, by: ByOption = None) -> None:
    """Held (suspicious or rejected) or pending corrections discarded: kept as 'dropped' for the record, never trained on."""
    _review("drop", "dropped", ids, batch, by)
