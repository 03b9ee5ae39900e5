"""The alternative a user weighs against the retrain flow: a bare Ultralytics script, `train()` then `val()`.

Same arguments as `yolo_retrain.training.train` / `evaluate` pass: with ``--recipe`` every train argument of the
retrain's recipe (a YAML of Ultralytics train arguments; `bench/overhead.py` writes the flow's), else the few given
here (seed, deterministic, plots, workers, imgsz, batch, device), so `bench/overhead.py` compares like with like.
Prints one JSON line with its own phase timings (seconds since the interpreter started its imports):

    .venv/bin/python bench/bare_train.py --data data.yaml --model champion.pt --epochs 3 --project runs
    .venv/bin/python bench/bare_train.py --data data.yaml --model champion.pt --recipe recipe.yaml --project runs
"""

import time

T0 = time.perf_counter()

import argparse
import json
import os

import yaml

from ultralytics import YOLO
from ultralytics.utils import SETTINGS

# The flow switches Ultralytics' own integrations off (its MLflow callback would log runs of its own):
# the bare script does the same, so neither side pays for them.
SETTINGS.update(mlflow=False, sync=False, clearml=False, comet=False, dvc=False, raytune=False, wandb=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--recipe", help="A YAML of every train argument (then the options below are not used).")
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--imgsz", type=int, default=64)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--plots", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--project", required=True)
    parser.add_argument("--name", default="bare")
    args = parser.parse_args()
    output = {"project": args.project, "exist_ok": True, "verbose": False}
    if args.recipe:
        with open(args.recipe) as file:
            train_args = yaml.safe_load(file)
        batch = train_args["batch"] if isinstance(train_args["batch"], int) and train_args["batch"] >= 1 else 16
        val_args = {"batch": batch, **{k: train_args[k] for k in ("imgsz", "device", "workers", "single_cls")}}
    else:
        hardware = {"imgsz": args.imgsz, "batch": args.batch, "device": args.device, "workers": args.workers}
        train_args = {"epochs": args.epochs, "seed": args.seed, "deterministic": True, "plots": args.plots, **hardware}
        val_args = hardware
    t_imported = time.perf_counter()
    model = YOLO(args.model)
    model.train(data=args.data, name=args.name, **train_args, **output)
    t_trained = time.perf_counter()
    best = model.trainer.best if os.path.exists(model.trainer.best) else model.trainer.last
    metrics = YOLO(str(best)).val(data=args.data, split="val", name=f"{args.name}-val", plots=False, **val_args, **output)
    t_validated = time.perf_counter()
    print(
        "BARE_RESULT "
        + json.dumps(
            {
                "import_s": t_imported - T0,
                "train_s": t_trained - t_imported,
                "val_s": t_validated - t_trained,
                "map50_95": float(metrics.box.map),
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
