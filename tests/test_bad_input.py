"""Bad input, refused with an error naming the input and the reason, with nothing stored or changed.

Only what tests/test_labels.py, test_store.py, test_dataset.py, test_tracking.py and test_api.py do not cover
yet: refusals at the store (nothing stored) for the cases those test only in the validators, and refusals by
the real flow (base data.yaml, artifact location, unreachable tracking server, champion weights).
"""

from __future__ import annotations

import io
import struct
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY, import_corrections, use_home
from fastapi.testclient import TestClient
from mlflow import MlflowClient
from PIL import Image
from typer.testing import CliRunner
from ultralytics import YOLO

from flows.retrain import retrain
from yolo_retrain import labels, registry, tracking
from yolo_retrain.api import create_app
from yolo_retrain.cli import app
from yolo_retrain.config import Settings
from yolo_retrain.errors import InvalidInput, RetrainError, TrackingSetupError
from yolo_retrain.hashing import file_sha256
from yolo_retrain.store import CorrectionStore
from yolo_retrain.synthetic import make_dataset, untrained_weights

BOX = "0 0.5 0.5 0.25 0.25\n"


def png(seed: int, size: tuple[int, int] = (40, 30)) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "PNG")
    return buf.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG declaring ``width`` x ``height`` with no pixel data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
        + chunk(b"IEND", b"")
    )


def too_wide_png() -> bytes:
    buf = io.BytesIO()
    Image.new("L", (labels.MAX_IMAGE_SIDE + 1, 1)).save(buf, "PNG")
    return buf.getvalue()


def blobs(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


# corrections refused by the store: no row, no blob -----------------------------------------------------------

STORE_REFUSALS = {
    # (image, labels, message): each case is checked by the validators' own tests; here, that nothing is stored
    "zero-size image": (png_header_only(0, 10), BOX, "a.png: corrupt PNG image"),
    "absurdly large image": (too_wide_png(), BOX, "a.png: image too large (20001x1"),
    "decompression bomb": (png_header_only(19_000, 19_000), BOX, "a.png: image too large"),
    "pdf, not an image": (b"%PDF-1.4\n" + b"0" * 200, BOX, "a.png: not an image"),
    "empty file": (b"", BOX, "a.png: not an image"),
    "non-numeric class": (png(1), "cat 0.5 0.5 0.2 0.2\n", "labels of a.png:1: class must be an integer"),
    "non-numeric coordinate": (png(1), "0 0.5 abc 0.2 0.2\n", "labels of a.png:1: cy must be a number, got 'abc'"),
    "inf": (png(1), BOX + "0 0.5 0.5 inf 0.2\n", "labels of a.png:2: w must be a normalised coordinate"),
    "negative class": (png(1), "-1 0.5 0.5 0.2 0.2\n", "labels of a.png:1: class -1 out of range"),
    "coordinate below 0": (png(1), "0 -0.1 0.5 0.2 0.2\n", "labels of a.png:1: cx must be a normalised coordinate"),
    "zero-size box": (png(1), "0 0.5 0.5 0.2 0\n", "labels of a.png:1: box must have positive width and height"),
    "too many fields": (png(1), "0 0.5 0.5 0.2 0.2 0.9\n", "labels of a.png:1: expected 5 fields"),
}


@pytest.mark.parametrize("case", STORE_REFUSALS)
def test_store_refuses_bad_correction_and_stores_nothing(tmp_path: Path, case: str) -> None:
    image, text, message = STORE_REFUSALS[case]
    with CorrectionStore(f"sqlite:///{tmp_path / 'c.db'}", tmp_path / "blobs", ["square", "circle"]) as store:
        store.add(png(99), BOX, image_name="existing.png")
        before = (store.list(), blobs(tmp_path / "blobs"))
        with pytest.raises(InvalidInput) as refused:
            store.add(image, text, image_name="a.png")
        assert message in str(refused.value)
        assert (store.list(), blobs(tmp_path / "blobs")) == before


def test_empty_label_file_is_an_image_without_objects(tmp_path: Path) -> None:
    """Not bad input: an empty label file says the image has no objects (a legitimate correction)."""
    (tmp_path / "in" / "images").mkdir(parents=True)
    (tmp_path / "in" / "labels").mkdir()
    (tmp_path / "in" / "images" / "empty.png").write_bytes(png(3))
    (tmp_path / "in" / "labels" / "empty.txt").write_text("")
    with CorrectionStore(f"sqlite:///{tmp_path / 'c.db'}", tmp_path / "blobs", ["square", "circle"]) as store:
        (stored,) = store.import_dir(tmp_path / "in")
    assert (stored.num_boxes, stored.label_text, stored.status) == (0, "", "pending")


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("../../etc/cron.d/a.png", "path traversal ('..') is not allowed in file names"),
        ("..\\..\\a.png", "path traversal ('..') is not allowed in file names"),
        ("/etc/a.png", "absolute paths are not allowed as file names"),
    ],
)
def test_api_refuses_path_traversal_in_the_uploaded_file_name(
    monkeypatch, tmp_path: Path, name: str, reason: str
) -> None:
    data_yaml = tmp_path / "base" / "data.yaml"
    data_yaml.parent.mkdir()
    data_yaml.write_text("path: .\ntrain: images\nval: images\nnames: [square, circle]\n")
    settings = use_home(monkeypatch, tmp_path / "home", base_data=data_yaml)
    with TestClient(create_app(settings), base_url="http://127.0.0.1:8000") as client:
        files = {"image": (name, png(1), "image/png"), "labels": ("a.txt", BOX.encode(), "text/plain")}
        response = client.post("/corrections", files=files)
        stats = client.get("/corrections/stats").json()
    assert response.status_code == 422, response.text
    assert response.json()["detail"] == f"{name!r}: {reason}"
    assert stats["total"] == 0 and blobs(settings.corrections_dir) == []
    assert not list(tmp_path.rglob("cron.d"))


