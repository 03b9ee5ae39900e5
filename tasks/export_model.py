from __future__ import annotations

from pathlib import Path

from mlflow.entities.model_registry import ModelVersion
from prefect import get_run_logger

from tasks import retrain_task
from yolo_retrain import tracking
from yolo_retrain.config import Settings
from yolo_retrain.dataset import BuiltDataset
from yolo_retrain.exports.verify import ExportReport, export_and_verify
from yolo_retrain.recipe import trained_imgsz
from yolo_retrain.training import log_path


@retrain_task("export-model")
def export_model(
    settings: Settings, run: tracking.RetrainRun, version: ModelVersion, weights: Path, dataset: BuiltDataset
) -> ExportReport:
    """The version in every format of ``YOLO_RETRAIN_EXPORT_FORMATS``, each checked against its ``.pt`` on the holdout;
    a format that fails is reported and not marked deployable (the retrain goes on: the gate judges the ``.pt``).

    Args:
        settings: The formats, the agreement and mAP tolerances, the local exports folder.
        run: The retrain's MLflow run (gets the exports as artifacts).
        version: The registered version (gets ``export_<format>`` / ``deployable_<format>`` tags).
        weights: Its local weights.
        dataset: Its val split is the holdout the export is checked on.
    """
    client = tracking.client_for(settings)
    report = export_and_verify(
        settings, client, version, Path(weights), dataset.data_yaml, trained_imgsz(weights), run.run_id,
        log_file=log_path(settings, run.run_id),
    )
    for outcome in report.outcomes:
        level = get_run_logger().info if outcome.deployable else get_run_logger().warning
        level(f"v{version.version} {outcome.format} export {outcome.tag()}")
    return report
