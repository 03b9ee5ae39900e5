"""``doctor`` and ``verify`` against real homes: real MLflow (SQLite), real files, nothing mocked."""

from __future__ import annotations


import pytest
import yaml
from conftest import TINY, use_home
from mlflow.entities import ViewType
from typer.testing import CliRunner

from yolo_retrain import doctor, registry, retention, tracking
from yolo_retrain.cli import app
from yolo_retrain.config import get_settings
from yolo_retrain.hashing import file_sha256
from yolo_retrain.verify import verify_run


def _failed(results: list[doctor.CheckResult]) -> dict[str, doctor.CheckResult]:
    return {r.name: r for r in results if not r.ok}


@pytest.mark.e2e
def test_doctor_passes_on_a_retrained_home(in_world):
    results = doctor.run_checks(in_world.settings)
    assert _failed(results) == {}
    assert [r.name for r in results] == [
        "home",
        "tracking",
        "experiment",
        "probe run",
        "registry",
        "champion",
        "base dataset",
        "recipe",
        "corrections",
        "disk",
        "prefect",
    ]
    champion = registry.version_by_alias(in_world.client, in_world.settings.model_name, "champion")
    assert next(r for r in results if r.name == "champion").detail.startswith(f"v{champion.version}, ")


def test_doctor_on_an_empty_home_says_to_run_init(monkeypatch, tmp_path):
    use_home(monkeypatch, tmp_path)
    result = CliRunner().invoke(app, ["doctor"])
    assert result.exit_code == 1, result.output
    lines = result.output.splitlines()
    experiment = next(line for line in lines if line.startswith("✗ experiment — "))
    assert "does not exist" in experiment and experiment.endswith("(fix: run `yolo-retrain init`)")
    assert "✓ champion — no champion yet — run yolo-retrain init" in lines
    assert lines[-1].endswith(" failed") and " passed, " in lines[-1] and lines[-1] != "9 passed, 0 failed"


def test_doctor_probe_run_leaves_no_run_behind(monkeypatch, tmp_path):
    settings = use_home(monkeypatch, tmp_path)
    client = tracking.client_for(settings)
    experiment_id = tracking.create_experiment(client, settings)
    assert client.search_runs([experiment_id]) == []
    (probe,) = [r for r in doctor.run_checks(settings) if r.name == "probe run"]
    assert probe.ok, probe.detail
    assert client.search_runs([experiment_id]) == []  # active runs only: the probe was deleted
    (deleted,) = client.search_runs([experiment_id], run_view_type=ViewType.DELETED_ONLY)
    assert deleted.info.status == "FINISHED" and deleted.data.tags["type"] == "doctor-probe"


@pytest.mark.e2e
def test_doctor_detects_a_corrupted_champion_file(in_world, world_copy):
    champion = registry.version_by_alias(tracking.client_for(world_copy), world_copy.model_name, "champion")
    registry.local_weights_path(world_copy, champion.version).write_bytes(b"garbage")
    result = doctor.check_champion(world_copy)
    assert not result.ok
    assert f"retrained_v{champion.version}.pt sha256 differs" in result.detail
    assert result.fix is not None and f"rollback --to {champion.version}" in result.fix
    assert doctor.check_champion(in_world.settings).ok  # the shared world is untouched


@pytest.mark.e2e
def test_doctor_detects_a_champion_of_other_classes(in_world, world_copy, monkeypatch, tmp_path):
    base = yaml.safe_load(in_world.settings.base_data.read_text())
    names = [base["names"][i] for i in sorted(base["names"])]
    assert "classes ['square', 'circle'] as in the base data.yaml" in doctor.check_champion(in_world.settings).detail
    swapped = tmp_path / "swapped.yaml"  # the same data, the classes listed in the other order
    swapped.write_text(yaml.safe_dump({**base, "names": list(reversed(names))}))
    location = world_copy.artifact_location
    settings = use_home(monkeypatch, world_copy.home, artifact_location=location, base_data=swapped, **TINY)
    result = doctor.check_champion(settings)
    assert not result.ok
    assert "the model's classes ['square', 'circle'] differ from the project's ['circle', 'square']" in result.detail
    assert "same names, another order" in result.detail and "YOLO_RETRAIN_BASE_DATA" in (result.fix or "")


