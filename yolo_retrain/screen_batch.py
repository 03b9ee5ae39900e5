"""One retrain's data check: the batch screened (:mod:`screening`) and the earlier fixes' retention measured
(:mod:`forgetting`), from one prediction pass of each model over the corrected images (:mod:`box_evidence`)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from yolo_retrain.box_evidence import LabelledImage, labels_from_text, predict_confidences
from yolo_retrain.config import Settings
from yolo_retrain.data_yaml import read_class_names
from yolo_retrain.forgetting import Retention, retention, stable_sample
from yolo_retrain.screening import RELABEL_CONFIDENCE, ScreeningResult, ScreeningRule, held_corrections, relabelled_classes, screen


class _Correction:  # what is read of a correction: Correction and AcceptedCorrection both fit
    id: str
    image_sha256: str
    image_path: str
    label_text: str
    created_at: object


@dataclass(frozen=True)
class BatchCheck:
    """Verdicts on the batch, and how well each model reproduces the batch ("learned") and a stable sample of the
    earlier accepted corrections ("fixed")."""

    screening: ScreeningResult
    learned: Retention
    fixed: Retention
    names: list[str] = field(default_factory=list)
    relabels: dict[str, tuple[str, ...]] = field(default_factory=dict)  # correction id -> classes it relabels into or out of

    def as_mlflow(self) -> dict[str, float]:
        s = self.screening
        return {
            "screened_corrections": len(s.verdicts),
            "suspicious_corrections": len(s.suspicious),
            "suspicious_share": s.share,
            **self.learned.as_mlflow("learned"),
            **self.fixed.as_mlflow("fixed"),
        }

    def held(self, decision) -> dict[str, str]:
        """Correction id -> why it is held: suspicious, or (the gate refused the candidate for a class's drop)
        relabelling boxes into or out of that class."""
        return held_corrections(self.report()["verdicts"], () if decision.promote else decision.dropped_classes)

    def retention_line(self) -> str:
        def part(name: str, r: Retention) -> str:
            if not r.boxes:
                return f"{name}: none"
            return f"{name}: champion {r.share(r.champion):.0%}, candidate {r.share(r.candidate):.0%} of {r.boxes} boxes"

        return f"reproduced boxes, {part('earlier fixes', self.fixed)}; {part('this batch', self.learned)}"

    def report(self) -> dict:
        """The run's ``screening.json``: each correction's verdict and reasons, the classes it relabels (what a
        recovery needs to hold it as the finish step would, :func:`held_corrections`), and both retention figures."""
        return {
            "verdicts": [
                {
                    "correction_id": v.correction_id,
                    "suspicious": v.suspicious,
                    "boxes": v.boxes,
                    "reasons": list(v.reasons),
                    "relabels": list(self.relabels.get(v.correction_id, ())),
                }
                for v in self.screening.verdicts
            ],
            "learned": {**self.learned.as_mlflow("learned"), "unlearned_by_class": dict(self.learned.unlearned)},
            "fixed": {**self.fixed.as_mlflow("fixed"), "unlearned_by_class": dict(self.fixed.unlearned)},
        }


def _images(corrections: Sequence[_Correction]) -> list[LabelledImage]:
    return [LabelledImage(c.id, Path(c.image_path), labels_from_text(c.label_text)) for c in corrections]


def replaced_labels(batch: Sequence[_Correction], accepted: Sequence[_Correction], manifest: Path) -> dict[str, np.ndarray]:
    """The label each batch correction replaces: the image's newest earlier accepted correction, else its base label
    file (the manifest's source image, through Ultralytics' images/ -> labels/ rule); none for a new image."""
    from ultralytics.data.utils import img2label_paths

    earlier = {c.image_sha256: c for c in sorted(accepted, key=lambda c: (c.created_at, c.id))}  # newest wins
    sources = {e["correction_id"]: e["source_image"] for e in json.loads(manifest.read_text()) if e.get("correction_id")}
    out = {}
    for c in batch:
        if c.image_sha256 in earlier:
            out[c.id] = labels_from_text(earlier[c.image_sha256].label_text)
        elif (source := sources.get(c.id)) and Path(source).resolve() != Path(c.image_path).resolve():
            label = Path(img2label_paths([source])[0])
            out[c.id] = labels_from_text(label.read_text()) if label.is_file() else np.zeros((0, 5))
    return out


def check_batch(
    settings: Settings,
    data_yaml: Path,
    champion_weights: str | Path | None,
    candidate_weights: str | Path,
    batch: Sequence[_Correction],
    accepted: Sequence[_Correction],
    evaluation: Mapping[str, Any],
    manifest: Path | None = None,
    holdout: str | None = None,
) -> BatchCheck:
    """Screen ``batch`` and measure retention of a stable sample of ``accepted`` (at most
    ``settings.forgetting_sample`` corrections), with both models predicting each image once, at the holdout
    evaluation's ``evaluation`` arguments (imgsz, device, batch: :meth:`Recipe.evaluation_args`). ``holdout``: the
    paired comparison's verdict on candidate − champion, which weighs each model's view (:mod:`screening`)."""
    names = read_class_names(data_yaml, "dataset")
    relabelled_now = {c.image_sha256 for c in batch}  # an image the batch labels anew: its older label is not a "fix" to keep
    by_id = {c.id: c for c in accepted if c.image_sha256 not in relabelled_now}
    earlier = [by_id[i] for i in stable_sample(by_id, settings.forgetting_sample)]
    batch_images, earlier_images = _images(batch), _images(earlier)
    everything = batch_images + earlier_images
    args = (data_yaml, everything, len(names), evaluation["imgsz"], evaluation["device"], evaluation["batch"])
    if not everything:  # nothing to screen or re-check (a first baseline): no model is loaded
        return BatchCheck(ScreeningResult([]), Retention(), Retention(), names)
    new = predict_confidences(candidate_weights, *args)
    old = predict_confidences(champion_weights, *args) if champion_weights is not None else None
    rule = ScreeningRule(
        settings.screen_confidence,
        settings.screen_margin,
        settings.screen_candidate_confidence,
        settings.screen_agreement_confidence,
        settings.screen_contaminated_share,
    )
    batch_labels = {i.key: i.labels for i in batch_images}
    earlier_labels = {i.key: i.labels for i in earlier_images}
    replaced = replaced_labels(batch, accepted, manifest) if manifest is not None else {}
    relabels = {
        key: tuple(names[c] for c in sorted(relabelled_classes(rows, replaced.get(key), None if old is None else old[key], RELABEL_CONFIDENCE)))
        for key, rows in batch_labels.items()
    }
    return BatchCheck(
        screening=ScreeningResult(screen(batch_labels, old, new, names, rule, holdout)),
        learned=retention(batch_labels, old, new, names, settings.screen_confidence),
        fixed=retention(earlier_labels, old, new, names, settings.screen_confidence),
        names=names,
        relabels=relabels,
    )
