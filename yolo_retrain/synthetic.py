"""A small synthetic detection dataset (squares and circles) whose base labels are partly wrong.

Used by the demo, the tests and the benchmarks: nothing is downloaded. Each image holds 1–3 shapes on a
noisy background; a chosen share of the *training* images get wrong base labels (the classes swapped), and
the true labels of those images are written beside the dataset as the corrections a reviewer would submit.
The validation split (the holdout) is always labelled correctly.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml
from PIL import Image, ImageDraw

CLASS_NAMES = ["square", "circle"]


@dataclass(frozen=True)
class SyntheticDataset:
    data_yaml: Path
    corrections_dir: Path  # a YOLO images/ + labels/ folder of the wrongly labelled training images
    wrong_images: int


def _draw_image(rng: np.random.Generator, size: int) -> tuple[Image.Image, list[tuple[int, float, float, float, float]]]:
    background = rng.integers(0, 60, size=(size, size, 3), dtype=np.uint8)
    image = Image.fromarray(background)
    return image, draw_shapes(image, rng)


def draw_shapes(image: Image.Image, rng: np.random.Generator) -> list[tuple[int, float, float, float, float]]:
    """1-3 bright squares (class 0) and circles (class 1) on ``image``; their YOLO boxes (class, x, y, w, h)."""
    size = image.width
    draw = ImageDraw.Draw(image)
    boxes = []
    for _ in range(int(rng.integers(1, 4))):
        cls = int(rng.integers(0, len(CLASS_NAMES)))
        side = int(rng.integers(size // 5, size // 2.5))
        x0, y0 = (int(v) for v in rng.integers(0, size - side, size=2))
        color = tuple(int(c) for c in rng.integers(140, 256, size=3))
        shape = draw.rectangle if cls == 0 else draw.ellipse
        shape([x0, y0, x0 + side, y0 + side], fill=color)
        boxes.append((cls, (x0 + side / 2) / size, (y0 + side / 2) / size, side / size, side / size))
    return boxes


def _label_text(boxes) -> str:
    return "".join(f"{c} {x:.6f} {y:.6f} {w:.6f} {h:.6f}\n" for c, x, y, w, h in boxes)


def make_dataset(
    root: Path, train: int = 160, val: int = 48, wrong_fraction: float = 0.5, size: int = 64, seed: int = 0
) -> SyntheticDataset:
    """Write ``root/{images,labels}/{train,val}``, ``root/data.yaml`` and ``root/corrections/``.

    Args:
        root: Output folder (created).
        train: Number of training images.
        val: Number of holdout images (always correctly labelled).
        wrong_fraction: Share of training images whose base labels have the classes swapped.
        size: Image side in pixels.
        seed: Random seed; the same seed writes the same bytes.
    """
    rng = np.random.default_rng(seed)
    corrections = root / "corrections"
    wrong = 0
    for split, count in (("train", train), ("val", val)):
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "labels" / split).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            image, boxes = _draw_image(rng, size)
            name = f"{split}_{i:05d}"
            image.save(root / "images" / split / f"{name}.png")
            base_boxes = boxes
            if split == "train" and rng.random() < wrong_fraction:
                wrong += 1
                base_boxes = [(1 - c, x, y, w, h) for c, x, y, w, h in boxes]
                (corrections / "images").mkdir(parents=True, exist_ok=True)
                (corrections / "labels").mkdir(parents=True, exist_ok=True)
                image.save(corrections / "images" / f"{name}.png")
                (corrections / "labels" / f"{name}.txt").write_text(_label_text(boxes))
            (root / "labels" / split / f"{name}.txt").write_text(_label_text(base_boxes))
    data_yaml = root / "data.yaml"
    data_yaml.write_text(
        yaml.safe_dump({"path": str(root), "train": "images/train", "val": "images/val", "names": dict(enumerate(CLASS_NAMES))})
    )
    return SyntheticDataset(data_yaml=data_yaml, corrections_dir=corrections, wrong_images=wrong)


def untrained_weights(path: Path, names: list[str] | None = None) -> Path:
    """A real, untrained YOLOv8n checkpoint (~6 MB) for ``names`` (default: this dataset's), without training."""
    from ultralytics import YOLO
    from ultralytics.nn.tasks import DetectionModel

    names = list(names or CLASS_NAMES)
    model = YOLO("yolov8n.yaml")
    model.model = DetectionModel("yolov8n.yaml", nc=len(names), verbose=False)
    model.model.names = dict(enumerate(names))
    model.save(path)
    return path