# bad setup, refused by the real flow ---------------------------------------------------------------------------


def fresh_home(monkeypatch, tmp_path: Path, **env) -> tuple[Settings, list]:
    """A home with the experiment created (no champion) and pending corrections."""
    settings = use_home(monkeypatch, tmp_path / "home", **TINY, **env)
    data = make_dataset(settings.home / "demo", train=8, val=4, size=64)
    result = CliRunner().invoke(app, ["init", "--no-train-baseline"])
    assert result.exit_code == 0, result.output
    return settings, import_corrections(settings, data)


def pending(settings: Settings) -> int:
    with CorrectionStore.from_settings(settings) as store:
        return store.pending_count()


def runs(settings: Settings) -> list:
    client = tracking.client_for(settings)
    return client.search_runs([e.experiment_id for e in client.search_experiments()])


BAD_BASE_DATA = {
    # content written over data.yaml (None: deleted), and the reason
    "missing": (None, "cannot read dataset config"),
    "invalid YAML": ("train: [unclosed\n", "not valid YAML"),
    "missing folders": ("path: .\ntrain: images/gone\nval: images/val\nnames: [square, circle]\n", "images/gone"),
}


@pytest.mark.e2e
@pytest.mark.parametrize("case", BAD_BASE_DATA)
def test_bad_base_data_yaml_is_refused_and_nothing_is_lost(prefect_server, monkeypatch, tmp_path, case):
    settings, corrections = fresh_home(monkeypatch, tmp_path)
    content, reason = BAD_BASE_DATA[case]
    if content is None:
        settings.base_data.unlink()
    else:
        settings.base_data.write_text(content)

    with pytest.raises(InvalidInput, match=reason) as refused:
        retrain(trigger="manual")
    assert str(settings.base_data) in str(refused.value)

    # refused before any MLflow run is opened: unreadable by the store (it reads the class names from it),
    # missing folders by the dataset build, which runs before MLflow is touched. Nothing registered.
    assert runs(settings) == []
    assert tracking.client_for(settings).search_registered_models() == []
    make_dataset(settings.home / "demo", train=8, val=4, size=64)  # a valid data.yaml again, to count
    assert pending(settings) == len(corrections)


