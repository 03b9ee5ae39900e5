"""What a reviewer changed against the champion's prediction of one image: a per-class diff of boxes.

Predicted and corrected boxes are paired greedily by IoU (largest first, whatever their classes), pairs
overlapping less than ``min_overlap`` stay unpaired. Then, per pair and per leftover box:

- **kept**: same class, IoU >= ``iou_threshold`` (the model was right);
- **moved**: same class, IoU below it (the reviewer redrew the box);
- **relabelled**: paired with another class (the model saw the object, named it wrong); counted under the
  reviewer's class, and as a ``from -> to`` pair;
- **added**: a reviewer's box nothing predicted overlaps (a missed object);
- **removed**: a predicted box the reviewer deleted (a false positive); counted under the predicted class.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from yolo_retrain.labels import Box

KINDS = ("added", "removed", "relabelled", "moved", "kept")


@dataclass
class ClassDiff:
    """Counts of one class."""

    added: int = 0
    removed: int = 0
    relabelled: int = 0
    moved: int = 0
    kept: int = 0

    @property
    def changed(self) -> int:
        """Boxes the reviewer had to fix (everything but kept)."""
        return self.added + self.removed + self.relabelled + self.moved


@dataclass
class BoxDiff:
    """Per-class counts (by class name) plus the relabellings as ``"from -> to"`` counts."""

    classes: dict[str, ClassDiff] = field(default_factory=dict)
    relabels: dict[str, int] = field(default_factory=dict)

    def count(self, class_name: str, kind: str) -> None:
        cls = self.classes.setdefault(class_name, ClassDiff())
        setattr(cls, kind, getattr(cls, kind) + 1)

    def total(self, kind: str) -> int:
        return sum(getattr(c, kind) for c in self.classes.values())

    @property
    def unchanged(self) -> bool:
        return all(c.changed == 0 for c in self.classes.values())

    def to_json(self) -> dict[str, Any]:
        return {"classes": {name: asdict(c) for name, c in sorted(self.classes.items())}, "relabels": dict(sorted(self.relabels.items()))}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BoxDiff:
        return cls({name: ClassDiff(**counts) for name, counts in data.get("classes", {}).items()}, dict(data.get("relabels", {})))


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two YOLO boxes (classes ignored)."""
    _, acx, acy, aw, ah = a
    _, bcx, bcy, bw, bh = b
    ix = max(0.0, min(acx + aw / 2, bcx + bw / 2) - max(acx - aw / 2, bcx - bw / 2))
    iy = max(0.0, min(acy + ah / 2, bcy + bh / 2) - max(acy - ah / 2, bcy - bh / 2))
    inter = ix * iy
    union = aw * ah + bw * bh - inter
    return inter / union if union > 0 else 0.0


def diff_boxes(
    predicted: Sequence[Box],
    corrected: Sequence[Box],
    class_names: Sequence[str],
    iou_threshold: float = 0.5,
    min_overlap: float = 0.1,
) -> BoxDiff:
    """The reviewer's changes from ``predicted`` (the champion's boxes) to ``corrected`` (the reviewer's)."""
    if not 0.0 < min_overlap <= iou_threshold <= 1.0:
        raise ValueError(f"need 0 < min_overlap ({min_overlap}) <= iou_threshold ({iou_threshold}) <= 1")
    pairs = sorted(
        ((iou(p, c), i, j) for i, p in enumerate(predicted) for j, c in enumerate(corrected)),
        key=lambda t: (-t[0], t[1], t[2]),
    )
    diff = BoxDiff()
    used_p: set[int] = set()
    used_c: set[int] = set()
    for overlap, i, j in pairs:
        if overlap < min_overlap:
            break
        if i in used_p or j in used_c:
            continue
        used_p.add(i)
        used_c.add(j)
        was, now = class_names[predicted[i][0]], class_names[corrected[j][0]]
        if was != now:
            diff.count(now, "relabelled")
            key = f"{was} -> {now}"
            diff.relabels[key] = diff.relabels.get(key, 0) + 1
        else:
            diff.count(now, "kept" if overlap >= iou_threshold else "moved")
    for i, box in enumerate(predicted):
        if i not in used_p:
            diff.count(class_names[box[0]], "removed")
    for j, box in enumerate(corrected):
        if j not in used_c:
            diff.count(class_names[box[0]], "added")
    return diff


def merge(diffs: Iterable[BoxDiff]) -> BoxDiff:
    """The sum of several diffs (a retrain's corrections)."""
    total = BoxDiff()
    for d in diffs:
        for name, counts in d.classes.items():
            into = total.classes.setdefault(name, ClassDiff())
            for kind in KINDS:
                setattr(into, kind, getattr(into, kind) + getattr(counts, kind))
        for key, n in d.relabels.items():
            total.relabels[key] = total.relabels.get(key, 0) + n
    return total
