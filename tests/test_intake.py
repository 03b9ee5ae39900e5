"""The threshold announcement: counted by the store, one event per backlog, nothing lost when Prefect is down."""

from __future__ import annotations

import io
import sqlite3
import time

import numpy as np
import pytest
import yaml
from conftest import use_home
from PIL import Image

from yolo_retrain import intake
from yolo_retrain.store import CorrectionStore


def _png(seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 255, size=(32, 32, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def settings(monkeypatch, tmp_path):
    data_yaml = tmp_path / "data.yaml"
    data_yaml.write_text(yaml.safe_dump({"names": ["square", "circle"], "train": "x", "val": "x"}))
    return use_home(monkeypatch, tmp_path / "home", base_data=data_yaml, retrain_threshold=3)


def test_crossing_is_taken_once_per_backlog_and_rearmed_by_a_claim(settings):
    with CorrectionStore.from_settings(settings) as store:
        for seed in range(2):
            store.add(_png(seed), "0 0.5 0.5 0.2 0.2\n")
        assert store.take_threshold_crossing(3) is None  # 2 < 3
        store.add(_png(2), "0 0.5 0.5 0.2 0.2\n")
        assert store.take_threshold_crossing(3) == 3
        store.add(_png(3), "1 0.5 0.5 0.2 0.2\n")
        assert store.take_threshold_crossing(3) is None  # same backlog: already announced
        store.claim("retrain-1")
        for seed in range(4, 7):
            store.add(_png(seed), "0 0.5 0.5 0.2 0.2\n")
        assert store.take_threshold_crossing(3) == 3  # a new backlog after the claim


def test_with_prefect_down_the_correction_is_kept_and_the_announcement_rearmed(settings):
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: "http://127.0.0.1:9/api"}):  # nothing listens there
        with CorrectionStore.from_settings(settings) as store:
            for seed in range(3):
                intake.add_correction(store, settings, _png(seed), "0 0.5 0.5 0.2 0.2\n", image_name=f"{seed}.png")
            assert store.pending_count() == 3
        # not delivered, so still armed: the next submission (or a later one) tries again
        assert store.take_threshold_crossing(3) == 3


@pytest.mark.e2e
def test_threshold_event_reaches_a_real_prefect_server(settings, prefect_server):
    from prefect.client.orchestration import get_client

    def threshold_events() -> list[dict]:
        with get_client(sync_client=True) as client:
            body = {"filter": {"event": {"name": [intake.THRESHOLD_EVENT]}}, "limit": 50}
            return client.request("POST", "/events/filter", json=body).json()["events"]

    before = len(threshold_events())
    with CorrectionStore.from_settings(settings) as store:
        sent = [intake.add_correction(store, settings, _png(s), "0 0.5 0.5 0.2 0.2\n", image_name=f"{s}.png") for s in range(3)]
        assert len(sent) == 3
        assert store.take_threshold_crossing(3) is None  # delivered, so disarmed
    deadline = time.monotonic() + 30  # the server persists events asynchronously
    events = threshold_events()
    while len(events) == before and time.monotonic() < deadline:
        time.sleep(0.5)
        events = threshold_events()
    assert len(events) == before + 1
    assert max(events, key=lambda e: e["occurred"])["payload"] == {"pending": 3, "threshold": 3}


def _refuse_flag_writes(settings, when: str = "") -> None:
    """The database itself refuses the threshold flag's write (a trigger): a failure after the correction committed."""
    with CorrectionStore.from_settings(settings):  # the schema, as any first open makes it
        pass
    with sqlite3.connect(settings.home / "corrections.db") as db:
        db.execute(f"CREATE TRIGGER refuse_flag BEFORE UPDATE ON flags {when} BEGIN SELECT RAISE(ABORT, 'disk I/O error'); END")


def test_a_failed_threshold_check_after_the_commit_says_what_was_stored(settings, monkeypatch):
    from fastapi.testclient import TestClient
    from typer.testing import CliRunner

    from yolo_retrain.api import create_app
    from yolo_retrain.cli import app

    _refuse_flag_writes(settings)
    with TestClient(create_app(settings.model_copy(update={"retrain_threshold": 1})), base_url="http://127.0.0.1:8000") as client:
        files = {"image": ("a.png", _png(1), "image/png"), "labels": ("a.txt", b"0 0.5 0.5 0.2 0.2\n", "text/plain")}
        response = client.post("/corrections", files=files)
    assert response.status_code == 201, response.text  # stored: never "nothing was written, try again"
    body = response.json()
    assert body["correction"]["status"] == "pending" and body["pending"] == 1
    assert "stored" in body["announcement"] and "disk I/O error" in body["announcement"]
    assert "the next submission" in body["announcement"] and "nightly" in body["announcement"]

    image, labels = settings.home / "b.png", settings.home / "b.txt"
    image.write_bytes(_png(2))
    labels.write_text("1 0.5 0.5 0.2 0.2\n")
    use_home(monkeypatch, settings.home, retrain_threshold=1)
    result = CliRunner().invoke(app, ["corrections", "add", str(image), str(labels)])
    assert result.exit_code == 0, result.output
    assert "added " in result.stdout and "warning: stored" in result.stderr
    with CorrectionStore.from_settings(settings) as store:
        assert store.pending_count() == 2


def test_an_announcement_that_cannot_be_rearmed_says_who_picks_the_backlog_up(settings):
    from prefect.settings import PREFECT_API_URL, temporary_settings

    _refuse_flag_writes(settings, "WHEN NEW.value = 1")  # the crossing is taken; re-arming it fails
    with temporary_settings(restore_defaults={PREFECT_API_URL}):  # no Prefect server: the event cannot be sent
        with CorrectionStore.from_settings(settings) as store:
            first = [intake.add_correction(store, settings, _png(s), "0 0.5 0.5 0.2 0.2\n") for s in range(2)]
            third = intake.add_correction(store, settings, _png(2), "0 0.5 0.5 0.2 0.2\n")
            assert store.pending_count() == 3
    assert all(r.announcement.problem is None and not r.announcement.sent for r in first)  # below the threshold
    assert third.correction.status == "pending" and not third.announcement.sent
    problem = third.announcement.problem
    assert problem is not None and "3 corrections are pending (threshold 3)" in problem
    assert "no Prefect server configured" in problem and "could not be re-armed" in problem and "nightly retrain" in problem
