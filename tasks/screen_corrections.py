from __future__ import annotations

from tasks import retrain_task
from yolo_retrain import registry, tracking
from yolo_retrain.bootstrap import Comparison
from yolo_retrain.config import Settings
from yolo_retrain.dataset import BuiltDataset
from yolo_retrain.recipe import Recipe
from yolo_retrain.screen_batch import BatchCheck, check_batch
from yolo_retrain.screening import holdout_view
from yolo_retrain.store import CorrectionStore


@retrain_task("screen-corrections")
def screen_corrections(
    settings: Settings,
    run: tracking.RetrainRun,
    dataset: BuiltDataset,
    champion: registry.Champion | None,
    candidate: str,
    recipe: Recipe,
    comparison: Comparison | None = None,
) -> BatchCheck:
    """Each of the batch's corrections judged as data (suspicious or not, with the reason per box), and how well
    champion and candidate reproduce this batch ("learned") and the earlier accepted corrections ("fixed").
    Logged as metrics and ``screening.json``.

    Args:
        settings: Screening thresholds, forgetting sample size.
        run: The retrain's MLflow run; its flow run id is the batch id.
        dataset: Its data.yaml names the classes.
        champion: The current champion (not trained on the batch), None before the first.
        candidate: The candidate's weights (trained on the batch).
        recipe: Its image size, batch and device are the predictions' (as the holdout evaluation's).
        comparison: The holdout's paired comparison: it weighs each model's view of the labels (a candidate it
            shows worse beyond the margin is not counted; one it shows better outweighs the champion alone).
    """
    with CorrectionStore.from_settings(settings) as store:
        corrections = store.training_corrections(run.flow_run_id)
    check = check_batch(
        settings,
        dataset.data_yaml,
        champion.weights if champion else None,
        candidate,
        corrections.batch,
        corrections.accepted,
        recipe.evaluation_args(),
        dataset.manifest_path,
        holdout=None if comparison is None else holdout_view(comparison.map50_95, settings.gate_margin),
    )
    client = tracking.client_for(settings)
    tracking.log_metrics(client, run.run_id, check.as_mlflow())
    tracking.log_json(client, run.run_id, check.report(), "screening.json")
    return check
