"""Deployments end to end on a real `prefect server` on loopback (not the ephemeral one), deployed from
prefect.yaml, executed by a real `prefect worker`, with corrections submitted over HTTP to the intake."""

from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from conftest import seed_prefect_database
from prefect.client.orchestration import SyncPrefectClient
from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
from prefect.client.schemas.objects import FlowRun
from prefect.client.schemas.sorting import FlowRunSort

from yolo_retrain import processes
from yolo_retrain.config import PROJECT_ROOT, Settings
from yolo_retrain.store import CorrectionStore
from yolo_retrain.synthetic import make_dataset

pytestmark = pytest.mark.e2e

BIN = processes.BIN
DEPLOYMENT = "retrain/yolo-retrain"
THRESHOLD = 2


@dataclass
class Stack:
    env: dict[str, str]
    api_url: str
    intake_url: str
    settings: Settings
    corrections: list[tuple[Path, Path]]

    def prefect(self) -> SyncPrefectClient:
        return SyncPrefectClient(self.api_url)

    def deployment_id(self):
        with self.prefect() as client:
            return client.read_deployment_by_name(DEPLOYMENT).id

    def flow_runs(self) -> list[FlowRun]:
        """The deployment's runs, oldest first, without the nightly ones scheduled for later."""
        with self.prefect() as client:
            runs = client.read_flow_runs(
                deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[self.deployment_id()])),
                sort=FlowRunSort.EXPECTED_START_TIME_ASC,
            )
        return [r for r in runs if r.parameters.get("trigger") != "schedule"]

    def submit(self, image: Path, labels: Path) -> httpx.Response:
        files = {"image": (image.name, image.read_bytes(), "image/png"), "labels": (labels.name, labels.read_bytes(), "text/plain")}
        return httpx.post(f"{self.intake_url}/corrections", files=files, timeout=30)

    def store(self) -> CorrectionStore:
        return CorrectionStore.from_settings(self.settings)


def _run(cmd: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, env=env, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=180)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    home = tmp_path_factory.mktemp("deployments")
    prefect_port, intake_port = processes.free_port(), processes.free_port()
    api_url = f"http://127.0.0.1:{prefect_port}/api"
    env = {
        **os.environ,
        "PREFECT_HOME": str(home / "prefect"),
        "PREFECT_API_URL": api_url,
        "PREFECT_WORKER_QUERY_SECONDS": "1",
        # A run queued behind the concurrency limit is tried again after 1 s, not Prefect's 30 s: the second
        # threshold retrain starts as soon as the first ends (the limit itself is what the test checks).
        "PREFECT_SERVER_DEPLOYMENTS_CONCURRENCY_SLOT_WAIT_SECONDS": "1",
        "YOLO_RETRAIN_HOME": str(home),
        "YOLO_RETRAIN_EPOCHS": "1",
        "YOLO_RETRAIN_BATCH": "8",
        "YOLO_RETRAIN_PLOTS": "false",
        "YOLO_RETRAIN_RETRAIN_THRESHOLD": str(THRESHOLD),
        "YOLO_RETRAIN_API_PORT": str(intake_port),
    }
    data = make_dataset(home / "demo", train=16, val=8, size=64, seed=3)
    seed_prefect_database(home / "prefect" / "prefect.db")
    with processes.ProcessGroup(env, log_dir=home / "logs") as group:
        group.start("server", processes.prefect_server(prefect_port))
        processes.wait_healthy(f"{api_url}/health", timeout=120)
        group.run([str(BIN / "yolo-retrain"), "init", "--no-train-baseline"])
        group.run([str(BIN / "prefect"), "work-pool", "create", processes.WORK_POOL, "--type", "process"])
        group.run([str(BIN / "prefect"), "--no-prompt", "deploy", "--name", "yolo-retrain"])
        group.start("worker", processes.worker())
        group.start("intake", processes.intake())
        intake_url = f"http://127.0.0.1:{intake_port}"
        processes.wait_healthy(f"{intake_url}/health", timeout=60)
        images = sorted((data.corrections_dir / "images").glob("*.png"))
        pairs = [(p, data.corrections_dir / "labels" / f"{p.stem}.txt") for p in images]
        assert len(pairs) >= 2 * THRESHOLD
        yield Stack(env, api_url, intake_url, Settings(home=home, base_data=data.data_yaml), pairs)


def _finished(stack: Stack, count: int, timeout: float = 180) -> list[FlowRun]:
    def done():
        runs = stack.flow_runs()
        return runs if len(runs) >= count and all(r.state.is_final() for r in runs) else None

    return processes.wait_for(done, timeout, f"{count} finished flow runs")


