"""End to end: the real flow on a real Prefect server, real MLflow (SQLite), real tiny Ultralytics trainings."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from conftest import TINY, decided, import_corrections, use_home
from mlflow import MlflowClient
from typer.testing import CliRunner
from ultralytics import YOLO

from flows.retrain import retrain
from yolo_retrain import registry, tracking
from yolo_retrain.cli import app
from yolo_retrain.config import Settings, get_settings
from yolo_retrain.data_yaml import label_path
from yolo_retrain.errors import TrackingSetupError
from yolo_retrain.hashing import file_sha256
from yolo_retrain.metrics import EvalMetrics
from yolo_retrain.store import Correction, CorrectionStore
from yolo_retrain.synthetic import make_dataset

pytestmark = pytest.mark.e2e


def _artifact_paths(client: MlflowClient, run_id: str, path: str | None = None) -> set[str]:
    found = set()
    for item in client.list_artifacts(run_id, path):
        found |= _artifact_paths(client, run_id, item.path) if item.is_dir else {item.path}
    return found


def test_baseline_becomes_the_first_champion(in_world):
    assert in_world.baseline.outcome == "promoted" and in_world.baseline.version == "1"
    assert in_world.baseline.pre is None  # nothing to compare against yet


def test_retrain_run_is_fully_recorded(in_world):
    run = in_world.run(in_world.report.run_id)
    assert run.info.status == "FINISHED"
    tags = run.data.tags
    assert tags["type"] == "retraining" and tags["trigger"] == "manual"
    assert tags["experiment_id"] == run.info.experiment_id
    assert tags["corrections_count"] == str(len(in_world.corrections)) and len(in_world.corrections) > 0
    assert tags["prefect.flow_run_id"]
    assert tags["dataset_digest"] == in_world.report.dataset_digest

    artifacts = _artifact_paths(in_world.client, run.info.run_id)
    for name in ("corrections_applied.json", "retraining_dataset_metadata.json", "data.yaml", "manifest.json"):
        assert f"dataset/{name}" in artifacts
    assert {"training/results.csv", "training/args.yaml"} <= artifacts
    assert not any(a.startswith("training/weights") for a in artifacts)  # the weights: once, in the logged model
    assert "training/plots/results.png" in artifacts
    assert "champion_vs_candidate.png" in artifacts  # the gate's comparison, as a picture

    (dataset_input,) = run.inputs.dataset_inputs
    assert dataset_input.dataset.digest == in_world.report.dataset_digest[: tracking.MLFLOW_DIGEST_LENGTH]
    # the manifest as a table: its columns and its number of rows (one per image)
    manifest = json.loads(Path(in_world.client.download_artifacts(run.info.run_id, "dataset/manifest.json")).read_text())
    columns = json.loads(dataset_input.dataset.schema)["mlflow_colspec"]
    assert [c["name"] for c in columns] == list(manifest[0])
    assert {c["name"]: c["type"] for c in columns if c["type"] != "string"} == {"metadata": "map"}  # camera, site...
    assert json.loads(dataset_input.dataset.profile)["num_rows"] == len(manifest)
    assert dataset_input.dataset.source_type == "local"

    metrics = run.data.metrics
    for prefix in ("pre", "post"):
        for name in ("mAP50", "mAP50-95", "precision", "recall", "AP50-95_square", "AP50-95_circle"):
            assert f"{prefix}_{name}" in metrics
    assert metrics["post_mAP50-95"] == pytest.approx(in_world.report.post.map50_95)
    # per-epoch training metrics went into this same run, not a run of Ultralytics' own
    assert in_world.client.get_metric_history(run.info.run_id, "train/box_loss")
    assert [e.name for e in in_world.client.search_experiments()] == [in_world.settings.experiment_name, "Default"]
    assert len(in_world.client.search_runs([run.info.experiment_id])) == 2  # baseline + retrain, no strays


def test_corrections_applied_json_lists_exactly_the_claimed_corrections(in_world, tmp_path):
    local = in_world.client.download_artifacts(
        in_world.report.run_id, "dataset/corrections_applied.json", str(tmp_path)
    )
    applied = json.loads(Path(local).read_text())
    assert sorted(item["id"] for item in applied) == sorted(c.id for c in in_world.corrections)


def test_registered_version_carries_its_lineage_and_the_gate_decision(in_world):
    version = in_world.client.get_model_version(in_world.settings.model_name, in_world.report.version)
    assert version.run_id == in_world.report.run_id
    tags = version.tags
    assert tags["dataset_digest"] == in_world.report.dataset_digest
    assert tags["corrections_count"] == str(len(in_world.corrections))
    assert tags["parent_version"] == in_world.baseline.version
    assert set(registry.LINEAGE_TAGS) <= set(tags)
    assert not [k for k in tags if k.startswith(("pre_", "post_"))]  # figures live on the logged model
    alias = "champion" if in_world.report.outcome == "promoted" else "challenger"
    assert tags["gate_decision"] == ("promoted" if alias == "champion" else "rejected")
    assert (
        str(registry.version_by_alias(in_world.client, in_world.settings.model_name, alias).version)
        == in_world.report.version
    )


def test_candidate_is_a_logged_model_of_its_run_holding_the_holdout_figures(in_world):
    client, report = in_world.client, in_world.report
    version = client.get_model_version(in_world.settings.model_name, report.version)
    model = client.get_logged_model(registry.logged_model_id(version))
    assert model.source_run_id == report.run_id and str(model.status) == "READY"
    assert version.source == f"models:/{model.model_id}"
    run = in_world.run(report.run_id)
    assert [o.model_id for o in run.outputs.model_outputs] == [model.model_id]  # "Logged models" of the run
    metrics = {m.key: m for m in model.metrics}
    assert metrics["post_mAP50-95"].value == pytest.approx(report.post.map50_95)
    assert metrics["pre_mAP50-95"].value == pytest.approx(report.pre.map50_95)
    assert {m.dataset_digest for m in metrics.values()} == {report.dataset_digest[: tracking.MLFLOW_DIGEST_LENGTH]}
    # logged again with the model id, the run still holds one value of each figure
    assert len(client.get_metric_history(report.run_id, "post_mAP50-95")) == 1
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.tags[tracking.EXPERIMENT_KIND_TAG] == tracking.CUSTOM_MODEL_KIND


def test_ultralytics_output_is_in_the_runs_train_log(in_world, tmp_path):
    local = Path(in_world.client.download_artifacts(in_world.report.run_id, "train.log", str(tmp_path)))
    text = local.read_text()
    assert "engine/trainer:" in text and "epochs=1," in text  # Ultralytics' argument dump
    assert "YOLOv8n summary" in text  # its model summary
    assert "                   all " in text  # its validation table (the candidate's evaluation too)


def test_local_model_file_matches_the_registry_and_validates(in_world, tmp_path):
    settings = in_world.settings
    path = settings.models_dir / f"retrained_v{in_world.report.version}.pt"
    version = in_world.client.get_model_version(settings.model_name, in_world.report.version)
    assert file_sha256(path) == version.tags["weights_sha256"]
    # validated again by Ultralytics on the run's holdout, the file scores what the registry recorded for it
    holdout = settings.datasets_dir / in_world.report.dataset_digest[:16] / "data.yaml"
    results = YOLO(str(path)).val(
        data=str(holdout), split="val", imgsz=settings.imgsz, batch=settings.batch, device=settings.device,
        project=str(tmp_path), plots=False, verbose=False,
    )  # fmt: skip
    box = results.box
    # it read this run's holdout: every box of the label files val.txt lists, per class (the 1-epoch model's
    # figures are all 0, so the figures alone would not tell one holdout from another)
    boxes = Counter()
    for image in (holdout.parent / "val.txt").read_text().split():
        lines = Path(label_path(image)).read_text().splitlines()
        boxes.update(int(line.split()[0]) for line in lines if line.strip())
    assert sum(boxes.values()) > 0
    assert results.nt_per_class.tolist() == [boxes[i] for i in range(len(results.names))]
    recorded = EvalMetrics.from_mlflow("post", registry.model_metrics(in_world.client, version))
    assert recorded is not None and recorded == in_world.report.post
    assert (box.map, box.map50, box.mp, box.mr) == pytest.approx(
        (recorded.map50_95, recorded.map50, recorded.precision, recorded.recall), abs=1e-4
    )
    champion = registry.version_by_alias(in_world.client, settings.model_name, "champion")
    assert file_sha256(settings.champion_weights) == champion.tags["weights_sha256"]


def test_corrections_are_accepted_on_their_own_merit_with_the_version(in_world):
    """Good fixes with a 1-epoch retrain: accepted whatever the model's fate (#19), each with its screening verdict
    in the run's screening.json and the counts as metrics."""
    with CorrectionStore.from_settings(in_world.settings) as store:
        stored = [store.get(c.id) for c in in_world.corrections]
    assert {c.status for c in stored} == {decided(in_world.report)}
    assert {c.applied_version for c in stored} == {in_world.report.version}
    assert {c.status_reason for c in stored} == {
        f"screened v{in_world.report.version}: accepted on its own merit (model {in_world.report.outcome})"
    }
    local = in_world.client.download_artifacts(in_world.report.run_id, "screening.json", str(in_world.settings.home / "dl"))
    verdicts = json.loads(Path(local).read_text())["verdicts"]
    assert sorted(v["correction_id"] for v in verdicts) == sorted(c.id for c in in_world.corrections)
    metrics = in_world.run(in_world.report.run_id).data.metrics
    assert (metrics["screened_corrections"], metrics["accepted_corrections"]) == (len(stored), len(stored))
    assert {"fixed_champion", "fixed_candidate", "learned_champion", "learned_candidate"} <= set(metrics)


