"""The threshold announcement: counted by the store, one event per backlog, nothing lost when Prefect is down."""

from __future__ import annotations

import io
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
