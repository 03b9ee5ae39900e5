"""What the reviewers taught the model in one retrain: the per-class diffs of its corrections against the
predictions they corrected (kept by the store for corrections made in Label Studio), summed.

Logged into the retrain's MLflow run (``reviewer_diffs.json`` plus metrics ``reviewer_<kind>`` and
``reviewer_<kind>_<class>``) and shown in the Prefect summary, so a person sees where the champion fails most.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mlflow import MlflowClient

from yolo_retrain import tracking
from yolo_retrain.labelstudio.diff import KINDS, BoxDiff, merge
from yolo_retrain.store import Correction, CorrectionStore


@dataclass(frozen=True)
class DiffSummary:
    corrections: int  # corrections in the retrain
    with_diff: int  # of which were made against a recorded prediction
    total: BoxDiff

    def rows(self) -> list[tuple[str, int, int, int, int, int]]:
        """(class, added, removed, relabelled, moved, kept), classes by most changed first."""
        ordered = sorted(self.total.classes.items(), key=lambda kv: (-kv[1].changed, kv[0]))
        return [(name, *(getattr(c, kind) for kind in KINDS)) for name, c in ordered]

    def metrics(self) -> dict[str, float]:
        metrics: dict[str, float] = {"reviewer_corrections_with_diff": float(self.with_diff)}
        for kind in KINDS:
            metrics[f"reviewer_{kind}"] = float(self.total.total(kind))
            for name, counts in self.total.classes.items():
                metrics[f"reviewer_{kind}_{_metric_safe(name)}"] = float(getattr(counts, kind))
        return metrics

    def markdown(self) -> str:
        """A per-class table (empty string when no correction carries a diff)."""
        if not self.with_diff:
            return ""
        lines = [
            f"## What the reviewers changed ({self.with_diff} of {self.corrections} corrections diffed against a prediction)",
            "",
            "| class | added (missed) | removed (false positive) | relabelled | moved | kept |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        lines += [f"| {name} | " + " | ".join(str(n) for n in counts) + " |" for name, *counts in self.rows()]
        if self.total.relabels:
            lines += ["", "Relabelled: " + ", ".join(f"{k} ({n})" for k, n in sorted(self.total.relabels.items()))]
        return "\n".join(lines) + "\n"

    def to_json(self) -> dict:
        return {"corrections": self.corrections, "with_diff": self.with_diff, **self.total.to_json()}


def summarize(store: CorrectionStore, corrections: list[Correction]) -> DiffSummary:
    diffs = store.diffs([c.id for c in corrections])
    return DiffSummary(len(corrections), len(diffs), merge(BoxDiff.from_json(d.diff) for d in diffs))


def log_to_mlflow(client: MlflowClient, run_id: str, summary: DiffSummary) -> None:
    tracking.log_json(client, run_id, summary.to_json(), "reviewer_diffs.json")
    tracking.log_metrics(client, run_id, summary.metrics())


def _metric_safe(name: str) -> str:
    """MLflow metric names allow letters, digits, ``_ - . /`` and spaces."""
    return re.sub(r"[^A-Za-z0-9_\-./ ]", "_", name)
