"""Boxes by class name from other tools (the production model's), and matching boxes by IoU."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from yolo_retrain.errors import InvalidInput
from yolo_retrain.labelstudio.convert import ScoredBox

MAX_BOXES = 1000  # per image: far more than any detector outputs


def parse_boxes(text: str, class_names: Sequence[str], where: str) -> list[ScoredBox]:
    """The production model's boxes, posted as JSON: ``[{"class": "circle", "confidence": 0.41, "box": [cx, cy, w, h]}]``
    (normalised centre and size). Classes are matched by name; anything else is refused naming ``where`` and the item."""
    try:
        items = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"{where}: not valid JSON ({exc})") from exc
    if not isinstance(items, list):
        raise InvalidInput(f"{where}: expected a JSON list of boxes")
    if len(items) > MAX_BOXES:
        raise InvalidInput(f"{where}: {len(items)} boxes, more than {MAX_BOXES}")
    return [_box(item, class_names, f"{where}[{i}]") for i, item in enumerate(items)]


def _box(item: Any, class_names: Sequence[str], where: str) -> ScoredBox:
    if not isinstance(item, dict) or set(item) - {"class", "confidence", "box"} or "class" not in item or "box" not in item:
        raise InvalidInput(f"{where}: expected {{'class': name, 'confidence': 0..1, 'box': [cx, cy, w, h]}}")
    name, conf, box = item["class"], item.get("confidence", 1.0), item["box"]
    if name not in class_names:
        raise InvalidInput(f"{where}: class {name!r} is not one of the project's classes {list(class_names)}")
    if isinstance(conf, bool) or not isinstance(conf, (int, float)) or not 0.0 <= conf <= 1.0:
        raise InvalidInput(f"{where}: confidence {conf!r} is not a number from 0 to 1")
    if not isinstance(box, list) or len(box) != 4 or any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in box):
        raise InvalidInput(f"{where}: box {box!r} is not [cx, cy, w, h]")
    cx, cy, w, h = (float(v) for v in box)
    if not (0 <= cx <= 1 and 0 <= cy <= 1 and 0 < w <= 1 and 0 < h <= 1):
        raise InvalidInput(f"{where}: box {box!r} is not normalised (centre in 0..1, size in (0, 1])")
    return ScoredBox((class_names.index(name), cx, cy, w, h), float(conf))


def boxes_json(boxes: Sequence[ScoredBox], class_names: Sequence[str]) -> str:
    """``boxes`` as ``parse_boxes`` reads them (classes by name)."""
    return json.dumps([{"class": class_names[b.box[0]], "confidence": round(b.score, 4), "box": [round(v, 6) for v in b.box[1:]]} for b in boxes])


def iou(a: ScoredBox, b: ScoredBox) -> float:
    """Intersection over union of two normalised centre-size boxes."""
    _, ax, ay, aw, ah = a.box
    _, bx, by, bw, bh = b.box
    ix = max(0.0, min(ax + aw / 2, bx + bw / 2) - max(ax - aw / 2, bx - bw / 2))
    iy = max(0.0, min(ay + ah / 2, by + bh / 2) - max(ay - ah / 2, by - bh / 2))
    inter = ix * iy
    union = aw * ah + bw * bh - inter
    return inter / union if union > 0 else 0.0
