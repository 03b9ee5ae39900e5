"""Holdout metrics, kept free of heavy imports: the CLI, the gate and the reports use them without torch."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

GATE_METRICS = {"mAP50-95": "map50_95", "mAP50": "map50", "precision": "precision", "recall": "recall"}


@dataclass(frozen=True)
class EvalMetrics:
    """Detection metrics on the holdout; ``per_class_ap`` is AP50-95 by class name."""

    map50: float
    map50_95: float
    precision: float
    recall: float
    per_class_ap: dict[str, float] = field(default_factory=dict)

    def value(self, metric: str) -> float:
        """A metric by its user-facing name (``mAP50-95``, ``mAP50``, ``precision``, ``recall``)."""
        return getattr(self, GATE_METRICS[metric])

    def as_mlflow(self, prefix: str) -> dict[str, float]:
        metrics = {f"{prefix}_{name}": self.value(name) for name in GATE_METRICS}
        metrics.update({f"{prefix}_AP50-95_{cls}": ap for cls, ap in self.per_class_ap.items()})
        return metrics

    def to_dict(self) -> dict:
        return asdict(self)