def test_deployment_from_prefect_yaml_reads_back(stack):
    with stack.prefect() as client:
        deployment = client.read_deployment_by_name(DEPLOYMENT)
        automations = client.read_resource_related_automations(f"prefect.deployment.{deployment.id}")
    (schedule,) = deployment.schedules
    assert schedule.schedule.cron == "0 2 * * *" and schedule.schedule.timezone == "UTC"
    assert schedule.parameters == {"trigger": "schedule"} and schedule.active
    assert deployment.global_concurrency_limit.limit == 1
    (automation,) = automations
    assert automation.trigger.expect == {"yolo-retrain.corrections.threshold-reached"}
    assert automation.trigger.threshold == 1
    assert automation.actions[0].parameters == {"trigger": "corrections-threshold"}
    properties = deployment.parameter_openapi_schema["properties"]
    assert all(p.get("description") for p in properties.values())  # the UI's run form explains each one
    assert properties["epochs"]["anyOf"][0]["minimum"] == 1


def test_manual_run_with_params_works_and_invalid_params_are_refused(stack):
    before = {r.id for r in stack.flow_runs()}  # runs of other tests (any order): not this test's
    refused = _run([str(BIN / "prefect"), "deployment", "run", DEPLOYMENT, "--param", "epochs=0"], stack.env)
    assert refused.returncode != 0 and "epochs" in refused.stdout + refused.stderr
    assert {r.id for r in stack.flow_runs()} == before  # refused: no flow run created

    ok = _run([str(BIN / "prefect"), "deployment", "run", DEPLOYMENT, "--param", "min_corrections=1000"], stack.env)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    (run,) = [r for r in _finished(stack, len(before) + 1) if r.id not in before]
    assert run.state.is_completed() and run.parameters["min_corrections"] == 1000
    # the parameter took effect: fewer than 1000 pending corrections, so the retrain skipped without an MLflow run
    from yolo_retrain import tracking

    client = tracking.client_for(stack.settings)
    experiment_id = tracking.resolve_experiment(client, stack.settings)
    assert client.search_runs([experiment_id], f"tags.`prefect.flow_run_id` = '{run.id}'") == []


def test_threshold_crossings_over_http_start_retrains_that_never_overlap_and_apply_each_batch(stack):
    """Two crossings, the second while the first retrain runs: two triggered retrains, one after the other, each
    with its own batch (the first batch is in the second dataset as an earlier, accepted one if promoted)."""
    from yolo_retrain import tracking

    before = len(stack.flow_runs())
    batches: list[list[str]] = [[], []]
    for image, labels in stack.corrections[:THRESHOLD]:
        response = stack.submit(image, labels)
        assert response.status_code == 201, response.text
        batches[0].append(response.json()["correction"]["id"])
    crossed_at = time.monotonic()

    def claimed():
        with stack.store() as store:
            return store.stats()["claimed"] > 0

    processes.wait_for(claimed, 90, "the first retrain to claim its corrections")
    for image, labels in stack.corrections[THRESHOLD : 2 * THRESHOLD]:  # the second crossing, during the first retrain
        batches[1].append(stack.submit(image, labels).json()["correction"]["id"])
    runs = _finished(stack, before + 2, timeout=240)[before:]
    gap = (runs[1].start_time - runs[0].end_time).total_seconds() if runs[0].end_time and runs[1].start_time else None
    print(f"first threshold request -> second flow run finished in {time.monotonic() - crossed_at:.1f} s; {gap} s between")

    assert [r.state.is_completed() for r in runs] == [True, True], [r.state for r in runs]
    assert [r.parameters["trigger"] for r in runs] == ["corrections-threshold"] * 2
    assert runs[0].end_time <= runs[1].start_time, "two retrains overlapped"
    client = tracking.client_for(stack.settings)
    experiment_id = tracking.resolve_experiment(client, stack.settings)
    for run, batch in zip(runs, batches, strict=True):
        (mlflow_run,) = client.search_runs([experiment_id], f"tags.`prefect.flow_run_id` = '{run.id}'")
        assert mlflow_run.data.tags["trigger"] == "corrections-threshold"
        applied_file = client.download_artifacts(mlflow_run.info.run_id, "dataset/corrections_applied.json")
        applied = json.loads(Path(applied_file).read_text())
        assert sorted(a["id"] for a in applied if a["origin"] == "batch") == sorted(batch)
    with stack.store() as store:
        stored = [store.get(i) for i in batches[0] + batches[1]]
        assert store.pending_count() == 0
    assert all(c.status in ("accepted", "rejected") and c.applied_version for c in stored)
