"""The four cases of issue #19 at the demo's sizes, with the real flow: are wrong corrections held, right ones
accepted, and does the gate decide with its uncertainty?

In a fresh home: the demo (320 training images, half with swapped base labels, 80 holdout; a baseline champion, the
152 real fixes retrained in: case *demo batch*), then, each a retrain of its own against the demo's champion:

- *poisoned*: 100 base training images whose base labels are right, submitted with their classes swapped;
- *mixed*: 60 good corrections (new images, right labels) and 30 poisoned ones (other right base images, swapped);
- *few good, 1 epoch*: 5 good corrections and a 1-epoch retrain.

For each: the gate's outcome and reason, its interval, and what screening held and accepted among the poisoned and
the good corrections (known here because the bench made them). Also the cost of the added steps.

    .venv/bin/python bench/screening.py --out bench/results/screening.json
    .venv/bin/python bench/screening.py --seed 1 --out bench/results/screening_seed1.json   # data the rule was not chosen on
    .venv/bin/python bench/screening.py --quick    # smoke: small sizes, 1 epoch (figures meaningless)
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(Path(__file__).parent)]

from _common import emit, header  # noqa: E402


def _write(folder: Path, name: str, image, boxes) -> None:
    from yolo_retrain.synthetic import _label_text

    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "labels").mkdir(parents=True, exist_ok=True)
    image.save(folder / "images" / f"{name}.png")
    (folder / "labels" / f"{name}.txt").write_text(_label_text(boxes))


def poisoned(data_dir: Path, out: Path, count: int, skip: int = 0) -> set[str]:
    """``count`` base training images whose base labels are right, their classes swapped (after ``skip`` of them)."""
    from PIL import Image

    wrong = {p.stem for p in (data_dir / "corrections" / "labels").glob("*.txt")}
    right = sorted(p for p in (data_dir / "labels" / "train").glob("*.txt") if p.stem not in wrong)[skip : skip + count]
    for label in right:
        boxes = [(1 - int(r.split()[0]), *map(float, r.split()[1:5])) for r in label.read_text().splitlines() if r.strip()]
        _write(out, label.stem, Image.open(data_dir / "images" / "train" / f"{label.stem}.png").convert("RGB"), boxes)
    return {p.stem for p in right}


def good(out: Path, count: int, size: int, seed: int) -> set[str]:
    """``count`` new images with right labels."""
    import numpy as np
    from PIL import Image

    from yolo_retrain.synthetic import draw_shapes

    rng = np.random.default_rng(seed)
    names = set()
    for i in range(count):
        image = Image.fromarray(rng.integers(0, 60, size=(size, size, 3), dtype=np.uint8))
        boxes = draw_shapes(image, rng)
        _write(out, f"good_{seed}_{i:04d}", image, boxes)
        names.add(f"good_{seed}_{i:04d}")
    return names


def run_case(name: str, folder: Path, bad: set[str], epochs: int | None) -> dict:
    from flows.retrain import retrain
    from yolo_retrain.config import get_settings
    from yolo_retrain.store import CorrectionStore

    settings = get_settings()
    with CorrectionStore.from_settings(settings) as store:
        added = store.import_dir(folder, author=f"bench-{name}")
    started = time.perf_counter()
    report = retrain(trigger="manual", epochs=epochs)
    seconds = time.perf_counter() - started
    return _case(name, report, added, bad, seconds)


def _case(name: str, report, added, bad: set[str], seconds: float) -> dict:
    from yolo_retrain.config import get_settings
    from yolo_retrain.store import CorrectionStore

    with CorrectionStore.from_settings(get_settings()) as store:
        status = {c.id: store.get(c.id).status for c in added}
    is_bad = {c.id: Path(c.original_name).stem in bad for c in added}

    def count(which: bool, state: str) -> int:
        return sum(1 for i, s in status.items() if is_bad[i] == which and s == state)

    n_bad, n_good = sum(is_bad.values()), len(added) - sum(is_bad.values())
    iv = report.comparison.map50_95 if report.comparison else None
    return {
        "case": name,
        "outcome": report.outcome,
        "reason": report.message,
        "pre_map50_95": report.pre.map50_95 if report.pre else None,
        "post_map50_95": report.post.map50_95 if report.post else None,
        "delta_interval": None if iv is None else [iv.delta, iv.low, iv.high],
        "poisoned": n_bad,
        "poisoned_suspicious": count(True, "suspicious"),
        "poisoned_accepted": count(True, "accepted"),
        "good": n_good,
        "good_accepted": count(False, "accepted"),
        "good_suspicious": count(False, "suspicious"),
        "retention": report.retention,
        "retrain_seconds": round(seconds, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--keep", type=Path, help="Use this folder as the home and keep it (to inspect screening.json).")
    parser.add_argument("--seed", type=int, default=0, help="Another seed: other generated images, other trainings (data the rule was not chosen on).")
    args = parser.parse_args()
    os.environ["YOLO_RETRAIN_SEED"] = str(args.seed)
    train, val, epochs = (60, 20, 1) if args.quick else (320, 80, 20)
    home = args.keep or Path(tempfile.mkdtemp(prefix="bench-screening-"))
    os.environ["YOLO_RETRAIN_HOME"] = str(home)
    from yolo_retrain.config import configure_environment, get_settings

    from yolo_retrain.cli.demo import demo_settings  # the demo's sizes (64 px, batch 16, cpu), as measured

    settings = configure_environment(demo_settings())
    from flows.retrain import retrain
    from yolo_retrain import demo, tracking
    from yolo_retrain.store import CorrectionStore

    result = header("screening") | {"home": str(home), "seed": args.seed, "sizes": {"train": train, "holdout": val, "demo_epochs": epochs}}
    demo.reset_home(settings)
    data = demo.prepare_data(settings, train, val, settings.imgsz)
    tracking.create_experiment(tracking.client_for(settings), settings)
    baseline = retrain(trigger="baseline", force=True, epochs=epochs)
    with CorrectionStore.from_settings(settings) as store:
        fixes = store.import_dir(data.corrections_dir, author="demo-reviewer", source_model_version=baseline.version)
    started = time.perf_counter()
    cases = [_case("demo batch", retrain(trigger="manual", epochs=epochs), fixes, set(), time.perf_counter() - started)]
    work = home / "bench-batches"
    data_dir = settings.home / "demo"
    n_poison, n_mixed_poison, n_mixed_good = (100, 30, 60) if not args.quick else (10, 3, 6)
    later_epochs = None if not args.quick else 1  # a user's `yolo-retrain run`: the settings' epochs
    bad = poisoned(data_dir, work / "poisoned", n_poison)
    cases.append(run_case("poisoned", work / "poisoned", bad, later_epochs))
    bad = poisoned(data_dir, work / "mixed", n_mixed_poison, skip=n_poison)
    good(work / "mixed", n_mixed_good, settings.imgsz, seed=101 + 1000 * args.seed)
    cases.append(run_case("mixed", work / "mixed", bad, later_epochs))
    good(work / "few", 5, settings.imgsz, seed=202 + 1000 * args.seed)
    cases.append(run_case("few good, 1 epoch", work / "few", set(), 1))
    result["cases"] = cases
    emit(result, args.out)
    if not args.keep:
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
