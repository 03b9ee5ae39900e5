"""Each correction judged as data before it is accepted, from what the champion and the candidate see at its boxes.

The champion was not trained on the batch: where it confidently sees another class than the label says, the label
is in doubt (it may also be the very mistake the correction fixes). The candidate was trained on the batch and on
everything accepted before: a right label agrees with the rest of the data, so the candidate learns it and confirms
it; a wrong one contradicts the rest, and the candidate keeps seeing the other class there. So a box is suspicious
when

- the candidate, trained on it, still prefers another class there (at ``candidate_confidence`` or more, above the
  label's class), or
- the champion clearly sees another class there (at ``confidence`` or more, above the label's class by ``margin``)
  and the candidate does not confirm the label (the label's class at ``confidence``, above every other by
  ``margin``), or
- both models prefer another class than the label's, each at ``agreement_confidence`` or more.

Each model's view is weighed by what the holdout says of it (:func:`holdout_view`). A candidate the holdout shows
*worse* beyond the gate's margin (its whole interval below -margin: a too-short or broken training, e.g. one epoch,
can see every box as one class) is not counted: the champion alone judges, and a box is suspicious where it prefers another class (at
``agreement_confidence``). A candidate the holdout shows *better* outweighs the champion: the champion's view alone
(the second test) does not hold a label; the champion that the demo's fixes correct memorised the wrong labels.

A candidate trained on a batch that is mostly wrong is contaminated evidence for that batch: it learned those labels,
so its agreement with them proves nothing. When more than ``contaminated_share`` of the batch is suspicious on a
first pass (the share itself comes from evidence the candidate cannot fake: its own disagreement, the champion's),
the batch is screened again with the candidate's confirmation not counted: a box is then suspicious where the
champion prefers another class (at ``agreement_confidence``), or the candidate still does. Its disagreement keeps
its weight (it sees another class despite training on the label).

A correction with a suspicious box is held as ``suspicious``, with each such box's reason (which model sees which
class, at what confidence); boxes neither model predicts give no evidence (a missed object added, a false one
removed). The thresholds are settings; ``bench/screening.py`` measures them on the demo's data.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class ScreeningRule:
    confidence: float = 0.5  # the champion clearly "sees" a class at a box from this confidence up
    margin: float = 0.2  # ... and only above the label's class by this much (the candidate confirms the same way)
    candidate_confidence: float = 0.4  # the candidate, trained on the label, still prefers another class from here
    agreement_confidence: float = 0.25  # both models prefer another class, each from here
    contaminated_share: float = 0.5  # more of the batch suspicious than this: the candidate does not vouch for a label


def holdout_view(interval, margin: float) -> str:
    """How the holdout weighs the candidate's view of the labels: ``worse`` (not counted) when its whole interval of
    candidate − champion lies below ``-margin``, ``better`` (outweighs the champion alone) when it lies above 0,
    else ``comparable``."""
    if interval.high < -margin:
        return "worse"
    return "better" if interval.low > 0 else "comparable"


@dataclass(frozen=True)
class Verdict:
    """One correction's screening result; ``reasons`` name each suspicious box."""

    correction_id: str
    suspicious: bool
    reasons: tuple[str, ...] = ()
    boxes: int = 0

    def reason(self) -> str:
        return "; ".join(self.reasons)


def _sees_other(conf: np.ndarray, label: int, rule: ScreeningRule) -> tuple[int, float] | None:
    """(class, confidence) of another class the model sees at the box, if it clearly does."""
    others = conf.copy()
    others[label] = -1.0
    other = int(np.argmax(others))
    if others[other] >= rule.confidence and others[other] - conf[label] >= rule.margin:
        return other, float(others[other])
    return None


def _prefers_other(conf: np.ndarray, label: int, at_least: float) -> tuple[int, float] | None:
    """(class, confidence) of another class the model prefers to the label's at the box, from ``at_least`` up."""
    others = conf.copy()
    others[label] = -1.0
    other = int(np.argmax(others))
    if others[other] >= at_least and others[other] > conf[label]:
        return other, float(others[other])
    return None


def _confirms(conf: np.ndarray, label: int, rule: ScreeningRule) -> bool:
    others = np.delete(conf, label)
    return conf[label] >= rule.confidence and conf[label] - (others.max() if len(others) else 0.0) >= rule.margin


