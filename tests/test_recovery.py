"""Crash recovery for real: a retrain process is SIGKILLed mid-training, then its leftovers are recovered."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time

import pytest
from conftest import TINY, decided, import_corrections, use_home
from typer.testing import CliRunner

from flows.retrain import retrain
from yolo_retrain import processes, tracking
from yolo_retrain.cli import app
from yolo_retrain.config import Settings
from yolo_retrain.errors import RetrainError
from yolo_retrain.recovery import end_abandoned_retrain, retrain_lock
from yolo_retrain.store import CorrectionStore
from yolo_retrain.synthetic import make_dataset


def _home_with_corrections(monkeypatch, tmp_path):
    settings = use_home(monkeypatch, tmp_path, **TINY)
    data = make_dataset(tmp_path / "demo", train=12, val=4, size=64, seed=5)
    corrections = import_corrections(settings, data)
    client = tracking.client_for(settings)
    return settings, corrections, client, tracking.create_experiment(client, settings)


def _kill_mid_training(settings: Settings, client, experiment_id: str) -> str:
    """Start `yolo-retrain run` in a process, SIGKILL it once training logged an epoch; the orphan's run id."""
    from prefect.settings import PREFECT_API_URL

    env = {**os.environ, "YOLO_RETRAIN_HOME": str(settings.home), "PREFECT_API_URL": PREFECT_API_URL.value()}
    proc = subprocess.Popen([str(processes.BIN / "yolo-retrain"), "run", "--epochs", "200"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            runs = client.search_runs([experiment_id])
            if runs and client.get_metric_history(runs[0].info.run_id, "train/box_loss"):
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
                return runs[0].info.run_id
            assert proc.poll() is None, "the retrain ended before it could be killed"
            time.sleep(0.3)
        raise AssertionError("training never started")
    finally:
        if proc.poll() is None:
            proc.kill()


def _assert_orphan(settings: Settings, client, run_id: str, corrections) -> None:
    assert client.get_run(run_id).info.status == "RUNNING"  # what a SIGKILL leaves behind
    with CorrectionStore.from_settings(settings) as store:
        assert store.stats()["claimed"] == len(corrections)
    assert any(settings.runs_dir.glob(f"*-{run_id[:8]}"))


def _assert_recovered(settings: Settings, client, run_id: str, corrections) -> None:
    run = client.get_run(run_id)
    assert run.info.status == "KILLED" and run.data.tags["failure_reason"].startswith("orphaned")
    assert not any(settings.runs_dir.glob(f"*-{run_id[:8]}"))


@pytest.mark.e2e
def test_doctor_fix_recovers_a_killed_retrain(prefect_server, monkeypatch, tmp_path):
    settings, corrections, client, experiment_id = _home_with_corrections(monkeypatch, tmp_path)
    orphan = _kill_mid_training(settings, client, experiment_id)
    _assert_orphan(settings, client, orphan, corrections)

    result = CliRunner().invoke(app, ["doctor", "--fix"])
    assert "recovered: 1 orphaned run(s) ended KILLED" in result.output, result.output
    _assert_recovered(settings, client, orphan, corrections)
    with CorrectionStore.from_settings(settings) as store:
        assert store.pending_count() == len(corrections)


@pytest.mark.e2e
def test_next_retrain_recovers_the_orphan_and_applies_each_correction_once(prefect_server, monkeypatch, tmp_path):
    settings, corrections, client, experiment_id = _home_with_corrections(monkeypatch, tmp_path)
    orphan = _kill_mid_training(settings, client, experiment_id)
    _assert_orphan(settings, client, orphan, corrections)

    report = retrain(trigger="manual")
    _assert_recovered(settings, client, orphan, corrections)
    assert client.get_run(report.run_id).info.status == "FINISHED"
    assert [r for r in client.search_runs([experiment_id]) if r.info.status == "RUNNING"] == []
    with CorrectionStore.from_settings(settings) as store:
        stored = [store.get(c.id) for c in corrections]
    assert {(c.status, c.applied_version) for c in stored} == {(decided(report), report.version)}


def test_a_second_retrain_waits_for_the_lock_and_doctor_fix_refuses_while_one_runs(monkeypatch, tmp_path):
    settings = use_home(monkeypatch, tmp_path)
    with retrain_lock(settings):
        with pytest.raises(RetrainError, match="another retrain is running"):
            with retrain_lock(settings, wait_seconds=0):
                pass
        result = CliRunner().invoke(app, ["doctor", "--fix"])
        assert result.exit_code == 2 and "another retrain is running" in result.output
    with retrain_lock(settings, wait_seconds=0):  # released when the holder is done
        pass


@pytest.mark.e2e
def test_retried_flow_run_resumes_its_run_and_registers_once(prefect_server, monkeypatch, tmp_path):
    """Attempt 1 fails after registering (models/ is a file: the save fails for real); attempt 2 resumes."""
    settings, corrections, client, experiment_id = _home_with_corrections(monkeypatch, tmp_path)
    settings.home.joinpath("models").write_text("not a folder")

    def unblock_once_attempt_one_failed():
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            runs = client.search_runs([experiment_id])
            if runs and runs[0].info.status == "FAILED":
                settings.home.joinpath("models").unlink()
                return
            time.sleep(0.05)

    watcher = threading.Thread(target=unblock_once_attempt_one_failed)
    watcher.start()
    report = retrain.with_options(retries=1, retry_delay_seconds=2)(trigger="manual")
    watcher.join()

    (run,) = client.search_runs([experiment_id])  # one MLflow run for the flow run, resumed
    assert run.info.run_id == report.run_id and run.info.status == "FINISHED"
    assert "models" in run.data.tags["previous_failure_reason"]  # attempt 1 failed on the models folder
    assert "failure_reason" not in run.data.tags
    versions = client.search_model_versions(f"name = '{settings.model_name}'")
    assert [str(v.version) for v in versions] == [report.version]  # registered once
    assert "run_failed" not in versions[0].tags  # attempt 1 tagged it; the successful attempt cleared it
    # training ran once: attempt 2 reused its result, so one loss value per epoch
    assert len(client.get_metric_history(run.info.run_id, "train/box_loss")) == TINY["epochs"]
    with CorrectionStore.from_settings(settings) as store:
        assert {(store.get(c.id).status, store.get(c.id).applied_version) for c in corrections} == {
            (decided(report), report.version)
        }


def test_a_failed_retrains_cleanup_does_each_part_and_reports_what_it_could_not(monkeypatch, tmp_path):
    """Without Prefect: the claim is released although the run cannot be ended (MLflow has no such run), and
    that is returned, not raised."""
    settings, corrections, client, experiment_id = _home_with_corrections(monkeypatch, tmp_path)
    with CorrectionStore.from_settings(settings) as store:
        assert len(store.claim("batch-1")) == len(corrections)

    (problem,) = end_abandoned_retrain(settings, "batch-1", "no-such-run", "FAILED", "ValueError: boom")

    assert problem.startswith("MLflow run no-such-run not ended FAILED: MlflowException: ")
    with CorrectionStore.from_settings(settings) as store:
        assert store.pending_count() == len(corrections)
    assert client.search_runs([experiment_id]) == []  # nothing made up for the missing run
