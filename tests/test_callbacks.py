"""The MLflow callback logs by explicit run id, also from another process that received it pickled — what
Ultralytics DDP does with callbacks (cloudpickled into each worker, which cannot see the parent's MLflow run)."""

from __future__ import annotations

import os
import subprocess
import sys

import cloudpickle
from conftest import use_home
from mlflow import MlflowClient

from yolo_retrain import tracking
from yolo_retrain.callbacks import mlflow_run
from yolo_retrain.synthetic import make_dataset

CHILD = """
import sys, cloudpickle
from yolo_retrain.config import configure_environment
configure_environment()  # our environment: Ultralytics config dir, offline
from ultralytics import YOLO
hooks = cloudpickle.loads(open(sys.argv[1], "rb").read())
model = YOLO("yolov8n.yaml")
for event, fn in hooks.items():
    model.add_callback(event, fn)
model.train(data=sys.argv[2], epochs=2, imgsz=32, batch=4, device="cpu", workers=0, project=sys.argv[3], name="ddp-like",
            plots=False, val=False, verbose=False)
"""


def test_pickled_callbacks_log_into_the_parents_run_from_another_process(monkeypatch, tmp_path):
    settings = use_home(monkeypatch, tmp_path)
    client = tracking.client_for(settings)
    experiment_id = tracking.create_experiment(client, settings)
    run_id = client.create_run(experiment_id).info.run_id
    data = make_dataset(tmp_path / "data", train=8, val=4, size=32)

    hooks_file = tmp_path / "hooks.pkl"
    hooks_file.write_bytes(cloudpickle.dumps(mlflow_run.callbacks(settings.tracking_uri, run_id)))
    child = subprocess.run(
        [sys.executable, "-c", CHILD, str(hooks_file), str(data.data_yaml), str(tmp_path / "runs")],
        capture_output=True, text=True, timeout=300,
    )
    assert child.returncode == 0, child.stderr[-3000:]

    history = MlflowClient(settings.tracking_uri).get_metric_history(run_id, "train/box_loss")
    assert sorted(m.step for m in history) == [0, 1]
    assert len(client.search_runs([experiment_id])) == 1  # no run of its own: it logged into ours


def test_only_rank_zero_logs_under_ddp(monkeypatch, tmp_path):
    settings = use_home(monkeypatch, tmp_path)
    client = tracking.client_for(settings)
    run_id = client.create_run(tracking.create_experiment(client, settings)).info.run_id
    data = make_dataset(tmp_path / "data", train=8, val=4, size=32)
    hooks_file = tmp_path / "hooks.pkl"
    hooks_file.write_bytes(cloudpickle.dumps(mlflow_run.callbacks(settings.tracking_uri, run_id)))
    child = subprocess.run(
        [sys.executable, "-c", CHILD, str(hooks_file), str(data.data_yaml), str(tmp_path / "runs")],
        capture_output=True, text=True, timeout=300, env={**os.environ, "RANK": "1"},  # as a second DDP worker
    )
    assert child.returncode == 0, child.stderr[-3000:]
    assert client.get_metric_history(run_id, "train/box_loss") == []