def screen_box(
    label: int,
    champion: np.ndarray | None,
    candidate: np.ndarray,
    names: list[str],
    rule: ScreeningRule,
    holdout: str | None = None,
    contaminated: bool = False,
) -> str | None:
    """Why the box labelled ``label`` is suspicious, or None. ``champion`` is None before the first champion;
    ``holdout`` is :func:`holdout_view` of the paired comparison (better, comparable, worse), None without one;
    ``contaminated``: most of the batch is suspicious, so the candidate's confirmation is not counted."""
    if contaminated and champion is not None:
        seen = _prefers_other(candidate, label, rule.candidate_confidence)
        if seen is not None:
            return f"{names[label]!r} box: the candidate (trained on it) sees {names[seen[0]]!r} ({seen[1]:.2f}; {names[label]!r} {candidate[label]:.2f})"
        seen = _prefers_other(champion, label, rule.agreement_confidence)
        if seen is None:
            return None
        return (
            f"{names[label]!r} box: the champion sees {names[seen[0]]!r} ({seen[1]:.2f}; {names[label]!r} {champion[label]:.2f});"
            f" most of the batch is suspicious, so the candidate trained on it does not vouch for {names[label]!r}"
            f" ({candidate[label]:.2f})"
        )
    if holdout == "worse" and champion is not None:
        seen = _prefers_other(champion, label, rule.agreement_confidence)
        if seen is None:
            return None
        return (
            f"{names[label]!r} box: the champion sees {names[seen[0]]!r} ({seen[1]:.2f}; {names[label]!r} {champion[label]:.2f});"
            " the candidate, worse on the holdout, is not counted"
        )
    seen = _prefers_other(candidate, label, rule.candidate_confidence)
    if seen is not None:
        return f"{names[label]!r} box: the candidate (trained on it) sees {names[seen[0]]!r} ({seen[1]:.2f}; {names[label]!r} {candidate[label]:.2f})"
    if champion is None:
        return None
    seen = _sees_other(champion, label, rule) if holdout != "better" else None
    if seen is not None and not _confirms(candidate, label, rule):
        return (
            f"{names[label]!r} box: the champion sees {names[seen[0]]!r} ({seen[1]:.2f}; {names[label]!r} {champion[label]:.2f}),"
            f" the candidate does not confirm {names[label]!r} ({candidate[label]:.2f})"
        )
    old, new = _prefers_other(champion, label, rule.agreement_confidence), _prefers_other(candidate, label, rule.agreement_confidence)
    if old is not None and new is not None:
        return (
            f"{names[label]!r} box: both models prefer another class (champion {names[old[0]]!r} {old[1]:.2f},"
            f" candidate {names[new[0]]!r} {new[1]:.2f}; {names[label]!r} {champion[label]:.2f} / {candidate[label]:.2f})"
        )
    return None


def screen(
    labels: Mapping[str, np.ndarray],
    champion: Mapping[str, np.ndarray] | None,
    candidate: Mapping[str, np.ndarray],
    names: list[str],
    rule: ScreeningRule,
    holdout: str | None = None,
) -> list[Verdict]:
    """A verdict per correction from its labels (boxes, 5) and each model's (boxes, classes) confidences there;
    screened again without the candidate's confirmation when most of the batch is suspicious (contaminated)."""

    def verdicts(contaminated: bool) -> list[Verdict]:
        out = []
        for key, boxes in labels.items():
            reasons = []
            for i, row in enumerate(boxes):
                old = None if champion is None else champion[key][i]
                why = screen_box(int(row[0]), old, candidate[key][i], names, rule, holdout, contaminated)
                if why is not None:
                    reasons.append(f"box {i + 1}: {why}")
            out.append(Verdict(key, bool(reasons), tuple(reasons), len(boxes)))
        return out

    first = verdicts(contaminated=False)
    share = sum(v.suspicious for v in first) / len(first) if first else 0.0
    if champion is None or holdout == "worse" or share <= rule.contaminated_share:  # "worse": the candidate already uncounted
        return first
    # Screening again only adds doubt (each first-pass reason implies a contaminated one): the first reasons stand.
    return [v if v.suspicious else again for v, again in zip(first, verdicts(contaminated=True))]


RELABEL_CONFIDENCE = 0.25  # the champion "predicted" a class at a box from here (Ultralytics' default predict conf)


def relabelled_classes(labels: np.ndarray, replaced: np.ndarray | None, champion: np.ndarray | None, confidence: float) -> set[int]:
    """Classes a correction relabels boxes into or out of, both the old class and the new. Against the label it
    replaces (the base label, or the image's earlier accepted correction): a box of the old label that a box of the
    new one covers at IoU >= 0.5 with another class. A new image has no old label: there, where the champion's top
    class at a box (seen at ``confidence``) differs from the label."""
    from yolo_retrain.box_evidence import MATCH_IOU, _iou, _xyxy

    touched: set[int] = set()
    if replaced is not None:
        if len(replaced) and len(labels):
            overlap = _iou(_xyxy(replaced[:, 1:5]), _xyxy(labels[:, 1:5])) >= MATCH_IOU
            for i, j in zip(*np.nonzero(overlap)):
                old, new = int(replaced[i, 0]), int(labels[j, 0])
                if old != new:
                    touched |= {old, new}
        return touched
    for row, conf in zip(labels, champion if champion is not None else []):
        top = int(np.argmax(conf)) if len(conf) else -1
        if top >= 0 and conf[top] >= confidence and top != int(row[0]):
            touched |= {top, int(row[0])}
    return touched


@dataclass(frozen=True)
class ScreeningResult:
    """The batch's verdicts, and the share of suspicious ones against the setting."""

    verdicts: list[Verdict] = field(default_factory=list)

    @property
    def suspicious(self) -> list[Verdict]:
        return [v for v in self.verdicts if v.suspicious]

    @property
    def share(self) -> float:
        return len(self.suspicious) / len(self.verdicts) if self.verdicts else 0.0


def held_corrections(verdicts: Iterable[Mapping], dropped: Iterable[str] = ()) -> dict[str, str]:
    """Correction id -> why it is held, from the verdicts as ``screening.json`` records them: the suspicious ones,
    and, when the gate refused the candidate for the drop of the ``dropped`` classes, those relabelling boxes into or
    out of one of them (``relabels``; a reviewer who swaps two classes consistently is caught here). The finish step
    and a recovery that settles the retrain both decide from this one record."""
    dropped = set(dropped)
    held = {}
    for v in verdicts:
        touched = [c for c in v.get("relabels", ()) if c in dropped]  # in the classes' order
        if v["suspicious"]:
            held[v["correction_id"]] = "; ".join(v["reasons"])
        elif touched:
            classes = ", ".join(repr(c) for c in touched)
            held[v["correction_id"]] = f"relabels boxes into or out of {classes}, whose AP dropped: held for review"
    return held
