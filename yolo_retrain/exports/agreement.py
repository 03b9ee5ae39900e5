"""Does an export find what the ``.pt`` finds? Both predict every holdout image at the serving confidence; their boxes
are matched one to one (IoU >= 0.5, greedy by confidence), and both are validated on the holdout alike (mAP50-95).

- **box agreement**: boxes matched with the same class / the larger of the two box counts (1.0: the same boxes);
- **class agreement**: of the boxes that overlap whatever their class, the share with the same class;
- **mAP difference**: export − ``.pt``, both validated with the same arguments (batch 1, square images: what an
  export with a fixed input shape runs), so the difference is the export's alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

MATCH_IOU = 0.5


@dataclass(frozen=True)
class Boxes:
    """One model's boxes on one image: ``xyxy`` (n, 4) pixels, ``cls`` (n,), ``conf`` (n,)."""

    xyxy: np.ndarray
    cls: np.ndarray
    conf: np.ndarray


@dataclass(frozen=True)
class Agreement:
    format: str
    images: int
    reference_boxes: int  # the .pt's
    export_boxes: int
    matched: int  # pairs with IoU >= 0.5 and the same class
    overlapping: int  # pairs with IoU >= 0.5 whatever the class
    same_class: int  # of those, with the same class
    map_reference: float
    map_export: float
    export_seconds: float = 0.0

    @property
    def box_agreement(self) -> float:
        most = max(self.reference_boxes, self.export_boxes)
        return self.matched / most if most else 1.0

    @property
    def class_agreement(self) -> float:
        return self.same_class / self.overlapping if self.overlapping else 1.0

    @property
    def map_difference(self) -> float:
        return self.map_export - self.map_reference

    def problem(self, min_agreement: float, map_tolerance: float) -> str | None:
        """Why the export is not deployable, or None when it agrees with the ``.pt`` within the limits."""
        if self.box_agreement < min_agreement:
            return f"box agreement {self.box_agreement:.3f} < {min_agreement}"
        if self.class_agreement < min_agreement:
            return f"class agreement {self.class_agreement:.3f} < {min_agreement}"
        if abs(self.map_difference) > map_tolerance:
            return f"mAP50-95 differs by {self.map_difference:+.4f} (tolerance {map_tolerance})"
        return None

    def figures(self) -> str:
        """One line a person (and a version tag) can read."""
        return (
            f"boxes {self.matched}/{max(self.reference_boxes, self.export_boxes)} matched ({self.box_agreement:.3f}), "
            f"classes {self.class_agreement:.3f}, mAP50-95 {self.map_export:.4f} vs .pt {self.map_reference:.4f} "
            f"({self.map_difference:+.4f}) on {self.images} holdout images; exported in {self.export_seconds:.1f} s"
        )

    def as_dict(self) -> dict:
        extra = {"box_agreement": self.box_agreement, "class_agreement": self.class_agreement, "map_difference": self.map_difference}
        return asdict(self) | extra


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of two (n, 4) / (m, 4) xyxy arrays."""
    if not len(a) or not len(b):
        return np.zeros((len(a), len(b)))
    top_left = np.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(bottom_right - top_left, 0, None).prod(axis=2)
    area_a = (a[:, 2:] - a[:, :2]).prod(axis=1)
    area_b = (b[:, 2:] - b[:, :2]).prod(axis=1)
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


def match(reference: Boxes, export: Boxes, same_class: bool) -> list[tuple[int, int]]:
    """Greedy one-to-one pairs (reference index, export index) with IoU >= 0.5, the reference's most confident first;
    with ``same_class`` only boxes of one class pair."""
    overlap = iou(reference.xyxy, export.xyxy)
    if same_class and overlap.size:
        overlap = np.where(reference.cls[:, None] == export.cls[None, :], overlap, 0.0)
    pairs, taken = [], set()
    for r in np.argsort(-reference.conf, kind="stable"):
        candidates = [(overlap[r, e], e) for e in range(len(export.cls)) if e not in taken and overlap[r, e] >= MATCH_IOU]
        if candidates:
            e = max(candidates)[1]
            taken.add(e)
            pairs.append((int(r), int(e)))
    return pairs


def compare_boxes(fmt: str, reference: Sequence[Boxes], export: Sequence[Boxes], map_reference: float, map_export: float) -> Agreement:
    """The two models' boxes image by image (same order), summed into one :class:`Agreement`."""
    matched = overlapping = same = 0
    for ref, exp in zip(reference, export, strict=True):
        matched += len(match(ref, exp, same_class=True))
        pairs = match(ref, exp, same_class=False)
        overlapping += len(pairs)
        same += sum(int(ref.cls[r] == exp.cls[e]) for r, e in pairs)
    return Agreement(
        fmt,
        images=len(reference),
        reference_boxes=sum(len(b.cls) for b in reference),
        export_boxes=sum(len(b.cls) for b in export),
        matched=matched,
        overlapping=overlapping,
        same_class=same,
        map_reference=map_reference,
        map_export=map_export,
    )


def predict_boxes(model, images: Sequence[str], imgsz: int, conf: float) -> list[Boxes]:
    """A loaded Ultralytics model's boxes on each image, in order (class ids as the model names them)."""
    found = []
    for image in images:
        result = model.predict(image, imgsz=imgsz, conf=conf, verbose=False)[0].boxes
        found.append(Boxes(result.xyxy.numpy().reshape(-1, 4), result.cls.numpy().astype(int), result.conf.numpy()))
    return found


def holdout_map(model, data_yaml: Path, imgsz: int, folder: Path) -> float:
    """mAP50-95 on the data.yaml's val split, validated as an export with a fixed input shape runs (batch 1, square)."""
    results = model.val(
        data=str(data_yaml), split="val", imgsz=imgsz, batch=1, rect=False, plots=False, verbose=False,
        project=str(folder), name="val", exist_ok=True, workers=0,
    )
    return float(results.box.map)
