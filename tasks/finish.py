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