def test_the_gates_difference_carries_its_interval_on_the_run_the_model_and_the_summary(in_world):
    report, client = in_world.report, in_world.client
    iv = report.comparison.map50_95
    assert iv.low <= iv.delta <= iv.high
    assert iv.delta == pytest.approx(report.post.map50_95 - report.pre.map50_95, abs=1e-6)  # the validator's figures
    run = in_world.run(report.run_id).data.metrics
    assert (run["gate_delta"], run["gate_delta_low"], run["gate_delta_high"]) == pytest.approx((iv.delta, iv.low, iv.high))
    version = client.get_model_version(in_world.settings.model_name, report.version)
    model = {m.key: m.value for m in client.get_logged_model(registry.logged_model_id(version)).metrics}
    assert model["gate_delta_low"] == pytest.approx(iv.low) and "gate_delta_high_AP50-95_square" in model
    assert f"{iv.delta:+.4f} [95% {iv.low:+.4f}, {iv.high:+.4f}]" in report.text()
    assert f"[{iv.low:+.4f}, {iv.high:+.4f}] {iv.verdict}" in report.markdown()
    assert iv.verdict in report.message


def test_no_pending_corrections_skips_without_an_mlflow_run(in_world):
    before = len(in_world.client.search_runs([in_world.run(in_world.report.run_id).info.experiment_id]))
    report = retrain(trigger="schedule")
    assert report.outcome == "skipped" and report.run_id is None
    assert len(in_world.client.search_runs([in_world.run(in_world.report.run_id).info.experiment_id])) == before