@pytest.mark.e2e
def test_artifact_location_mismatch_stops_the_flow_before_any_run(prefect_server, monkeypatch, tmp_path):
    settings, corrections = fresh_home(monkeypatch, tmp_path)
    moved = use_home(monkeypatch, settings.home, **TINY, artifact_location=(tmp_path / "elsewhere").as_uri())
    with pytest.raises(TrackingSetupError) as refused:
        retrain(trigger="manual")
    assert settings.artifact_location in str(refused.value) and moved.artifact_location in str(refused.value)
    assert runs(moved) == []
    assert pending(moved) == len(corrections)
    assert not (tmp_path / "elsewhere").exists()


@pytest.mark.e2e
def test_unreachable_tracking_server_fails_fast_naming_it(prefect_server, monkeypatch, tmp_path):
    settings, corrections = fresh_home(monkeypatch, tmp_path)
    down = use_home(
        monkeypatch, settings.home, **TINY, tracking_uri="http://127.0.0.1:9"
    )  # discard port: nothing listens

    started = time.monotonic()
    with pytest.raises(TrackingSetupError) as refused:
        tracking.resolve_experiment(tracking.client_for(down), down)
    assert time.monotonic() - started < 15  # MLflow's own retries would take about 4 minutes
    assert "MLflow tracking server at http://127.0.0.1:9 is not reachable" in str(refused.value)

    started = time.monotonic()
    with pytest.raises(TrackingSetupError, match="http://127.0.0.1:9 is not reachable"):
        retrain(trigger="manual")
    assert time.monotonic() - started < 30
    assert pending(down) == len(corrections)  # nothing claimed, nothing lost


# champion weights that do not match the registry ------------------------------------------------------------------


@pytest.mark.e2e
def test_altered_champion_weights_are_refetched_or_refused(prefect_server, monkeypatch, tmp_path):
    settings = use_home(monkeypatch, tmp_path / "home", **TINY)
    data = make_dataset(settings.home / "demo", train=8, val=4, size=64)
    weights = tmp_path / "init.pt"
    untrained_weights(weights)  # a real checkpoint of the data's classes, untrained: no training needed
    result = CliRunner().invoke(app, ["init", "--weights", str(weights)])
    assert result.exit_code == 0, result.output
    client: MlflowClient = tracking.client_for(settings)
    version = registry.version_by_alias(client, settings.model_name, "champion")
    expected = version.tags["weights_sha256"]
    local = registry.local_weights_path(settings, version.version)

    # the local copy altered: fetched again from MLflow, and it matches
    local.write_bytes(local.read_bytes()[:1000])
    champion = registry.current_champion(client, settings)
    assert champion.weights == local and file_sha256(local) == expected
    assert YOLO(str(champion.weights)).model is not None

    # the MLflow copy altered too: refused, nothing loaded or replaced
    (stored,) = [p for p in (settings.home / "mlartifacts").rglob("*.pt")]
    stored.write_bytes(b"not the registered weights")
    local.write_bytes(b"corrupt")
    with pytest.raises(RetrainError, match=f"version {version.version} do not match weights_sha256 {expected}"):
        registry.current_champion(client, settings)
    assert local.read_bytes() == b"corrupt"

    # and a retrain refuses to start from them: run FAILED with the reason, corrections pending, alias unmoved
    corrections = import_corrections(settings, data)
    champion_file = file_sha256(settings.champion_weights)
    with pytest.raises(RetrainError, match="refusing to load them"):
        retrain(trigger="manual")
    (run,) = [r for r in runs(settings) if r.data.tags.get("type") == "retraining"]
    assert run.info.status == "FAILED" and "refusing to load them" in run.data.tags["failure_reason"]
    assert pending(settings) == len(corrections)
    assert registry.version_by_alias(client, settings.model_name, "champion").version == version.version
    assert len(client.search_model_versions(f"name = '{settings.model_name}'")) == 1
    assert file_sha256(settings.champion_weights) == champion_file == expected
