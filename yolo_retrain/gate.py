"""The promotion gate: a candidate becomes champion only if it is not worse on the same holdout, beyond noise.

With per-image results of both models (the default mAP50-95 metric), the decision is a non-inferiority test on the
paired bootstrap's 95 % interval (:mod:`bootstrap`): promoted when the interval of candidate − champion ends above
``-margin``, every class's AP50-95 interval above ``-max_class_drop``, and every judged slice's (``camera=cam2``:
:mod:`slices`) mAP50-95 interval above ``-max_slice_drop``. Without them (another gate metric, or
figures recorded before per-image results existed) the point figures are compared with ``tolerance``.
"""

from __future__ import annotations

from dataclasses import dataclass

from yolo_retrain.bootstrap import Comparison
from yolo_retrain.metrics import EvalMetrics
from yolo_retrain.slices import slice_refusal

AWAITING_APPROVAL = "awaiting-approval"  # the gate_decision tag and the alias of a candidate a person decides on


@dataclass(frozen=True)
class GateDecision:
    promote: bool
    reason: str
    dropped_classes: tuple[str, ...] = ()  # classes whose AP drop refused the candidate
    comparison: Comparison | None = None
    dropped_slices: tuple[str, ...] = ()  # slices (camera=cam2) whose mAP50-95 drop refused the candidate
    awaiting_approval: bool = False  # passed, but a person decides (YOLO_RETRAIN_APPROVAL=required): approval.py

    @property
    def alias(self) -> str:
        if self.awaiting_approval:
            return AWAITING_APPROVAL
        return "champion" if self.promote else "challenger"

    @property
    def label(self) -> str:
        """The ``gate_decision`` tag on both the run and the version."""
        if self.awaiting_approval:
            return AWAITING_APPROVAL
        return "promoted" if self.promote else "rejected"

    @classmethod
    def from_tags(cls, label: str, reason: str, dropped_classes: tuple[str, ...] = ()) -> GateDecision:
        """The decision a ``gate_decision`` tag records (and ``gate_dropped_classes``, where a class's drop refused it)."""
        return cls(label == "promoted", reason, dropped_classes, awaiting_approval=label == AWAITING_APPROVAL)

    def awaiting(self, reason: str) -> GateDecision:
        """Passed the gate, held for a person: not promoted (no model in use learned its batch) until approved."""
        return GateDecision(False, reason, self.dropped_classes, self.comparison, self.dropped_slices, awaiting_approval=True)

    def refused(self, reason: str) -> GateDecision:
        """The same comparison, refused for ``reason`` (the data's checks: suspicious corrections, forgetting)."""
        return GateDecision(False, reason, self.dropped_classes, self.comparison, self.dropped_slices)


def decide(
    candidate: EvalMetrics,
    champion: EvalMetrics | None,
    metric: str,
    tolerance: float,
    max_class_drop: float,
    comparison: Comparison | None = None,
    margin: float = 0.0,
    max_slice_drop: float = 0.05,
) -> GateDecision:
    """Compare ``candidate`` with ``champion`` (both measured on the same holdout).

    Args:
        candidate: The retrained model's holdout metrics.
        champion: The current champion's metrics on the same holdout; None when there is no champion yet.
        metric: The headline metric (``mAP50-95``, ``mAP50``, ``precision``, ``recall``).
        tolerance: How far below the champion the candidate's headline metric may be (point comparison).
        max_class_drop: How far any one class's AP50-95 may fall below the champion's.
        comparison: The paired bootstrap of mAP50-95 (candidate − champion), when there is one.
        margin: Non-inferiority margin on the interval's lower end.
        max_slice_drop: How far any judged slice's mAP50-95 interval may reach below zero (slices too small to
            judge are in the comparison, reported, not gated).
    """
    if champion is None:
        return GateDecision(True, "no champion yet")
    if comparison is not None and metric == "mAP50-95":
        return _decide_with_interval(comparison, max_class_drop, margin, max_slice_drop)
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
            False,
            f"AP50-95 of class {worst!r} dropped by {drops[worst]:.4f} (> {max_class_drop}); {len(drops)} class(es) over the limit",
            tuple(sorted(drops)),
        )
    return GateDecision(True, f"{metric} {new:.4f} >= champion {old:.4f} - tolerance {tolerance}")


def _decide_with_interval(comparison: Comparison, max_class_drop: float, margin: float, max_slice_drop: float) -> GateDecision:
    head = comparison.map50_95
    said = f"mAP50-95 {head.text()}: {head.verdict}"
    if head.low <= -margin:
        return GateDecision(False, f"{said}; the interval reaches below -margin {margin}", comparison=comparison)
    drops = {name: iv for name, iv in comparison.per_class.items() if iv.low <= -max_class_drop}
    if drops:
        worst = min(drops, key=lambda n: drops[n].low)
        return GateDecision(
            False,
            f"{said}; AP50-95 of class {worst!r} {drops[worst].text()} reaches below -{max_class_drop};"
            f" {len(drops)} class(es) over the limit",
            tuple(sorted(drops)),
            comparison,
        )
    slice_reason, dropped_slices = slice_refusal(comparison.slices, max_slice_drop)
    if slice_reason:  # as good overall, worse on one camera or site
        return GateDecision(False, f"{said}; {slice_reason}", comparison=comparison, dropped_slices=dropped_slices)
    judged = sum(s.interval is not None for s in comparison.slices)
    slices = f", nor on any of {judged} slice(s) beyond {max_slice_drop}" if judged else ""
    return GateDecision(True, f"{said}; not worse than the champion beyond margin {margin}{slices}", comparison=comparison)
