from __future__ import annotations

import tempfile
from pathlib import Path

from mlflow.entities.model_registry import ModelVersion

from tasks import retrain_task
from yolo_retrain import registry, tracking
from yolo_retrain.config import Settings
from yolo_retrain.gate import GateDecision, decide
from yolo_retrain.metrics import EvalMetrics
from yolo_retrain.summary import comparison_plot


@retrain_task("promotion-gate")
def promotion_gate(
    settings: Settings,
    run: tracking.RetrainRun,
    version: ModelVersion,
    weights: Path,
    candidate: EvalMetrics,
    champion: EvalMetrics | None,
) -> GateDecision:
    """``champion`` moves to the version only if it is at least as good on the holdout; else ``challenger``.

    Args:
        settings: Gate metric, tolerance, largest allowed per-class drop.
        run: The retrain's MLflow run (gets the decision as tags).
        version: The candidate's registered version.
        weights: Its local weights (become the local champion file if promoted).
        candidate: Its holdout metrics.
        champion: The champion's holdout metrics, None before the first champion.
    """
    decision = decide(candidate, champion, settings.gate_metric, settings.gate_tolerance, settings.gate_max_class_drop)
    client = tracking.client_for(settings)
    registry.apply_gate(client, settings, version, weights, decision)
    tracking.set_tags(client, run.run_id, {"gate_decision": decision.label, "gate_reason": decision.reason})
    with tempfile.TemporaryDirectory() as tmp:
        plot = comparison_plot(champion, candidate, Path(tmp) / "champion_vs_candidate.png", f"v{version.version}: {decision.label}")
        client.log_artifact(run.run_id, str(plot))
    return decision
