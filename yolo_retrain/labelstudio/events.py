"""A Label Studio annotation event (webhook payload) -> a correction in the store, diffed against the model.

``ANNOTATION_CREATED`` and ``ANNOTATION_UPDATED`` become corrections through the same store and threshold
announcement as every other correction (validated, counted toward the retrain threshold). A skipped task
(``was_cancelled``) is no correction. Each stored correction keeps, beside it, the prediction it corrects and the
per-class diff against it, written in the correction's own transaction: a failure (a busy database: 503, and Label
Studio delivers again) stores neither. The same annotation delivered twice is stored once (its source and
content digest are kept with its diff), whatever became of its correction since; an update supersedes the
earlier version (a newer correction of the same image does). The task data fields named in
``YOLO_RETRAIN_LABEL_STUDIO_METADATA_FIELDS`` (e.g. ``camera,site``) are kept as the image's metadata (the gate's
slices); one that is not a string refuses the event, naming it.

``ANNOTATIONS_DELETED`` (payload ``{"annotations": [{"id": A}], "project": {...}}``: ids only) withdraws the
corrections of those annotations: not yet learned -> ``withdrawn``; accepted (a model learned it) -> listed for
review (``corrections list --source-deleted``); see ``store.withdrawal``. Other events are acknowledged and ignored.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

from yolo_retrain import intake
from yolo_retrain.config import Settings
from yolo_retrain.errors import DuplicateCorrection, InvalidInput
from yolo_retrain.image_metadata import task_metadata
from yolo_retrain.labels import Box, format_labels
from yolo_retrain.labelstudio.convert import result_to_boxes
from yolo_retrain.labelstudio.diff import BoxDiff, diff_boxes
from yolo_retrain.labelstudio.label_config import box_tag
from yolo_retrain.store import CorrectionStore, SourceDiff

ANNOTATION_EVENTS = ("ANNOTATION_CREATED", "ANNOTATION_UPDATED")
DELETED_EVENT = "ANNOTATIONS_DELETED"

log = logging.getLogger(__name__)

Outcome = Literal["stored", "duplicate", "skipped", "ignored", "refused", "withdrawn"]


@dataclass(frozen=True)
class PredictedBoxes:
    """The model's boxes a reviewer corrected, and where they come from."""

    model_version: str | None
    boxes: list[Box]
    source: str  # "label-studio prediction <id>" (what /predict served) or "champion on arrival"


@dataclass(frozen=True)
class Annotation:
    """The parts of an annotation event a correction is made of."""

    key: str  # "project <p> task <t> annotation <a>": names it in every reply
    image_url: str
    result: list[dict[str, Any]]
    parent_prediction: int | None
    author: str | None
    task_data: dict[str, Any] | None = None  # the task's data: fields named in a setting become image metadata


@dataclass(frozen=True)
class EventResult:
    """What the webhook answers: what became of the event, and why."""

    outcome: Outcome
    reason: str
    correction_id: str | None = None
    pending: int | None = None
    predicted: PredictedBoxes | None = None
    diff: BoxDiff | None = None

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"outcome": self.outcome, "reason": self.reason}
        if self.correction_id:
            body["correction_id"] = self.correction_id
        if self.pending is not None:
            body["pending"] = self.pending
        if self.predicted is not None:
            body["model_version"] = self.predicted.model_version
            body["prediction_source"] = self.predicted.source
        if self.diff is not None:
            body["diff"] = self.diff.to_json()
        return body


ImageFetcher = Callable[[str], bytes]
PredictionFinder = Callable[[Annotation, bytes], PredictedBoxes]


def parse_event(payload: Any) -> tuple[str, Annotation | None, str]:
    """(action, the annotation or None if there is nothing to store, the reason when None). InvalidInput on a
    malformed annotation event."""
    if not isinstance(payload, dict) or not isinstance(payload.get("action"), str):
        raise InvalidInput("webhook body: expected a JSON object with an 'action' (a Label Studio webhook event)")
    action = payload["action"]
    if action not in ANNOTATION_EVENTS:
        return action, None, f"{action}: not an annotation submission or update, nothing to do"
    annotation, task = payload.get("annotation"), payload.get("task")
    if not isinstance(annotation, dict) or not isinstance(task, dict):
        raise InvalidInput(f"{action}: the event carries no 'annotation' and 'task' objects (enable 'send payload')")
    project = payload.get("project") if isinstance(payload.get("project"), dict) else {}
    key = f"project {project.get('id', task.get('project', '?'))} task {task.get('id', '?')} annotation {annotation.get('id', '?')}"
    if annotation.get("was_cancelled"):
        return action, None, f"{key}: skipped by the reviewer, no correction"
    result = annotation.get("result")
    if not isinstance(result, list):
        raise InvalidInput(f"{key}: annotation has no 'result' list")
    image_url = _image_url(task, project.get("label_config"), key)
    parent = annotation.get("parent_prediction")
    parent = parent if isinstance(parent, int) else None
    return action, Annotation(key, image_url, result, parent, _author(annotation), task.get("data")), ""


