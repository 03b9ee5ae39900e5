"""Choosing the budget's images: the most informative first, never two near-duplicates, rare classes not crowded out.

Greedy: each step takes the candidate with the highest gain = informativeness + ``coverage_weight`` x the coverage
bonus of its rarest class so far (1 / (1 + images of that class already picked)); a candidate within
``max_bits`` of a picked image's hash is passed over (counted, with the image it duplicates).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from yolo_retrain.labelstudio.convert import ScoredBox
from yolo_retrain.selection.diversity import near_duplicate
from yolo_retrain.selection.scoring import Signals


@dataclass
class Candidate:
    """One scored image of the pool."""

    name: str
    path: Path
    source: str  # folder | intake
    sha256: str
    width: int
    height: int
    dhash: int
    boxes: list[ScoredBox]  # the champion's, strongest first
    signals: Signals
    classes: tuple[int, ...]  # what the champion (and the production model) sees in it
    sample_id: str | None = None  # a sample posted to the intake

    @property
    def informativeness(self) -> float:
        return self.signals.informativeness


@dataclass
class Pick:
    candidate: Candidate
    rank: int
    coverage: float
    gain: float
    why: str


@dataclass
class Choice:
    picks: list[Pick]
    near_duplicates: list[tuple[str, str]] = field(default_factory=list)  # (passed over, the pick it duplicates)


def choose(
    candidates: Sequence[Candidate], budget: int, class_names: Sequence[str], max_bits: int = 6, coverage_weight: float = 0.3
) -> Choice:
    """Up to ``budget`` picks from ``candidates`` (see the module's docstring)."""
    remaining = list(candidates)
    choice = Choice([])
    per_class: Counter[int] = Counter()
    hashes: list[int] = []
    while remaining and len(choice.picks) < budget:
        gains = [c.informativeness + coverage_weight * _coverage(c, per_class) for c in remaining]
        best = max(range(len(remaining)), key=lambda i: (gains[i], -i))
        candidate = remaining.pop(best)
        duplicate = near_duplicate(candidate.dhash, hashes, max_bits)
        if duplicate is not None:
            choice.near_duplicates.append((candidate.name, choice.picks[duplicate].candidate.name))
            continue
        coverage = _coverage(candidate, per_class)
        names = ", ".join(class_names[k] for k in candidate.classes) or "nothing"
        why = f"{candidate.signals.strongest()}; sees {names}" + (f"; class coverage +{coverage:.2f}" if coverage_weight and coverage else "")
        choice.picks.append(Pick(candidate, len(choice.picks) + 1, coverage, gains[best], why))
        hashes.append(candidate.dhash)
        per_class.update(set(candidate.classes))
    return choice


def _coverage(candidate: Candidate, per_class: Counter[int]) -> float:
    return max((1.0 / (1 + per_class[k]) for k in candidate.classes), default=0.0)
