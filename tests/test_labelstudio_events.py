"""Annotation events -> corrections: stored through the intake, once, superseded by updates, refused with a reason.

Label Studio itself is in tests/test_labelstudio_live.py; here the image and the served prediction are given.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
import yaml
from conftest import use_home
from PIL import Image

from yolo_retrain.gate import GateDecision
from yolo_retrain.labels import parse_labels
from yolo_retrain.labelstudio.events import PredictedBoxes, correction_from_event
from yolo_retrain.store import CorrectionStore

CLASSES = ["square", "circle"]
CONFIG = '<View><Image name="img" value="$image"/><RectangleLabels name="label" toName="img"><Label value="circle"/><Label value="square"/></RectangleLabels></View>'


def _png(seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 255, size=(40, 50, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


IMAGES = {f"/data/upload/1/{i}.png": _png(i) for i in range(3)}
PREDICTED = PredictedBoxes("3", [(0, 0.3, 0.3, 0.2, 0.2)], "label-studio prediction 11")


def _event(task: int, annotation: int, regions: list, action="ANNOTATION_CREATED", **extra) -> dict:
    return {
        "action": action,
        "project": {"id": 1, "label_config": CONFIG},
        "task": {"id": task, "project": 1, "data": {"image": f"/data/upload/1/{task}.png"}},
        "annotation": {"id": annotation, "task": task, "result": regions, "was_cancelled": False, "completed_by": 4, **extra},
    }


def _box(label: str, x: float, y: float, w: float = 20, h: float = 20) -> dict:
    return {"type": "rectanglelabels", "from_name": "label", "to_name": "img", "original_width": 50, "original_height": 40,
            "value": {"x": x, "y": y, "width": w, "height": h, "rotation": 0, "rectanglelabels": [label]}}


@pytest.fixture
def setup(monkeypatch, tmp_path):
    data_yaml = tmp_path / "data.yaml"
    data_yaml.write_text(yaml.safe_dump({"names": CLASSES, "train": "x", "val": "x"}))
    settings = use_home(monkeypatch, tmp_path / "home", base_data=data_yaml, retrain_threshold=2)
    with CorrectionStore.from_settings(settings) as store:
        yield settings, store


def _deliver(setup, event):
    settings, store = setup
    return correction_from_event(event, store, settings, IMAGES.__getitem__, lambda annotation, image: PREDICTED)


def test_a_submitted_annotation_is_stored_with_classes_by_name_and_diffed(setup):
    _, store = setup
    # the reviewer kept the square (x 20..40 % = the predicted 0.2..0.4) and added a missed circle
    result = _deliver(setup, _event(0, 5, [_box("square", 20, 20), _box("circle", 60, 50)]))
    assert result.outcome == "stored", result.reason
    stored = store.get(result.correction_id)
    assert parse_labels(stored.label_text, "t", 2) == [(0, 0.3, 0.3, 0.2, 0.2), (1, 0.7, 0.6, 0.2, 0.2)]
    assert (stored.source_model_version, stored.author, stored.original_name) == ("3", "label-studio:4", "0.png")
    assert result.diff.classes["square"].kept == 1 and result.diff.classes["circle"].added == 1
    assert result.to_json()["prediction_source"] == "label-studio prediction 11"
    # the store keeps the prediction it corrects and the diff, beside the correction
    (kept,) = store.diffs([result.correction_id])
    assert (kept.predicted_version, kept.prediction_source) == ("3", "label-studio prediction 11")
    assert kept.predicted_labels == "0 0.300000 0.300000 0.200000 0.200000\n"
    assert kept.diff == result.diff.to_json() and kept.source_key == "label-studio project 1 task 0 annotation 5"


def test_the_same_annotation_twice_is_stored_once_and_an_update_supersedes_it(setup):
    _, store = setup
    first = _deliver(setup, _event(1, 6, [_box("square", 10, 10)]))
    again = _deliver(setup, _event(1, 6, [_box("square", 10, 10)]))
    assert (first.outcome, again.outcome) == ("stored", "duplicate")
    assert store.stats()["total"] == 1
    updated = _deliver(setup, _event(1, 6, [_box("circle", 10, 10)], action="ANNOTATION_UPDATED"))
    assert updated.outcome == "stored" and updated.diff.relabels == {"square -> circle": 1}
    assert store.get(first.correction_id).status == "superseded"
    assert store.get(updated.correction_id).status == "pending"
    # delivered again after a retrain took it: still recognised, not stored a second time
    store.claim("retrain-1")
    store.record_gate_decision("retrain-1", "4", GateDecision(promote=True, reason="better"))
    late = _deliver(setup, _event(1, 6, [_box("circle", 10, 10)], action="ANNOTATION_UPDATED"))
    assert (late.outcome, late.correction_id) == ("duplicate", updated.correction_id)
    assert store.stats()["total"] == 2
    # the reviewer reverts to the first version: that is what the annotation says now, so it is stored again
    reverted = _deliver(setup, _event(1, 6, [_box("square", 10, 10)], action="ANNOTATION_UPDATED"))
    assert reverted.outcome == "stored" and store.get(reverted.correction_id).status == "pending"


def test_skipped_unknown_labels_and_other_events_store_nothing(setup):
    _, store = setup
    skipped = _deliver(setup, _event(0, 7, [], was_cancelled=True))
    unknown = _deliver(setup, _event(0, 8, [_box("cat", 10, 10)]))
    other = _deliver(setup, {"action": "PROJECT_UPDATED", "project": {"id": 1}})
    malformed = _deliver(setup, {"action": "ANNOTATION_CREATED"})
    assert (skipped.outcome, other.outcome) == ("skipped", "ignored")
    assert unknown.outcome == "refused" and "label 'cat' is not one of the model's classes" in unknown.reason
    assert "project 1 task 0 annotation 8" in unknown.reason
    assert malformed.outcome == "refused" and "'annotation' and 'task'" in malformed.reason
    assert store.stats()["total"] == 0


def test_corrections_from_label_studio_count_toward_the_threshold(setup):
    from prefect.settings import PREFECT_API_URL, temporary_settings

    _, store = setup
    with temporary_settings(updates={PREFECT_API_URL: "http://127.0.0.1:9/api"}):  # nothing listens there
        _deliver(setup, _event(0, 1, [_box("square", 10, 10)]))
        assert store.take_threshold_crossing(2) is None
        result = _deliver(setup, _event(2, 2, []))  # an image with no objects is a correction too
    assert result.outcome == "stored" and result.pending == 2
    assert result.diff.classes["square"].removed == 1
    # the intake tried to announce the crossing; Prefect was down, so it stays armed for the next try
    assert store.take_threshold_crossing(2) == 2
