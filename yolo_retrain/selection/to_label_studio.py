"""A selection into Label Studio: each pick uploaded as a task of the project, with the champion's boxes as its
prediction (``model_version`` = the champion's registry version), so the reviewer opens it pre-annotated. The
annotation comes back as a correction through the ML backend's webhook, like any other (docs/label-studio.md).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from yolo_retrain.errors import InvalidInput
from yolo_retrain.labels import read_image_file
from yolo_retrain.labelstudio.client import LabelStudioClient
from yolo_retrain.labelstudio.convert import box_to_region
from yolo_retrain.labelstudio.label_config import box_tag
from yolo_retrain.selection.choose import Pick

log = logging.getLogger(__name__)


@dataclass
class SentTasks:
    tasks: dict[str, str] = field(default_factory=dict)  # sha256 -> the task's URL
    failed: list[tuple[str, str]] = field(default_factory=list)  # (sha256, why): not sent, back in the pool


def send_to_label_studio(
    client: LabelStudioClient,
    project: int,
    picks: Sequence[Pick],
    class_names: Sequence[str],
    model_version: str,
    min_score: float,
    on_sent: Callable[[str, str], None] | None = None,
) -> SentTasks:
    """One task per pick, with the champion's boxes at or above ``min_score`` as its prediction (the project's own
    label names; classes it lacks are left out). The project's config is checked first: without a
    ``<RectangleLabels>`` on an ``<Image>`` nothing is sent (InvalidInput naming it). A pick that fails is listed
    in ``failed``; the others go on. ``on_sent(sha256, url)`` records each task as it is made."""
    tag = box_tag(client.label_config(project), f"Label Studio project {project}'s label config")
    missing = [n for n in class_names if n not in tag.labels]
    if missing:
        log.warning("Label Studio project %s has no label for %s: those boxes are not drawn", project, ", ".join(missing))
    sent = SentTasks()
    for pick in picks:
        c = pick.candidate
        try:
            task = client.import_image(project, c.path.name, read_image_file(c.path))
            shown = [b for b in c.boxes if b.score >= min_score and class_names[b.box[0]] in tag.labels]
            result = [box_to_region(b, class_names, tag.from_name, tag.to_name, c.width, c.height) for b in shown]
            client.add_prediction(task, result, min((b.score for b in shown), default=1.0), model_version)
        except InvalidInput as exc:
            sent.failed.append((c.sha256, str(exc)))
            continue
        url = client.task_url(project, task)
        sent.tasks[c.sha256] = url
        if on_sent is not None:
            on_sent(c.sha256, url)
    return sent
