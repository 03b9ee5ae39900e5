"""A team's capture rules for posted samples (keep only what is worth a reviewer's look) and the rate limits."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from yolo_retrain.config import Settings
from yolo_retrain.errors import InvalidInput
from yolo_retrain.labelstudio.convert import ScoredBox


@dataclass(frozen=True)
class CaptureRules:
    """Keep a sample only if the production model has a box in the confidence band and of one of the classes
    (each rule applies when set; with both, one box must satisfy both)."""

    min_confidence: float | None = None
    max_confidence: float | None = None
    classes: frozenset[int] | None = None
    class_names: tuple[str, ...] = ()

    @classmethod
    def from_settings(cls, settings: Settings, class_names: Sequence[str]) -> CaptureRules:
        classes = None
        if settings.samples_classes:
            wanted = [n.strip() for n in settings.samples_classes.split(",") if n.strip()]
            unknown = [n for n in wanted if n not in class_names]
            if unknown:
                raise InvalidInput(
                    f"YOLO_RETRAIN_SAMPLES_CLASSES: {', '.join(unknown)} not among the project's classes {list(class_names)}"
                )
            classes = frozenset(class_names.index(n) for n in wanted)
        lo, hi = settings.samples_min_confidence, settings.samples_max_confidence
        if lo is not None and hi is not None and lo > hi:
            raise InvalidInput(f"YOLO_RETRAIN_SAMPLES_MIN_CONFIDENCE {lo} is above YOLO_RETRAIN_SAMPLES_MAX_CONFIDENCE {hi}")
        return cls(lo, hi, classes, tuple(class_names))

    @property
    def active(self) -> bool:
        return self.min_confidence is not None or self.max_confidence is not None or self.classes is not None

    def refusal(self, boxes: Sequence[ScoredBox] | None) -> str | None:
        """Why a sample with the production model's ``boxes`` is not kept; None if it is."""
        if not self.active:
            return None
        if not boxes:
            return "no production boxes were posted, and the capture rules keep only images with a box " + self.describe()
        if any(self._keeps(b) for b in boxes):
            return None
        return "no production box " + self.describe()

    def _keeps(self, box: ScoredBox) -> bool:
        return (
            (self.min_confidence is None or box.score >= self.min_confidence)
            and (self.max_confidence is None or box.score <= self.max_confidence)
            and (self.classes is None or box.box[0] in self.classes)
        )

    def describe(self) -> str:
        parts = []
        if self.min_confidence is not None or self.max_confidence is not None:
            parts.append(f"with confidence in [{self.min_confidence or 0:g}, {1 if self.max_confidence is None else self.max_confidence:g}]")
        if self.classes is not None:
            parts.append("of class " + " or ".join(sorted(self.class_names[k] for k in self.classes)))
        return " ".join(parts)


@dataclass(frozen=True)
class RateLimits:
    per_minute: int | None = None
    per_day: int | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> RateLimits:
        return cls(settings.samples_per_minute, settings.samples_per_day)

    def exceeded(self, last_minute: int, last_day: int) -> tuple[str, int] | None:
        """(why, seconds to wait) when one more sample would exceed a limit; None otherwise."""
        if self.per_minute is not None and last_minute >= self.per_minute:
            return f"{last_minute} samples kept in the last minute (YOLO_RETRAIN_SAMPLES_PER_MINUTE={self.per_minute})", 60
        if self.per_day is not None and last_day >= self.per_day:
            return f"{last_day} samples kept in the last 24 hours (YOLO_RETRAIN_SAMPLES_PER_DAY={self.per_day})", 3600
        return None
