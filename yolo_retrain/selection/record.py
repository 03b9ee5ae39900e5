"""Each selection as an MLflow run of the project's experiment (tag ``type=selection``): how many images were
scored and picked, their scores, the CSV and the contact sheet, so anyone can see later why an image was picked.

The run is opened and finished at once, after the selection: it is never left RUNNING for a retrain's recovery to
find.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from yolo_retrain import tracking
from yolo_retrain.config import Settings


def log_selection(
    settings: Settings, selection_id: str, params: dict[str, Any], metrics: dict[str, float], artifacts: Sequence[Path], summary: dict[str, Any]
) -> str:
    """The selection's MLflow run id."""
    client = tracking.client_for(settings)
    experiment_id = tracking.resolve_experiment(client, settings)
    run = client.create_run(experiment_id, run_name=f"select-{selection_id[:8]}", tags={"type": "selection", "selection_id": selection_id})
    run_id = run.info.run_id
    try:
        tracking.log_params(client, run_id, params)
        tracking.log_metrics(client, run_id, metrics)
        for path in artifacts:
            client.log_artifact(run_id, str(path))
        tracking.log_json(client, run_id, summary, "selection.json")
    except BaseException:
        client.set_terminated(run_id, "FAILED")
        raise
    client.set_terminated(run_id, "FINISHED")
    return run_id