@pytest.mark.e2e
def test_verify_passes_on_the_latest_retrain(in_world):
    results = verify_run(in_world.settings, in_world.report.run_id)
    assert _failed(results) == {}
    assert len(results) == 15
    assert {"experiment kind", "logged model", "version tags", "recipe"} <= {r.name for r in results}
    result = CliRunner().invoke(app, ["verify"])  # default: the latest retrain, which is this one
    assert result.exit_code == 0, result.output
    assert f"✓ run finished — run {in_world.report.run_id} FINISHED" in result.output
    assert result.output.splitlines()[-1] == "15 passed, 0 failed"


@pytest.mark.e2e
def test_experiment_without_its_kind_fails_verify_and_doctor_fix_tags_it(in_world, world_copy):
    client = tracking.client_for(world_copy)
    experiment_id = tracking.resolve_experiment(client, world_copy)
    client.delete_experiment_tag(experiment_id, tracking.EXPERIMENT_KIND_TAG)  # as experiments made earlier are
    failed = _failed(verify_run(world_copy, in_world.report.run_id))
    assert list(failed) == ["experiment kind"]
    assert "doctor --fix" in (failed["experiment kind"].fix or "")
    assert not doctor.check_experiment(world_copy).ok

    result = CliRunner().invoke(app, ["doctor", "--fix"])
    assert f"experiment {experiment_id} tagged {tracking.EXPERIMENT_KIND_TAG}={tracking.CUSTOM_MODEL_KIND}" in result.output
    assert doctor.check_experiment(world_copy).ok and _failed(verify_run(world_copy, in_world.report.run_id)) == {}


@pytest.mark.e2e
def test_verify_names_metrics_kept_as_version_tags(in_world, world_copy):
    client = tracking.client_for(world_copy)
    client.set_model_version_tag(world_copy.model_name, in_world.report.version, "post_mAP50-95", "0.5")
    failed = _failed(verify_run(world_copy, in_world.report.run_id))
    assert list(failed) == ["version tags"]
    assert "post_mAP50-95" in failed["version tags"].detail


@pytest.mark.e2e
def test_verify_names_an_altered_local_model_file(in_world, world_copy):
    version = in_world.report.version
    registry.local_weights_path(world_copy, version).write_bytes(b"altered")
    failed = _failed(verify_run(world_copy, in_world.report.run_id))
    assert list(failed) == ["registry version"]
    assert f"retrained_v{version}.pt sha256 differs" in failed["registry version"].detail
    assert "mlflow artifacts download" in (failed["registry version"].fix or "")


def test_verify_names_a_missing_dataset_artifact(monkeypatch, tmp_path):
    settings = use_home(monkeypatch, tmp_path)
    client = tracking.client_for(settings)
    experiment_id = tracking.create_experiment(client, settings)
    run_id = tracking.start_retrain_run(
        client, experiment_id, "flow-run-1", {"trigger": "manual", "corrections_count": "0"}, {"epochs": 1}
    )
    for name in ("corrections_applied.json", "retraining_dataset_metadata.json", "manifest.json"):  # no data.yaml
        tracking.log_json(client, run_id, [], name, "dataset")
    tracking.set_tags(client, run_id, {"dataset_digest": "0" * 64})
    tracking.end_run(client, run_id, "FINISHED")

    result = CliRunner().invoke(app, ["verify", run_id])
    assert result.exit_code == 1
    lines = result.output.splitlines()
    missing = "✗ dataset artifacts — missing artifacts: dataset/data.yaml (fix: retrain again: `yolo-retrain run`)"
    assert missing in lines
    assert f"✓ run finished — run {run_id} FINISHED" in lines
    assert any(line.startswith("✗ dataset input — no dataset input with digest 00000000") for line in lines)


