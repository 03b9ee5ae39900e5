from __future__ import annotations

from dataclasses import replace

from tasks import retrain_task
from yolo_retrain import registry, tracking
from yolo_retrain.config import Settings
from yolo_retrain.dataset import BuiltDataset
from yolo_retrain.metrics import EvalMetrics, evaluation_key
from yolo_retrain.per_image import collector, per_image_path
from yolo_retrain.recipe import Recipe
from yolo_retrain.training import evaluate, log_path

_WHOSE = {"pre": "champion", "post": "candidate"}


def holdout_key(recipe: Recipe, dataset: BuiltDataset) -> str:
    """The evaluation setup of this retrain: its holdout, the recipe's image size, batch and device, Ultralytics' version."""
    args = recipe.evaluation_args()
    return evaluation_key(dataset.holdout_digest, args["imgsz"], args["batch"], args["device"], args["single_cls"])


@retrain_task("evaluate", resumable=True)
def evaluate_on_holdout(
    settings: Settings, run: tracking.RetrainRun, dataset: BuiltDataset, weights: str, prefix: str, recipe: Recipe
) -> EvalMetrics:
    """Validate weights on the holdout and log them as ``<prefix>_*`` metrics (pre: champion, post: candidate).

    Args:
        settings: Output dirs and the tracking server.
        run: The retrain's MLflow run.
        dataset: Its val split is the holdout.
        weights: The model to evaluate.
        prefix: ``pre`` or ``post``.
        recipe: Its image size, batch and device are the evaluation's.
    """
    metrics = _evaluate(settings, run, dataset, weights, prefix, recipe)
    logged_at = tracking.log_metrics(tracking.client_for(settings), run.run_id, metrics.as_mlflow(prefix))
    return replace(metrics, logged_at_ms=logged_at)


def _evaluate(
    settings: Settings, run: tracking.RetrainRun, dataset: BuiltDataset, weights, prefix: str, recipe: Recipe
) -> EvalMetrics:
    """The evaluation, its per-image results kept beside the run's log and logged with the run (``holdout/``): the
    gate's paired bootstrap resamples them, and a later retrain reuses the candidate's as its champion's."""
    keep, results = collector()
    metrics = evaluate(
        settings,
        weights,
        dataset.data_yaml,
        name=f"{prefix}-{run.run_id[:8]}",
        recipe=recipe,
        label=f"evaluation ({_WHOSE[prefix]})",
        log_file=log_path(settings, run.run_id),
        hooks=[keep],
    )
    path = results().save(per_image_path(log_path(settings, run.run_id).parent, prefix))
    tracking.client_for(settings).log_artifact(run.run_id, str(path), "holdout")
    return metrics


@retrain_task("evaluate-champion", resumable=True)
def evaluate_champion(
    settings: Settings, run: tracking.RetrainRun, dataset: BuiltDataset, champion: registry.Champion, recipe: Recipe
) -> EvalMetrics:
    """The champion's holdout figures, logged as ``pre_*``: those recorded on its version when they were measured
    on this same holdout and setup (validation is deterministic), else a fresh evaluation.

    Args:
        settings: Output dirs and the tracking server.
        run: The retrain's MLflow run; tag ``pre_metrics_source`` says where the figures came from.
        dataset: Its val split is the holdout.
        champion: The current champion version, with its tags and its logged model's metrics.
        recipe: Its image size, batch and device are the evaluation's (and in the evaluation key).
    """
    recorded = champion.recorded_metrics(holdout_key(recipe, dataset))
    if recorded is None:
        metrics, source = _evaluate(settings, run, dataset, champion.weights, "pre", recipe), "evaluated"
    else:
        metrics, source = recorded, f"recorded on version {champion.version} (same holdout and setup)"
    client = tracking.client_for(settings)
    logged_at = tracking.log_metrics(client, run.run_id, metrics.as_mlflow("pre"))
    tracking.set_tags(client, run.run_id, {"pre_metrics_source": source})
    return replace(metrics, logged_at_ms=logged_at)
