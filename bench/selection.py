"""Selection for review (#22): does the champion pick the images it is wrong on, and do their corrections teach a
retrain more than as many random ones? And what does scoring cost?

Generated data (``yolo_retrain.synthetic``'s shapes): camera A (the dark background the champion was trained on)
and camera B, a known minority of the production pool (a bright, noisy background, low contrast) that the
champion never saw. The champion is trained on camera A only. Then, at the same budget N:

(a) the share of the N selected images on which the champion is wrong (a true box missed, mislabelled, or a false
    box, at confidence 0.25 and IoU 0.5) against N random ones (the pool's share, and random draws);
(b) the holdout gain (mAP50-95, holdout of both cameras) of a retrain from the champion on the base data plus the
    N selected images' true labels, against the same retrain on N random images' (several draws);
cost: images scored per second (after the model is loaded), and peak RSS for a 1 000 and a 10 000 image pool
(each in a process of its own).

    .venv/bin/python bench/selection.py --out bench/results/selection.json
    .venv/bin/python bench/selection.py --quick      # smoke: tiny sizes (figures meaningless)
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(Path(__file__).parent)]

from _common import emit, header  # noqa: E402

NAMES = ["square", "circle"]
TRAIN = {"imgsz": 64, "batch": 16, "device": "cpu", "workers": 0, "plots": False, "verbose": False, "exist_ok": True}


def _environment(home: Path) -> None:
    os.environ.setdefault("YOLO_RETRAIN_HOME", str(home))
    from yolo_retrain.config import configure_environment, get_settings

    configure_environment(get_settings())


def draw(rng, size: int, camera: str):
    """One image of ``camera`` (A: dark background; B: bright noisy background) and its true boxes."""
    import numpy as np
    from PIL import Image

    from yolo_retrain.synthetic import draw_shapes

    low, high = (0, 60) if camera == "A" else (110, 200)
    image = Image.fromarray(rng.integers(low, high, size=(size, size, 3), dtype=np.uint8))
    return image, draw_shapes(image, rng)


def write(folder: Path, count: int, share_b: float, size: int, seed: int, prefix: str) -> dict[str, dict]:
    """``folder/images`` + ``folder/labels`` (true labels); per image: its camera and boxes."""
    import numpy as np

    from yolo_retrain.synthetic import _label_text

    rng = np.random.default_rng(seed)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "labels").mkdir(parents=True, exist_ok=True)
    made = {}
    for i in range(count):
        camera = "B" if rng.random() < share_b else "A"
        image, boxes = draw(rng, size, camera)
        name = f"{prefix}_{i:05d}"
        image.save(folder / "images" / f"{name}.png")
        (folder / "labels" / f"{name}.txt").write_text(_label_text(boxes))
        made[str((folder / "images" / f"{name}.png").resolve())] = {"camera": camera, "boxes": boxes}
    return made


def data_yaml(path: Path, train: list[str], val: str) -> Path:
    import yaml

    path.write_text(yaml.safe_dump({"train": train, "val": val, "names": dict(enumerate(NAMES))}))
    return path


def wrong(prediction, truth: list[tuple]) -> bool:
    """The champion is wrong on an image: a true box it misses or mislabels, or a box where there is none."""
    from yolo_retrain.labelstudio.convert import ScoredBox
    from yolo_retrain.selection.boxes import iou

    predicted = [ScoredBox((int(c), *map(float, b)), float(s)) for c, s, b in zip(prediction.boxes.cls.tolist(), prediction.boxes.conf.tolist(), prediction.boxes.xywhn.tolist())]
    true = [ScoredBox(tuple(t), 1.0) for t in truth]
    used = set()
    for t in true:
        match = next((i for i, p in enumerate(predicted) if i not in used and p.box[0] == t.box[0] and iou(p, t) >= 0.5), None)
        if match is None:
            return True
        used.add(match)
    return len(used) != len(predicted)


def holdout_map(weights: Path, data: Path, work: Path) -> float:
    from ultralytics import YOLO

    results = YOLO(str(weights)).val(data=str(data), split="val", project=str(work), name="val", **{k: v for k, v in TRAIN.items() if k not in ("workers",)}, workers=0)
    return float(results.box.map)


def train(start: str, data: Path, epochs: int, work: Path, name: str, seed: int) -> Path:
    from ultralytics import YOLO

    model = YOLO(start)
    model.train(data=str(data), epochs=epochs, project=str(work), name=name, seed=seed, val=False, **TRAIN)
    return Path(model.trainer.last)


def score(pool_paths: list[str], champion: Path, home: Path):
    """The product's scoring over the pool: (ScoredPool, seconds scoring, the model's predictions at 0.25)."""
    from ultralytics import YOLO

    from yolo_retrain.selection.pool import PoolImage
    from yolo_retrain.selection.samples import SampleStore
    from yolo_retrain.selection.score_pool import ScoringSetup, score_pool

    model = YOLO(str(champion))
    model.predict([pool_paths[0]], imgsz=64, device="cpu", verbose=False)  # warm: load and first call not counted
    store = SampleStore(f"sqlite:///{home / 'pool.db'}", home / "samples", NAMES)
    setup = ScoringSetup(NAMES, 0.25, 0.05, 64, "cpu")
    started = time.perf_counter()
    scored = score_pool([PoolImage(p, Path(p), "folder") for p in pool_paths], model, setup, store.not_selectable, keep=10_000)
    seconds = time.perf_counter() - started
    store.close()
    return scored, seconds, model


def memory(count: int, work: Path, champion: Path) -> dict:
    """In a process of its own: score a pool of ``count`` images; its peak RSS."""
    out = subprocess.run(
        [sys.executable, __file__, "--memory-child", str(count), "--work", str(work), "--champion", str(champion)],
        capture_output=True, text=True, check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def memory_child(count: int, work: Path, champion: Path) -> None:
    _environment(work / "home-mem")
    pool = work / f"mem-pool-{count}"
    if not (pool / "images").is_dir():
        write(pool, count, 0.15, 64, 99, "m")
    paths = sorted(str(p) for p in (pool / "images").glob("*.png"))[:count]
    from yolo_retrain.selection.pool import PoolImage
    from yolo_retrain.selection.samples import SampleStore
    from yolo_retrain.selection.score_pool import ScoringSetup, score_pool
    from ultralytics import YOLO

    model = YOLO(str(champion))
    model.predict([paths[0]], imgsz=64, device="cpu", verbose=False)  # loaded and warm before measuring
    store = SampleStore(f"sqlite:///{work / f'mem-{count}.db'}", work / "mem-samples", NAMES)
    before = _rss_mib()
    peak = [before]
    stop = threading.Event()

    def sample() -> None:  # the process's resident memory every 20 ms while it scores
        while not stop.wait(0.02):
            peak[0] = max(peak[0], _rss_mib())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.perf_counter()
    scored = score_pool([PoolImage(p, Path(p), "folder") for p in paths], model, ScoringSetup(NAMES, 0.25, 0.05, 64, "cpu"), store.not_selectable, keep=500)
    seconds = time.perf_counter() - started
    stop.set()
    sampler.join()
    print(json.dumps({"pool": count, "scored": scored.scored, "kept_candidates": len(scored.candidates), "seconds": seconds,
                      "images_per_s": scored.scored / seconds, "rss_before_scoring_mib": before,
                      "peak_rss_while_scoring_mib": peak[0], "growth_mib": peak[0] - before}))


def _rss_mib() -> float:
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--work", type=Path)
    parser.add_argument("--champion", type=Path)
    parser.add_argument("--memory-child", type=int)
    parser.add_argument("--draws", type=int, default=3, help="random selections (and retrain seeds) compared")
    args = parser.parse_args()
    if args.memory_child:
        memory_child(args.memory_child, args.work, args.champion)
        return
    quick = args.quick
    sizes = dict(base=40, holdout=20, pool=60, budget=8, champion_epochs=1, retrain_epochs=1, memory=(50, 100)) if quick else \
        dict(base=300, holdout=120, pool=1000, budget=40, champion_epochs=30, retrain_epochs=10, memory=(1000, 10_000))
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-selection-"))
    work.mkdir(parents=True, exist_ok=True)
    _environment(work / "home")
    result = {**header("selection"), "sizes": sizes, "minority": "camera B: bright noisy background, never in the champion's training data"}

    # The champion: camera A only.
    base = work / "base"
    if not (base / "images").is_dir():
        write(base, sizes["base"], 0.0, 64, 1, "base")
    holdout = work / "holdout"
    if not (holdout / "images").is_dir():
        (work / "holdout.json").write_text(json.dumps(write(holdout, sizes["holdout"], 0.15, 64, 2, "hold")))
    pool_dir = work / "pool"
    truth = write(pool_dir, sizes["pool"], 0.15, 64, 3, "pool") if not (pool_dir / "images").is_dir() else None
    if truth is None:
        truth = {str(p.resolve()): None for p in (pool_dir / "images").glob("*.png")}
    base_yaml = data_yaml(work / "base.yaml", [str(base / "images")], str(holdout / "images"))
    champion = args.champion or work / "champion.pt"
    started = time.perf_counter()
    if not champion.exists():
        trained = train("yolov8n.yaml", base_yaml, sizes["champion_epochs"], work / "runs", "champion", 0)
        champion.write_bytes(trained.read_bytes())
    result["champion_train_s"] = time.perf_counter() - started
    champion_map = holdout_map(champion, base_yaml, work / "runs")
    result["champion_holdout_map50_95"] = champion_map

    # (a) Who is the champion wrong on, and whom does the selection pick?
    pool_paths = sorted(truth)
    from yolo_retrain.labels import parse_labels

    truths = {p: [tuple(b) for b in parse_labels((pool_dir / "labels" / f"{Path(p).stem}.txt").read_text(), p, 2)] for p in pool_paths}
    cameras = json.loads((work / "cameras.json").read_text()) if (work / "cameras.json").exists() else {p: v["camera"] for p, v in truth.items() if v}
    (work / "cameras.json").write_text(json.dumps(cameras))
    scored, seconds, model = score(pool_paths, champion, work / "home")
    result["cost"] = {"pool": len(pool_paths), "scoring_s": seconds, "images_per_s": len(pool_paths) / seconds}
    predictions = {}
    for i in range(0, len(pool_paths), 64):
        chunk = pool_paths[i : i + 64]
        for p, r in zip(chunk, model.predict(chunk, imgsz=64, conf=0.25, device="cpu", verbose=False)):
            predictions[p] = wrong(r, truths[p])
    wrong_share = sum(predictions.values()) / len(predictions)
    from yolo_retrain.config import Settings
    from yolo_retrain.selection.choose import choose

    defaults = Settings()
    budget = sizes["budget"]
    choice = choose(scored.candidates, budget, NAMES, defaults.selection_near_duplicate_bits, defaults.selection_coverage_weight)
    selected = [str(p.candidate.path) for p in choice.picks]
    rng = random.Random(7)
    randoms = [rng.sample(pool_paths, budget) for _ in range(args.draws)]
    share = lambda paths: sum(predictions[p] for p in paths) / len(paths)  # noqa: E731
    minority = lambda paths: sum(cameras.get(p) == "B" for p in paths) / len(paths)  # noqa: E731
    result["a"] = {
        "budget": budget,
        "pool_wrong_share": wrong_share,
        "pool_minority_share": minority(pool_paths),
        "wrong_share_minority": sum(predictions[p] for p in pool_paths if cameras.get(p) == "B") / max(1, sum(cameras.get(p) == "B" for p in pool_paths)),
        "wrong_share_majority": sum(predictions[p] for p in pool_paths if cameras.get(p) != "B") / max(1, sum(cameras.get(p) != "B" for p in pool_paths)),
        "selected_wrong_share": share(selected),
        "selected_minority_share": minority(selected),
        "random_wrong_shares": [share(r) for r in randoms],
        "ratio_vs_pool": share(selected) / wrong_share if wrong_share else None,
        "near_duplicates_passed_over": len(choice.near_duplicates),
    }
    emit(result, args.out)  # (a) and the cost are in even if the retrains are stopped

    # (b) A retrain on the selected images' corrections against one on random images' (several draws), each beside a
    # control retrain on the base data alone with the same seed: a champion still short of convergence gains from
    # any further training, so the corrections' own share is the gain over that control.
    holdout_cameras = {p: ("B" if v and v["camera"] == "B" else "A") for p, v in (json.loads((work / "holdout.json").read_text()).items())}
    evaluations = {"all": base_yaml}
    for camera in ("A", "B"):
        listed = work / f"holdout-{camera}.txt"
        listed.write_text("\n".join(p for p, c in holdout_cameras.items() if c == camera) + "\n")
        evaluations[camera] = data_yaml(work / f"holdout-{camera}.yaml", [str(base / "images")], str(listed))
    champion_maps = {k: holdout_map(champion, v, work / "runs") for k, v in evaluations.items()}
    result["champion_holdout_by_camera"] = champion_maps

    def retrained(paths: list[str], name: str, seed: int) -> dict[str, float]:
        train_sources = [str(base / "images")]
        if paths:
            listed = work / f"{name}.txt"
            listed.write_text("\n".join(paths) + "\n")
            train_sources.append(str(listed))
        data = data_yaml(work / f"{name}.yaml", train_sources, str(holdout / "images"))
        weights = train(str(champion), data, sizes["retrain_epochs"], work / "runs", name, seed)
        return {k: holdout_map(weights, v, work / "runs") for k, v in evaluations.items()}

    b = result["b"] = {"retrain_epochs": sizes["retrain_epochs"], "draws": []}
    for draw_index in range(args.draws):
        control = retrained([], f"control-{draw_index}", draw_index)
        chosen = retrained(selected, f"selected-{draw_index}", draw_index)
        drawn = retrained(randoms[draw_index], f"random-{draw_index}", draw_index)
        b["draws"].append({"seed": draw_index, "control": control, "selected": chosen, "random": drawn})
        emit(result, args.out)
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    for part in ("all", "B", "A"):
        over_champion = {arm: mean([d[arm][part] - champion_maps[part] for d in b["draws"]]) for arm in ("control", "selected", "random")}
        over_control = {arm: mean([d[arm][part] - d["control"][part] for d in b["draws"]]) for arm in ("selected", "random")}
        b[part] = {
            "gain_over_champion": over_champion,
            "ratio_over_champion": over_champion["selected"] / over_champion["random"] if over_champion["random"] > 0 else None,
            "gain_over_control": over_control,
            "ratio_over_control": over_control["selected"] / over_control["random"] if over_control["random"] > 0 else None,
        }

    # Cost: memory flat with pool size (each pool in a fresh process).
    result["memory"] = [memory(n, work, champion) for n in sizes["memory"]]
    emit(result, args.out)


if __name__ == "__main__":
    main()
