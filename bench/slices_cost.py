"""What judging the holdout's slices (#23) costs beside the overall paired bootstrap, in one run.

Per-image results of two models of close quality (generated: 1-3 labels an image, two classes) on holdouts of
200 and 1000 images; each holdout split into slices of a camera column (4 values) and a site column (2 values).
Times the overall paired bootstrap and ``slices.compare_slices`` (one bootstrap per judged slice) side by side,
1000 draws each, and gives their ratio.

    .venv/bin/python bench/slices_cost.py --out bench/results/slices_cost.json
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(Path(__file__).parent)]

from _common import emit, header  # noqa: E402


def holdout(seed: int, images: int, skill: float = 0.7):
    """Per-image results as the validator makes them: a prediction per label (right with probability ``skill``
    up to a random IoU threshold), a false positive now and then."""
    import numpy as np

    from yolo_retrain.per_image import ImageResults

    rng = np.random.default_rng(seed)
    tp, conf, pred_cls, pred_image, target_cls, target_image = [], [], [], [], [], []
    for i in range(images):
        for _ in range(int(rng.integers(1, 4))):
            cls = int(rng.integers(0, 2))
            target_cls.append(cls), target_image.append(i)
            right = rng.random() < skill
            tp.append(np.arange(10) < (int(rng.integers(1, 11)) if right else 0))
            conf.append(rng.uniform(0.5, 1.0) if right else rng.uniform(0.05, 0.7))
            pred_cls.append(cls), pred_image.append(i)
        if rng.random() < 0.3:
            tp.append(np.zeros(10, bool)), conf.append(rng.uniform(0.05, 0.6)), pred_cls.append(int(rng.integers(0, 2)))
            pred_image.append(i)
    return ImageResults(tuple(f"img{i:05d}.png" for i in range(images)), np.array(tp), np.array(conf),
                        np.array(pred_cls), np.array(pred_image), np.array(target_cls), np.array(target_image))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, nargs="+", default=[200, 1000])
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--min-images", type=int, default=30, help="GATE_SLICE_MIN_IMAGES: smaller slices are not judged")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    from yolo_retrain.bootstrap import paired_bootstrap
    from yolo_retrain.slices import compare_slices

    names = {0: "square", 1: "circle"}
    result = header("slices_cost") | {"resamples": args.resamples, "cases": []}
    for n in args.images:
        champion, candidate = holdout(1, n), holdout(2, n)
        slices = {("camera", f"cam{i}"): set(champion.images[i::4]) for i in range(4)}
        slices |= {("site", site): set(champion.images[i::2]) for i, site in enumerate(("north", "south"))}
        started = time.perf_counter()
        paired_bootstrap(champion, candidate, names, resamples=args.resamples)
        overall = time.perf_counter() - started
        started = time.perf_counter()
        pieces = compare_slices(champion, candidate, names, slices, min_images=args.min_images, resamples=args.resamples)
        sliced = time.perf_counter() - started
        case = {"images": n, "slices": len(pieces), "judged": sum(p.interval is not None for p in pieces),
                "overall_s": round(overall, 3), "slices_s": round(sliced, 3), "ratio": round(sliced / overall, 2)}  # fmt: skip
        result["cases"].append(case)
        print(case, flush=True)
    emit(result, args.out)


if __name__ == "__main__":
    main()
