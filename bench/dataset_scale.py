"""Dataset assembly at scale: 100 000 base images + 10 000 accepted corrections -> the retraining dataset and manifest.

Generates (untimed) a base dataset of small PNG files (16x16, a few hundred bytes) with labels, 90 % train /
10 % val, and corrections shaped like the store's (content-addressed blobs, sha256 known): half re-label
base images, half are new images. They are the corrections earlier retrains accepted: every retrain's
dataset holds them (``build_dataset(..., accepted=...)``). Then, each step in a fresh process so its time and
peak memory are its own:

  cold      `dataset.build_dataset` of the accepted corrections into an empty folder (every base image hashed)
  noop      the same again (the folder for that digest is reused)
  rebuild   a batch of N new corrections on top of the accepted ones (goal <= 2 s; only new or changed files
            hashed: correction hashes come from the store, so 0 base files)
  changed   after N base images changed on disk (exactly N hashed)
  store     the flow's store work: `CorrectionStore.claim` + `training_corrections` (the build step's read) on a SQLite
            store holding the accepted corrections and the N pending ones
  copy      `shutil.copytree` of the base images into a new folder, the naive alternative (ratio)
  mlflow    `tracking.log_dataset` of the cold build into a run (what the flow does right after building)

Bytes of image data copied = sizes of the regular (non-symlink) image files anywhere under the datasets folder.

    .venv/bin/python bench/dataset_scale.py --images 100000 --corrections 10000 --out bench/results/dataset_scale.json
    .venv/bin/python bench/dataset_scale.py --images 500 --corrections 50 --new 10 --changed 10   # smoke
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import shutil
import stat
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from _common import ROOT, emit, header

SIDE = 16
GOAL_COLD_S, GOAL_REBUILD_S = 10.0, 2.0


# --- generation (untimed) ------------------------------------------------------------------------------------


def _png(pixels: bytes) -> bytes:
    """A valid 16x16 8-bit greyscale PNG of ``pixels`` (SIDE*SIDE bytes)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    rows = b"".join(b"\x00" + pixels[r * SIDE : (r + 1) * SIDE] for r in range(SIDE))
    header = struct.pack(">IIBBBBB", SIDE, SIDE, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows, 1)) + chunk(b"IEND", b"")


