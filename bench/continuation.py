"""What a retrain that continues from a trained champion should use by default (warmup, learning rate), measured on
the demo's data: the champion's holdout mAP50-95 against each variant's after short and longer retrains.

The champion is trained as `yolo-retrain demo` trains its baseline (yolov8n.yaml, the demo's 320 + 80 images at 64 px,
half the training labels wrong, 20 epochs); each variant then trains from its weights on the corrected labels (the
same images: what base + corrections give a retrain) and is validated on the holdout. Variants (arguments over the
champion's own recorded ones, as the recipe inherits them, except "ultralytics"):

    ultralytics        Ultralytics' defaults (optimizer auto, warmup 3 epochs): what retrains did before the recipe
    champion           the champion's recorded arguments (its resolved optimizer and lr0), Ultralytics' warmup
    warmup0            the champion's, no warmup
    lr/10              the champion's, a tenth of its lr0 (Ultralytics' warmup, which it caps at epochs - 1)
    warmup0-lr/10      the champion's, no warmup, a tenth of its lr0
    continuation       the champion's with yolo_retrain.recipe's continuation defaults (what a retrain uses: at
                       the time of the 1/5-epoch runs a tenth of lr0 always; now only below the whole warmup)

    .venv/bin/python bench/continuation.py --epochs 1 5 --out bench/results/continuation.json
    .venv/bin/python bench/continuation.py --epochs 1 5 --variants lr/10 continuation
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from _common import emit, header

from yolo_retrain.config import configure_environment  # noqa: E402

configure_environment()  # environment first: Ultralytics reads it at import
from yolo_retrain.recipe import champion_arguments, continuation_defaults
from yolo_retrain.synthetic import make_dataset

DEMO = {"train": 320, "val": 80, "champion_epochs": 20}
HARDWARE = {"imgsz": 64, "batch": 16, "device": "cpu", "workers": 0, "seed": 0, "deterministic": True, "plots": False}


def variants(champion: dict, epochs: int) -> dict[str, dict]:
    """Each variant's train arguments (HARDWARE is added to all)."""
    inherited = {k: v for k, v in champion.items() if k not in HARDWARE}
    return {
        "ultralytics": {},
        "champion": inherited,
        "warmup0": {**inherited, "warmup_epochs": 0.0},
        "lr/10": {**inherited, "lr0": inherited["lr0"] / 10},
        "warmup0-lr/10": {**inherited, "warmup_epochs": 0.0, "lr0": inherited["lr0"] / 10},
        "continuation": {**inherited, **continuation_defaults(inherited, epochs)},
    }


def train(start: str, data: Path, epochs: int, project: Path, name: str, args: dict) -> tuple[str, float, float]:
    """(best weights, holdout mAP50-95, seconds)."""
    from ultralytics import YOLO
    from ultralytics.utils import SETTINGS

    SETTINGS.update(mlflow=False)
    started = time.perf_counter()
    model = YOLO(start)
    model.train(data=str(data), epochs=epochs, project=str(project), name=name, exist_ok=True, verbose=False, **{**args, **HARDWARE})
    best = str(model.trainer.best)
    return best, holdout_map(best, data, project), time.perf_counter() - started


def holdout_map(weights: str, data: Path, project: Path) -> float:
    from ultralytics import YOLO

    keys = ("imgsz", "batch", "device", "workers")
    metrics = YOLO(weights).val(data=str(data), split="val", project=str(project), name="val", exist_ok=True, plots=False,
                                verbose=False, **{k: HARDWARE[k] for k in keys})  # fmt: skip
    return float(metrics.box.map)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, nargs="+", default=[1, 5], help="Retrain lengths to measure.")
    parser.add_argument("--champion-epochs", type=int, default=DEMO["champion_epochs"])
    parser.add_argument("--variants", nargs="+", help="Only these variants (default: all).")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-continuation-"))
    wrong = make_dataset(root / "base", train=DEMO["train"], val=DEMO["val"], wrong_fraction=0.5, seed=0)
    fixed = make_dataset(root / "fixed", train=DEMO["train"], val=DEMO["val"], wrong_fraction=0.0, seed=0)  # same images
    champion, champion_map, seconds = train("yolov8n.yaml", wrong.data_yaml, args.champion_epochs, root / "runs", "champion", {})
    champion_map = holdout_map(champion, fixed.data_yaml, root / "runs")  # the holdout's labels are right in both
    print(f"champion: mAP50-95 {champion_map:.4f} ({seconds:.0f} s)", file=sys.stderr, flush=True)
    recorded = champion_arguments(champion)
    result = header("continuation")
    result.update(
        data={**DEMO, "champion_epochs": args.champion_epochs, **HARDWARE},
        champion={"map50_95": champion_map, "recorded": {k: recorded[k] for k in ("optimizer", "lr0", "warmup_epochs", "warmup_bias_lr")}},
        retrains=[],
    )
    for epochs in args.epochs:
        for name, extra in variants(recorded, epochs).items():
            if args.variants and name not in args.variants:
                continue
            _, score, seconds = train(champion, fixed.data_yaml, epochs, root / "runs", f"{name}-{epochs}", extra)
            row = {"variant": name, "epochs": epochs, "map50_95": score, "vs_champion": score - champion_map, "seconds": seconds}
            result["retrains"].append(row)
            print(f"{epochs} epoch(s) {name:<14} mAP50-95 {score:.4f} ({score - champion_map:+.4f}) {seconds:.0f} s", file=sys.stderr, flush=True)
    emit(result, args.out)


if __name__ == "__main__":
    main()
