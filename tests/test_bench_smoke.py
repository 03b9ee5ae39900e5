"""Smoke runs of the bench scripts at tiny sizes: they run, and their JSON figures are sane.

The real figures (docs/benchmarks.md) take minutes to hours; these only check that the scripts keep working.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from yolo_retrain.config import PROJECT_ROOT

BENCH = PROJECT_ROOT / "bench"


def run_bench(script: str, *args: str, out: Path, timeout: float) -> dict:
    result = subprocess.run(
        [sys.executable, str(BENCH / script), *args, "--out", str(out)],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip
    assert result.returncode == 0, f"{script} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    figures = json.loads(out.read_text())
    assert figures["machine"]["cores"] == os.cpu_count()
    assert figures["command"].startswith(f"bench/{script}")
    return figures


def test_dataset_scale_smoke(tmp_path: Path) -> None:
    figures = run_bench(
        "dataset_scale.py", "--images", "300", "--corrections", "40", "--new", "10", "--changed", "7",
        "--in-process", "--no-mlflow", out=tmp_path / "dataset.json", timeout=120,
    )  # fmt: skip
    steps = figures["steps"]
    cold, noop, rebuild, changed = steps["cold"], steps["noop"], steps["rebuild"], steps["changed"]
    assert cold["image_bytes_copied"] == 0 and cold["regular_image_files"] == 0
    assert cold["images_in_dataset"] == 300 + 20  # half the corrections re-label base images
    # files only for the 40 corrected images and the first image of each split: the base is read in place
    assert 40 <= cold["symlinks"] <= 42 and 38 <= cold["corrected_written"] <= 40
    assert noop["corrected_written"] == changed["corrected_written"] == 0 and 8 <= rebuild["corrected_written"] <= 10
    assert cold["hashed_files"] == 300 and not cold["reused_folder"]
    assert noop["hashed_files"] == 0 and noop["reused_folder"] and noop["digest"] == cold["digest"]
    assert rebuild["hashed_files"] == 0  # the new corrections' hashes come from the store
    assert rebuild["images_in_dataset"] == cold["images_in_dataset"] + 10
    assert changed["hashed_files"] == 7  # exactly the changed base images
    # the rebuild is this batch on top of every accepted correction; the claim step reads both from a real store
    assert (
        rebuild["counts"]["corrections_from_earlier_retrains"],
        rebuild["counts"]["corrections_from_this_batch"],
    ) == (40, 10)
    assert (steps["store"]["accepted"], steps["store"]["batch"]) == (40, 10) and steps["store"]["seconds"] > 0
    assert steps["copy"]["bytes_copied"] > 0
    for step in (cold, noop, rebuild, changed, steps["copy"]):
        assert step["seconds"] > 0
    assert figures["goals"]["image_bytes_copied"]["met"]
    assert figures["goals"]["rebuild_hashed_only_new_or_changed"]["met"]


def test_intake_throughput_smoke(tmp_path: Path) -> None:
    figures = run_bench(
        "intake_throughput.py", "--count", "12", "--concurrency", "1", "3", "--api-count", "12", "--size-kb", "50",
        "--cli-repeats", "0", out=tmp_path / "intake.json", timeout=180,
    )  # fmt: skip
    assert 45_000 < figures["image_bytes"] < 60_000
    runs = figures["http"]["runs"]
    assert [r["concurrency"] for r in runs] == [1, 3]
    for r in runs:
        assert r["corrections"] == 12 and 0 < r["latency_p50_ms"] <= r["latency_p95_ms"]
    # one client thread sends one request at a time: the run lasts at least the half of them slower than the median
    assert runs[0]["seconds"] * 1000 >= 6 * runs[0]["latency_p50_ms"]
    assert figures["api"]["corrections"] == 12 and figures["api"]["per_s"] > 0


@pytest.mark.e2e
def test_overhead_smoke(prefect_server, tmp_path: Path) -> None:
    """One A B pair at 1 epoch on a few images, against the session's Prefect server."""
    from prefect.settings import PREFECT_API_URL

    figures = run_bench(
        "overhead.py", "--quick", "--batch", "8", "--no-plots", "--api-url", PREFECT_API_URL.value(),
        out=tmp_path / "overhead.json", timeout=300,
    )  # fmt: skip
    quick = figures["sizes"]["quick"]
    (pair,) = quick["pairs"]
    bare, flow = pair["bare"], pair["flow"]
    # the override reached both trainings (from their Ultralytics args.yaml)
    assert quick["size"]["batch"] == bare["trained_with"]["batch"] == flow["trained_with"]["batch"] == 8
    assert quick["size"]["plots"] is bare["trained_with"]["plots"] is flow["trained_with"]["plots"] is False
    assert bare["wall_s"] > 0 and bare["train_s"] > 0 and bare["val_s"] > 0
    assert flow["state"] == "COMPLETED" and flow["wall_s"] > flow["flow_s"] > 0
    for task in (
        "claim-corrections",
        "build-dataset",
        "train-candidate",
        "evaluate-post",
        "register-model",
        "finish-retrain",
    ):
        assert flow["tasks_s"][task] > 0, task
    assert "evaluate-pre" not in flow["tasks_s"]  # --quick has no champion
    # the phases measured inside each side fit in its wall time (the breakdown sums to the difference by
    # construction; these are what can be wrong): Prefect's task durations inside the flow run, the bare
    # script's import, training and validation inside its process
    assert flow["between_tasks_s"] >= 0 and flow["startup_s"] > 0 and flow["exit_s"] >= 0
    assert bare["startup_and_exit_s"] > 0