def correction_from_event(
    payload: Any,
    store: CorrectionStore,
    settings: Settings,
    fetch_image: ImageFetcher,
    find_prediction: PredictionFinder,
    iou_threshold: float = 0.5,
) -> EventResult:
    """Store the correction an annotation event carries (or withdraw those of deleted annotations); every refusal
    is an EventResult naming the reason."""
    if isinstance(payload, dict) and payload.get("action") == DELETED_EVENT:
        return withdraw_deleted(payload, store)
    try:
        action, annotation, reason = parse_event(payload)
        if annotation is None:
            return EventResult("skipped" if action in ANNOTATION_EVENTS else "ignored", reason)
        boxes = result_to_boxes(annotation.result, store.class_names, annotation.key)
        metadata = task_metadata(annotation.task_data, settings.label_studio_metadata_fields, annotation.key)
        labels = format_labels(boxes)
        source_key = f"label-studio {annotation.key}"
        digest = hashlib.sha256(f"{annotation.image_url}\n{labels}".encode()).hexdigest()
        earlier = store.latest_diff_of_source(source_key)
        # The latest version of this annotation again: a redelivery, whatever became of its correction since. (An
        # older version again is a reviewer's revert: stored, it supersedes the newer one.) Checked here to spare
        # fetching the image, and again by the store, inside the transaction that stores it.
        if earlier is not None and earlier.source_digest == digest:
            return EventResult("duplicate", f"{annotation.key}: already stored as correction {earlier.correction_id}", earlier.correction_id)
        image = fetch_image(annotation.image_url)
        predicted = find_prediction(annotation, image)
        diff = diff_boxes(predicted.boxes, boxes, store.class_names, iou_threshold)
        predicted_labels = format_labels(predicted.boxes)
        source = SourceDiff(source_key, digest, predicted.model_version, predicted.source, predicted_labels, diff.to_json())
        correction = store.add(
            image,
            labels,
            image_name=_image_name(annotation.image_url),
            author=annotation.author,
            source_model_version=predicted.model_version,
            source=source,  # the diff, in the correction's transaction
            metadata=metadata,
        )
    except DuplicateCorrection as exc:
        return EventResult("duplicate", f"already stored with the same boxes, stored once ({exc})")
    except InvalidInput as exc:
        return EventResult("refused", str(exc))
    # Then the threshold, as the intake does: a retrain it starts sees the diff.
    intake.announce_threshold(store, settings)
    log.info("%s: stored as correction %s (%s)", annotation.key, correction.id, predicted.source)
    return EventResult(
        "stored",
        f"{annotation.key}: stored, {len(boxes)} boxes, diffed against {predicted.source}",
        correction.id,
        store.pending_count(),
        predicted,
        diff,
    )


def withdraw_deleted(payload: dict[str, Any], store: CorrectionStore) -> EventResult:
    """``ANNOTATIONS_DELETED``: withdraw the corrections of each deleted annotation (matched by project and annotation
    id: the event names no task). Idempotent, so a redelivery changes nothing."""
    annotations = payload.get("annotations")
    project = payload.get("project") if isinstance(payload.get("project"), dict) else {}
    project_id = project.get("id")
    ids = [a.get("id") for a in annotations if isinstance(a, dict)] if isinstance(annotations, list) else []
    if not ids:  # Label Studio's bulk deletion (Data Manager) sends none: nothing can be matched
        log.warning("%s without annotation ids (enable 'send payload'): nothing withdrawn", DELETED_EVENT)
        return EventResult("ignored", f"{DELETED_EVENT}: the event names no annotation ids, nothing withdrawn")
    bad = [i for i in [*ids, project_id] if i is not None and (not isinstance(i, int) or isinstance(i, bool))]
    if bad:
        return EventResult("refused", f"{DELETED_EVENT}: ids must be integers, got {bad!r}")
    withdrawn, in_retrain, learned, restored = [], [], [], []
    for annotation_id in ids:
        project_part = "%" if project_id is None else str(project_id)
        why = f"annotation {annotation_id} deleted in Label Studio"
        done = store.withdraw_source(f"label-studio project {project_part} task % annotation {annotation_id}", why)
        withdrawn += done.withdrawn
        in_retrain += done.in_retrain
        learned += done.learned
        restored += done.restored
    parts = [f"{len(withdrawn)} correction(s) withdrawn"]
    if restored:
        parts.append(f"{len(restored)} earlier correction(s) they had superseded open again")
    if in_retrain:
        parts.append(f"{len(in_retrain)} in a running retrain (withdrawn unless its model is promoted)")
    if learned:
        names = ", ".join(c.id[:12] for c in learned)
        parts.append(f"{len(learned)} already learned by a model, listed for review ({names})")
        log.warning("deleted annotations %s: corrections %s already learned (corrections list --source-deleted)", ids, names)
    reason = f"annotations {', '.join(map(str, ids))} deleted: " + "; ".join(parts)
    return EventResult("withdrawn", reason, pending=store.pending_count())


def _image_url(task: dict[str, Any], label_config: Any, key: str) -> str:
    data = task.get("data")
    if not isinstance(data, dict):
        raise InvalidInput(f"{key}: task has no 'data' object")
    image_key = box_tag(label_config, f"{key}: label config").image_key if isinstance(label_config, str) else None
    if image_key is None:  # no config in the event: a task with one field holds the image there
        image_key = next(iter(data)) if len(data) == 1 else "image"
    url = data.get(image_key)
    if not isinstance(url, str) or not url:
        raise InvalidInput(f"{key}: task data has no image URL under {image_key!r}")
    return url


def _image_name(url: str) -> str:
    """A file name for the stored correction: the uploaded file's, or the local file's (``?d=dir/x.jpg``)."""
    parts = urlsplit(url)
    local = parse_qs(parts.query).get("d")
    name = PurePosixPath(local[0] if local else parts.path).name
    return name or "label-studio-image"


def _author(annotation: dict[str, Any]) -> str | None:
    who = annotation.get("completed_by")
    if isinstance(who, dict):
        who = who.get("email") or who.get("id")
    return None if who is None else f"label-studio:{who}"
