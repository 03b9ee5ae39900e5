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


def test_a_diff_that_cannot_be_written_stores_nothing_and_the_redelivery_stores_both(setup):
    """#21 window 5: correction and diff are one transaction. A failure writing the diff (here a real SQLite trigger
    refusing it) leaves nothing behind, so Label Studio's redelivery stores the correction with its diff."""
    import sqlite3

    settings, store = setup
    database = settings.corrections_db_url.removeprefix("sqlite:///")
    with sqlite3.connect(database) as conn:
        conn.execute("CREATE TRIGGER refuse_diff BEFORE INSERT ON correction_diffs BEGIN SELECT RAISE(ABORT, 'injected: no diff'); END")
    event = _event(0, 9, [_box("square", 20, 20)])
    with pytest.raises(Exception, match="injected: no diff"):
        _deliver(setup, event)
    assert store.stats()["total"] == 0
    assert not [p for p in settings.corrections_dir.rglob("*") if p.is_file()]  # nor its image blob
    with sqlite3.connect(database) as conn:
        conn.execute("DROP TRIGGER refuse_diff")
    again = _deliver(setup, event)
    assert again.outcome == "stored", again.reason
    (kept,) = store.diffs([again.correction_id])
    assert kept.source_key == "label-studio project 1 task 0 annotation 9" and kept.diff == again.diff.to_json()
    assert _deliver(setup, event).outcome == "duplicate" and store.stats()["total"] == 1


def _deleted(*annotation_ids: int) -> dict:
    """Label Studio's ANNOTATIONS_DELETED payload: ids only (webhooks/models.py: OnlyIDWebhookSerializer)."""
    return {"action": "ANNOTATIONS_DELETED", "annotations": [{"id": i} for i in annotation_ids], "project": {"id": 1}}


def test_a_deleted_annotation_withdraws_its_correction_unless_a_model_learned_it(setup):
    _, store = setup
    learned = _deliver(setup, _event(2, 23, [_box("square", 20, 20)]))
    other = _deliver(setup, _event(0, 21, [_box("circle", 20, 20)]))
    store.claim("r1")
    store.record_gate_decision("r1", "4", GateDecision(promote=True, reason="better"))
    earlier = store.add(IMAGES["/data/upload/1/1.png"], "0 0.5 0.5 0.3 0.3\n", image_name="1.png")  # e.g. the intake's
    first = _deliver(setup, _event(1, 22, [_box("square", 10, 10)]))
    latest = _deliver(setup, _event(1, 22, [_box("circle", 10, 10)], action="ANNOTATION_UPDATED"))
    assert store.get(earlier.id).status == "superseded"

    result = _deliver(setup, _deleted(22, 23))
    assert result.outcome == "withdrawn" and "1 correction(s) withdrawn" in result.reason
    assert f"1 already learned by a model, listed for review ({learned.correction_id[:12]})" in result.reason
    status = {c.id: c.status for c in store.list()}
    assert status == {learned.correction_id: "accepted", other.correction_id: "accepted", earlier.id: "pending",
                      first.correction_id: "superseded", latest.correction_id: "withdrawn"}  # fmt: skip
    # the correction the deleted annotation had replaced is not lost: pending again
    assert store.pending_count() == 1 and store.stats()["withdrawn"] == 1
    assert {c.id for c in store.training_corrections("r2").accepted} == {learned.correction_id, other.correction_id}
    listed = {c.id: c for c in store.list(source_deleted=True)}
    assert set(listed) == {learned.correction_id, first.correction_id, latest.correction_id}
    assert listed[learned.correction_id].status_reason.endswith("annotation 23 deleted in Label Studio after v4 learned it: review")
    # Label Studio delivers it again: nothing changes
    again = _deliver(setup, _deleted(22, 23))
    assert "0 correction(s) withdrawn" in again.reason and {c.id: c.status for c in store.list()} == status
    # The bulk deletion of Label Studio's Data Manager names no ids: nothing can be matched, nothing changes
    assert _deliver(setup, {"action": "ANNOTATIONS_DELETED", "project": {"id": 1}}).outcome == "ignored"


