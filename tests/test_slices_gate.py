"""Issue #23, slices: the gate judging each slice of the holdout with the paired bootstrap, on the per-image results
of a real evaluation (the shared world's retrain) and the names its manifest gives the images."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from yolo_retrain.bootstrap import paired_bootstrap
from yolo_retrain.config import get_settings
from yolo_retrain.data_yaml import read_class_names
from yolo_retrain.gate import decide
from yolo_retrain.metrics import EvalMetrics
from yolo_retrain.per_image import ImageResults
from yolo_retrain.slices import compare_slices, holdout_slices
from yolo_retrain.summary import RetrainReport


def _world_holdout(world, tmp_path: Path) -> tuple[ImageResults, list[dict]]:
    """The candidate's per-image results of the world's retrain (a real evaluation) and its dataset's manifest."""
    client, run_id = world.client, world.report.run_id
    results = ImageResults.load(Path(client.download_artifacts(run_id, "holdout/post_per_image.npz", str(tmp_path))))
    manifest = json.loads(Path(client.download_artifacts(run_id, "dataset/manifest.json", str(tmp_path))).read_text())
    return results, manifest


def _predicting(real: ImageResults, right: np.ndarray) -> ImageResults:
    """The holdout's images and labels, with one prediction per label: right at every IoU threshold where ``right``
    (per label) says so, confidently wrong elsewhere."""
    return ImageResults(
        real.images, np.repeat(right[:, None], 10, axis=1), np.where(right, 0.9, 0.8).astype(np.float32),
        real.target_cls.copy(), real.target_image.copy(), real.target_cls, real.target_image,
    )  # fmt: skip


def _tiled(real: ImageResults, copies: int) -> ImageResults:
    """The real holdout's images and labels ``copies`` times over (``<name>#<k>``): on the world's 12 holdout images
    alone every interval is too wide to tell a slice's drop from a class's (a team's holdout is larger)."""
    n, labels = len(real.images), len(real.target_image)
    images = tuple(f"{name}#{k}" for k in range(copies) for name in real.images)
    target_image = np.tile(real.target_image, copies) + np.repeat(np.arange(copies) * n, labels)
    none = np.zeros(0, np.int64)
    return ImageResults(images, np.zeros((0, 10), bool), np.zeros(0, np.float32), none, none,
                        np.tile(real.target_cls, copies), target_image)  # fmt: skip


@pytest.mark.e2e
def test_a_drop_on_one_camera_is_refused_while_the_overall_holds_and_a_small_slice_is_only_reported(in_world, tmp_path):
    real, manifest = _world_holdout(in_world, tmp_path)
    names = dict(enumerate(read_class_names(in_world.settings.base_data)))
    # a camera per holdout image, by the manifest (the names the validator gave the images): cam1 a quarter of them
    listed = sorted((e["path"].rpartition("/")[2], e) for e in manifest if e["split"] == "val")
    assert [n for n, _ in listed] == sorted(real.images) and len(listed) >= 12
    cam1 = {n for n, _ in listed[: len(listed) // 4]}
    for name, entry in listed:
        entry["metadata"] = {"camera": "cam1" if name in cam1 else "cam2"} | ({"site": "north"} if name in sorted(cam1)[:2] else {})
    (path := tmp_path / "manifest.json").write_text(json.dumps([e for _, e in listed]))
    slices = holdout_slices(path)
    assert slices[("camera", "cam1")] == cam1 and len(slices[("site", "north")]) == 2

    # five times over (the slices too); the champion gets cam1 right and cam2 wrong, the candidate the reverse
    tiled = _tiled(real, 5)
    slices = {key: {f"{name}#{k}" for name in names_in for k in range(5)} for key, names_in in slices.items()}
    on_cam1 = np.array([tiled.images[i] in slices[("camera", "cam1")] for i in tiled.target_image])
    champion, candidate = _predicting(tiled, on_cam1), _predicting(tiled, ~on_cam1)
    overall = paired_bootstrap(champion, candidate, names, resamples=100)
    pieces = compare_slices(champion, candidate, names, slices, min_images=12, resamples=100)
    comparison = replace(overall, slices=pieces)
    figures = EvalMetrics(map50=0.5, map50_95=0.5, precision=0.5, recall=0.5, per_class_ap={})

    gate = get_settings()  # the product's gate: margin 0.02, classes 0.05, slices 0.05
    decision = decide(figures, figures, gate.gate_metric, gate.gate_tolerance, gate.gate_max_class_drop, comparison,
                      gate.gate_margin, gate.gate_slice_max_drop)  # fmt: skip
    assert overall.map50_95.low > -0.02  # the whole holdout: not worse beyond the margin
    assert not decision.promote and decision.dropped_slices == ("camera=cam1",)
    assert "mAP50-95 on slice camera=cam1 (" in decision.reason and "reaches below -0.05" in decision.reason
    by_name = {p.name: p for p in pieces}
    assert by_name["camera=cam1"].champion == pytest.approx(1.0, abs=0.01) and by_name["camera=cam1"].candidate == 0.0
    assert by_name["camera=cam2"].interval.low > 0  # better where it is not worse
    assert by_name["site=north"].interval is None  # 10 images < 12: reported, not gated, though it dropped too
    metrics = comparison.as_mlflow()
    assert metrics["slice_delta_high/camera/cam1"] < 0 and metrics["slice_images/site/north"] == 10.0
    assert "slice_delta/site/north" not in metrics and metrics["post_slice_mAP50-95/site/north"] == 0.0

    # too few images for cam1 to be judged: the same candidate passes, and the summary says why cam1 was not gated
    cam1_only = {("camera", "cam1"): slices[("camera", "cam1")]}
    small = compare_slices(champion, candidate, names, cam1_only, min_images=5 * len(cam1) + 1, resamples=100)
    comparison = replace(overall, slices=small)
    decision = decide(figures, figures, gate.gate_metric, gate.gate_tolerance, gate.gate_max_class_drop, comparison,
                      gate.gate_margin, gate.gate_slice_max_drop)  # fmt: skip
    assert decision.promote and "not worse than the champion beyond margin 0.02" in decision.reason
    report = RetrainReport(outcome="promoted", trigger="manual", corrections=0, post=figures, pre=figures, comparison=comparison)
    text = report.text()
    assert re.search(rf"slice camera=cam1 \({5 * len(cam1)} holdout images\): 0\.99\d\d -> 0\.0000, too few images to judge \(not gated\)", text)
    assert "## Slices" in report.markdown() and "- slice camera=cam1 (" in report.markdown()
