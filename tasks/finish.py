from __future__ import annotations

from tasks import retrain_task
from yolo_retrain import registry, tracking
from yolo_retrain.config import Settings
from yolo_retrain.gate import GateDecision
from yolo_retrain.store import CorrectionStore


@retrain_task("finish-retrain")
def finish_retrain(settings: Settings, run: tracking.RetrainRun, version: str, decision: GateDecision) -> int:
    """Record the gate's decision on the batch's corrections (accepted if promoted, else rejected and held for a
    person, with the version they went into) and end the run FINISHED.

    Args:
        settings: Correction store and tracking URI.
        run: The retrain's MLflow run; its flow run id is the batch id.
        version: The registered model version.
        decision: The promotion gate's decision on it.
    """
    with CorrectionStore.from_settings(settings) as store:
        applied = store.record_gate_decision(run.flow_run_id, version, decision)
    client = tracking.client_for(settings)
    registry.clear_run_failed(client, settings.model_name, version)
    tracking.end_run(client, run.run_id, "FINISHED")
    return applied


@retrain_task("fail-retrain")
def fail_retrain(settings: Settings, flow_run_id: str, run: tracking.RetrainRun | None, reason: str) -> None:
    """A failed retrain: its run ends FAILED with the reason, its corrections go back to pending.

    Args:
        settings: Correction store and tracking URI.
        flow_run_id: The batch id of the claimed corrections.
        run: The MLflow run, if one was opened.
        reason: What failed (tag ``failure_reason``).
    """
    with CorrectionStore.from_settings(settings) as store:
        store.release(flow_run_id)
    if run is None:
        return
    client = tracking.client_for(settings)
    registry.mark_run_failed(client, settings.model_name, run.run_id, reason)
    tracking.end_run(client, run.run_id, "FAILED", reason)
