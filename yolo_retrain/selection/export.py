"""A selection as a CSV, for teams on other labelling tools: one row per pick, best first, with its scores and why."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

from yolo_retrain.selection.choose import Pick

COLUMNS = ["rank", "image", "sha256", "source", "gain", "informativeness", "uncertainty", "confusion", "disagreement",
           "coverage", "classes", "why", "review_task"]


def pick_row(pick: Pick, class_names: Sequence[str], review_task: str | None = None) -> dict[str, object]:
    c = pick.candidate
    return {
        "rank": pick.rank, "image": str(c.path), "sha256": c.sha256, "source": c.source, "gain": round(pick.gain, 4),
        "informativeness": round(c.informativeness, 4), "uncertainty": round(c.signals.uncertainty, 4),
        "confusion": round(c.signals.confusion, 4),
        "disagreement": "" if c.signals.disagreement is None else round(c.signals.disagreement, 4),
        "coverage": round(pick.coverage, 4), "classes": " ".join(class_names[k] for k in c.classes), "why": pick.why,
        "review_task": review_task or "",
    }


def write_csv(path: Path, picks: Sequence[Pick], class_names: Sequence[str], tasks: dict[str, str] | None = None) -> Path:
    """``path`` written atomically: the columns of ``COLUMNS``; ``tasks`` maps a pick's sha256 to its review task."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, COLUMNS)
        writer.writeheader()
        for pick in picks:
            writer.writerow(pick_row(pick, class_names, (tasks or {}).get(pick.candidate.sha256)))
    tmp.replace(path)
    return path
