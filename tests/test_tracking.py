"""MLflow setup against a real SQLite tracking store: the experiment is never created silently."""

import pytest
from conftest import use_home
from mlflow import MlflowClient

from yolo_retrain import tracking
from yolo_retrain.errors import TrackingSetupError


def test_missing_experiment_fails_and_says_to_run_init(monkeypatch, tmp_path):
    settings = use_home(monkeypatch, tmp_path)
    client = tracking.client_for(settings)
    with pytest.raises(TrackingSetupError, match="yolo-retrain init"):
        tracking.resolve_experiment(client, settings)
    assert client.get_experiment_by_name(settings.experiment_name) is None


def test_missing_experiment_id_fails(monkeypatch, tmp_path):
    settings = use_home(monkeypatch, tmp_path, experiment_id="424242")
    with pytest.raises(TrackingSetupError, match="ID '424242' does not exist"):
        tracking.resolve_experiment(tracking.client_for(settings), settings)


def test_init_creates_experiment_with_configured_artifact_location(monkeypatch, tmp_path):
    settings = use_home(monkeypatch, tmp_path)
    client = tracking.client_for(settings)
    experiment_id = tracking.create_experiment(client, settings)
    assert tracking.create_experiment(client, settings) == experiment_id  # idempotent
    assert client.get_experiment(experiment_id).artifact_location == settings.artifact_location
    assert tracking.resolve_experiment(client, settings) == experiment_id


def test_artifact_location_mismatch_names_both(monkeypatch, tmp_path):
    settings = use_home(monkeypatch, tmp_path)
    tracking.create_experiment(tracking.client_for(settings), settings)
    other = (tmp_path / "elsewhere").as_uri()
    moved = use_home(monkeypatch, tmp_path, artifact_location=other)
    with pytest.raises(TrackingSetupError) as excinfo:
        tracking.resolve_experiment(tracking.client_for(moved), moved)
    assert settings.artifact_location in str(excinfo.value) and other in str(excinfo.value)


def test_retried_setup_resumes_the_same_run(monkeypatch, tmp_path):
    settings = use_home(monkeypatch, tmp_path)
    client = tracking.client_for(settings)
    experiment_id = tracking.create_experiment(client, settings)
    params = {"epochs": 1, "dataset_digest": "aa"}
    first = tracking.start_retrain_run(client, experiment_id, "flow-run-1", {"trigger": "manual"}, params)
    tracking.end_run(client, first, "FAILED", "boom")
    again = tracking.start_retrain_run(client, experiment_id, "flow-run-1", {"trigger": "manual"}, params)
    assert again == first
    assert client.get_run(first).info.status == "RUNNING"
    assert len(MlflowClient(settings.tracking_uri).search_runs([experiment_id])) == 1
    run = client.get_run(first)
    assert run.data.tags["type"] == "retraining" and run.data.tags["prefect.flow_run_id"] == "flow-run-1"

    # A run's parameters describe what it trained on: an attempt whose inputs changed meanwhile (corrections arrived,
    # another dataset digest) gets a run of its own, and no attempt reopens a finished run.
    tracking.end_run(client, first, "FAILED", "boom")
    other = tracking.start_retrain_run(client, experiment_id, "flow-run-1", {}, {"epochs": 1, "dataset_digest": "bb"})
    assert other != first and client.get_run(first).info.status == "FAILED"
    assert client.get_run(other).data.tags["previous_attempt_run_ids"] == first
    tracking.end_run(client, other, "FINISHED")
    again = tracking.start_retrain_run(client, experiment_id, "flow-run-1", {}, {"epochs": 1, "dataset_digest": "bb"})
    assert again not in (first, other) and client.get_run(other).info.status == "FINISHED"