def test_fast_synthetic_pair(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The GPU size's data: the flow's and the bare script's copies share image files, differ only in labels."""
    monkeypatch.syspath_prepend(str(BENCH))
    from _fast_synthetic import make_dataset_pair
    from PIL import Image

    flow, bare = make_dataset_pair(tmp_path / "flow", tmp_path / "bare", train=8, val=2, size=96, seed=1)
    corrections = sorted((flow.corrections_dir / "labels").glob("*.txt"))
    assert flow.wrong_images == len(corrections) > 0
    assert flow.data_yaml.is_file() and bare.data_yaml == tmp_path / "bare" / "data.yaml" and bare.data_yaml.is_file()
    for split, count in (("train", 8), ("val", 2)):
        images = sorted((tmp_path / "flow" / "images" / split).glob("*.jpg"))
        assert len(images) == count
        for image in images:
            twin = tmp_path / "bare" / "images" / split / image.name
            assert image.stat().st_ino == twin.stat().st_ino  # a hard link: the very same bytes
            assert Image.open(image).size == (96, 96)
    for label in corrections:  # the correction is the bare copy's label and not the flow's base label
        assert label.read_text() == (tmp_path / "bare" / "labels" / "train" / label.name).read_text()
        assert label.read_text() != (tmp_path / "flow" / "labels" / "train" / label.name).read_text()


def test_gpu_sampler(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Samples from nvidia-smi (a stand-in here: two GPUs, only GPU 1 busy); nothing without nvidia-smi."""
    monkeypatch.syspath_prepend(str(BENCH))
    from _common import GpuSampler

    fake = tmp_path / "bin" / "nvidia-smi"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\nprintf '0, 0, 100\\n1, 80, 5000\\n'\n")
    fake.chmod(0o755)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setenv("PATH", str(fake.parent))
    with GpuSampler("1", interval=0.05) as one, GpuSampler("cpu", interval=0.05) as every:
        time.sleep(0.3)
    assert one.summary()["util_mean_pct"] == 80 and one.summary()["memory_max_mib"] == 5000
    assert every.summary()["util_mean_pct"] == 40 and every.summary()["memory_max_mib"] == 5100
    monkeypatch.setenv("PATH", str(tmp_path))  # no nvidia-smi
    with GpuSampler("0") as none:
        pass
    assert none.summary() is None


def test_slices_cost_smoke(tmp_path: Path) -> None:
    figures = run_bench(
        "slices_cost.py", "--images", "40", "--resamples", "100", "--min-images", "12", out=tmp_path / "slices.json",
        timeout=120,
    )  # fmt: skip
    (case,) = figures["cases"]
    assert (case["images"], case["slices"], case["judged"]) == (40, 6, 2)  # 4 cameras of 10 (not judged), 2 sites of 20
    assert case["overall_s"] > 0 and case["slices_s"] > 0 and case["ratio"] > 0
