"""Correction intake throughput: 50 KB images over HTTP on loopback, and through the Python API.

HTTP: starts `yolo-retrain intake` (uvicorn, one process) in a temporary home and POSTs distinct images
with their labels to `/corrections` from C client threads (one keep-alive connection each), for each C in
--concurrency. Python API: `intake.add_correction` in a loop on the same kind of images, into a fresh store.
The retrain threshold is set out of reach and PREFECT_API_URL unset, so no Prefect event is involved: what
is measured is validation (decoding the image, parsing labels), the blob write and the SQLite transaction.
A few warm-up corrections go first and are not counted. Also times one `yolo-retrain corrections add`
process, the CLI's cost per call.

    .venv/bin/python bench/intake_throughput.py --count 1000 --concurrency 1 4 8 --out bench/results/intake_throughput.json
    .venv/bin/python bench/intake_throughput.py --count 20 --concurrency 2 --api-count 20 --cli-repeats 0   # smoke
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
from _common import ROOT, emit, header, median
from PIL import Image

from yolo_retrain.config import configure_environment  # noqa: E402

configure_environment()  # environment first: Ultralytics and Prefect read it at import
from yolo_retrain import processes
from yolo_retrain.synthetic import make_dataset

GOAL_PER_S = 200
WARMUP = 5
LABELS = "0 0.500000 0.500000 0.250000 0.250000\n1 0.250000 0.250000 0.100000 0.100000\n"


def make_images(count: int, size_kb: int, seed: int) -> list[bytes]:
    """Distinct PNGs of about ``size_kb`` KB: RGB noise (incompressible), stored without compression."""
    side = int((size_kb * 1024 / 3) ** 0.5)
    rng = np.random.default_rng(seed)
    images = []
    for _ in range(count):
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, size=(side, side, 3), dtype=np.uint8)).save(buf, "PNG", compress_level=0)
        images.append(buf.getvalue())
    return images


def _environment(home: Path, port: int) -> dict[str, str]:
    env = {
        **os.environ,
        "YOLO_RETRAIN_HOME": str(home),
        "PREFECT_HOME": str(home / "prefect"),
        "YOLO_CONFIG_DIR": str(home / "ultralytics"),
        "YOLO_RETRAIN_API_PORT": str(port),
        "YOLO_RETRAIN_RETRAIN_THRESHOLD": str(10**9),
    }
    for key in (
        "PREFECT_API_URL",
        "YOLO_RETRAIN_API_TOKEN",
        "YOLO_RETRAIN_BASE_DATA",
        "YOLO_RETRAIN_CORRECTIONS_DB_URL",
    ):
        env.pop(key, None)
    return env


def post_all(url: str, images: list[bytes], concurrency: int) -> dict:
    """POST every image (with LABELS) using ``concurrency`` threads; corrections per second and latencies."""
    local = threading.local()
    clients: list[httpx.Client] = []

    def client() -> httpx.Client:
        if not hasattr(local, "client"):
            local.client = httpx.Client(timeout=60)
            clients.append(local.client)
        return local.client

    def post(item: tuple[int, bytes]) -> float:
        i, data = item
        files = {
            "image": (f"img_{i:06d}.png", data, "image/png"),
            "labels": (f"img_{i:06d}.txt", LABELS.encode(), "text/plain"),
        }
        start = time.perf_counter()
        response = client().post(f"{url}/corrections", files=files)
        if response.status_code != 201:
            raise RuntimeError(f"POST /corrections answered {response.status_code}: {response.text[:500]}")
        return time.perf_counter() - start

    try:
        with ThreadPoolExecutor(concurrency) as pool:
            start = time.perf_counter()
            latencies = list(pool.map(post, enumerate(images)))
            seconds = time.perf_counter() - start
    finally:
        for c in clients:
            c.close()
    latencies.sort()
    return {
        "concurrency": concurrency,
        "corrections": len(images),
        "seconds": seconds,
        "per_s": len(images) / seconds,
        "latency_p50_ms": 1000 * median(latencies),
        "latency_p95_ms": 1000 * latencies[int(0.95 * (len(latencies) - 1))],
    }


def measure_http(home: Path, images: list[bytes], concurrencies: list[int], per_run: int, cli_repeats: int) -> dict:
    """``images``: WARMUP, then ``per_run`` for each concurrency, then ``cli_repeats`` for the CLI."""
    port = processes.free_port()
    env = _environment(home, port)
    url = f"http://127.0.0.1:{port}"
    with processes.ProcessGroup(env, log_dir=home / "logs") as group:
        group.start("intake", processes.intake())
        processes.wait_healthy(f"{url}/health", timeout=120)
        post_all(url, images[:WARMUP], 1)
        runs = []
        for k, concurrency in enumerate(concurrencies):
            batch = images[WARMUP + k * per_run : WARMUP + (k + 1) * per_run]
            runs.append(post_all(url, batch, concurrency))
            print(
                f"HTTP, {concurrency} client threads: {runs[-1]['per_s']:.0f} corrections/s",
                file=sys.stderr,
                flush=True,
            )
        cli = _cli_add(home, env, images[-cli_repeats:] if cli_repeats else [])
        stored = httpx.get(f"{url}/corrections/stats", timeout=30).json()
    expected = WARMUP + per_run * len(concurrencies) + len(cli)
    if stored["pending"] != expected:
        raise RuntimeError(f"{stored['pending']} pending corrections after the run, expected {expected}")
    return {"runs": runs, "best_per_s": max(r["per_s"] for r in runs), "cli_add_s": cli}


def _cli_add(home: Path, env: dict[str, str], images: list[bytes]) -> list[float]:
    """Wall time of one `yolo-retrain corrections add IMAGE LABELS` process each."""
    seconds = []
    for i, data in enumerate(images):
        image, labels = home / f"cli_{i}.png", home / f"cli_{i}.txt"
        image.write_bytes(data)
        labels.write_text(LABELS)
        start = time.perf_counter()
        subprocess.run(
            [str(processes.BIN / "yolo-retrain"), "corrections", "add", str(image), str(labels)],
            env=env, cwd=ROOT, check=True, capture_output=True, timeout=300,
        )  # fmt: skip
        seconds.append(time.perf_counter() - start)
    return seconds


def measure_api(home: Path, data_yaml: Path, images: list[bytes]) -> dict:
    """``intake.add_correction`` in a loop, in this process, into a fresh store."""
    from yolo_retrain import intake
    from yolo_retrain.config import Settings
    from yolo_retrain.store import CorrectionStore

    settings = Settings(home=home, base_data=data_yaml, retrain_threshold=10**9)
    with CorrectionStore.from_settings(settings) as store:
        for i, data in enumerate(images[:WARMUP]):
            intake.add_correction(store, settings, data, LABELS, image_name=f"warm_{i}.png")
        start = time.perf_counter()
        for i, data in enumerate(images[WARMUP:]):
            intake.add_correction(store, settings, data, LABELS, image_name=f"img_{i:06d}.png")
        seconds = time.perf_counter() - start
        assert store.pending_count() == len(images)
    count = len(images) - WARMUP
    return {"corrections": count, "seconds": seconds, "per_s": count / seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000, help="Corrections per HTTP run (one run per concurrency).")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 8], help="Client threads, one run each.")
    parser.add_argument("--api-count", type=int, default=1000, help="Corrections through the Python API.")
    parser.add_argument("--size-kb", type=int, default=50, help="Image size in KB.")
    parser.add_argument("--cli-repeats", type=int, default=1, help="`yolo-retrain corrections add` processes to time.")
    parser.add_argument("--out", type=Path, help="Write the figures as JSON here.")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-intake-"))
    try:
        http_images = make_images(WARMUP + args.count * len(args.concurrency) + args.cli_repeats, args.size_kb, seed=1)
        api_images = make_images(WARMUP + args.api_count, args.size_kb, seed=2)
        data = make_dataset(tmp / "http" / "demo", train=2, val=2, size=32)  # the class names the intake checks against
        http = measure_http(tmp / "http", http_images, args.concurrency, args.count, args.cli_repeats)
        api = measure_api(tmp / "api", data.data_yaml, api_images)
        print(f"Python API: {api['per_s']:.0f} corrections/s", file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    result = {
        **header("intake_throughput"),
        "image_bytes": len(http_images[0]),
        "http": http,
        "api": api,
        "goal_per_s": GOAL_PER_S,
        "goal_met_http": http["best_per_s"] >= GOAL_PER_S,
    }
    emit(result, args.out)


if __name__ == "__main__":
    main()
