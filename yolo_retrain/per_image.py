"""Per-image holdout results: what a paired comparison of two models resamples.

Ultralytics' validator matches each image's predictions with its labels (a true-positive row per prediction at the
ten IoU thresholds 0.50:0.95) and pools them for mAP. :func:`collector` keeps each image's rows as the validator
makes them (an ``on_val_batch_end`` callback, so the same single evaluation gives both the figures and these rows);
:class:`ImageResults` holds them as flat arrays that save to one ``.npz``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class ImageResults:
    """One model's predictions on the holdout, matched with the labels, image by image.

    ``images`` are the holdout's file names (sorted); ``pred_image``/``target_image`` index into them.
    """

    images: tuple[str, ...]
    tp: np.ndarray  # (predictions, 10) bool: right at IoU 0.50, 0.55, ... 0.95
    conf: np.ndarray  # (predictions,)
    pred_cls: np.ndarray  # (predictions,) class ids
    pred_image: np.ndarray  # (predictions,) image index
    target_cls: np.ndarray  # (labels,) class ids
    target_image: np.ndarray  # (labels,) image index

    def save(self, path: Path) -> Path:
        np.savez_compressed(path, images=np.array(self.images), **{k: getattr(self, k) for k in _ARRAYS})
        return path

    @classmethod
    def load(cls, path: Path) -> ImageResults:
        with np.load(path, allow_pickle=False) as data:
            return cls(images=tuple(str(n) for n in data["images"]), **{k: data[k] for k in _ARRAYS})

    def aligned_to(self, images: tuple[str, ...]) -> ImageResults:
        """The same results indexed by ``images`` (another model's order); refuses a different holdout."""
        if set(images) != set(self.images):
            raise ValueError(f"the two evaluations saw different holdout images ({len(self.images)} vs {len(images)})")
        where = {name: i for i, name in enumerate(images)}
        remap = np.array([where[name] for name in self.images], dtype=np.int64)
        return ImageResults(
            images, self.tp, self.conf, self.pred_cls, remap[self.pred_image], self.target_cls, remap[self.target_image]
        )


    def subset(self, images: set[str]) -> ImageResults:
        """The results of ``images`` alone (a slice of the holdout), re-indexed; names not evaluated are ignored."""
        keep = np.array([name in images for name in self.images], dtype=bool)
        new_index = np.cumsum(keep) - 1
        preds, targets = keep[self.pred_image], keep[self.target_image]
        return ImageResults(
            tuple(n for n, k in zip(self.images, keep) if k),
            self.tp[preds], self.conf[preds], self.pred_cls[preds], new_index[self.pred_image[preds]],
            self.target_cls[targets], new_index[self.target_image[targets]],
        )  # fmt: skip


def per_image_path(folder: Path, prefix: str) -> Path:
    """Where a retrain keeps one evaluation's per-image results (``pre``: champion, ``post``: candidate); the
    same name under the run's ``holdout/`` artifacts."""
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{prefix}_per_image.npz"


_ARRAYS = ("tp", "conf", "pred_cls", "pred_image", "target_cls", "target_image")


def collector() -> tuple[dict[str, Callable], Callable[[], ImageResults]]:
    """An Ultralytics validation callback that keeps each image's matched rows as the validator records them, and
    a function that returns them as :class:`ImageResults` once validation is done."""
    rows: dict[str, dict[str, np.ndarray]] = {}

    def keep(metrics) -> None:  # wraps the validator's per-image update (DetMetrics.update_stats)
        update = metrics.update_stats

        def update_and_keep(stat: dict) -> None:
            update(stat)
            rows[str(stat["im_name"])] = {k: np.asarray(stat[k]) for k in ("tp", "conf", "pred_cls", "target_cls")}

        metrics.update_stats = update_and_keep

    def on_val_batch_start(validator) -> None:
        if not getattr(validator.metrics.update_stats, "_keeps_images", False):
            keep(validator.metrics)
            validator.metrics.update_stats._keeps_images = True

    return {"on_val_batch_start": on_val_batch_start}, lambda: _build(rows)


def _build(rows: dict[str, dict[str, np.ndarray]]) -> ImageResults:
    images = tuple(sorted(rows))
    n_iou = 10
    parts = [rows[name] for name in images]

    def flat(key: str, dtype, shape=()) -> np.ndarray:
        arrays = [np.asarray(p[key], dtype=dtype).reshape(-1, *shape) for p in parts]
        return np.concatenate(arrays) if arrays else np.zeros((0, *shape), dtype=dtype)

    return ImageResults(
        images=images,
        tp=flat("tp", bool, (n_iou,)),
        conf=flat("conf", np.float32),
        pred_cls=flat("pred_cls", np.int64),
        pred_image=np.repeat(np.arange(len(parts)), [len(p["conf"]) for p in parts]).astype(np.int64),
        target_cls=flat("target_cls", np.int64),
        target_image=np.repeat(np.arange(len(parts)), [len(p["target_cls"]) for p in parts]).astype(np.int64),
    )
