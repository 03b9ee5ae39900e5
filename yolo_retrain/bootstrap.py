"""Champion against candidate with the holdout's noise: a paired bootstrap over holdout images.

Both models are measured on the same images, so the comparison resamples *images* (with replacement, the same
draw for both models) and recomputes each model's mAP50-95 and per-class AP50-95 on every draw, exactly as
Ultralytics computes them (101-point interpolated AP at IoU 0.50:0.95 per class, averaged over the classes that
have labels). The spread of the differences over the draws gives a 95 % percentile interval: how much of a
difference this holdout can tell apart from chance. Resampling is done with image weights (how many times a draw
holds each image), which gives the same AP as copying the images, without copying.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from yolo_retrain.per_image import ImageResults

_AP_X = np.linspace(0, 1, 101)
_EPS = 1e-16


def _ap(tp_sorted: np.ndarray, weight: np.ndarray, labels: float) -> np.ndarray:
    """AP at each IoU threshold of one class's predictions (sorted by confidence, weighted by their image's draw),
    as ``ultralytics.utils.metrics.compute_ap`` per threshold, the thresholds at once: each threshold's curve is
    shifted along the recall axis past the one before, so one ``np.interp`` serves all ten."""
    tpc = np.cumsum(tp_sorted * weight[:, None], axis=0)
    seen = np.cumsum(weight)  # true + false positives so far: the weights are whole counts, so this is exact
    n, thresholds = tpc.shape
    mrec = np.empty((n + 3, thresholds))
    mrec[0], mrec[1 : n + 1], mrec[n + 1], mrec[n + 2] = 0.0, tpc / (labels + _EPS), tpc[-1] / (labels + _EPS), 1.0
    mpre = np.empty((n + 3, thresholds))
    mpre[0], mpre[1 : n + 1], mpre[n + 1 :] = 1.0, tpc / np.maximum(seen, _EPS)[:, None], 0.0
    mpre = np.maximum.accumulate(mpre[::-1], axis=0)[::-1]  # the precision envelope
    shift = max(2.0, float(mrec.max()) + 1.0) * np.arange(thresholds)  # recall stays in [0, 1] on a real holdout
    curve = np.interp((_AP_X[None, :] + shift[:, None]).ravel(), (mrec + shift).T.ravel(), mpre.T.ravel())
    return np.trapezoid(curve.reshape(thresholds, len(_AP_X)), _AP_X, axis=1)


class _Scorer:
    """One model's results, pre-sorted once; scores any image weighting."""

    def __init__(self, results: ImageResults, classes: np.ndarray) -> None:
        order = np.argsort(-results.conf)
        self.tp = results.tp[order]
        self.pred_cls = results.pred_cls[order]
        self.pred_image = results.pred_image[order]
        self.target_cls, self.target_image = results.target_cls, results.target_image
        self.classes = classes
        by_class = {int(c): np.flatnonzero(self.pred_cls == c) for c in classes}
        self.rows = {c: (self.tp[idx], self.pred_image[idx]) for c, idx in by_class.items()}  # split once, not per draw

    def per_class(self, image_weight: np.ndarray) -> np.ndarray:
        """AP50-95 of each class (NaN where the draw holds no label of it)."""
        size = int(self.classes.max()) + 1 if len(self.classes) else 0
        labels = np.bincount(self.target_cls, weights=image_weight[self.target_image], minlength=size)
        out = np.full(len(self.classes), np.nan)
        for k, c in enumerate(self.classes):
            if labels[c] <= 0:
                continue
            tp, image = self.rows[int(c)]
            weight = image_weight[image]
            keep = weight > 0
            out[k] = _ap(tp[keep], weight[keep], labels[c]).mean() if keep.any() else 0.0
        return out


@dataclass(frozen=True)
class Interval:
    """A difference (candidate − champion) and its 95 % interval."""

    delta: float
    low: float
    high: float

    @property
    def verdict(self) -> str:
        """``better``/``worse`` only when the interval excludes 0; otherwise ``within noise``."""
        return "better" if self.low > 0 else "worse" if self.high < 0 else "within noise"

    def text(self) -> str:
        return f"{self.delta:+.4f} [95% {self.low:+.4f}, {self.high:+.4f}]"


class SlicePiece(Protocol):
    """What a comparison needs of a slice's (slices.SliceComparison: that module builds on this one, not back)."""

    interval: Interval | None

    def text(self) -> str: ...

    def as_mlflow(self) -> dict[str, float]: ...


@dataclass(frozen=True)
class Comparison:
    """The paired bootstrap's result: the headline mAP50-95 difference and each class's AP50-95 difference (and
    each slice's, when the holdout's images have metadata: :mod:`slices`)."""

    map50_95: Interval
    per_class: dict[str, Interval] = field(default_factory=dict)
    images: int = 0
    resamples: int = 0
    slices: tuple[SlicePiece, ...] = ()  # one per (column, value)

    def as_mlflow(self) -> dict[str, float]:
        out = {"gate_delta": self.map50_95.delta, "gate_delta_low": self.map50_95.low, "gate_delta_high": self.map50_95.high}
        for name, iv in self.per_class.items():
            out |= {f"gate_delta_AP50-95_{name}": iv.delta, f"gate_delta_low_AP50-95_{name}": iv.low, f"gate_delta_high_AP50-95_{name}": iv.high}
        for piece in self.slices:
            out |= piece.as_mlflow()
        return out


def mean_ap(results: ImageResults, names: dict[int, str]) -> tuple[float, dict[str, float]]:
    """mAP50-95 and per-class AP50-95 of one evaluation, every image counted once (what the validator reports)."""
    classes = np.unique(results.target_cls)
    per_class = _Scorer(results, classes).per_class(np.ones(len(results.images)))
    return float(np.mean(per_class)) if len(per_class) else 0.0, {names[int(c)]: float(a) for c, a in zip(classes, per_class)}


def paired_bootstrap(
    champion: ImageResults, candidate: ImageResults, names: dict[int, str], resamples: int = 1000, seed: int = 0
) -> Comparison:
    """Candidate − champion on the same holdout, with 95 % percentile intervals from ``resamples`` paired draws
    of the holdout's images (the same draw scores both models; a fixed seed: the same inputs, the same interval)."""
    candidate = candidate.aligned_to(champion.images)
    classes = np.unique(np.concatenate([champion.target_cls, candidate.target_cls]))
    old, new = _Scorer(champion, classes), _Scorer(candidate, classes)
    n = len(champion.images)
    ones = np.ones(n)
    full = new.per_class(ones) - old.per_class(ones)
    rng = np.random.default_rng(seed)
    diffs = np.empty((resamples, len(classes)))
    heads = np.empty(resamples)
    for b in range(resamples):
        weight = np.bincount(rng.integers(0, n, n), minlength=n).astype(np.float64)
        a_new, a_old = new.per_class(weight), old.per_class(weight)
        diffs[b] = a_new - a_old
        present = ~np.isnan(a_new)
        heads[b] = a_new[present].mean() - a_old[present].mean() if present.any() else 0.0
    head = Interval(float(np.nanmean(full)) if len(full) else 0.0, *_percentiles(heads))
    per_class = {
        names[int(c)]: Interval(float(full[k]), *_percentiles(diffs[:, k][~np.isnan(diffs[:, k])]))
        for k, c in enumerate(classes)
    }
    return Comparison(head, per_class, images=n, resamples=resamples)


def _percentiles(values: np.ndarray) -> tuple[float, float]:
    if not len(values):
        return float("nan"), float("nan")
    low, high = np.percentile(values, [2.5, 97.5])
    return float(low), float(high)
