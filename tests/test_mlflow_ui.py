"""What MLflow's UI shows, read through the REST endpoints its pages call, from a real `mlflow server` over the
shared world's store: the experiment's kind, the run's logged model, the model's metrics, the version's source."""

from __future__ import annotations

import os
from collections.abc import Iterator

import httpx
import pytest
from conftest import World

from yolo_retrain import processes, registry, tracking

UI_API = "/ajax-api/2.0/mlflow"  # the prefix of the calls MLflow's web pages make

pytestmark = pytest.mark.e2e  # the shared world: a Prefect server


@pytest.fixture(scope="module")
def ui(world: World, tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    """`mlflow ui`'s server on the world's tracking store (read only by these tests)."""
    port = processes.free_port()
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}  # no MLflow jobs: a faster start
    cmd = [
        str(processes.BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
        "--backend-store-uri", world.settings.tracking_uri,
    ]  # fmt: skip
    with processes.ProcessGroup(env, log_dir=tmp_path_factory.mktemp("mlflow-ui")) as group:
        group.start("mlflow-ui", cmd)
        processes.wait_healthy(f"http://127.0.0.1:{port}/health", timeout=120)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}{UI_API}", timeout=30) as client:
            yield client


def _get(client: httpx.Client, path: str, **params: str) -> dict:
    response = client.get(path, params=params)
    assert response.status_code == 200, response.text
    return response.json()


def test_experiment_opens_as_a_custom_model_experiment(ui, world):
    run = world.run(world.report.run_id)
    experiment = _get(ui, "/experiments/get", experiment_id=run.info.experiment_id)["experiment"]
    tags = {t["key"]: t["value"] for t in experiment["tags"]}
    assert tags[tracking.EXPERIMENT_KIND_TAG] == tracking.CUSTOM_MODEL_KIND  # not the GenAI (traces) view


def test_run_page_lists_its_logged_model_and_dataset(ui, world):
    run = _get(ui, "/runs/get", run_id=world.report.run_id)["run"]
    (output,) = run["outputs"]["model_outputs"]  # the run page's "Logged models"
    version = world.client.get_model_version(world.settings.model_name, world.report.version)
    assert output["model_id"] == registry.logged_model_id(version)
    (dataset,) = run["inputs"]["dataset_inputs"]
    assert dataset["dataset"]["digest"] == world.report.dataset_digest[: tracking.MLFLOW_DIGEST_LENGTH]


def test_model_page_shows_the_holdout_metrics_on_the_dataset(ui, world):
    model_id = registry.logged_model_id(world.client.get_model_version(world.settings.model_name, world.report.version))
    model = _get(ui, f"/logged-models/{model_id}")["model"]
    assert model["info"]["source_run_id"] == world.report.run_id
    assert model["info"]["status"] == "LOGGED_MODEL_READY"
    metrics = {m["key"]: m for m in model["data"]["metrics"]}
    assert metrics["post_mAP50-95"]["value"] == pytest.approx(world.report.post.map50_95)
    assert metrics["pre_mAP50-95"]["value"] == pytest.approx(world.report.pre.map50_95)
    assert metrics["post_mAP50-95"]["dataset_digest"] == world.report.dataset_digest[: tracking.MLFLOW_DIGEST_LENGTH]
    # the experiment's "Models" tab
    found = ui.post("/logged-models/search", json={"experiment_ids": [model["info"]["experiment_id"]]})
    assert found.status_code == 200, found.text
    assert model_id in {m["info"]["model_id"] for m in found.json()["models"]}


def test_registry_version_points_at_the_logged_model(ui, world):
    version = _get(ui, "/model-versions/get", name=world.settings.model_name, version=world.report.version)
    version = version["model_version"]
    run = _get(ui, "/runs/get", run_id=world.report.run_id)["run"]
    (output,) = run["outputs"]["model_outputs"]
    assert version["source"] == f"models:/{output['model_id']}" and version["run_id"] == world.report.run_id
    tags = {t["key"] for t in version.get("tags", [])}
    assert not {t for t in tags if t.startswith(("pre_", "post_"))}
