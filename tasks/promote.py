from __future__ import annotations

import tempfile
from pathlib import Path

from mlflow.entities.model_registry import ModelVersion

from tasks import retrain_task
from yolo_retrain import approval, registry, tracking
from yolo_retrain.bootstrap import Comparison
from yolo_retrain.config import Settings
from yolo_retrain.forgetting import forgetting_reason
from yolo_retrain.gate import GateDecision, decide
from yolo_retrain.metrics import EvalMetrics
from yolo_retrain.screen_batch import BatchCheck
from yolo_retrain.summary import comparison_plot


@retrain_task("promotion-gate")
def promotion_gate(
    settings: Settings,
    run: tracking.RetrainRun,
    version: ModelVersion,
    weights: Path,
    candidate: EvalMetrics,
    champion: EvalMetrics | None,
    comparison: Comparison | None = None,
    check: BatchCheck | None = None,
) -> GateDecision:
    """``champion`` moves to the version only if it is not worse on the holdout beyond noise (and the margin), its
    batch is not too suspicious and it kept the earlier fixes; else ``challenger``. With approval required, a
    candidate that passes is held instead (alias ``awaiting-approval``) for a person to decide (approval.py).

    Args:
        settings: Gate metric, tolerance, largest allowed per-class and per-slice drop.
        run: The retrain's MLflow run (gets the decision as tags).
        version: The candidate's registered version.
        weights: Its local weights (become the local champion file if promoted).
        candidate: Its holdout metrics.
        champion: The champion's holdout metrics, None before the first champion.
        comparison: Candidate − champion with 95 % intervals (paired bootstrap), per class and per slice; also
            logged on the logged model.
        check: The batch's screening and the earlier fixes' retention.
    """
    decision = decide(
        candidate, champion, settings.gate_metric, settings.gate_tolerance, settings.gate_max_class_drop,
        comparison, settings.gate_margin, settings.gate_slice_max_drop,
    )
    refusal = _data_refusal(settings, check) if champion is not None else None
    if refusal:  # said even when the holdout refused it too: what the data shows is the first thing to read
        decision = decision.refused(f"{refusal} (holdout: {decision.reason})")
    if decision.promote and approval.required(settings, champion is not None):  # a person decides: held, not installed
        decision = decision.awaiting(f"{decision.reason}; awaiting a person's approval (YOLO_RETRAIN_APPROVAL=required)")
    client = tracking.client_for(settings)
    if comparison is not None and (model_id := registry.logged_model_id(version)):
        dataset = tracking.DatasetRef.of(version.tags.get("dataset_digest", ""))
        tracking.log_metrics(client, run.run_id, comparison.as_mlflow(), model_id=model_id, dataset=dataset)
    if decision.awaiting_approval:  # a person decides: the candidate is held (alias awaiting-approval), nothing installed
        approval.hold(client, settings, version, decision)
    else:
        registry.apply_gate(client, settings, version, weights, decision)
    tracking.set_tags(client, run.run_id, {"gate_decision": decision.label, "gate_reason": decision.reason})
    with tempfile.TemporaryDirectory() as tmp:
        plot = comparison_plot(
            champion, candidate, Path(tmp) / "champion_vs_candidate.png", f"v{version.version}: {decision.label}", comparison
        )
        client.log_artifact(run.run_id, str(plot))
    return decision


def _data_refusal(settings: Settings, check: BatchCheck | None) -> str | None:
    """Why the data refuses the candidate: too many suspicious corrections in its batch, or earlier fixes un-learned."""
    if check is None:
        return None
    screening = check.screening
    if screening.verdicts and screening.share > settings.screen_max_suspicious_share:
        return (
            f"{len(screening.suspicious)} of {len(screening.verdicts)} corrections suspicious ({screening.share:.0%} > "
            f"{settings.screen_max_suspicious_share:.0%}): a model trained on them is not promoted"
        )
    return forgetting_reason(check.fixed, settings.forgetting_tolerance)
