"""Label Studio ``rectanglelabels`` regions (percent of the image) <-> YOLO boxes (normalised centre and size).

Labels are matched to the project's class contract (the base ``data.yaml`` names) by name, never by position:
a Label Studio project may list its labels in any order.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from yolo_retrain.errors import InvalidInput
from yolo_retrain.labels import Box

# Label Studio rounds percent values; a box dragged to the edge may overshoot 100 by float noise.
_EDGE_SLACK = 0.5


@dataclass(frozen=True)
class ScoredBox:
    """A predicted YOLO box with the model's confidence."""

    box: Box
    score: float


def region_to_box(region: dict[str, Any], class_names: Sequence[str], where: str) -> Box | None:
    """One annotation ``result`` item as a YOLO box; None for items that are not boxes (e.g. a text area).

    Refuses (InvalidInput naming ``where`` and the reason) a label not in ``class_names``, several labels on one
    box, a rotated box, and coordinates outside the image.
    """
    if region.get("type") != "rectanglelabels":
        return None
    value = region.get("value")
    if not isinstance(value, dict):
        raise InvalidInput(f"{where}: rectanglelabels region without a 'value' object")
    labels = value.get("rectanglelabels")
    if not isinstance(labels, list) or len(labels) != 1 or not isinstance(labels[0], str):
        raise InvalidInput(f"{where}: a box must carry exactly one label, got {labels!r}")
    label = labels[0]
    if label not in class_names:
        raise InvalidInput(
            f"{where}: label {label!r} is not one of the model's classes ({', '.join(class_names)}); "
            "rename it in the Label Studio project or add the class to the base data.yaml"
        )
    if abs(_number(value, "rotation", where, default=0.0)) > 1e-6:
        raise InvalidInput(f"{where}: rotated box ({value['rotation']} degrees): YOLO boxes are axis-aligned")
    x, y, w, h = (_number(value, key, where) for key in ("x", "y", "width", "height"))
    if w <= 0 or h <= 0:
        raise InvalidInput(f"{where}: box must have positive width and height, got width={w} height={h}")
    if x < -_EDGE_SLACK or y < -_EDGE_SLACK or x + w > 100 + _EDGE_SLACK or y + h > 100 + _EDGE_SLACK:
        raise InvalidInput(f"{where}: box x={x} y={y} width={w} height={h} (percent) lies outside the image")
    left, top = max(x, 0.0) / 100, max(y, 0.0) / 100
    right, bottom = min(x + w, 100.0) / 100, min(y + h, 100.0) / 100
    return class_names.index(label), (left + right) / 2, (top + bottom) / 2, right - left, bottom - top


def result_to_boxes(result: Iterable[dict[str, Any]], class_names: Sequence[str], where: str) -> list[Box]:
    """Every box of an annotation's ``result`` list (other region types are ignored)."""
    boxes = []
    for index, region in enumerate(result):
        if not isinstance(region, dict):
            raise InvalidInput(f"{where}: result[{index}] is not an object")
        box = region_to_box(region, class_names, f"{where} result[{index}]")
        if box is not None:
            boxes.append(box)
    return boxes


def box_to_region(
    scored: ScoredBox, class_names: Sequence[str], from_name: str, to_name: str, width: int, height: int
) -> dict[str, Any]:
    """A predicted box as a ``rectanglelabels`` pre-annotation region (percent coordinates, the class's name)."""
    cls, cx, cy, w, h = scored.box
    return {
        "from_name": from_name,
        "to_name": to_name,
        "type": "rectanglelabels",
        "original_width": width,
        "original_height": height,
        "image_rotation": 0,
        "value": {
            "x": (cx - w / 2) * 100,
            "y": (cy - h / 2) * 100,
            "width": w * 100,
            "height": h * 100,
            "rotation": 0,
            "rectanglelabels": [class_names[cls]],
        },
        "score": scored.score,
    }


def _number(value: dict[str, Any], key: str, where: str, default: float | None = None) -> float:
    raw = value.get(key, default)
    if isinstance(raw, bool) or not isinstance(raw, (int, float)) or not math.isfinite(raw):
        raise InvalidInput(f"{where}: '{key}' must be a finite number, got {raw!r}")
    return float(raw)
