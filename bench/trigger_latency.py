"""Threshold trigger latency with serve(): from the HTTP request that makes the pending count reach the
threshold to the triggered retrain's flow run entering Running.

Starts its own `prefect server` on loopback, `deployments/serve.py` and the intake, in a temporary home.

    .venv/bin/python bench/trigger_latency.py --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import httpx

from yolo_retrain.config import configure_environment  # noqa: E402

configure_environment()  # environment first: Ultralytics and Prefect read it at import
from yolo_retrain import processes
from yolo_retrain.synthetic import make_dataset

THRESHOLD = 2


def _flow_runs(client, deployment_id) -> list:
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    runs = client.read_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])))
    return [r for r in runs if r.parameters.get("trigger") == "corrections-threshold"]


def measure(repeats: int, home: Path) -> list[float]:
    from prefect.client.orchestration import SyncPrefectClient

    prefect_port, intake_port = processes.free_port(), processes.free_port()
    api_url = f"http://127.0.0.1:{prefect_port}/api"
    env = {
        **os.environ,
        "PREFECT_HOME": str(home / "prefect"),
        "PREFECT_API_URL": api_url,
        "YOLO_RETRAIN_HOME": str(home),
        "YOLO_RETRAIN_EPOCHS": "1",
        "YOLO_RETRAIN_BATCH": "8",
        "YOLO_RETRAIN_RETRAIN_THRESHOLD": str(THRESHOLD),
        "YOLO_RETRAIN_API_PORT": str(intake_port),
    }
    data = make_dataset(home / "demo", train=8 * repeats, val=8, size=64, wrong_fraction=1.0, seed=1)
    images = sorted((data.corrections_dir / "images").glob("*.png"))
    intake_url = f"http://127.0.0.1:{intake_port}"
    latencies = []
    with processes.ProcessGroup(env, log_dir=home / "logs") as group, SyncPrefectClient(api_url) as client:
        group.start("server", processes.prefect_server(prefect_port))
        processes.wait_healthy(f"{api_url}/health", timeout=120)
        group.run([str(processes.BIN / "yolo-retrain"), "init", "--no-train-baseline"])
        group.start("deployments", processes.served_deployments())
        group.start("intake", processes.intake())
        processes.wait_healthy(f"{intake_url}/health", timeout=60)
        deployment_id = processes.wait_for(lambda: _deployment_id(client), 60, "the served deployment")
        for i in range(repeats):
            batch = images[i * THRESHOLD : (i + 1) * THRESHOLD]
            for image in batch[:-1]:
                _submit(intake_url, image, data.corrections_dir)
            before = {r.id for r in _flow_runs(client, deployment_id)}
            sent = datetime.now(timezone.utc)
            _submit(intake_url, batch[-1], data.corrections_dir)
            run = processes.wait_for(lambda: _started(client, deployment_id, before), 120, "the triggered run", every=0.1)
            latencies.append((run.start_time - sent).total_seconds())
            print(f"crossing {i + 1}: flow run {run.name} Running after {latencies[-1]:.2f} s")
            processes.wait_for(lambda: client.read_flow_run(run.id).state.is_final(), 300, "the run to finish")
    return latencies


def _deployment_id(client):
    try:
        return client.read_deployment_by_name("retrain/yolo-retrain").id
    except Exception:  # not registered yet by serve()
        return None


def _started(client, deployment_id, before: set):
    new = [r for r in _flow_runs(client, deployment_id) if r.id not in before and r.start_time is not None]
    return new[0] if new else None


def _submit(intake_url: str, image: Path, corrections_dir: Path) -> None:
    labels = corrections_dir / "labels" / f"{image.stem}.txt"
    files = {"image": (image.name, image.read_bytes(), "image/png"), "labels": (labels.name, labels.read_bytes(), "text/plain")}
    httpx.post(f"{intake_url}/corrections", files=files, timeout=30).raise_for_status()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="Threshold crossings to time.")
    parser.add_argument("--out", type=Path, help="Write the figures as JSON here.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-trigger-") as tmp:
        latencies = measure(args.repeats, Path(tmp))
    result = {"latencies_s": latencies, "median_s": statistics.median(latencies), "goal_s": 15}
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
