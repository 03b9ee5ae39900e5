"""End to end: the real flow on a real Prefect server, real MLflow (SQLite), real tiny Ultralytics trainings."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from mlflow import MlflowClient
from typer.testing import CliRunner
from ultralytics import YOLO

from conftest import use_home
from flows.retrain import retrain
from yolo_retrain import registry, tracking
from yolo_retrain.cli import app
from yolo_retrain.config import Settings
from yolo_retrain.errors import TrackingSetupError
from yolo_retrain.store import Correction, CorrectionStore
from yolo_retrain.summary import RetrainReport
from yolo_retrain.synthetic import SyntheticDataset, make_dataset

TINY = {"epochs": 1, "imgsz": 64, "batch": 8}


@dataclass
class World:
    settings: Settings
    data: SyntheticDataset
    baseline: RetrainReport
    report: RetrainReport
    corrections: list[Correction]

    @property
    def client(self) -> MlflowClient:
        return tracking.client_for(self.settings)

    def run(self, run_id: str):
        return self.client.get_run(run_id)


def _import_corrections(settings: Settings, data: SyntheticDataset) -> list[Correction]:
    with CorrectionStore.from_settings(settings) as store:
        return store.import_dir(data.corrections_dir, author="test")


@pytest.fixture(scope="module")
def world(prefect_server, tmp_path_factory) -> World:
    """init → baseline champion → corrections → one retrain, shared by the assertions below."""
    home = tmp_path_factory.mktemp("e2e")
    with pytest.MonkeyPatch.context() as mp:
        settings = use_home(mp, home, **TINY)
        data = make_dataset(home / "demo", train=24, val=12, size=64)
        result = CliRunner().invoke(app, ["init", "--no-train-baseline"])
        assert result.exit_code == 0, result.output
        baseline = retrain(trigger="baseline", force=True)
        corrections = _import_corrections(settings, data)
        report = retrain(trigger="manual")
        yield World(settings, data, baseline, report, corrections)


def _artifact_paths(client: MlflowClient, run_id: str, path: str | None = None) -> set[str]:
    found = set()
    for item in client.list_artifacts(run_id, path):
        found |= _artifact_paths(client, run_id, item.path) if item.is_dir else {item.path}
    return found


def test_baseline_becomes_the_first_champion(world):
    assert world.baseline.outcome == "promoted" and world.baseline.version == "1"
    assert world.baseline.pre is None  # nothing to compare against yet


def test_retrain_run_is_fully_recorded(world):
    run = world.run(world.report.run_id)
    assert run.info.status == "FINISHED"
    tags = run.data.tags
    assert tags["type"] == "retraining" and tags["trigger"] == "manual"
    assert tags["experiment_id"] == run.info.experiment_id
    assert tags["corrections_count"] == str(len(world.corrections)) and len(world.corrections) > 0
    assert tags["prefect.flow_run_id"]
    assert tags["dataset_digest"] == world.report.dataset_digest

    artifacts = _artifact_paths(world.client, run.info.run_id)
    for name in ("corrections_applied.json", "retraining_dataset_metadata.json", "data.yaml", "manifest.json"):
        assert f"dataset/{name}" in artifacts
    assert {"training/results.csv", "training/args.yaml", "training/weights/best.pt"} <= artifacts
    assert "training/plots/results.png" in artifacts

    (dataset_input,) = run.inputs.dataset_inputs
    assert dataset_input.dataset.digest == world.report.dataset_digest[: tracking.MLFLOW_DIGEST_LENGTH]

    metrics = run.data.metrics
    for prefix in ("pre", "post"):
        for name in ("mAP50", "mAP50-95", "precision", "recall", "AP50-95_square", "AP50-95_circle"):
            assert f"{prefix}_{name}" in metrics
    assert metrics["post_mAP50-95"] == pytest.approx(world.report.post.map50_95)
    # per-epoch training metrics went into this same run, not a run of Ultralytics' own
    assert world.client.get_metric_history(run.info.run_id, "train/box_loss")
    assert [e.name for e in world.client.search_experiments()] == [world.settings.experiment_name, "Default"]
    assert len(world.client.search_runs([run.info.experiment_id])) == 2  # baseline + retrain, no strays


def test_corrections_applied_json_lists_exactly_the_claimed_corrections(world, tmp_path):
    local = world.client.download_artifacts(world.report.run_id, "dataset/corrections_applied.json", str(tmp_path))
    applied = json.loads(Path(local).read_text())
    assert sorted(item["id"] for item in applied) == sorted(c.id for c in world.corrections)


def test_registered_version_carries_its_lineage_and_the_gate_decision(world):
    version = world.client.get_model_version(world.settings.model_name, world.report.version)
    assert version.run_id == world.report.run_id
    tags = version.tags
    assert tags["dataset_digest"] == world.report.dataset_digest
    assert tags["corrections_count"] == str(len(world.corrections))
    assert tags["parent_version"] == world.baseline.version
    assert {"pre_mAP50-95", "post_mAP50-95", "weights_sha256"} <= set(tags)
    alias = "champion" if world.report.outcome == "promoted" else "challenger"
    assert tags["gate_decision"] == ("promoted" if alias == "champion" else "rejected")
    assert str(registry.version_by_alias(world.client, world.settings.model_name, alias).version) == world.report.version


def test_local_model_file_matches_the_registry_and_validates(world):
    path = world.settings.models_dir / f"retrained_v{world.report.version}.pt"
    version = world.client.get_model_version(world.settings.model_name, world.report.version)
    assert registry.sha256_file(path) == version.tags["weights_sha256"]
    metrics = YOLO(str(path)).val(data=str(world.data.data_yaml), imgsz=64, batch=8, device="cpu", plots=False, verbose=False)
    assert 0.0 <= metrics.box.map <= 1.0
    champion = registry.version_by_alias(world.client, world.settings.model_name, "champion")
    assert registry.sha256_file(world.settings.champion_weights) == champion.tags["weights_sha256"]


def test_corrections_are_applied_with_the_version(world):
    with CorrectionStore.from_settings(world.settings) as store:
        stored = [store.get(c.id) for c in world.corrections]
    assert {c.status for c in stored} == {"applied"}
    assert {c.applied_version for c in stored} == {world.report.version}


def test_champion_loads_as_pyfunc_and_predicts_boxes(world):
    mlflow.set_tracking_uri(world.settings.tracking_uri)
    model = mlflow.pyfunc.load_model(f"models:/{world.settings.model_name}@champion")
    images = sorted((world.data.data_yaml.parent / "images" / "val").glob("*.png"))[:2]
    boxes = model.predict(pd.DataFrame({"image": [str(p) for p in images]}))
    assert list(boxes.columns) == ["image", "class_id", "class_name", "confidence", "x1", "y1", "x2", "y2"]
    assert set(boxes["image"]) <= {0, 1}


def test_no_pending_corrections_skips_without_an_mlflow_run(world):
    before = len(world.client.search_runs([world.run(world.report.run_id).info.experiment_id]))
    report = retrain(trigger="schedule")
    assert report.outcome == "skipped" and report.run_id is None
    assert len(world.client.search_runs([world.run(world.report.run_id).info.experiment_id])) == before


def test_rollback_moves_alias_and_local_file(world):
    client, name = world.client, world.settings.model_name
    current = registry.version_by_alias(client, name, "champion")
    result = CliRunner().invoke(app, ["rollback", "--to", world.baseline.version])
    assert result.exit_code == 0, result.output
    v1 = client.get_model_version(name, world.baseline.version)
    assert str(registry.version_by_alias(client, name, "champion").version) == world.baseline.version
    assert registry.sha256_file(world.settings.champion_weights) == v1.tags["weights_sha256"]
    # and forward again, so the shared world stays as it was
    assert CliRunner().invoke(app, ["rollback", "--to", str(current.version)]).exit_code == 0
    assert registry.version_by_alias(client, name, "champion").version == current.version


def _fresh_home(monkeypatch, tmp_path, **env) -> tuple[Settings, list[Correction]]:
    settings = use_home(monkeypatch, tmp_path, **TINY, **env)
    data = make_dataset(tmp_path / "demo", train=8, val=4, size=64)
    return settings, _import_corrections(settings, data)


def _pending(settings: Settings) -> int:
    with CorrectionStore.from_settings(settings) as store:
        return store.pending_count()


def test_failed_training_leaves_run_failed_and_corrections_pending(prefect_server, monkeypatch, tmp_path):
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a model")
    settings, corrections = _fresh_home(monkeypatch, tmp_path, base_model=corrupt)
    client = tracking.client_for(settings)
    experiment_id = tracking.create_experiment(client, settings)

    with pytest.raises(Exception):
        retrain(trigger="manual")

    (run,) = client.search_runs([experiment_id])
    assert run.info.status == "FAILED"
    assert run.data.tags["failure_reason"]
    assert _pending(settings) == len(corrections)
    assert client.search_model_versions(f"name = '{settings.model_name}'") == []


def test_missing_experiment_fails_cleanly_and_creates_nothing(prefect_server, monkeypatch, tmp_path):
    settings, corrections = _fresh_home(monkeypatch, tmp_path)
    with pytest.raises(TrackingSetupError, match="yolo-retrain init"):
        retrain(trigger="manual")
    assert tracking.client_for(settings).get_experiment_by_name(settings.experiment_name) is None
    assert _pending(settings) == len(corrections)
