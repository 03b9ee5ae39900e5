"""The promotion gate: a candidate becomes champion only if it is at least as good on the same holdout."""

from __future__ import annotations

from dataclasses import dataclass

from yolo_retrain.metrics import EvalMetrics


@dataclass(frozen=True)
class GateDecision:
    promote: bool
    reason: str

    @property
    def alias(self) -> str:
        return "champion" if self.promote else "challenger"

    @property
    def label(self) -> str:
        """The ``gate_decision`` tag on both the run and the version."""
        return "promoted" if self.promote else "rejected"


def decide(
    candidate: EvalMetrics, champion: EvalMetrics | None, metric: str, tolerance: float, max_class_drop: float
) -> GateDecision:
    """Compare ``candidate`` with ``champion`` (both measured on the same holdout).

    Args:
        candidate: The retrained model's holdout metrics.
        champion: The current champion's metrics on the same holdout; None when there is no champion yet.
        metric: The headline metric (``mAP50-95``, ``mAP50``, ``precision``, ``recall``).
        tolerance: How far below the champion the candidate's headline metric may be.
        max_class_drop: How far any one class's AP50-95 may fall below the champion's.
    """
    if champion is None:
        return GateDecision(True, "no champion yet")
    new, old = candidate.value(metric), champion.value(metric)
    if new < old - tolerance:
        return GateDecision(False, f"{metric} {new:.4f} < champion {old:.4f} - tolerance {tolerance}")
    drops = {
        cls: old_ap - candidate.per_class_ap.get(cls, 0.0)
        for cls, old_ap in champion.per_class_ap.items()
        if old_ap - candidate.per_class_ap.get(cls, 0.0) > max_class_drop
    }
    if drops:
        worst = max(drops, key=drops.get)
        return GateDecision(
            False, f"AP50-95 of class {worst!r} dropped by {drops[worst]:.4f} (> {max_class_drop}); {len(drops)} class(es) over the limit"
        )
    return GateDecision(True, f"{metric} {new:.4f} >= champion {old:.4f} - tolerance {tolerance}")