def test_an_annotation_deleted_during_a_retrain_is_withdrawn_unless_the_gate_promotes_it(setup):
    _, store = setup
    rejected = _deliver(setup, _event(0, 31, [_box("square", 20, 20)]))
    kept = _deliver(setup, _event(1, 32, [_box("square", 20, 20)]))
    store.claim("r2")
    assert "1 in a running retrain" in _deliver(setup, _deleted(31)).reason
    assert store.get(rejected.correction_id).status == "claimed"  # the running retrain decides
    store.record_gate_decision("r2", "5", GateDecision(promote=False, reason="worse"))
    assert (store.get(rejected.correction_id).status, store.get(kept.correction_id).status) == ("withdrawn", "rejected")

    promoted = _deliver(setup, _event(2, 33, [_box("circle", 20, 20)]))
    failed = _deliver(setup, _event(0, 34, [_box("circle", 20, 20)]))
    store.claim("r3")
    _deliver(setup, _deleted(33, 34))
    store.record_gate_decision("r3", "6", GateDecision(promote=True, reason="better"))
    assert store.get(promoted.correction_id).status == "accepted"  # the model learned it: listed for review
    assert store.get(promoted.correction_id).status_reason.endswith("its source was deleted while the retrain ran: review")
    assert store.get(failed.correction_id).status == "accepted"  # the same batch

    again = _deliver(setup, _event(1, 35, [_box("circle", 30, 30)]))
    store.claim("r4")
    _deliver(setup, _deleted(35))
    assert store.get(kept.correction_id).status == "superseded"  # by the newer annotation of its image
    assert store.release("r4") == 1 and store.get(again.correction_id).status == "withdrawn"  # not pending again
    assert store.get(kept.correction_id).status == "rejected"  # what it had superseded: held for a person again


def test_an_annotation_deleted_during_a_screened_retrain_is_withdrawn_unless_the_promoted_model_learned_it(setup):
    """The flow records a batch by screening (each correction on its own merit): a source deleted meanwhile is
    withdrawn, whether screening held it or passed it, unless the model that learned it was promoted; then it is
    accepted and listed for review. The accepted correction it would have replaced stays accepted."""
    _, store = setup
    earlier = _deliver(setup, _event(0, 41, [_box("square", 20, 20)]))
    store.claim("r1")
    store.record_screened_batch("r1", "3", GateDecision(promote=True, reason="better"), {})
    held = _deliver(setup, _event(1, 42, [_box("square", 20, 20)]))
    passed = _deliver(setup, _event(0, 43, [_box("circle", 20, 20)]))  # the image of `earlier`, labelled anew
    store.claim("r2")
    _deliver(setup, _deleted(42, 43))
    store.record_screened_batch("r2", "4", GateDecision(promote=False, reason="worse"), {held.correction_id: "box 1: why"})
    status = {c.id: c.status for c in store.list()}
    assert (status[held.correction_id], status[passed.correction_id]) == ("withdrawn", "withdrawn")
    assert status[earlier.correction_id] == "accepted"  # not superseded by a correction no one stands by

    learned = _deliver(setup, _event(2, 44, [_box("circle", 20, 20)]))
    store.claim("r3")
    _deliver(setup, _deleted(44))
    store.record_screened_batch("r3", "5", GateDecision(promote=True, reason="better"), {})
    assert store.get(learned.correction_id).status == "accepted"  # the champion learned it: listed for review
    assert store.get(learned.correction_id).status_reason.endswith("its source was deleted while the retrain ran: review")


def test_task_data_fields_named_in_the_setting_become_the_images_metadata(setup):
    settings, store = setup
    settings = settings.model_copy(update={"label_studio_metadata_fields": "camera, site"})
    event = _event(1, 6, [_box("square", 20, 20)])
    event["task"]["data"] |= {"camera": "cam2", "site": "north", "other": "not kept"}
    result = correction_from_event(event, store, settings, IMAGES.__getitem__, lambda annotation, image: PREDICTED)
    assert result.outcome == "stored", result.reason
    assert store.get(result.correction_id).metadata == {"camera": "cam2", "site": "north"}
    # a field that is not a string is refused, naming the annotation and the field; nothing stored
    event = _event(2, 7, [_box("square", 20, 20)])
    event["task"]["data"]["camera"] = 3
    refused = correction_from_event(event, store, settings, IMAGES.__getitem__, lambda annotation, image: PREDICTED)
    assert refused.outcome == "refused" and "task 2 annotation 7: task data: metadata 'camera'" in refused.reason
    assert store.stats()["total"] == 1
