"""Holdout metrics, kept free of heavy imports: the CLI, the gate and the reports use them without torch."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from importlib.metadata import version

GATE_METRICS = {"mAP50-95": "map50_95", "mAP50": "map50", "precision": "precision", "recall": "recall"}


@dataclass(frozen=True)
class EvalMetrics:
    """Detection metrics on the holdout; ``per_class_ap`` is AP50-95 by class name."""

    map50: float
    map50_95: float
    precision: float
    recall: float
    per_class_ap: dict[str, float] = field(default_factory=dict)
    # When they were logged to the run: logged again on the model with this time, the run keeps one copy.
    logged_at_ms: int | None = field(default=None, compare=False, repr=False)

    def value(self, metric: str) -> float:
        """A metric by its user-facing name (``mAP50-95``, ``mAP50``, ``precision``, ``recall``)."""
        return getattr(self, GATE_METRICS[metric])

    def as_mlflow(self, prefix: str) -> dict[str, float]:
        metrics = {f"{prefix}_{name}": self.value(name) for name in GATE_METRICS}
        metrics.update({f"{prefix}_AP50-95_{cls}": ap for cls, ap in self.per_class_ap.items()})
        return metrics

    @classmethod
    def from_mlflow(cls, prefix: str, values: Mapping[str, object]) -> EvalMetrics | None:
        """The metrics ``as_mlflow(prefix)`` wrote (e.g. a logged model's); None when any headline one is missing."""
        try:
            headline = {field_: float(values[f"{prefix}_{name}"]) for name, field_ in GATE_METRICS.items()}
        except (KeyError, TypeError, ValueError):
            return None
        per_class_prefix = f"{prefix}_AP50-95_"
        per_class = {k.removeprefix(per_class_prefix): float(v) for k, v in values.items() if k.startswith(per_class_prefix)}
        return cls(**headline, per_class_ap=per_class)

    def to_dict(self) -> dict:
        return asdict(self)


def evaluation_key(holdout_digest: str, imgsz: int | list[int], batch: int, device: str, single_cls: bool = False) -> str:
    """Names one evaluation setup (the recipe's image size among it). Validation is deterministic: the same weights
    under the same key score the same, so figures recorded under a key can stand in for evaluating again."""
    setup = {"holdout": holdout_digest, "imgsz": imgsz, "batch": batch, "device": device, "ultralytics": version("ultralytics")}
    if single_cls:  # only when set: keys recorded before it existed stay valid
        setup["single_cls"] = True
    return hashlib.sha256(json.dumps(setup, sort_keys=True).encode()).hexdigest()