def test_rollback_moves_alias_and_local_file(in_world):
    client, name = in_world.client, in_world.settings.model_name
    current = registry.version_by_alias(client, name, "champion")
    result = CliRunner().invoke(app, ["rollback", "--to", in_world.baseline.version])
    assert result.exit_code == 0, result.output
    v1 = client.get_model_version(name, in_world.baseline.version)
    assert str(registry.version_by_alias(client, name, "champion").version) == in_world.baseline.version
    assert file_sha256(in_world.settings.champion_weights) == v1.tags["weights_sha256"]
    # and forward again, so the shared world stays as it was
    assert CliRunner().invoke(app, ["rollback", "--to", str(current.version)]).exit_code == 0
    assert registry.version_by_alias(client, name, "champion").version == current.version


def _fresh_home(monkeypatch, tmp_path, **env) -> tuple[Settings, list[Correction]]:
    settings = use_home(monkeypatch, tmp_path, **TINY, **env)
    data = make_dataset(tmp_path / "demo", train=8, val=4, size=64)
    return settings, import_corrections(settings, data)


def _pending(settings: Settings) -> int:
    with CorrectionStore.from_settings(settings) as store:
        return store.pending_count()


def test_failed_training_leaves_run_failed_and_corrections_pending(prefect_server, monkeypatch, tmp_path):
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a model")
    settings, corrections = _fresh_home(monkeypatch, tmp_path, base_model=corrupt)
    client = tracking.client_for(settings)
    experiment_id = tracking.create_experiment(client, settings)

    with pytest.raises(TypeError, match="corrupt.pt is not a loadable checkpoint"):
        retrain(trigger="manual")

    (run,) = client.search_runs([experiment_id])
    assert run.info.status == "FAILED"
    reason = run.data.tags["failure_reason"]
    assert reason.startswith("TypeError: ") and "corrupt.pt is not a loadable checkpoint" in reason
    assert _pending(settings) == len(corrections)
    assert client.search_model_versions(f"name = '{settings.model_name}'") == []


