from __future__ import annotations

import tempfile
from dataclasses import replace
from pathlib import Path

from mlflow.exceptions import MlflowException

from tasks import retrain_task
from tasks.evaluate import _evaluate
from yolo_retrain import registry, tracking
from yolo_retrain.bootstrap import Comparison, paired_bootstrap
from yolo_retrain.config import Settings
from yolo_retrain.data_yaml import read_class_names
from yolo_retrain.dataset import BuiltDataset
from yolo_retrain.per_image import ImageResults, per_image_path
from yolo_retrain.recipe import Recipe
from yolo_retrain.slices import compare_slices, holdout_slices
from yolo_retrain.training import log_path


@retrain_task("compare-on-holdout", resumable=True)
def compare_on_holdout(
    settings: Settings,
    run: tracking.RetrainRun,
    dataset: BuiltDataset,
    champion: registry.Champion | None,
    recipe: Recipe,
) -> Comparison | None:
    """Candidate − champion on the holdout with its 95 % interval (paired bootstrap over holdout images), logged as
    ``gate_delta``, ``gate_delta_low``, ``gate_delta_high`` (and per class); on each slice of the holdout
    (``camera=cam2``: the images' metadata in the manifest) too, from the same per-image results, logged as
    ``slice_*`` metrics and ``holdout/slices.json``; None before the first champion.

    Args:
        settings: Resamples; the images a slice needs to be judged.
        run: The retrain's MLflow run; both evaluations' per-image results are beside its log.
        dataset: Its val split is the holdout; its manifest gives each image's metadata.
        champion: The current champion; its per-image results come from this run's evaluation of it, else from
            the run that made it (its figures recorded on the same holdout), else a fresh evaluation.
        recipe: Its image size, batch and device, if the champion must be evaluated again.
    """
    if champion is None:
        return None
    folder = log_path(settings, run.run_id).parent
    candidate = ImageResults.load(per_image_path(folder, "post"))
    old = _champion_results(settings, run, dataset, champion, recipe, folder)
    names = dict(enumerate(read_class_names(dataset.data_yaml, "dataset")))
    comparison = paired_bootstrap(old, candidate, names, resamples=settings.gate_resamples, seed=settings.seed)
    client = tracking.client_for(settings)
    by_slice = holdout_slices(dataset.manifest_path)
    if by_slice:  # the same per-image results, slice by slice: nothing is evaluated again
        pieces = compare_slices(
            old, candidate, names, by_slice, settings.gate_slice_min_images, settings.gate_resamples, settings.seed
        )
        comparison = replace(comparison, slices=pieces)
        tracking.log_json(client, run.run_id, [p.as_json() for p in pieces], "slices.json", "holdout")
    tracking.log_metrics(client, run.run_id, comparison.as_mlflow())
    return comparison


def _champion_results(
    settings: Settings,
    run: tracking.RetrainRun,
    dataset: BuiltDataset,
    champion: registry.Champion,
    recipe: Recipe,
    folder: Path,
) -> ImageResults:
    evaluated = per_image_path(folder, "pre")
    if evaluated.exists():  # this run evaluated the champion
        return ImageResults.load(evaluated)
    if champion.run_id:  # figures recorded on the champion's version: the per-image results its run kept
        with tempfile.TemporaryDirectory() as tmp:
            try:
                path = tracking.client_for(settings).download_artifacts(champion.run_id, "holdout/post_per_image.npz", tmp)
                return ImageResults.load(Path(path))
            except (MlflowException, OSError, ValueError):  # a version from before them, its artifacts gone: measure again
                pass
    _evaluate(settings, run, dataset, champion.weights, "pre", recipe)
    return ImageResults.load(evaluated)