def test_verify_holds_args_yaml_against_the_recipe_only_where_one_was_recorded(monkeypatch, tmp_path):
    """A version retrained before recipes were recorded (no `training_asked` param) passes the recipe check with
    that said; a run recorded with recipes whose recipe.yaml is gone fails it, naming the file."""
    settings = use_home(monkeypatch, tmp_path)
    client = tracking.client_for(settings)
    experiment_id = tracking.create_experiment(client, settings)

    def run_with(params: dict) -> str:
        run_id = tracking.start_retrain_run(
            client, experiment_id, f"flow-run-{len(params)}", {"trigger": "manual", "corrections_count": "0"}, params
        )
        tracking.log_json(client, run_id, {"imgsz": 64}, "args.yaml", "training")
        tracking.end_run(client, run_id, "FINISHED")
        return run_id

    older = {r.name: r for r in verify_run(settings, run_with({"epochs": 1}))}["recipe"]
    assert older.ok and "before recipes were recorded" in older.detail
    recorded = {r.name: r for r in verify_run(settings, run_with({"epochs": 1, "training_asked": "{}"}))}["recipe"]
    assert not recorded.ok and recorded.detail == "missing artifacts: recipe.yaml"


def _files(home) -> dict[str, tuple[int, int]]:
    """Every file's size and time, but the lock file (the command holds the retrain lock, writing its pid)."""
    return {str(p): (p.lstat().st_size, p.lstat().st_mtime_ns) for p in home.rglob("*") if p.is_file() and p.name != "retrain.lock"}


@pytest.mark.e2e
def test_housekeeping_dry_run_lists_what_would_go_and_deletes_nothing(in_world, monkeypatch):
    for key, value in {"KEEP_RUN_FOLDERS": "0", "KEEP_LOCAL_WEIGHTS": "0", "KEEP_UNUSED_DATASETS_DAYS": "0"}.items():
        monkeypatch.setenv(f"YOLO_RETRAIN_{key}", value)
    get_settings.cache_clear()
    home = in_world.settings.home
    before = _files(home)
    result = CliRunner().invoke(app, ["housekeeping", "--dry-run"])
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    run8 = in_world.report.run_id[:8]
    assert any(line.startswith(f"would remove {in_world.settings.runs_dir / f'train-{run8}'} (training runs, ") for line in lines)
    assert lines[-1].startswith("would free ") and "MB" in lines[-1]
    # the champion's files and the datasets the versions name are never listed
    assert not any("champion.pt" in line or f"{in_world.settings.datasets_dir}/" in line for line in lines)
    assert _files(home) == before  # nothing deleted, nothing touched


@pytest.mark.e2e
def test_retention_keeps_what_the_champion_verify_and_rollback_need(in_world, world_copy, monkeypatch):
    """Weights files of old versions go (MLflow keeps them); a rollback to such a version fetches them again,
    sha256-checked, and verify checks MLflow's copy instead."""
    client = tracking.client_for(world_copy)
    registry.rollback(client, world_copy, "1")  # champion v1; v2 neither champion nor the version v1 replaced
    monkeypatch.setenv("YOLO_RETRAIN_KEEP_LOCAL_WEIGHTS", "0")
    get_settings.cache_clear()
    settings = get_settings()
    verified_before = {r.name: r.ok for r in verify_run(settings, in_world.report.run_id)}

    result = retention.housekeeping(settings)
    v2 = registry.local_weights_path(settings, in_world.report.version)
    assert [r.path for r in result.retired] == [v2] and not v2.exists()
    assert registry.local_weights_path(settings, "1").is_file() and settings.champion_weights.is_file()
    after = verify_run(settings, in_world.report.run_id)
    assert {r.name: r.ok for r in after} == verified_before
    assert "no local copy (retired); MLflow's matches weights_sha256" in next(r for r in after if r.name == "registry version").detail

    version = registry.rollback(client, settings, in_world.report.version)  # to the version whose file was retired
    assert file_sha256(settings.champion_weights) == version.tags["weights_sha256"] == file_sha256(v2)
