"""Local disk bytes a retrain adds, by category: the code before and after #25 side by side, and after many retrains.

Each side runs in a process of its own with its code first on the path (``--before``: a checkout of the earlier
commit, e.g. ``git archive 8b9d18f | tar -x -C /tmp/before``), in a temporary home: a synthetic dataset, the
experiment, then N retrains through the real flow (a Prefect test server, MLflow on SQLite, a tiny Ultralytics
training from a YAML model), each after one new correction (a new dataset digest, as every night). After each
retrain the home is measured by category (file sizes, links as links). The weights' size does not depend on how
long the training ran, so tiny trainings give the real figures per retrain.

    .venv/bin/python bench/disk_per_retrain.py --before /tmp/before --models yolov8n.yaml yolov8s.yaml \
        --retrains 4 --long 30 --out bench/results/disk_per_retrain.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import ROOT, emit, header

RECORD = ("mlflow logged models", "mlflow run artifacts", "mlflow database")  # MLflow: what an audit or rollback reads


def measure(home: Path) -> dict[str, int]:
    """Bytes under ``home`` by category (the same rules for both sides: no project code imported)."""
    usage: dict[str, int] = {}
    for root, _, files in os.walk(home):
        for name in files:
            path = Path(root, name)
            try:
                size = path.lstat().st_size
            except OSError:
                continue
            usage[_category(home, path)] = usage.get(_category(home, path), 0) + size
    return usage


def _category(home: Path, path: Path) -> str:
    parts = path.relative_to(home).parts
    top = parts[0]
    if top == "mlartifacts":
        return "mlflow logged models" if "models" in parts[1:3] else "mlflow run artifacts"
    if top == "mlflow.db":
        return "mlflow database"
    if top == "runs":
        return "ultralytics runs (checkpoints)" if path.suffix == ".pt" else "ultralytics runs (plots, logs)"
    return {"models": "models/", "datasets": "datasets/", "corrections": "corrections", "prefect": "prefect"}.get(
        top, "other"
    )


def worker(model: str, retrains: int, home: Path) -> list[dict]:
    """Run in the side's process: ``retrains`` retrains in ``home``, the usage after each (and the weights' size)."""
    env = {"HOME": str(home), "BASE_MODEL": model, "EPOCHS": "1", "IMGSZ": "32", "BATCH": "8", "MIN_CORRECTIONS": "1"}
    for key, value in env.items():
        os.environ[f"YOLO_RETRAIN_{key}"] = value
    from yolo_retrain.config import configure_environment, get_settings

    configure_environment()
    import prefect.testing.utilities as harness

    from flows.retrain import retrain
    from yolo_retrain import tracking
    from yolo_retrain.store import CorrectionStore
    from yolo_retrain.synthetic import make_dataset

    settings = get_settings()
    data = make_dataset(home / "demo", train=retrains + 4, val=4, size=64, wrong_fraction=1.0)
    names = sorted(p.stem for p in (data.corrections_dir / "labels").glob("*.txt"))
    tracking.create_experiment(tracking.client_for(settings), settings)
    rows = []
    with harness.prefect_test_harness(server_startup_timeout=180):
        for i in range(retrains):
            folder = data.corrections_dir
            with CorrectionStore.from_settings(settings) as store:
                store.add(folder / "images" / f"{names[i]}.png", folder / "labels" / f"{names[i]}.txt", image_name=f"{names[i]}.png")
            report = retrain(trigger="manual")
            weights = settings.champion_weights.stat().st_size if settings.champion_weights.exists() else None
            rows.append({"retrain": i + 1, "outcome": report.outcome, "weights_bytes": weights, "usage": measure(home)})
            print(f"retrain {i + 1}/{retrains}: {report.outcome}", file=sys.stderr, flush=True)
    return rows


def run_side(code: Path, model: str, retrains: int) -> list[dict]:
    with tempfile.TemporaryDirectory(prefix="disk-bench-") as tmp:
        env = {**os.environ, "PYTHONPATH": str(code)}
        for key in [k for k in env if k.startswith(("YOLO_RETRAIN_", "PREFECT_"))]:
            del env[key]
        cmd = [sys.executable, __file__, "--worker", "--model", model, "--retrains", str(retrains), "--home", tmp]
        done = subprocess.run(cmd, env=env, cwd=code, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{code} {model}: worker failed\n{done.stderr[-4000:]}")
        return json.loads(done.stdout.strip().splitlines()[-1])


def added_per_retrain(rows: list[dict]) -> dict[str, float]:
    """Median bytes added by one retrain, by category, from the second retrain on (the first builds the home)."""
    categories = {c for row in rows for c in row["usage"]}
    steps = range(1, len(rows))
    return {
        c: statistics.median(rows[i]["usage"].get(c, 0) - rows[i - 1]["usage"].get(c, 0) for i in steps) for c in sorted(categories)
    }


def summarise(rows: list[dict]) -> dict:
    weights = rows[-1]["weights_bytes"]
    added = added_per_retrain(rows)
    beyond = sum(v for c, v in added.items() if c not in RECORD)
    last = rows[-1]["usage"]
    return {
        "weights_bytes": weights,
        "added_per_retrain": added,
        "added_beyond_record": beyond,
        "added_beyond_record_x_weights": round(beyond / weights, 2) if weights else None,
        "after_last": last,
        "after_last_beyond_record": sum(v for c, v in last.items() if c not in RECORD),
        "outcomes": [r["outcome"] for r in rows],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", type=Path, help="A checkout of the code before (side by side with this one).")
    parser.add_argument("--models", nargs="+", default=["yolov8n.yaml"])
    parser.add_argument("--retrains", type=int, default=4, help="Retrains per side and model (per-retrain figures).")
    parser.add_argument("--long", type=int, default=0, help="Also this many retrains of the first model, this code.")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--home", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.model, args.retrains, args.home)))
        return

    result = header("disk_per_retrain")
    sides = {"after": ROOT, **({"before": args.before} if args.before else {})}
    result["sides"] = {}
    for model in args.models:
        for side, code in sides.items():  # side by side, model by model
            print(f"{model} {side} ({code}): {args.retrains} retrains", file=sys.stderr, flush=True)
            rows = run_side(code, model, args.retrains)
            result["sides"][f"{model} {side}"] = {"rows": rows, **summarise(rows)}
    if args.long:
        print(f"{args.models[0]} after: {args.long} retrains", file=sys.stderr, flush=True)
        rows = run_side(ROOT, args.models[0], args.long)
        result["long"] = {"model": args.models[0], "retrains": args.long, "rows": rows, **summarise(rows)}
    emit(result, args.out)


if __name__ == "__main__":
    main()
