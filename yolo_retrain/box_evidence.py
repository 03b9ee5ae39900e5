"""What a model sees where a label puts a box: its confidence for each class there.

Both the screening of a batch (:mod:`screening`) and the forgetting check (:mod:`forgetting`) ask the same
question of the champion and the candidate: at each labelled box, which classes does the model predict (a predicted
box overlapping it at IoU >= 0.5), and how confidently. The models predict with Ultralytics' class-aware NMS, so a
model torn between two classes shows both, each with its confidence.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MATCH_IOU = 0.5
PREDICT_CONF = 0.05  # below this a prediction is noise, not evidence


@dataclass(frozen=True)
class LabelledImage:
    """An image and its labels: class ids and normalised xywh boxes, shape (boxes, 5)."""

    key: str  # a correction id (or any name the caller maps back)
    image: Path
    labels: np.ndarray


def labels_from_text(text: str) -> np.ndarray:
    """YOLO label text (already validated by the store) as an array (boxes, 5): class, x, y, w, h."""
    rows = [[float(v) for v in line.split()[:5]] for line in text.splitlines() if line.strip()]
    return np.array(rows, dtype=np.float64).reshape(-1, 5)


def _xyxy(xywh: np.ndarray) -> np.ndarray:
    x, y, w, h = xywh.T
    return np.stack([x - w / 2, y - h / 2, x + w / 2, y + h / 2], axis=1)


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box of ``a`` (n, 4 xyxy) with every box of ``b`` (m, 4)."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(axis=2)
    area_a = (a[:, 2:] - a[:, :2]).prod(axis=1)
    area_b = (b[:, 2:] - b[:, :2]).prod(axis=1)
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-12)


def class_confidences(labels: np.ndarray, pred_xywhn: np.ndarray, pred_conf: np.ndarray, pred_cls: np.ndarray, classes: int) -> np.ndarray:
    """(boxes, classes): for each labelled box, the highest confidence of each class among the predictions that
    overlap it at IoU >= 0.5 and overlap no other labelled box more (0 where the model predicts nothing of that
    class there). Each prediction speaks for one object: where shapes overlap, what the model sees at a neighbour
    is not held against this box."""
    out = np.zeros((len(labels), classes))
    if not len(labels) or not len(pred_conf):
        return out
    iou = _iou(_xyxy(labels[:, 1:5]), _xyxy(pred_xywhn))
    match = (iou >= MATCH_IOU) & (iou >= iou.max(axis=0, keepdims=True))
    for k in range(classes):
        of_class = pred_cls == k
        if of_class.any():
            conf = np.where(match[:, of_class], pred_conf[of_class][None, :], 0.0)
            out[:, k] = conf.max(axis=1)
    return out


def predict_confidences(
    weights: str | Path, data_yaml: Path, images: Sequence[LabelledImage], classes: int, imgsz: int, device: str, batch: int
) -> dict[str, np.ndarray]:
    """Each image's (boxes, classes) confidences from the model at ``weights`` (its classes checked by name)."""
    from yolo_retrain.training import _yolo

    model = _yolo(weights, data_yaml)
    out: dict[str, np.ndarray] = {}
    for start in range(0, len(images), batch):
        chunk = images[start : start + batch]
        results = model.predict(
            [str(i.image) for i in chunk], imgsz=imgsz, device=device, conf=PREDICT_CONF, verbose=False, stream=False
        )
        for item, result in zip(chunk, results):
            boxes = result.boxes
            out[item.key] = class_confidences(
                item.labels, boxes.xywhn.cpu().numpy(), boxes.conf.cpu().numpy(), boxes.cls.cpu().numpy().astype(int), classes
            )
    return out
