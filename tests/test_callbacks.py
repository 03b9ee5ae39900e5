"""The MLflow callback logs by explicit run id, also from another process that received it pickled — what
Ultralytics DDP does with callbacks (cloudpickled into each worker, which cannot see the parent's MLflow run)."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass

import cloudpickle
import pytest
from conftest import seed_mlflow_database
from mlflow import MlflowClient

from yolo_retrain import tracking
from yolo_retrain.callbacks import mlflow_run
from yolo_retrain.config import Settings
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


@dataclass
class Child:
    """A child process that received our callbacks pickled and trained two epochs, and the run they name."""

    settings: Settings
    experiment_id: str
    run_id: str
    result: subprocess.CompletedProcess

    @property
    def client(self) -> MlflowClient:
        return tracking.client_for(self.settings)


@pytest.fixture(scope="module")
def children(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Child]:
    """Two children, started at once (they share nothing and spend most of their time importing): one as a
    single process, one as DDP rank 1."""
    started = {}
    for name, rank in (("single", None), ("rank1", "1")):
        root = tmp_path_factory.mktemp(f"callbacks-{name}")
        settings = Settings(home=root / "home")
        seed_mlflow_database(settings.home / "mlflow.db")
        client = tracking.client_for(settings)
        experiment_id = tracking.create_experiment(client, settings)
        run_id = client.create_run(experiment_id).info.run_id
        data = make_dataset(root / "data", train=8, val=4, size=32)
        hooks_file = root / "hooks.pkl"
        hooks_file.write_bytes(cloudpickle.dumps(mlflow_run.callbacks(settings.tracking_uri, run_id)))
        env = {**os.environ, "YOLO_RETRAIN_HOME": str(settings.home), **({"RANK": rank} if rank else {})}
        proc = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(hooks_file), str(data.data_yaml), str(root / "runs")],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        )  # fmt: skip
        started[name] = (settings, experiment_id, run_id, proc)
    done = {}
    for name, (settings, experiment_id, run_id, proc) in started.items():
        out, err = proc.communicate(timeout=300)
        done[name] = Child(settings, experiment_id, run_id, subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
    return done


def test_pickled_callbacks_log_into_the_parents_run_from_another_process(children):
    child = children["single"]
    assert child.result.returncode == 0, child.result.stderr[-3000:]
    history = MlflowClient(child.settings.tracking_uri).get_metric_history(child.run_id, "train/box_loss")
    assert sorted(m.step for m in history) == [0, 1]
    assert len(child.client.search_runs([child.experiment_id])) == 1  # no run of its own: it logged into ours


def test_only_rank_zero_logs_under_ddp(children):
    child = children["rank1"]  # as a second DDP worker
    assert child.result.returncode == 0, child.result.stderr[-3000:]
    assert child.client.get_metric_history(child.run_id, "train/box_loss") == []
