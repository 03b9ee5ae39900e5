"""What the #19 steps cost per retrain, and how wide the gate's interval is against the holdout's size.

Reads a home left by ``bench/screening.py --keep HOME`` (the demo's models and per-image holdout results):

- the paired bootstrap (1000 draws) on holdouts of 80 … 1000 images, and the 95 % interval's half-width there for
  two models of close quality (the demo's champion and the poisoned batch's candidate): holdouts larger than 80
  are drawn with replacement from the real 80 images' results, so the width follows the real spread per image;
- one model's prediction pass (screening and forgetting share it) over 100 … 500 corrected images.

    .venv/bin/python bench/screening_cost.py HOME --out bench/results/screening_cost.json
    .venv/bin/python bench/screening_cost.py HOME --before a1614fe~1 --no-prediction   # the bootstrap against an older one

``--before REV`` also times ``yolo_retrain/bootstrap.py`` as it was at git revision REV on the same data, alternately
(A B A B), and checks that both give the same interval.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(Path(__file__).parent)]

from _common import emit, header, median  # noqa: E402


def _resized(results, n: int, seed: int):
    """``results`` on a holdout of ``n`` images drawn with replacement from its own (the same draw for both models)."""
    import numpy as np

    from yolo_retrain.per_image import ImageResults

    picks = np.random.default_rng(seed).integers(0, len(results.images), n)

    def build(r):
        parts = [(np.flatnonzero(r.pred_image == i), np.flatnonzero(r.target_image == i)) for i in picks]
        preds = np.concatenate([p for p, _ in parts]).astype(int)
        targets = np.concatenate([t for _, t in parts]).astype(int)
        return ImageResults(
            tuple(f"{k:05d}" for k in range(n)),
            r.tp[preds], r.conf[preds], r.pred_cls[preds],
            np.repeat(np.arange(n), [len(p) for p, _ in parts]), r.target_cls[targets],
            np.repeat(np.arange(n), [len(t) for _, t in parts]),
        )  # fmt: skip

    return build


def _bootstrap_at(revision: str):
    """``yolo_retrain/bootstrap.py`` as it was at git ``revision``, as a module of its own."""
    import importlib.util
    import subprocess
    import tempfile

    source = subprocess.run(["git", "-C", str(ROOT), "show", f"{revision}:yolo_retrain/bootstrap.py"], check=True, capture_output=True, text=True).stdout
    path = Path(tempfile.mkdtemp()) / "bootstrap_before.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("bootstrap_before", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("home", type=Path)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--before", help="A git revision whose bootstrap is timed side by side with this one.")
    parser.add_argument("--no-prediction", action="store_true", help="Time the bootstrap only.")
    args = parser.parse_args()
    os.environ["YOLO_RETRAIN_HOME"] = str(args.home)
    from mlflow import MlflowClient

    from yolo_retrain.bootstrap import paired_bootstrap
    from yolo_retrain.box_evidence import LabelledImage, labels_from_text, predict_confidences
    from yolo_retrain.config import configure_environment, get_settings
    from yolo_retrain.per_image import ImageResults
    from yolo_retrain.store import CorrectionStore

    from yolo_retrain.cli.demo import demo_settings  # the demo's sizes (64 px, batch 16, cpu), as measured

    settings = configure_environment(demo_settings())
    client = MlflowClient(settings.tracking_uri)
    runs = sorted(client.search_runs(client.get_experiment_by_name(settings.experiment_name).experiment_id), key=lambda r: r.info.start_time)
    poisoned_run = runs[2]  # baseline, demo batch, poisoned
    local = Path(client.download_artifacts(poisoned_run.info.run_id, "holdout", str(args.home / "cost")))
    champion = ImageResults.load(local / "pre_per_image.npz") if (local / "pre_per_image.npz").exists() else None
    if champion is None:  # the champion's figures were recorded: its per-image results are in the run that made it
        champion = ImageResults.load(Path(client.download_artifacts(runs[1].info.run_id, "holdout/post_per_image.npz", str(args.home / "cost1"))))
    candidate = ImageResults.load(local / "post_per_image.npz")
    names = {0: "square", 1: "circle"}
    before = _bootstrap_at(args.before) if args.before else None
    result = header("screening_cost") | {"home": str(args.home), "before": args.before, "bootstrap": [], "prediction": []}
    for n in (80, 200, 500, 1000):
        old = candidate_ = None
        if n == len(champion.images):
            old, candidate_ = champion, candidate.aligned_to(champion.images)
        else:
            old, candidate_ = _resized(champion, n, 0)(champion), _resized(candidate.aligned_to(champion.images), n, 0)(candidate.aligned_to(champion.images))
        seconds, seconds_before, comparison = [], [], None
        for _ in range(3 if n <= 200 else 1):
            started = time.perf_counter()
            comparison = paired_bootstrap(old, candidate_, names, resamples=1000, seed=0)
            seconds.append(time.perf_counter() - started)
            if before is not None:
                started = time.perf_counter()
                theirs = before.paired_bootstrap(old, candidate_, names, resamples=1000, seed=0)
                seconds_before.append(time.perf_counter() - started)
                mine = comparison.map50_95
                assert abs(theirs.map50_95.low - mine.low) < 1e-9 and abs(theirs.map50_95.high - mine.high) < 1e-9, (theirs, mine)
        iv = comparison.map50_95
        row = {"images": n, "predictions": int(len(old.conf) + len(candidate_.conf)), "seconds": round(median(seconds), 3)}
        if before is not None:
            row |= {"seconds_before": round(median(seconds_before), 3), "ratio": round(median(seconds) / median(seconds_before), 3)}
        result["bootstrap"].append(row | {"delta": iv.delta, "low": iv.low, "high": iv.high, "half_width": (iv.high - iv.low) / 2})
        print(result["bootstrap"][-1], flush=True)
    if args.no_prediction:
        emit(result, args.out)
        return
    with CorrectionStore.from_settings(settings) as store:
        accepted = store.list(status="accepted", limit=None)
    images = [LabelledImage(c.id, Path(c.image_path), labels_from_text(c.label_text)) for c in accepted]
    weights = settings.champion_weights
    data_yaml = settings.home / "demo" / "data.yaml"
    for n in (100, 200, min(500, len(images))):
        seconds = []
        for _ in range(3):
            started = time.perf_counter()
            predict_confidences(weights, data_yaml, images[:n], 2, settings.imgsz, settings.device, settings.batch)
            seconds.append(time.perf_counter() - started)
        result["prediction"].append({"images": n, "seconds": round(median(seconds), 3)})
        print(result["prediction"][-1], flush=True)
    emit(result, args.out)


if __name__ == "__main__":
    main()
