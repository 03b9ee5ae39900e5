from __future__ import annotations

from tasks import retrain_task
from yolo_retrain import registry, tracking
from yolo_retrain.config import Settings
from yolo_retrain.gate import GateDecision
from yolo_retrain.screen_batch import BatchCheck
from yolo_retrain.store import CorrectionStore, ScreenedBatch


@retrain_task("finish-retrain")
def finish_retrain(
    settings: Settings, run: tracking.RetrainRun, version: str, decision: GateDecision, check: BatchCheck
) -> ScreenedBatch:
    """Record each of the batch's corrections on its own merit, whatever the model's fate: ``suspicious`` (held for
    a person, with the reason per box) if screening doubts it, or if it relabels boxes into or out of a class whose
    drop refused the candidate; ``accepted`` otherwise (every later retrain learns from it). End the run FINISHED.

    Args:
        settings: Correction store and tracking URI.
        run: The retrain's MLflow run; its flow run id is the batch id.
        version: The registered model version (recorded on each correction).
        decision: The promotion gate's decision on it.
        check: The batch's screening.
    """
    held = check.held(decision)
    with CorrectionStore.from_settings(settings) as store:
        outcome = store.record_screened_batch(run.flow_run_id, version, decision, held)
    client = tracking.client_for(settings)
    tracking.log_metrics(client, run.run_id, {"accepted_corrections": outcome.accepted, "held_corrections": len(outcome.held)})
    registry.clear_run_failed(client, settings.model_name, version)
    tracking.end_run(client, run.run_id, "FINISHED")
    return outcome
