"""Training and evaluation with Ultralytics, as plain functions.

Integrations come in as Ultralytics callbacks: ``hooks`` from the caller (the Prefect progress artifact is handed
in by tasks/, so nothing here imports Prefect), our MLflow run callback, and the console bar of :mod:`console`.
Ultralytics itself is imported on first use, after the entry point has set its environment (config dir, offline).
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from yolo_retrain import console
from yolo_retrain.callbacks import console_progress, mlflow_run
from yolo_retrain.config import Settings
from yolo_retrain.data_yaml import class_names, read_class_names
from yolo_retrain.metrics import EvalMetrics
from yolo_retrain.model_classes import FIX_IN_RETRAIN, require_same_classes
from yolo_retrain.recipe import Recipe
from yolo_retrain.train_output import TrainOutput

Hooks = dict[str, Callable]
LOG_NAME = "train.log"

# Our own MLflow callback logs into the retrain's run by id; Ultralytics' would open runs and experiments of
# its own. No analytics either: retrains make no network call.
_ULTRALYTICS_SETTINGS = {
    "mlflow": False,
    "sync": False,
    "clearml": False,
    "comet": False,
    "dvc": False,
    "raytune": False,
    "wandb": False,
}


def _yolo(weights: str | Path, data_yaml: Path | None = None):
    """An Ultralytics model, with its integrations switched off in its settings file first (written once).

    Weights (not a model YAML) for ``data_yaml`` must have its classes, in its order: Ultralytics would train and
    validate them by position, every class id meaning another class (ClassMismatch names both lists)."""
    from ultralytics import YOLO
    from ultralytics.utils import SETTINGS

    if any(SETTINGS.get(key) != value for key, value in _ULTRALYTICS_SETTINGS.items()):
        SETTINGS.update(_ULTRALYTICS_SETTINGS)
    model = YOLO(str(weights))
    if data_yaml is not None and not str(weights).endswith((".yaml", ".yml")):
        names = class_names(model.names, f"weights {weights}")
        project = read_class_names(data_yaml, "dataset")
        require_same_classes(names, weights, project, f"dataset {data_yaml}", fix=FIX_IN_RETRAIN)
    return model


def log_path(settings: Settings, run_id: str) -> Path:
    """Where a retrain's Ultralytics output goes (champion evaluation, training, candidate evaluation)."""
    return settings.runs_dir / f"log-{run_id[:8]}" / LOG_NAME


def _add_hooks(model, hooks: Sequence[Hooks]) -> None:
    for hook in hooks:
        for event, fn in hook.items():
            model.add_callback(event, fn)


def _output_args(settings: Settings) -> dict:
    """Where Ultralytics writes, and how much it says: never part of the recipe."""
    return {
        "project": str(settings.runs_dir),
        "exist_ok": True,
        "verbose": console.mode() != "plain",  # its per-class table: in train.log, not a plain console
    }


def train(
    settings: Settings,
    data_yaml: Path,
    start_weights: str | Path,
    name: str,
    recipe: Recipe,
    *,
    run_id: str | None = None,
    hooks: Sequence[Hooks] = (),
    log_file: Path | None = None,
) -> TrainOutput:
    """Train from ``start_weights`` (a .pt, or a model YAML for a from-scratch start) on ``data_yaml``.

    Args:
        settings: Output dirs and the tracking URI.
        data_yaml: The retraining dataset.
        start_weights: The champion's weights, or the configured base model.
        name: Output folder name under ``settings.runs_dir``.
        recipe: Every train argument (epochs, image size, batch, device, hyperparameters): :mod:`recipe`.
        run_id: The retrain's MLflow run (at ``settings.tracking_uri``): per-epoch metrics go into it.
        hooks: More Ultralytics callbacks (``{event: fn}``), e.g. a progress display of the caller's.
        log_file: Ultralytics' own output goes here (and to the console unless it is quiet).
    """
    with console.stage("training", total=recipe.args["epochs"]) as bar, console.library_output(log_file):
        model = _yolo(start_weights, data_yaml)  # inside: a first import of Ultralytics prints about its settings file
        _add_hooks(model, [*hooks, console_progress.training(bar)])
        if run_id is not None:
            _add_hooks(model, [mlflow_run.callbacks(settings.tracking_uri, run_id)])
        with _heap_frozen():
            model.train(data=str(data_yaml), name=name, **recipe.args, **_output_args(settings))
    trainer = model.trainer
    best = Path(trainer.best if Path(trainer.best).exists() else trainer.last)
    return TrainOutput(save_dir=Path(trainer.save_dir), best_weights=best, log_file=log_file)


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
    settings: Settings,
    weights: str | Path,
    data_yaml: Path,
    name: str,
    recipe: Recipe,
    *,
    label: str = "evaluation",
    log_file: Path | None = None,
    hooks: Sequence[Hooks] = (),
) -> EvalMetrics:
    """Validate ``weights`` on the dataset's val split (the holdout) at the recipe's size, batch and device; the same
    call for champion and candidate. ``hooks``: more validation callbacks (e.g. :func:`per_image.collector`)."""
    with console.stage(label) as bar, console.library_output(log_file):
        model = _yolo(weights, data_yaml)
        _add_hooks(model, [*hooks, console_progress.validation(bar)])
        results = model.val(
            data=str(data_yaml), split="val", name=name, plots=False, **recipe.evaluation_args(), **_output_args(settings)
        )
    box = results.box
    names = results.names
    per_class = {names[int(c)]: float(ap) for c, ap in zip(box.ap_class_index, box.ap)}
    return EvalMetrics(
        map50=float(box.map50),
        map50_95=float(box.map),
        precision=float(box.mp),
        recall=float(box.mr),
        per_class_ap=per_class,
    )
