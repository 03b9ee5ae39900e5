from __future__ import annotations

from tasks import retrain_task
from yolo_retrain import tracking
from yolo_retrain.config import Settings


@retrain_task("setup-mlflow")
def setup_mlflow(settings: Settings, flow_run_id: str, tags: dict[str, str], params: dict) -> tracking.RetrainRun:
    """Tracking URI, the configured experiment (checked, never created), and this retrain's run.

    Args:
        settings: Tracking URI, experiment and artifact location.
        flow_run_id: Tagged on the run; a retry resumes the run carrying it.
        tags: Extra run tags (trigger, corrections count).
        params: Run parameters.
    """
    client = tracking.client_for(settings)
    experiment_id = tracking.resolve_experiment(client, settings)
    run_id = tracking.start_retrain_run(client, experiment_id, flow_run_id, tags, params)
    return tracking.RetrainRun(run_id=run_id, experiment_id=experiment_id, flow_run_id=flow_run_id)
