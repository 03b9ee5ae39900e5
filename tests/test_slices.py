"""Issue #23, slices: image metadata from every source (a sidecar CSV, the intake's form field, --meta, an import's
metadata.csv) into the store and the dataset's manifest, and refused when bad (no training; the gate's side is in
test_slices_gate.py, on the shared world)."""

from __future__ import annotations

import json

import pytest
from conftest import use_home
from typer.testing import CliRunner

from yolo_retrain import intake
from yolo_retrain.cli import app
from yolo_retrain.config import get_settings
from yolo_retrain.dataset import build_dataset
from yolo_retrain.errors import InvalidInput
from yolo_retrain.image_metadata import MAX_COLUMNS, check_metadata, parse_json, read_sidecar
from yolo_retrain.approval_view import slice_lines
from yolo_retrain.bootstrap import Interval
from yolo_retrain.slices import SliceComparison, holdout_slices
from yolo_retrain.store import CorrectionStore
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


def test_a_person_deciding_on_a_held_candidate_sees_each_slice_from_the_runs_metrics():
    judged = SliceComparison("camera", "cam1", 40, 0.61, 0.48, Interval(-0.13, -0.2, -0.06))
    small = SliceComparison("site", "north", 10, 0.5, 0.55, None)
    lines = slice_lines({**judged.as_mlflow(), **small.as_mlflow(), "metrics/mAP50-95(B)": 0.6})
    assert lines == [
        "slice camera=cam1 (40 holdout images): 0.6100 -> 0.4800, 95% interval [-0.2000, -0.0600]",
        "slice site=north (10 holdout images): 0.5000 -> 0.5500, too few images to judge (not gated)",
    ]