def test_missing_experiment_fails_cleanly_and_creates_nothing(prefect_server, monkeypatch, tmp_path):
    settings, corrections = _fresh_home(monkeypatch, tmp_path)
    with pytest.raises(TrackingSetupError, match="yolo-retrain init"):
        retrain(trigger="manual")
    assert tracking.client_for(settings).get_experiment_by_name(settings.experiment_name) is None
    assert _pending(settings) == len(corrections)


def test_champion_figures_are_reused_while_the_holdout_is_unchanged(in_world):
    # the corrections re-label training images only: the holdout is the baseline's, so its figures stand
    tags = in_world.run(in_world.report.run_id).data.tags
    assert tags["pre_metrics_source"] == "recorded on version 1 (same holdout and setup)"
    assert in_world.report.pre == in_world.baseline.post
    assert not (in_world.settings.runs_dir / f"pre-{in_world.report.run_id[:8]}").exists()  # no validation ran
    version = in_world.client.get_model_version(in_world.settings.model_name, in_world.baseline.version)
    champion = registry.Champion(
        version.version, Path(), dict(version.tags), registry.model_metrics(in_world.client, version)
    )
    assert champion.recorded_metrics(version.tags["evaluation_key"]) == in_world.baseline.post
    assert champion.recorded_metrics("another holdout") is None


def test_a_corrected_holdout_image_means_the_champion_is_evaluated_again(world, world_copy, monkeypatch):
    """On a copy of the trained world (one training here, not three): a correction of a holdout image. Its images
    have metadata too (#23): a camera per base holdout image (the base data's sidecar), a site from the correction."""
    client = tracking.client_for(world_copy)
    champion = registry.version_by_alias(client, world_copy.model_name, "champion")
    val_images = sorted((world.data.data_yaml.parent / "images" / "val").glob("*.png"))
    val_image = val_images[0]
    rows = [f"{p},cam{1 + i % 2}" for i, p in enumerate(val_images)]  # absolute: the copy's data.yaml names the world's
    (world_copy.base_data.parent / "metadata.csv").write_text("image,camera\n" + "\n".join(rows) + "\n")
    monkeypatch.setenv("YOLO_RETRAIN_GATE_SLICE_MIN_IMAGES", "4")
    monkeypatch.setenv("YOLO_RETRAIN_GATE_RESAMPLES", "200")  # three bootstraps now (overall, two cameras): kept cheap
    get_settings.cache_clear()
    with CorrectionStore.from_settings(world_copy) as store:
        fix = store.add(val_image, "0 0.5 0.5 0.25 0.25\n", author="test", metadata={"site": "south"})
    report = retrain(trigger="manual")

    assert client.get_run(report.run_id).data.tags["pre_metrics_source"] == "evaluated"
    second = client.get_model_version(world_copy.model_name, report.version).tags
    assert champion.tags["evaluation_key"] != second["evaluation_key"]  # the holdout's labels changed
    assert (world_copy.runs_dir / f"pre-{report.run_id[:8]}").is_dir()  # Ultralytics' validation folder: it ran

    # each slice of the holdout judged (from 4 images) or reported, on the run, on the logged model, in the summary
    cams = len(val_images) // 2
    metrics = client.get_run(report.run_id).data.metrics
    assert metrics["slice_images/camera/cam1"] == len(val_images) - cams and metrics["slice_images/site/south"] == 1
    assert "slice_delta_low/camera/cam2" in metrics and "slice_delta_low/site/south" not in metrics
    version = client.get_model_version(world_copy.model_name, report.version)
    model = {m.key for m in client.get_logged_model(registry.logged_model_id(version)).metrics}
    assert {"slice_delta_low/camera/cam1", "post_slice_mAP50-95/site/south"} <= model
    assert "slice site=south (1 holdout images):" in report.text() and "too few images to judge (not gated)" in report.text()
    slices_path = client.download_artifacts(report.run_id, "holdout/slices.json", str(world_copy.home))
    slices = json.loads(Path(slices_path).read_text())
    expected = [("camera", "cam1", len(val_images) - cams), ("camera", "cam2", cams), ("site", "south", 1)]
    assert [(s["column"], s["value"], s["images"]) for s in slices] == expected
    manifest_path = client.download_artifacts(report.run_id, "dataset/manifest.json", str(world_copy.home))
    manifest = json.loads(Path(manifest_path).read_text())
    (fixed,) = [e for e in manifest if e["correction_id"] == fix.id]
    assert fixed["metadata"] == {"camera": "cam1", "site": "south"}  # the sidecar's camera, the correction's site


