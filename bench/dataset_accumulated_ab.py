"""Does accumulating corrections keep the rebuild's cost flat? An A/B of this checkout against an older one.

On 100 000 base images with 10 000 earlier corrections (cold-built once, untimed), each repetition times one
rebuild with a fresh batch of N new corrections by each side, alternating, each in a fresh process:

  before   the older checkout (``--before``, e.g. an export of the commit before the lifecycle): every
           correction in one list, as the flow passed the claimed batch
  after    this checkout: ``build_dataset(batch, accepted=earlier)``, as the flow builds now, plus the
           store read of the accepted corrections (``CorrectionStore.training_corrections`` on SQLite)

Alternating in one run makes the two sides share whatever else the machine is doing; the ratio after/before is
the figure to compare, the absolute times are only this machine's at that moment.

    git archive 9eba3ac | tar -x -C /tmp/before
    .venv/bin/python bench/dataset_accumulated_ab.py --before /tmp/before --repeats 3 --out bench/results/dataset_accumulated_ab.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dataset_scale as scale
from _common import ROOT, emit, header

STEP = """
import json, sys, time
from datetime import datetime
from pathlib import Path
sys.path.insert(0, {bench!r})
import yolo_retrain
from yolo_retrain.dataset import build_dataset
from dataset_scale import _load
work, batch_file, side = Path({work!r}), Path({batch!r}), {side!r}
earlier, batch = _load(work / "corrections.json"), _load(batch_file)
start = time.perf_counter()
read_s = 0.0
if side == "after":
    from yolo_retrain.store import CorrectionStore
    with CorrectionStore(f"sqlite:///{{work / 'corrections.db'}}", work / "blobs", ["square", "circle"]) as store:
        t = time.perf_counter(); accepted = store.training_corrections("none").accepted; read_s = time.perf_counter() - t
    start = time.perf_counter()
    built = build_dataset(work / "base" / "data.yaml", batch, work / "datasets", accepted=accepted)
else:
    built = build_dataset(work / "base" / "data.yaml", earlier + batch, work / "datasets")
print("AB " + json.dumps({{"seconds": time.perf_counter() - start, "read_s": read_s, "reused": built.reused,
      "images": built.counts["train_images"] + built.counts["val_images"]}}))
"""


def _batch(work: Path, index: int, new: int) -> Path:
    """``new`` corrections of new images, distinct per ``index`` (so each rebuild makes a new dataset)."""
    rows = []
    start = datetime(2027, 1, 1, tzinfo=UTC) + timedelta(days=index)
    for n in range(new):
        data = scale._image(n, 100 + index)
        sha = hashlib.sha256(data).hexdigest()
        path = work / "blobs" / "images" / sha[:2] / f"{sha}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        rows.append({"id": f"n{index}-{n}", "image_sha256": sha, "image_path": str(path),
                     "label_text": scale._label(n), "created_at": (start + timedelta(seconds=n)).isoformat()})  # fmt: skip
    path = work / f"batch{index}.json"
    path.write_text(json.dumps(rows))
    return path


def _run(code_root: Path, work: Path, batch: Path, side: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(code_root)}
    script = STEP.format(bench=str(code_root / "bench"), work=str(work), batch=str(batch), side=side)
    result = subprocess.run([sys.executable, "-c", script], cwd=code_root, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{side} failed:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}")
    return json.loads(next(line for line in result.stdout.splitlines() if line.startswith("AB "))[3:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, required=True, help="An older checkout (a folder with yolo_retrain/).")
    parser.add_argument("--images", type=int, default=100_000)
    parser.add_argument("--corrections", type=int, default=10_000, help="Earlier (accepted) corrections.")
    parser.add_argument("--new", type=int, default=100, help="New corrections in each rebuild.")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-ab-"))
    try:
        scale.generate(work, args.images, args.corrections, 0)
        started = time.perf_counter()
        cold = _run(ROOT, work, _batch(work, 0, 0), "after")  # hash cache and corrected store, untimed for A/B
        print(f"cold build {time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)
        pairs = []
        for i in range(args.repeats):
            before = _run(args.before.resolve(), work, _batch(work, 2 * i + 1, args.new), "before")
            after = _run(ROOT, work, _batch(work, 2 * i + 2, args.new), "after")
            pairs.append({"before": before, "after": after})
            print(f"pair {i}: before {before['seconds']:.2f} s, after {after['seconds']:.2f} s"
                  f" (+ store read {after['read_s']:.2f} s)", file=sys.stderr, flush=True)  # fmt: skip
    finally:
        shutil.rmtree(work, ignore_errors=True)
    before_s = statistics.median(p["before"]["seconds"] for p in pairs)
    after_s = statistics.median(p["after"]["seconds"] for p in pairs)
    read_s = statistics.median(p["after"]["read_s"] for p in pairs)
    result = header("dataset_accumulated_ab")
    result.update({
        "images": args.images, "earlier_corrections": args.corrections, "new_corrections": args.new,
        "before_checkout": str(args.before), "cold": cold, "pairs": pairs,
        "median_before_s": before_s, "median_after_s": after_s, "median_store_read_s": read_s,
        "after_over_before": after_s / before_s, "after_with_read_over_before": (after_s + read_s) / before_s,
    })  # fmt: skip
    emit(result, args.out)


if __name__ == "__main__":
    main()
