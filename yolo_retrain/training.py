"""Training and evaluation with Ultralytics, as plain functions."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ultralytics import YOLO
from ultralytics.utils import SETTINGS

from yolo_retrain.callbacks import mlflow_run, prefect_progress
from yolo_retrain.config import Settings
from yolo_retrain.metrics import EvalMetrics

# Our own MLflow callback logs into the retrain's run by id; Ultralytics' would open runs and experiments of
# its own. No analytics either: retrains make no network call.
SETTINGS.update(mlflow=False, sync=False, clearml=False, comet=False, dvc=False, raytune=False, wandb=False)

@dataclass(frozen=True)
class TrainOutput:
    save_dir: Path
    best_weights: Path

    @property
    def results_csv(self) -> Path:
        return self.save_dir / "results.csv"

    @property
    def args_yaml(self) -> Path:
        return self.save_dir / "args.yaml"

    @property
    def plots(self) -> list[Path]:
        return sorted(p for p in self.save_dir.glob("*") if p.suffix in {".png", ".jpg"})


def _common_args(settings: Settings, imgsz: int | None, batch: int | None) -> dict:
    return {
        "imgsz": imgsz or settings.imgsz,
        "batch": batch or settings.batch,
        "device": settings.device,
        "workers": settings.workers,
        "project": str(settings.runs_dir),
        "exist_ok": True,
        "verbose": False,
    }


def train(
    settings: Settings,
    data_yaml: Path,
    start_weights: str | Path,
    name: str,
    *,
    run_id: str | None = None,
    epochs: int | None = None,
    imgsz: int | None = None,
    batch: int | None = None,
) -> TrainOutput:
    """Train from ``start_weights`` (a .pt, or a model YAML for a from-scratch start) on ``data_yaml``.

    Args:
        settings: Training defaults and output dirs.
        data_yaml: The retraining dataset.
        start_weights: The champion's weights, or the configured base model.
        name: Output folder name under ``settings.runs_dir``.
        run_id: The retrain's MLflow run (at ``settings.tracking_uri``): per-epoch metrics go into it.
        epochs: Overrides ``settings.epochs``; likewise ``imgsz`` and ``batch``.
    """
    model = YOLO(str(start_weights))
    hooks = [prefect_progress.callbacks()]
    if run_id is not None:
        hooks.append(mlflow_run.callbacks(settings.tracking_uri, run_id))
    for hook in hooks:
        for event, fn in hook.items():
            model.add_callback(event, fn)
    with _heap_frozen():
        model.train(
            data=str(data_yaml),
            epochs=epochs or settings.epochs,
            name=name,
            seed=settings.seed,
            deterministic=True,
            plots=True,
            **_common_args(settings, imgsz, batch),
        )
    trainer = model.trainer
    best = Path(trainer.best if Path(trainer.best).exists() else trainer.last)
    return TrainOutput(save_dir=Path(trainer.save_dir), best_weights=best)


@contextmanager
def _heap_frozen() -> Iterator[None]:
    """Keep what exists before training (Prefect, MLflow, pandas: twice the objects of a bare Ultralytics process)
    out of the garbage collector's passes during training. On a GPU Ultralytics calls ``gc.collect()`` twice an
    epoch once memory is half full: 250 ms each over this process's heap (100 ms in a bare Ultralytics process),
    ~0 once frozen."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def evaluate(
    settings: Settings, weights: str | Path, data_yaml: Path, name: str, imgsz: int | None = None, batch: int | None = None
) -> EvalMetrics:
    """Validate ``weights`` on the dataset's val split (the holdout); the same call for champion and candidate."""
    results = YOLO(str(weights)).val(data=str(data_yaml), split="val", name=name, plots=False, **_common_args(settings, imgsz, batch))
    box = results.box
    names = results.names
    per_class = {names[int(c)]: float(ap) for c, ap in zip(box.ap_class_index, box.ap)}
    return EvalMetrics(
        map50=float(box.map50), map50_95=float(box.map), precision=float(box.mp), recall=float(box.mr), per_class_ap=per_class
    )
