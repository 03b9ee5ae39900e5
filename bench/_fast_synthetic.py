"""`yolo_retrain.synthetic`'s dataset at GPU sizes (640 px, thousands of images), for bench/overhead.py.

`synthetic.make_dataset` draws full-resolution noise into PNGs one at a time: at 640 px that is ~1 MB and
~55 ms an image, minutes and gigabytes for a few thousand (twice: the flow's copy and the bare script's).
Here the noisy background is drawn at 1/8 resolution and scaled up, images are JPEG (~30 KB), worker
processes draw them, and the bare script's copy is written in the same pass with hard links to the same
image files. Same layout and meaning: a share of the training images have their base labels' classes
swapped, with the true labels in ``corrections/``; the validation split is always labelled correctly.
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

from yolo_retrain.synthetic import CLASS_NAMES, SyntheticDataset, draw_shapes

SPLITS = ("train", "val")


def make_dataset_pair(
    root: Path, bare_root: Path, train: int, val: int, size: int, wrong_fraction: float = 0.5, seed: int = 0
) -> tuple[SyntheticDataset, SyntheticDataset]:
    """The flow's dataset at ``root`` (base labels partly wrong, plus ``corrections/``) and the bare copy
    at ``bare_root`` (the same image files, true labels). Each image has its own seed: the bytes do not
    depend on how many processes drew them."""
    for folder in (root, bare_root):
        for split in SPLITS:
            (folder / "images" / split).mkdir(parents=True, exist_ok=True)
            (folder / "labels" / split).mkdir(parents=True, exist_ok=True)
    corrections = root / "corrections"
    (corrections / "images").mkdir(parents=True, exist_ok=True)
    (corrections / "labels").mkdir(parents=True, exist_ok=True)
    jobs = [
        (root, bare_root, split, i, size, wrong_fraction, seed)
        for split, count in zip(SPLITS, (train, val))
        for i in range(count)
    ]
    with ProcessPoolExecutor(max_workers=os.cpu_count()) as pool:
        wrong = sum(pool.map(_write_image, *zip(*jobs), chunksize=64))
    for folder in (root, bare_root):
        names = dict(enumerate(CLASS_NAMES))
        (folder / "data.yaml").write_text(
            yaml.safe_dump({"path": str(folder), "train": "images/train", "val": "images/val", "names": names})
        )
    flow = SyntheticDataset(data_yaml=root / "data.yaml", corrections_dir=corrections, wrong_images=wrong)
    bare = SyntheticDataset(
        data_yaml=bare_root / "data.yaml", corrections_dir=bare_root / "corrections", wrong_images=0
    )
    return flow, bare


def _write_image(root: Path, bare_root: Path, split: str, i: int, size: int, wrong_fraction: float, seed: int) -> bool:
    """Draw one image; write it with its base labels (flow), true labels (bare) and, if wrong, its correction."""
    rng = np.random.default_rng([seed, SPLITS.index(split), i])
    low = rng.integers(0, 60, size=(max(size // 8, 1), max(size // 8, 1), 3), dtype=np.uint8)
    image = Image.fromarray(low).resize((size, size), Image.Resampling.BILINEAR)
    boxes = draw_shapes(image, rng)
    wrong = split == "train" and rng.random() < wrong_fraction
    base_boxes = [(1 - c, x, y, w, h) for c, x, y, w, h in boxes] if wrong else boxes

    name = f"{split}_{i:05d}"
    image_path = root / "images" / split / f"{name}.jpg"
    image.save(image_path, quality=90)
    (root / "labels" / split / f"{name}.txt").write_text(_label_text(base_boxes))
    os.link(image_path, bare_root / "images" / split / image_path.name)
    (bare_root / "labels" / split / f"{name}.txt").write_text(_label_text(boxes))
    if wrong:
        os.link(image_path, root / "corrections" / "images" / image_path.name)
        (root / "corrections" / "labels" / f"{name}.txt").write_text(_label_text(boxes))
    return wrong


def _label_text(boxes) -> str:
    return "".join(f"{c} {x:.6f} {y:.6f} {w:.6f} {h:.6f}\n" for c, x, y, w, h in boxes)