def _image(index: int, salt: int) -> bytes:
    """Distinct content per (index, salt): the index in the first pixels, pseudo-random noise after."""
    seed = hashlib.blake2b(struct.pack(">QQ", index, salt), digest_size=64).digest()
    noise = (seed * (SIDE * SIDE // len(seed) + 1))[: SIDE * SIDE - 8]
    return _png(struct.pack(">QQ", index, salt)[:8] + noise)


def _label(index: int) -> str:
    x = 0.2 + (index % 60) / 100
    return f"{index % 2} {x:.4f} 0.5000 0.1250 0.1250\n"


def generate(work: Path, images: int, corrections: int, new: int) -> dict:
    """Base dataset, correction blobs, and the corrections (as JSON) for the cold build and for the rebuild."""
    base = work / "base"
    for kind in ("images", "labels"):
        for split in ("train", "val"):
            (base / kind / split).mkdir(parents=True, exist_ok=True)
    val_every = 10  # 10 % val
    base_sha: list[str] = []
    base_paths: list[str] = []
    for i in range(images):
        split = "val" if i % val_every == 0 else "train"
        data = _image(i, 0)
        path = base / "images" / split / f"img_{i:06d}.png"
        path.write_bytes(data)
        (base / "labels" / split / f"img_{i:06d}.txt").write_text(_label(i))
        base_sha.append(hashlib.sha256(data).hexdigest())
        base_paths.append(str(path))
    (base / "data.yaml").write_text(
        f"path: {base}\ntrain: images/train\nval: images/val\nnames:\n  0: square\n  1: circle\n"
    )

    blobs = work / "blobs" / "images"
    start = datetime(2026, 1, 1, tzinfo=UTC)

    def correction(n: int, data: bytes | None, sha: str | None) -> dict:
        if data is not None:
            sha = hashlib.sha256(data).hexdigest()
        path = blobs / sha[:2] / f"{sha}.png"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data if data is not None else Path(base_paths[n]).read_bytes())
        created = (start + timedelta(seconds=n)).isoformat()
        return {
            "id": f"c{n:08d}",
            "image_sha256": sha,
            "image_path": str(path),
            "label_text": _label(n + 1),
            "created_at": created,
        }

    overriding = corrections // 2
    stride = max(1, images // max(1, overriding))
    rows = [correction(n, None, base_sha[(n * stride) % images]) for n in range(overriding)]
    rows += [correction(n, _image(n, 1), None) for n in range(overriding, corrections)]
    extra = [correction(n, _image(n, 1), None) for n in range(corrections, corrections + new)]
    (work / "corrections.json").write_text(json.dumps(rows))
    (work / "new.json").write_text(json.dumps(extra))
    _fill_store(work, rows, extra)
    image_bytes = sum(os.path.getsize(p) for p in base_paths[:1000]) / min(images, 1000)
    return {"base_data": str(base / "data.yaml"), "mean_image_bytes": round(image_bytes), "base_images": images}


def _fill_store(work: Path, accepted: list[dict], pending: list[dict]) -> None:
    """A correction store (today's schema, made by the store itself) holding ``accepted`` and ``pending`` rows,
    inserted in bulk: adding 10 000 corrections one by one would measure the intake, not the claim."""
    import sqlite3

    import yolo_retrain  # noqa: F401  (environment first)
    from yolo_retrain.store import CorrectionStore

    CorrectionStore(f"sqlite:///{work / 'corrections.db'}", work / "blobs", ["square", "circle"]).close()
    rows = [
        (r["id"], r["image_sha256"], r["image_path"], f"{r['id']}.png", r["label_text"], 1, SIDE, SIDE,
         r["created_at"].replace("T", " ").replace("+00:00", ""), status, "earlier" if status == "accepted" else None, "2")
        for status, group in (("accepted", accepted), ("pending", pending))
        for r in group
    ]
    with sqlite3.connect(work / "corrections.db") as db:
        db.executemany(
            "INSERT INTO corrections (id, image_sha256, image_path, original_name, label_text, num_boxes, width,"
            " height, created_at, status, batch_id, applied_version) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )


# --- the measured steps, each in its own process ---------------------------------------------------------------


@dataclass(frozen=True)
class _Correction:
    """Fits ``yolo_retrain.dataset.CorrectionLike``."""

    id: str
    image_sha256: str
    image_path: str
    label_text: str
    created_at: datetime


def _load(path: Path) -> list[_Correction]:
    rows = json.loads(path.read_text())
    return [
        _Correction(
            r["id"], r["image_sha256"], r["image_path"], r["label_text"], datetime.fromisoformat(r["created_at"])
        )
        for r in rows
    ]


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _image_bytes_copied(out_root: Path) -> tuple[int, int, int]:
    """(bytes in regular image files, regular image files, image symlinks) anywhere under the datasets folder
    (every dataset folder and the corrected store; links to the base folders are not followed: they are the base)."""
    copied = regular = links = 0
    for dirpath, _dirs, files in os.walk(out_root):
        for name in files:
            if name.rpartition(".")[-1].lower() not in ("png", "jpg"):
                continue
            st = os.lstat(os.path.join(dirpath, name))
            if stat.S_ISLNK(st.st_mode):
                links += 1
            elif stat.S_ISREG(st.st_mode):
                copied += st.st_size
                regular += 1
    return copied, regular, links


def worker(step: str, work: Path, changed: int) -> dict:
    if step == "copy":  # nothing of yolo_retrain imported: the naive alternative on its own
        rss_before = _rss_mib()
        start = time.perf_counter()
        shutil.copytree(work / "base" / "images", work / "copied-images")
        seconds = time.perf_counter() - start
        copied = sum(f.stat().st_size for f in (work / "copied-images").rglob("*") if f.is_file())
        shutil.rmtree(work / "copied-images")
        return {"seconds": seconds, "bytes_copied": copied, "peak_rss_mib": _rss_mib(), "rss_before_mib": rss_before}

    from yolo_retrain.config import configure_environment

    configure_environment()  # environment first
    from yolo_retrain.dataset import build_dataset

    if step == "store":
        return _claim_from_store(work)
    base_data = work / "base" / "data.yaml"
    out_root = work / "datasets"
    accepted = _load(work / "corrections.json")
    batch = _load(work / "new.json") if step in ("rebuild", "changed") else []
    if step == "changed":  # new bytes (and so a new size or mtime) for the first `changed` train images, untimed
        for path in sorted((work / "base" / "images" / "train").iterdir())[:changed]:
            path.write_bytes(_image(int(path.stem.split("_")[1]), 2))
    if step == "mlflow":
        return _log_to_mlflow(work, build_dataset(base_data, batch, out_root, accepted=accepted))
    rss_before = _rss_mib()
    start = time.perf_counter()
    built = build_dataset(base_data, batch, out_root, accepted=accepted)
    seconds = time.perf_counter() - start
    copied, regular, links = _image_bytes_copied(out_root)
    return {
        "seconds": seconds,
        "peak_rss_mib": _rss_mib(),
        "rss_before_mib": rss_before,
        "hashed_files": built.hashed_files,
        "reused_folder": built.reused,
        "corrected_written": built.corrected_written,
        "images_in_dataset": built.counts["train_images"] + built.counts["val_images"],
        "counts": built.counts,
        "image_bytes_copied": copied,
        "regular_image_files": regular,
        "symlinks": links,
        "manifest_bytes": built.manifest_path.stat().st_size,
        "digest": built.digest,
    }


def _claim_from_store(work: Path) -> dict:
    """Time the flow's store work: claim the pending batch, then read it and every accepted correction."""
    from yolo_retrain.store import CorrectionStore

    with CorrectionStore(f"sqlite:///{work / 'corrections.db'}", work / "blobs", ["square", "circle"]) as store:
        rss_before = _rss_mib()
        start = time.perf_counter()
        store.claim("bench")
        training = store.training_corrections("bench")
        seconds = time.perf_counter() - start
    return {
        "seconds": seconds,
        "peak_rss_mib": _rss_mib(),
        "rss_before_mib": rss_before,
        "batch": len(training.batch),
        "accepted": len(training.accepted),
    }


def _log_to_mlflow(work: Path, built) -> dict:
    """Time ``tracking.log_dataset`` (artifacts + dataset input) into a fresh SQLite store."""
    import mlflow
    from mlflow import MlflowClient

    from yolo_retrain import tracking

    uri = f"sqlite:///{work / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    client = MlflowClient(uri)
    experiment = client.create_experiment("bench", artifact_location=(work / "mlartifacts").as_uri())
    run_id = client.create_run(experiment).info.run_id
    rss_before = _rss_mib()
    start = time.perf_counter()
    tracking.log_dataset(client, run_id, built)
    return {"seconds": time.perf_counter() - start, "peak_rss_mib": _rss_mib(), "rss_before_mib": rss_before}


def run_step(step: str, work: Path, changed: int, in_process: bool = False) -> dict:
    if in_process:  # smoke runs: one interpreter, so peak RSS is the process's, not the step's
        figures = worker(step, work, changed)
        figures["peak_rss_delta_mib"] = figures["peak_rss_mib"] - figures["rss_before_mib"]
        print(f"{step}: {figures['seconds']:.2f} s", file=sys.stderr, flush=True)
        return figures
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--worker",
        step,
        "--work",
        str(work),
        "--changed",
        str(changed),
    ]
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=3600, check=False)
    if result.returncode != 0:
        raise RuntimeError(
            f"step {step} failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        )
    line = next(line for line in reversed(result.stdout.splitlines()) if line.startswith("STEP_RESULT "))
    figures = json.loads(line.removeprefix("STEP_RESULT "))
    figures["peak_rss_delta_mib"] = figures["peak_rss_mib"] - figures["rss_before_mib"]
    print(
        f"{step}: {figures['seconds']:.2f} s, peak RSS {figures['peak_rss_mib']:.0f} MiB"
        f" (+{figures['peak_rss_delta_mib']:.0f} MiB during the step)",
        file=sys.stderr,
        flush=True,
    )
    return figures


def measure(
    images: int, corrections: int, new: int, changed: int, mlflow_step: bool, work: Path, in_process: bool
) -> dict:
    start = time.perf_counter()
    generated = generate(work, images, corrections, new)
    generated["seconds"] = time.perf_counter() - start
    print(
        f"generated {images} images + {corrections} corrections in {generated['seconds']:.1f} s",
        file=sys.stderr,
        flush=True,
    )
    steps = {"cold": run_step("cold", work, changed, in_process)}
    steps["noop"] = run_step("noop", work, changed, in_process)
    steps["rebuild"] = run_step("rebuild", work, changed, in_process)
    steps["changed"] = run_step("changed", work, changed, in_process)
    steps["store"] = run_step("store", work, changed, in_process)
    steps["copy"] = run_step("copy", work, changed, in_process)
    if mlflow_step:
        steps["mlflow"] = run_step("mlflow", work, changed, in_process)
    return {
        "images": images,
        "corrections": corrections,
        "new_corrections": new,
        "changed_base_images": changed,
        "generated": generated,
        "steps": steps,
        "cold_over_copy_ratio": steps["cold"]["seconds"] / steps["copy"]["seconds"],
        "rebuild_over_copy_ratio": steps["rebuild"]["seconds"] / steps["copy"]["seconds"],
        "claim_and_rebuild_s": steps["store"]["seconds"] + steps["rebuild"]["seconds"],
        "goals": {
            "cold_build_s": {
                "goal": GOAL_COLD_S,
                "value": steps["cold"]["seconds"],
                "met": steps["cold"]["seconds"] <= GOAL_COLD_S,
            },
            "rebuild_s": {
                "goal": GOAL_REBUILD_S,
                "value": steps["rebuild"]["seconds"],
                "met": steps["rebuild"]["seconds"] <= GOAL_REBUILD_S,
            },
            "image_bytes_copied": {
                "goal": 0,
                "value": steps["cold"]["image_bytes_copied"],
                "met": steps["cold"]["image_bytes_copied"] == 0,
            },
            "rebuild_hashed_only_new_or_changed": {
                "goal": f"rebuild 0 (correction hashes come from the store), changed {changed}",
                "value": [steps["rebuild"]["hashed_files"], steps["changed"]["hashed_files"]],
                "met": steps["rebuild"]["hashed_files"] == 0 and steps["changed"]["hashed_files"] == changed,
            },
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=100_000, help="Base images (90 %% train, 10 %% val).")
    parser.add_argument(
        "--corrections", type=int, default=10_000, help="Accepted corrections: half re-label base images, half new."
    )
    parser.add_argument("--new", type=int, default=100, help="New corrections (this retrain's batch) in the rebuild.")
    parser.add_argument(
        "--changed", type=int, default=100, help="Base images changed on disk before the 'changed' rebuild."
    )
    parser.add_argument("--no-mlflow", action="store_true", help="Skip timing tracking.log_dataset.")
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="Run the steps in this process (fast smoke runs; peak RSS not per step).",
    )
    parser.add_argument("--workdir", type=Path, help="Where to generate (default: a temporary folder, removed after).")
    parser.add_argument("--out", type=Path, help="Write the figures as JSON here.")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print("STEP_RESULT " + json.dumps(worker(args.worker, args.work, args.changed)), flush=True)
        return
    work = Path(tempfile.mkdtemp(prefix="bench-dataset-", dir=args.workdir))
    try:
        figures = measure(
            args.images, args.corrections, args.new, args.changed, not args.no_mlflow, work, args.in_process
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result = header("dataset_scale")
    result.update(figures)
    emit(result, args.out)


if __name__ == "__main__":
    main()
