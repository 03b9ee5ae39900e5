"""One Ultralytics export of a model's weights, offline: nothing is installed at run time (the packages ONNX needs
are the project's dependencies; another format's missing package makes that export fail, reported)."""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Exported:
    format: str
    path: Path  # a file (model.onnx) or a folder (model_openvino_model/), as Ultralytics writes it
    seconds: float


def export_weights(weights: Path, fmt: str, imgsz: int, folder: Path, device: str | None = None) -> Exported:
    """Export ``weights`` to ``fmt`` at ``imgsz`` into ``folder`` (named ``model.<suffix>``); raises what the
    exporter raises (a missing package: ImportError or ModuleNotFoundError)."""
    from ultralytics import YOLO
    from ultralytics.utils import checks

    checks.AUTOINSTALL = False  # its check_requirements would pip-install a missing package: never at run time
    folder.mkdir(parents=True, exist_ok=True)
    source = folder / "model.pt"  # Ultralytics writes the export beside the weights, named after them
    shutil.copyfile(weights, source)
    try:
        started = time.perf_counter()
        options = {"device": device} if device else {}  # else Ultralytics' choice: the first GPU, else the CPU
        written = YOLO(str(source)).export(format=fmt, imgsz=imgsz, verbose=False, **options)
        seconds = time.perf_counter() - started
    finally:
        source.unlink(missing_ok=True)
    if not written or not Path(written).exists():
        raise RuntimeError(f"Ultralytics wrote no {fmt} export")
    return Exported(fmt, Path(written), seconds)
