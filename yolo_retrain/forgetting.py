"""Fixed mistakes stay fixed: champion and candidate on the corrections accepted earlier ("fixed") and on this
batch's ("learned").

Every accepted correction records a mistake an earlier model made. A box counts as *reproduced* by a model when the
model's most confident class there is the label's, at ``confidence`` or more (:mod:`box_evidence`). A candidate
that no longer reproduces boxes the champion did has un-learned earlier fixes: beyond a tolerance (a share of the
sample's boxes) the gate refuses it, naming how many and which classes. The accepted set grows with every retrain,
so it is measured on a stable sample (the ids with the smallest hashes: the same corrections every time, new ones
joining only by chance), which bounds the cost.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np


def stable_sample(ids: Iterable[str], size: int) -> list[str]:
    """At most ``size`` ids, chosen by hash: the same ids for the same set, whatever their order."""
    return sorted(ids, key=lambda i: hashlib.sha256(i.encode()).hexdigest())[:size]


def reproduced(labels: np.ndarray, conf: np.ndarray, confidence: float) -> np.ndarray:
    """Per box: does the model's top class there equal the label, at ``confidence`` or more?"""
    if not len(labels):
        return np.zeros(0, dtype=bool)
    top = conf.argmax(axis=1)
    return (top == labels[:, 0].astype(int)) & (conf.max(axis=1) >= confidence)


@dataclass(frozen=True)
class Retention:
    """How many of a set of corrected boxes each model reproduces, and what the candidate lost."""

    boxes: int = 0
    champion: int = 0
    candidate: int = 0
    unlearned: Counter = field(default_factory=Counter)  # class name -> boxes the champion had and the candidate lost

    @property
    def unlearned_total(self) -> int:
        return sum(self.unlearned.values())

    def share(self, count: int) -> float:
        return count / self.boxes if self.boxes else 1.0

    def as_mlflow(self, prefix: str) -> dict[str, float]:
        return {
            f"{prefix}_boxes": self.boxes,
            f"{prefix}_champion": self.share(self.champion),
            f"{prefix}_candidate": self.share(self.candidate),
            f"{prefix}_unlearned_boxes": self.unlearned_total,
        }


def retention(
    labels: Mapping[str, np.ndarray],
    champion: Mapping[str, np.ndarray] | None,
    candidate: Mapping[str, np.ndarray],
    names: list[str],
    confidence: float,
) -> Retention:
    boxes = kept_old = kept_new = 0
    lost: Counter = Counter()
    for key, rows in labels.items():
        new = reproduced(rows, candidate[key], confidence)
        old = reproduced(rows, champion[key], confidence) if champion is not None else np.zeros(len(rows), dtype=bool)
        boxes += len(rows)
        kept_old += int(old.sum())
        kept_new += int(new.sum())
        for cls in rows[old & ~new, 0].astype(int):
            lost[names[cls]] += 1
    return Retention(boxes, kept_old, kept_new, lost)


def forgetting_reason(fixed: Retention, tolerance: float) -> str | None:
    """Why the candidate is refused for un-learning earlier fixes (more than ``tolerance`` of the sample's boxes)."""
    if not fixed.boxes or fixed.unlearned_total <= tolerance * fixed.boxes:
        return None
    classes = ", ".join(f"{name!r} {n}" for name, n in fixed.unlearned.most_common())
    return (
        f"the candidate un-learned {fixed.unlearned_total} of {fixed.boxes} boxes of earlier accepted corrections that the "
        f"champion reproduces ({fixed.unlearned_total / fixed.boxes:.1%} > {tolerance:.0%}; by class: {classes})"
    )
