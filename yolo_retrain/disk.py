"""Disk space: what a retrain will write and where, checked before it trains; what the home holds, by category.

A retrain that runs out of disk hours into training fails at 2 a.m.; one refused up front says why in seconds.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

from yolo_retrain.config import Settings
from yolo_retrain.errors import RetrainError

MB = 1024 * 1024
# While training, Ultralytics keeps last.pt and best.pt, each the EMA weights (fp16) plus the optimizer state (fp16,
# up to two buffers a weight): about three times the final weights each, until they are stripped at the end.
TRAINING_CHECKPOINTS = 2
CHECKPOINT_FACTOR = 3
TRAINING_EXTRAS = 16 * MB  # plots, results.csv, train.log, the evaluation folders


class DiskSpaceError(RetrainError):
    """The disk cannot hold what this retrain would write (refused before training, nothing written)."""


@dataclass(frozen=True)
class Need:
    folder: Path
    what: str
    bytes: int


def weights_bytes(settings: Settings) -> int:
    """The size of the weights a retrain starts from (its candidate's size): the local champion file, a ``.pt`` base
    model, or for a YAML model its parameter count at 2 bytes each (fp16, as Ultralytics saves them)."""
    if settings.champion_weights.is_file():
        return settings.champion_weights.stat().st_size
    base = Path(settings.base_model)
    if base.suffix not in (".yaml", ".yml"):  # weights: their size, without opening them (the training reads them)
        return base.stat().st_size if base.exists() else 0
    from ultralytics import YOLO  # a YAML model: built (no download), counted

    return sum(p.numel() for p in YOLO(settings.base_model).model.parameters()) * 2


def local_artifact_dir(settings: Settings) -> Path | None:
    """The experiment's artifact folder when it is on this machine (``file:`` URI or a path), else None."""
    location = settings.artifact_location or ""
    parsed = urlparse(location)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path))
    return Path(location) if location and not parsed.scheme else None


def retrain_needs(settings: Settings, weights: int) -> list[Need]:
    """What one retrain writes, folder by folder, for a model of ``weights`` bytes."""
    checkpoints = TRAINING_CHECKPOINTS * CHECKPOINT_FACTOR * weights
    # Each export of an fp16 .pt is about twice its size (fp32: ONNX 11.5 MB for yolov8n's 5.9 MB), written once
    # into models/exports/vN/ (staged there) and once into the run's artifacts.
    exports = 2 * weights * len(settings.export_format_list)
    needs = [
        Need(settings.runs_dir, "Ultralytics' checkpoints while training, plots and logs", checkpoints + TRAINING_EXTRAS),
        Need(
            settings.models_dir,
            "models/retrained_vN.pt and the champion file's replacement" + (", its exports" if exports else ""),
            2 * weights + exports,
        ),
    ]
    artifacts = local_artifact_dir(settings)
    if artifacts is not None:
        what = "the MLflow run's weights artifact and logged model" + (", its exports" if exports else "")
        needs.append(Need(artifacts, what, 2 * weights + exports))
    return needs


def _existing(folder: Path) -> Path:
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder


def check_free_space(settings: Settings) -> str:
    """Refuse (DiskSpaceError) if a filesystem this retrain writes to would keep less than ``min_free_disk_mb``
    free after it; returns the figures otherwise. Needs on one filesystem add up."""
    weights = weights_bytes(settings)
    by_device: dict[int, list[Need]] = {}
    for need in retrain_needs(settings, weights):
        by_device.setdefault(os.stat(_existing(need.folder)).st_dev, []).append(need)
    margin = settings.min_free_disk_mb * MB
    lines = []
    for needs in by_device.values():
        free = shutil.disk_usage(_existing(needs[0].folder)).free
        total = sum(n.bytes for n in needs)
        where = " and ".join(str(n.folder) for n in needs)
        parts = ", ".join(f"{n.what} {mb(n.bytes)}" for n in needs)
        if free - total < margin:
            raise DiskSpaceError(
                f"not enough disk space for this retrain (checked before training, nothing written): {where} "
                f"{'is' if len(needs) == 1 else 'are'} on a filesystem with {mb(free)} free; the retrain writes about "
                f"{mb(total)} there ({parts}; weights {mb(weights)}) and leaves {mb(margin)} free "
                "(YOLO_RETRAIN_MIN_FREE_DISK_MB). Free space (`yolo-retrain housekeeping`) or move YOLO_RETRAIN_HOME"
            )
        lines.append(f"{where}: {mb(free)} free, needs {mb(total)} + {mb(margin)} margin")
    return "; ".join(lines)


def mb(size: int) -> str:
    return f"{size / MB:.1f} MB"


def tree_bytes(folder: Path) -> int:
    """Bytes of the files under ``folder``, links counted as links (a dataset's image links are not its images)."""
    total = 0
    for root, _, files in os.walk(folder):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:  # removed meanwhile
                pass
    return total


def usage_by_category(settings: Settings) -> dict[str, int]:
    """What the home (and a local artifact store outside it) holds, by category, in bytes."""
    folders = {
        "models": settings.models_dir,
        "training runs": settings.runs_dir,
        "datasets": settings.datasets_dir,
        "mlflow artifacts": local_artifact_dir(settings),
        "corrections": settings.corrections_dir,
        "prefect": settings.prefect_home,
    }
    usage = {name: tree_bytes(folder) for name, folder in folders.items() if folder is not None and folder.exists()}
    home_total = tree_bytes(settings.home) if settings.home.exists() else 0
    inside = sum(usage[n] for n, f in folders.items() if n in usage and f is not None and f.is_relative_to(settings.home))
    usage["other (databases, logs)"] = max(0, home_total - inside)
    return usage
