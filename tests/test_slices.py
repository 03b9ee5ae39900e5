"""Issue #23, slices: image metadata from every source into the store and the manifest, and the gate judging each
slice of the holdout with the paired bootstrap on the per-image results of real evaluations (the shared world's)."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from conftest import use_home
from typer.testing import CliRunner

from yolo_retrain import intake
from yolo_retrain.bootstrap import paired_bootstrap
from yolo_retrain.cli import app
from yolo_retrain.config import get_settings
from yolo_retrain.data_yaml import read_class_names
from yolo_retrain.dataset import build_dataset
from yolo_retrain.errors import InvalidInput
from yolo_retrain.gate import decide
from yolo_retrain.image_metadata import MAX_COLUMNS, check_metadata, parse_json, read_sidecar
from yolo_retrain.metrics import EvalMetrics
from yolo_retrain.per_image import ImageResults
from yolo_retrain.slices import compare_slices, holdout_slices
from yolo_retrain.store import CorrectionStore
from yolo_retrain.summary import RetrainReport
from yolo_retrain.synthetic import make_dataset


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A small generated base dataset (no training) with a metadata.csv beside its data.yaml."""
    data = make_dataset(tmp_path / "base", train=6, val=6, size=32)
    root = data.data_yaml.parent
    val = sorted((root / "images" / "val").iterdir())
    rows = ["image,camera,site"] + [f"images/val/{p.name},cam{1 + i % 2},north" for i, p in enumerate(val)]
    (root / "metadata.csv").write_text("\n".join(rows) + "\n")
    settings = use_home(monkeypatch, tmp_path / "home", base_data=data.data_yaml)
    return settings, data, val


def _manifest(built) -> dict[str, dict]:
    return {e["image_sha256"]: e for e in json.loads(built.manifest_path.read_text())}


def test_metadata_travels_from_every_intake_to_the_store_and_the_manifest(project, tmp_path):
    settings, data, val = project
    corrections = sorted((data.corrections_dir / "images").iterdir())
    # the export's own sidecar: one of its images gets a camera
    (data.corrections_dir / "metadata.csv").write_text(f"image,camera\nimages/{corrections[0].name},cam9\n")
    with CorrectionStore.from_settings(settings) as store:
        imported = intake.import_corrections(store, settings, data.corrections_dir, format="plain").added
        # the intake's metadata (form field, --meta) on a base holdout image: its site overrides the sidecar's
        fix = intake.add_correction(store, settings, val[0], "0 0.5 0.5 0.2 0.2\n", metadata=parse_json('{"site": "south"}', "form")).correction
        stored = {c.id: c.metadata for c in store.list()}
        training = store.training_corrections("nobody")
    assert stored[fix.id] == {"site": "south"}
    by_name = {c.original_name: stored[c.id] for c in imported}
    assert by_name[corrections[0].name] == {"camera": "cam9"} and by_name[corrections[1].name] == {}

    # accepted corrections carry it into a build as a batch does
    built = build_dataset(settings.base_data, store_batch := [c for c in imported + [fix]], tmp_path / "out", 0.5)
    entries = _manifest(built)
    assert entries[fix.image_sha256]["metadata"] == {"camera": "cam1", "site": "south"}  # the base's camera, its site
    assert entries[imported[0].image_sha256]["metadata"] == {"camera": "cam9"}
    val_base = [e for e in entries.values() if e["split"] == "val" and e["label_source"] == "base"]
    assert val_base and all(e["metadata"]["site"] == "north" for e in val_base)
    slices = holdout_slices(built.manifest_path)
    assert {k for k in slices if k[0] == "camera"} >= {("camera", "cam1"), ("camera", "cam2")}
    assert len(slices[("camera", "cam1")]) == 3  # the validator's names: the listed files' names
    assert all("/" not in name for names in slices.values() for name in names)
    assert training.accepted == [] and len(store_batch) == len(imported) + 1

    # the metadata is part of the dataset's identity, not of what an evaluation sees
    (data.data_yaml.parent / "metadata.csv").write_text("image,camera\n" + f"images/val/{val[1].name},cam7\n")
    rebuilt = build_dataset(settings.base_data, store_batch, tmp_path / "out", 0.5)
    assert rebuilt.digest != built.digest and rebuilt.holdout_digest == built.holdout_digest

    # the command line's --meta, as the form field
    (labels := tmp_path / "fix.txt").write_text("1 0.5 0.5 0.2 0.2\n")
    result = CliRunner().invoke(app, ["corrections", "add", str(val[2]), str(labels), "--meta", "camera=cam3", "--meta", "site=west"])
    assert result.exit_code == 0, result.output
    with CorrectionStore.from_settings(get_settings()) as store:
        assert store.list(limit=1)[0].metadata == {"camera": "cam3", "site": "west"}
    listing = CliRunner().invoke(app, ["corrections", "list", "--limit", "1"]).output
    assert "METADATA" in listing and "camera=cam3,site=west" in listing


def test_bad_metadata_is_refused_naming_the_input_and_nothing_is_stored(project, tmp_path):
    settings, data, val = project
    for bad, why in [
        ({"camera": 3}, "must be a string"),
        ({f"c{i}": "x" for i in range(MAX_COLUMNS + 1)}, f"at most {MAX_COLUMNS}"),
        ({"camera": "x" * 200}, "200 characters long"),
        ({"1camera": "x"}, "must start with a letter"),
        (["cam1"], "must be an object"),
    ]:
        with pytest.raises(InvalidInput, match=why):
            check_metadata(bad, "form field metadata")
    with pytest.raises(InvalidInput, match="form field metadata: not JSON"):
        parse_json("{camera: cam1}", "form field metadata")
    # a sidecar row that names no image of the dataset: refused with its file and line (its images would be sliceless)
    sidecar = tmp_path / "metadata.csv"
    sidecar.write_text(f"image,camera\n{val[0].name},cam1\nimages/val/nope.png,cam2\n")
    with pytest.raises(InvalidInput, match=r"metadata.csv: line 3: 'images/val/nope.png' is no image of the base data"):
        read_sidecar(sidecar, [str(p) for p in val], "base data")
    # through the command line: exit 2, the error last, nothing stored
    result = CliRunner().invoke(app, ["corrections", "add", str(val[0]), "/dev/null", "--meta", "camera=" + "x" * 200])
    assert result.exit_code == 2 and result.output.strip().splitlines()[-1].startswith("error: --meta: metadata 'camera': the value is 200 characters long")
    result = CliRunner().invoke(app, ["corrections", "import", str(data.corrections_dir), "--format", "plain", "--metadata", str(sidecar)])
    assert result.exit_code == 2 and "line 2" in result.output.strip().splitlines()[-1]
    with CorrectionStore.from_settings(get_settings()) as store:
        assert store.stats()["total"] == 0


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