def test_training_leaves_the_garbage_collector_as_it_was(in_world):
    import gc

    assert gc.get_freeze_count() == 0 and gc.isenabled()  # frozen only while training, paused only while building


def test_base_weights_of_other_classes_are_refused_before_training(prefect_server, monkeypatch, tmp_path):
    from yolo_retrain.model_classes import ClassMismatch
    from yolo_retrain.synthetic import untrained_weights

    other = untrained_weights(tmp_path / "pets.pt", ["cat", "dog"])  # two classes, as the project: ids would fit
    settings, corrections = _fresh_home(monkeypatch, tmp_path, base_model=other)
    client = tracking.client_for(settings)
    experiment_id = tracking.create_experiment(client, settings)

    with pytest.raises(ClassMismatch, match=r"the model's classes \['cat', 'dog'\] differ from the project's"):
        retrain(trigger="manual")

    (run,) = client.search_runs([experiment_id])
    assert run.info.status == "FAILED" and "['square', 'circle']" in run.data.tags["failure_reason"]
    assert "train/box_loss" not in run.data.metrics  # refused before the first epoch
    assert _pending(settings) == len(corrections)
    assert client.search_model_versions(f"name = '{settings.model_name}'") == []


@pytest.mark.e2e
def test_classes_in_another_order_are_refused_by_the_store_and_in_the_champion_before_any_training(
    in_world, world_copy, monkeypatch, tmp_path
):
    import yaml

    from yolo_retrain.model_classes import ClassMismatch
    from yolo_retrain.store import ClassContractChanged

    base = yaml.safe_load(in_world.settings.base_data.read_text())
    swapped = tmp_path / "swapped.yaml"  # the same data, the classes listed in the other order
    swapped.write_text(yaml.safe_dump({**base, "names": ["circle", "square"]}))
    # the world's correction store refuses the new order (its labels' ids mean the old one), before any run
    use_home(monkeypatch, world_copy.home, artifact_location=world_copy.artifact_location, base_data=swapped, **TINY)
    client = tracking.client_for(world_copy)
    experiment_id = tracking.resolve_experiment(client, world_copy)
    runs_before = {r.info.run_id for r in client.search_runs([experiment_id])}
    with pytest.raises(ClassContractChanged, match=r"classes \['circle', 'square'\] are not \['square', 'circle'\]"):
        retrain(trigger="manual", force=True)
    assert {r.info.run_id for r in client.search_runs([experiment_id])} == runs_before

    # a new correction store for the new classes: the champion is refused
    new_store = f"sqlite:///{tmp_path / 'corrections.db'}"
    settings = use_home(
        monkeypatch, world_copy.home, artifact_location=world_copy.artifact_location, base_data=swapped,
        corrections_db_url=new_store, **TINY,
    )  # fmt: skip
    versions = len(client.search_model_versions(f"name = '{settings.model_name}'"))
    champion = registry.version_by_alias(client, settings.model_name, "champion").version

    with pytest.raises(ClassMismatch, match="same names, another order"):
        retrain(trigger="manual", force=True)

    (run,) = [r for r in client.search_runs([experiment_id]) if r.info.run_id not in runs_before]
    assert run.info.status == "FAILED"
    reason = run.data.tags["failure_reason"]
    assert "differ from the project's ['circle', 'square']" in reason
    assert "a new YOLO_RETRAIN_MODEL_NAME, then `yolo-retrain init`" in reason  # init alone keeps the champion
    assert not [m for m in run.data.metrics if m.startswith(("pre_", "train/", "post_"))]  # no figure, no epoch
    assert len(client.search_model_versions(f"name = '{settings.model_name}'")) == versions
    assert registry.version_by_alias(client, settings.model_name, "champion").version == champion
