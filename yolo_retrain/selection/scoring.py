"""How informative one image is to a reviewer, from the champion's boxes (and the production model's, if posted).

Three signals, each 0..1, kept separately so a person can see why an image was picked:

- **uncertainty**: the champion's box nearest the decision threshold (1 at the threshold, 0 at 0 or 1): it cannot
  tell whether the object is there;
- **confusion**: two boxes on one object (IoU >= 0.5) of different classes, equally confident (1) or one far ahead (0):
  it cannot tell which class it is;
- **disagreement**: the production model's boxes (above the threshold) that the champion's do not match by class
  and IoU >= 0.5, and the reverse (1 - F1 of the matching); None when none were posted.

The informativeness is their mean (of those present).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from yolo_retrain.labelstudio.convert import ScoredBox
from yolo_retrain.selection.boxes import iou

MATCH_IOU = 0.5


@dataclass(frozen=True)
class Signals:
    uncertainty: float
    confusion: float
    disagreement: float | None = None

    @property
    def informativeness(self) -> float:
        present = [v for v in (self.uncertainty, self.confusion, self.disagreement) if v is not None]
        return sum(present) / len(present)

    def strongest(self) -> str:
        """The signal that counts most, as a person reads it (``uncertainty 0.93``)."""
        named = {"uncertainty": self.uncertainty, "confusion": self.confusion, "disagreement": self.disagreement}
        name, value = max(((k, v) for k, v in named.items() if v is not None), key=lambda kv: kv[1])
        return f"{name} {value:.2f}"


def uncertainty(boxes: Sequence[ScoredBox], threshold: float) -> float:
    """1 for a box exactly at the threshold, falling linearly to 0 at confidence 0 and 1; 0 without boxes."""
    span = max(threshold, 1.0 - threshold)
    return max((1.0 - abs(b.score - threshold) / span for b in boxes), default=0.0)


def confusion(boxes: Sequence[ScoredBox]) -> float:
    """The most even pair of overlapping boxes of different classes: min/max of their confidences; 0 if none."""
    best = 0.0
    for i, a in enumerate(boxes):
        for b in boxes[i + 1 :]:
            if a.box[0] != b.box[0] and iou(a, b) >= MATCH_IOU:
                best = max(best, min(a.score, b.score) / max(a.score, b.score))
    return best


def disagreement(champion: Sequence[ScoredBox], production: Sequence[ScoredBox], threshold: float) -> float:
    """1 - F1 of matching the two models' boxes at or above ``threshold`` (same class, IoU >= 0.5, greedy by IoU)."""
    ours = [b for b in champion if b.score >= threshold]
    theirs = [b for b in production if b.score >= threshold]
    if not ours and not theirs:
        return 0.0
    pairs = sorted(
        ((iou(a, b), i, j) for i, a in enumerate(ours) for j, b in enumerate(theirs) if a.box[0] == b.box[0]), reverse=True
    )
    used_a, used_b, matched = set(), set(), 0
    for overlap, i, j in pairs:
        if overlap < MATCH_IOU:
            break
        if i not in used_a and j not in used_b:
            used_a.add(i), used_b.add(j)
            matched += 1
    return 1.0 - 2 * matched / (len(ours) + len(theirs))


def signals(champion: Sequence[ScoredBox], production: Sequence[ScoredBox] | None, threshold: float) -> Signals:
    """The three signals of one image."""
    return Signals(
        uncertainty(champion, threshold),
        confusion(champion),
        None if production is None else disagreement(champion, production, threshold),
    )
