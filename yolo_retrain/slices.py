"""The holdout by slice (``camera=cam2``, ``site=north``...): the gate's comparison on each slice of images.

A model as good on average can be worse on one camera or site. Each holdout image's metadata (the manifest's
``metadata``: base sidecar, corrections) puts it in one slice per metadata column. The per-image results both
evaluations kept (:mod:`per_image`) are restricted to each slice's images and compared with the same paired
bootstrap as the whole holdout (:func:`bootstrap.paired_bootstrap`): nothing is evaluated again. A slice with at
least ``min_images`` holdout images is judged: its mAP50-95 interval (candidate − champion) must end above
``-max_drop``; a smaller one is reported (its point figures), never gated: it cannot tell a drop from chance.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from yolo_retrain.bootstrap import Interval, mean_ap, paired_bootstrap
from yolo_retrain.per_image import ImageResults

_METRIC_UNSAFE = re.compile(r"[^\w.\- ]")  # what an MLflow metric name may not hold


@dataclass(frozen=True)
class SliceComparison:
    """One slice of the holdout: its images, each model's mAP50-95 on them, and the paired interval if judged."""

    column: str
    value: str
    images: int
    champion: float
    candidate: float
    interval: Interval | None  # None: fewer holdout images than the minimum, reported and not gated

    @property
    def name(self) -> str:
        return f"{self.column}={self.value}"

    def text(self) -> str:
        figures = f"{self.champion:.4f} -> {self.candidate:.4f}"
        if self.interval is None:
            return f"{self.name} ({self.images} holdout images): {figures}, too few images to judge (not gated)"
        return f"{self.name} ({self.images} holdout images): {figures}, {self.interval.text()}: {self.interval.verdict}"

    def as_mlflow(self) -> dict[str, float]:
        key = f"{_metric_safe(self.column)}/{_metric_safe(self.value)}"
        out = {f"slice_images/{key}": float(self.images), f"pre_slice_mAP50-95/{key}": self.champion,
               f"post_slice_mAP50-95/{key}": self.candidate}  # fmt: skip
        if self.interval is not None:
            iv = self.interval
            out |= {f"slice_delta/{key}": iv.delta, f"slice_delta_low/{key}": iv.low, f"slice_delta_high/{key}": iv.high}
        return out

    def as_json(self) -> dict:
        iv = self.interval
        judged = {"delta": iv.delta, "low": iv.low, "high": iv.high, "verdict": iv.verdict} if iv else {"judged": False}
        return {"column": self.column, "value": self.value, "images": self.images, "champion": self.champion,
                "candidate": self.candidate, **judged}  # fmt: skip


def holdout_slices(manifest: Path) -> dict[tuple[str, str], set[str]]:
    """(column, value) -> the holdout images in that slice, by the name the validator gives them (the listed file's
    name), from the dataset's manifest."""
    slices: dict[tuple[str, str], set[str]] = {}
    for entry in json.loads(Path(manifest).read_text(encoding="utf-8")):
        if entry.get("split") != "val":
            continue
        for column, value in (entry.get("metadata") or {}).items():
            slices.setdefault((column, value), set()).add(os.path.basename(entry["path"]))
    return slices


def compare_slices(
    champion: ImageResults,
    candidate: ImageResults,
    names: dict[int, str],
    slices: dict[tuple[str, str], set[str]],
    min_images: int,
    resamples: int = 1000,
    seed: int = 0,
) -> tuple[SliceComparison, ...]:
    """Each slice's comparison (sorted by column, then value): judged by the paired bootstrap from ``min_images``
    holdout images up, its point figures only below that."""
    candidate = candidate.aligned_to(champion.images)
    out = []
    for (column, value), images in sorted(slices.items()):
        old, new = champion.subset(images), candidate.subset(images)
        n = len(old.images)
        interval = None
        if n >= max(min_images, 1):
            interval = paired_bootstrap(old, new, names, resamples=resamples, seed=seed).map50_95
        out.append(SliceComparison(column, value, n, mean_ap(old, names)[0], mean_ap(new, names)[0], interval))
    return tuple(out)


def slice_refusal(slices: tuple[SliceComparison, ...], max_drop: float) -> tuple[str | None, tuple[str, ...]]:
    """Why the slices refuse a candidate (the worst judged slice whose interval reaches below ``-max_drop``, with its
    figures), and every such slice's name; (None, ()) when none does."""
    dropped = [s for s in slices if s.interval is not None and s.interval.low <= -max_drop]
    if not dropped:
        return None, ()
    worst = min(dropped, key=lambda s: s.interval.low)
    reason = (
        f"mAP50-95 on slice {worst.name} ({worst.images} holdout images, {worst.champion:.4f} -> {worst.candidate:.4f})"
        f" {worst.interval.text()} reaches below -{max_drop}; {len(dropped)} slice(s) over the limit"
    )
    return reason, tuple(s.name for s in dropped)


def _metric_safe(text: str) -> str:
    """``text`` as part of an MLflow metric name; an altered one gets a short hash, so two values never share a name."""
    safe = _METRIC_UNSAFE.sub("_", text)
    return safe if safe == text else f"{safe}_{hashlib.sha256(text.encode()).hexdigest()[:6]}"
