"""Against a real Label Studio (its own virtualenv, SQLite, loopback): pre-annotations from the champion,
annotations submitted through Label Studio's API, corrections stored with the right classes, the threshold
reached, the retrain run.

Needs ``make labelstudio`` (``make test`` runs it first). Outside CI a missing install skips; in CI it fails.
"""

from __future__ import annotations

import contextvars
import os
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import httpx
import pytest
import labelstudio_server
from conftest import TINY, World, use_home

from yolo_retrain import intake
from yolo_retrain.config import Settings
from yolo_retrain.labels import format_labels, parse_labels
from yolo_retrain.labelstudio.convert import ScoredBox, box_to_region
from yolo_retrain.store import CorrectionStore

pytestmark = pytest.mark.e2e

SECRET = "test-shared-secret"
# The model's classes are [square, circle]: the project lists them the other way round, plus one the model lacks.
LABEL_CONFIG = """<View>
  <Image name="image" value="$image"/>
  <RectangleLabels name="label" toName="image">
    <Label value="circle"/><Label value="square"/><Label value="cat"/>
  </RectangleLabels>
</View>"""


@pytest.fixture(scope="module")
def label_studio(tmp_path_factory) -> Iterator[labelstudio_server.LabelStudio]:
    if not labelstudio_server.installed():
        message = "Label Studio is not installed: run `make labelstudio` (`make test` does)"
        if os.environ.get("CI", "").lower() in ("true", "1"):
            pytest.fail(message)
        pytest.skip(message)
    server = labelstudio_server.start_copy(tmp_path_factory.mktemp("label-studio"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def personal_token(label_studio) -> str:
    """A personal access token (a JWT refresh token, what new Label Studio organisations hand out) for the backend."""
    made = httpx.post(f"{label_studio.url}/api/token/", headers={"Authorization": f"Token {label_studio.token}"}, timeout=60)
    assert made.status_code == 201, made.text
    return made.json()["token"]


@dataclass
class Backend:
    url: str
    settings: Settings


@pytest.fixture
def backend(world: World, label_studio, personal_token, monkeypatch, tmp_path) -> Iterator[Backend]:
    """The ML backend on loopback, over a copy of the shared world's home (its champion, its own corrections)."""
    import uvicorn

    from yolo_retrain.labelstudio.backend import create_backend_app

    home = tmp_path / "home"
    shutil.copytree(world.settings.home, home, symlinks=True, ignore=shutil.ignore_patterns("runs", "datasets", "prefect", "mlartifacts"))
    settings = use_home(
        monkeypatch,
        home,
        **TINY,
        artifact_location=world.settings.artifact_location,
        base_data=world.settings.base_data,
        retrain_threshold=3,
        label_studio_url=label_studio.url,
        label_studio_api_key=personal_token,  # the backend reads images with it (refresh -> access token)
        label_studio_secret=SECRET,
        label_studio_min_score=0.0,  # the 2-epoch test champion is unsure of everything: show its boxes anyway
    )
    port = labelstudio_server.free_port()
    server = uvicorn.Server(uvicorn.Config(create_backend_app(settings), host="127.0.0.1", port=port, log_level="warning"))
    # The server thread sees this test's Prefect settings (the session's test server), like the caller does.
    thread = threading.Thread(target=contextvars.copy_context().run, args=(server.run,), daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.1)
    assert server.started, "the ML backend did not start"
    yield Backend(f"http://127.0.0.1:{port}", settings)
    server.should_exit = True
    thread.join(30)


def _regions(label_file: Path, width: int, height: int) -> list[dict]:
    """A reviewer's boxes, drawn as Label Studio stores them (percent, label names)."""
    boxes = parse_labels(label_file.read_text(), str(label_file), 2)
    return [box_to_region(ScoredBox(b, 1.0), ["square", "circle"], "label", "image", width, height) for b in boxes]


def _threshold_events(since: datetime) -> list[dict]:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        body = {"filter": {"event": {"name": [intake.THRESHOLD_EVENT]}, "occurred": {"since": since.isoformat()}}, "limit": 50}
        return client.request("POST", "/events/filter", json=body).json()["events"]


def test_label_studio_round_trip(world: World, label_studio, backend: Backend, prefect_server):
    ls = httpx.Client(base_url=label_studio.url, headers={"Authorization": f"Token {label_studio.token}"}, timeout=60)
    project = ls.post("/api/projects", json={"title": "yolo-retrain review", "label_config": LABEL_CONFIG})
    assert project.status_code == 201, project.text
    pid = project.json()["id"]

    # Tasks: four images whose base labels are wrong; the reviewer's truth is in corrections/labels.
    images = sorted((world.data.corrections_dir / "images").iterdir())[:4]
    assert len(images) == 4
    upload = ls.post(f"/api/projects/{pid}/import", files=[(f"file{i}", (p.name, p.read_bytes(), "image/png")) for i, p in enumerate(images)])
    assert upload.status_code == 201, upload.text
    tasks = sorted(ls.get("/api/tasks", params={"project": pid}).json()["tasks"], key=lambda t: t["id"])
    by_name = {p.name: p for p in images}
    task_image = {t["id"]: next(by_name[n] for n in by_name if t["data"]["image"].endswith(n)) for t in tasks}

    # The webhook first (with the secret header), then the model: Label Studio then adds no webhook of its own.
    hook = ls.post("/api/webhooks", json={
        "project": pid, "url": f"{backend.url}/webhook", "send_payload": True, "send_for_all_actions": False,
        "actions": ["ANNOTATION_CREATED", "ANNOTATION_UPDATED", "ANNOTATIONS_DELETED"], "headers": {"X-Yolo-Retrain-Secret": SECRET},
    })
    assert hook.status_code == 201, hook.text
    ml = ls.post("/api/ml", json={"url": backend.url, "project": pid, "title": "yolo-retrain champion",
                                  "auth_method": "BASIC_AUTH", "basic_auth_user": "label-studio", "basic_auth_pass": SECRET})
    assert ml.status_code == 201, ml.text
    from yolo_retrain import registry, tracking

    champion = str(registry.version_by_alias(tracking.client_for(backend.settings), backend.settings.model_name, "champion").version)
    assert ml.json()["model_version"] == champion  # /setup answered the registry version

    # Pre-annotations: Label Studio asks the backend and stores the champion's boxes as predictions.
    retrieved = ls.post("/api/dm/actions", params={"id": "retrieve_tasks_predictions", "project": pid},
                        json={"selectedItems": {"all": True, "excluded": []}})
    assert retrieved.status_code == 200, retrieved.text
    predictions = {t["id"]: ls.get("/api/predictions", params={"task": t["id"]}).json() for t in tasks}
    assert all(len(p) == 1 and p[0]["model_version"] == champion for p in predictions.values()), predictions
    shown = [r for p in predictions.values() for r in p[0]["result"]]
    assert shown, "the champion pre-annotated no box at all"
    assert {r["value"]["rectanglelabels"][0] for r in shown} <= {"square", "circle"}

    reviewing_since = datetime.now(timezone.utc)

    # The reviewer: fixes three tasks from the champion's predictions, skips the fourth, then re-edits one.
    submitted = {}
    for task in tasks[:3]:
        regions = _regions(world.data.corrections_dir / "labels" / f"{task_image[task['id']].stem}.txt", 64, 64)
        answer = ls.post(f"/api/tasks/{task['id']}/annotations",
                         json={"result": regions, "was_cancelled": False, "parent_prediction": predictions[task["id"]][0]["id"]})
        assert answer.status_code == 201, answer.text
        submitted[task["id"]] = answer.json()["id"]
    skipped = ls.post(f"/api/tasks/{tasks[3]['id']}/annotations", json={"result": [], "was_cancelled": True})
    assert skipped.status_code == 201, skipped.text
    cat = ls.post(f"/api/tasks/{tasks[3]['id']}/annotations", json={"result": [
        {"type": "rectanglelabels", "from_name": "label", "to_name": "image", "original_width": 64, "original_height": 64,
         "value": {"x": 10, "y": 10, "width": 20, "height": 20, "rotation": 0, "rectanglelabels": ["cat"]}}]})
    assert cat.status_code == 201, cat.text  # Label Studio accepts it; the backend refuses it (not a model class)

    with CorrectionStore.from_settings(backend.settings) as store:
        pending = store.list(status="pending")
        assert len(pending) == 3, [c.original_name for c in store.list()]  # the skipped and the "cat" one are not
        for task in tasks[:3]:
            truth = world.data.corrections_dir / "labels" / f"{task_image[task['id']].stem}.txt"
            stored = next(c for c in pending if c.original_name.endswith(task_image[task["id"]].name))
            assert stored.label_text == format_labels(parse_labels(truth.read_text(), str(truth), 2))  # right classes
            assert stored.source_model_version == champion
        assert store.take_threshold_crossing(3) is None  # 3 reached: announced to Prefect already, by the webhook

        # An update of one annotation supersedes its correction (still 3 pending); a redelivery stores nothing.
        first = tasks[0]["id"]
        before = next(c for c in pending if c.original_name.endswith(task_image[first].name))
        moved = _regions(world.data.corrections_dir / "labels" / f"{task_image[first].stem}.txt", 64, 64)
        moved[0]["value"]["x"] = max(0.0, moved[0]["value"]["x"] - 5)
        updated = ls.patch(f"/api/annotations/{submitted[first]}", json={"result": moved})
        assert updated.status_code == 200, updated.text
        assert store.get(before.id).status == "superseded"
        assert store.pending_count() == 3

    # The threshold event reached Prefect (stored asynchronously); the retrain it triggers takes these corrections.
    deadline = time.monotonic() + 30
    while not (events := _threshold_events(reviewing_since)) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert [e["payload"] for e in events] == [{"pending": 3, "threshold": 3}]

    # Each correction keeps the prediction it corrects (the one /predict served) and the per-class diff against it.
    with CorrectionStore.from_settings(backend.settings) as store:
        pending = store.list(status="pending")
        diffs = {d.correction_id: d for d in store.diffs([c.id for c in pending])}
    assert set(diffs) == {c.id for c in pending}
    served = {str(p[0]["id"]) for p in predictions.values()}
    for correction in pending:
        d = diffs[correction.id]
        assert d.prediction_source.removeprefix("label-studio prediction ") in served and d.predicted_version == champion
        predicted = len(parse_labels(d.predicted_labels, "predicted", 2))
        counts = {kind: sum(c[kind] for c in d.diff["classes"].values()) for kind in ("added", "removed", "relabelled", "moved", "kept")}
        assert counts["kept"] + counts["moved"] + counts["relabelled"] + counts["removed"] == predicted
        assert counts["kept"] + counts["moved"] + counts["relabelled"] + counts["added"] == correction.num_boxes
    totals = {kind: sum(c[kind] for d in diffs.values() for c in d.diff["classes"].values()) for kind in ("added", "removed")}

    from flows.retrain import retrain

    report = retrain(trigger="corrections-threshold")
    assert report.corrections == 3 and report.outcome in ("promoted", "rejected")
    # The retrain shows what the reviewers taught it: in MLflow (metrics + table) and in the Prefect summary.
    run = tracking.client_for(backend.settings).get_run(report.run_id)
    assert run.data.metrics["reviewer_corrections_with_diff"] == 3
    assert run.data.metrics["reviewer_added"] == totals["added"] and run.data.metrics["reviewer_removed"] == totals["removed"]
    assert "reviewer_diffs.json" in {a.path for a in tracking.client_for(backend.settings).list_artifacts(report.run_id)}
    assert "What the reviewers changed (3 of 3 corrections" in report.markdown()

    # The reviewer deletes an annotation the retrain took: Label Studio's real ANNOTATIONS_DELETED event (ids only)
    # withdraws its correction if the gate rejected it, or lists it for review if the champion learned it.
    deleted_task = tasks[1]["id"]
    assert ls.delete(f"/api/annotations/{submitted[deleted_task]}").status_code == 204
    with CorrectionStore.from_settings(backend.settings) as store:
        deadline = time.monotonic() + 10
        while not (marked := store.list(source_deleted=True)) and time.monotonic() < deadline:
            time.sleep(0.2)  # in case Label Studio sends the webhook after answering
    (listed,) = marked
    assert listed.original_name.endswith(task_image[deleted_task].name)
    if report.outcome == "promoted":
        assert listed.status == "accepted" and listed.status_reason.endswith("learned it: review")
    else:
        assert listed.status == "withdrawn"


def test_selected_images_become_pre_annotated_tasks_and_an_annotation_comes_back(world: World, label_studio, backend: Backend):
    """#22: a selection sends its picks to a real Label Studio project as tasks with the champion's predictions
    (model_version = its registry version); a reviewer's annotation on one comes back through the webhook as a
    correction, and the next selection offers neither the picked images nor the corrected one again."""
    from yolo_retrain import registry, tracking
    from yolo_retrain.selection.run import select_for_review

    ls = httpx.Client(base_url=label_studio.url, headers={"Authorization": f"Token {label_studio.token}"}, timeout=60)
    project = ls.post("/api/projects", json={"title": "yolo-retrain selection", "label_config": LABEL_CONFIG})
    assert project.status_code == 201, project.text
    pid = project.json()["id"]
    hook = ls.post("/api/webhooks", json={
        "project": pid, "url": f"{backend.url}/webhook", "send_payload": True, "send_for_all_actions": False,
        "actions": ["ANNOTATION_CREATED"], "headers": {"X-Yolo-Retrain-Secret": SECRET},
    })
    assert hook.status_code == 201, hook.text
    champion = str(registry.version_by_alias(tracking.client_for(backend.settings), backend.settings.model_name, "champion").version)

    holdout = world.data.data_yaml.parent / "images" / "val"  # 12 images no one corrected
    settings = backend.settings.model_copy(update={"selection_min_confidence": 0.001})  # the 2-epoch champion is unsure of all
    selection = select_for_review(settings, [str(holdout)], budget=3, include_samples=False, project=pid)
    assert len(selection.choice.picks) == 3 and len(selection.tasks) == 3 and not selection.not_sent
    tasks = sorted(ls.get("/api/tasks", params={"project": pid}).json()["tasks"], key=lambda t: t["id"])
    assert len(tasks) == 3
    picked = {p.candidate.path.name: p for p in selection.choice.picks}
    shown = 0
    for task in tasks:
        (prediction,) = ls.get("/api/predictions", params={"task": task["id"]}).json()
        assert prediction["model_version"] == champion
        pick = next(p for name, p in picked.items() if task["data"]["image"].endswith(name))
        drawn = [b for b in pick.candidate.boxes if b.score >= backend.settings.label_studio_min_score]
        assert len(prediction["result"]) == len(drawn)  # the champion's boxes, as the reviewer opens them
        assert {r["value"]["rectanglelabels"][0] for r in prediction["result"]} <= {"square", "circle"}
        shown += len(prediction["result"])
    assert shown > 0, "no task shows a box of the champion"

    # The reviewer fixes the first task: the webhook turns it into a correction of that image.
    task = tasks[0]
    name = next(n for n in picked if task["data"]["image"].endswith(n))
    truth = world.data.data_yaml.parent / "labels" / "val" / f"{Path(name).stem}.txt"
    (prediction,) = ls.get("/api/predictions", params={"task": task["id"]}).json()
    answer = ls.post(f"/api/tasks/{task['id']}/annotations",
                     json={"result": _regions(truth, 64, 64), "was_cancelled": False, "parent_prediction": prediction["id"]})
    assert answer.status_code == 201, answer.text
    with CorrectionStore.from_settings(backend.settings) as store:
        (correction,) = [c for c in store.list(status="pending") if c.original_name.endswith(name)]
        assert correction.image_sha256 == picked[name].candidate.sha256 and correction.source_model_version == champion
        assert correction.label_text == format_labels(parse_labels(truth.read_text(), str(truth), 2))

    from yolo_retrain.hashing import file_sha256
    from yolo_retrain.selection.samples import SampleStore

    with SampleStore.from_settings(settings) as samples:  # what the next selection leaves out: the 3 sent, none else
        left_out = samples.not_selectable(file_sha256(p) for p in holdout.iterdir())
        assert left_out == {p.candidate.sha256 for p in selection.choice.picks}
        assert {s.review_task for s in samples.list(selection_id=selection.id)} == set(selection.tasks.values())
