"""Crash recovery for real: a retrain process is SIGKILLed mid-training, then its leftovers are recovered."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from urllib.parse import urlparse

import pytest
from conftest import TINY, decided, import_corrections, use_home
from prefect import get_client
from prefect.flow_engine import run_flow_sync
from typer.testing import CliRunner

from flows.retrain import retrain
from tasks.promote import promotion_gate
from tasks.register_model import register_model
from tasks.save_model import save_model
from yolo_retrain import processes, registry, tracking
from yolo_retrain.cli import app
from yolo_retrain.config import Settings
from yolo_retrain.errors import RetrainError
from yolo_retrain.forgetting import Retention
from yolo_retrain.hashing import file_sha256
from yolo_retrain.metrics import EvalMetrics
from yolo_retrain.recovery import end_abandoned_retrain, recover_orphans, retrain_lock
from yolo_retrain.screen_batch import BatchCheck
from yolo_retrain.screening import ScreeningResult, Verdict
from yolo_retrain.store import CorrectionStore
from yolo_retrain.synthetic import make_dataset, untrained_weights


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


def _add_corrections(settings: Settings, folder: Path, names: list[str]) -> list:
    """Store the corrections of ``folder`` (images/ + labels/) named ``names``, as a reviewer submits them."""
    with CorrectionStore.from_settings(settings) as store:
        return [store.add(folder / "images" / f"{n}.png", folder / "labels" / f"{n}.txt", image_name=f"{n}.png") for n in names]


def _rerun(flow_run_id) -> object:
    """Run the flow run ``flow_run_id`` (again): what a worker does after Prefect's *Retry*, same flow run id."""
    with get_client(sync_client=True) as prefect:
        return run_flow_sync(retrain, flow_run=prefect.read_flow_run(flow_run_id))


@pytest.mark.e2e
def test_a_retried_flow_run_reuses_its_results_only_for_the_same_inputs(prefect_server, monkeypatch, tmp_path):
    """A flow run retried under the same id: attempt 1 fails after training and registering (models/ is a file:
    the save fails for real); corrections arrive; attempt 2 must train on the new dataset, not reuse attempt 1's
    model, and fails the same way; attempt 3, nothing changed, resumes attempt 2's run and reuses its training,
    promotes it, then cannot store the gate's plot (#21 window 2 through the flow: the promotion stands)."""
    settings = use_home(monkeypatch, tmp_path, **TINY)
    data = make_dataset(tmp_path / "demo", train=12, val=4, size=64, seed=5)
    names = sorted(p.stem for p in (data.corrections_dir / "labels").glob("*.txt"))
    assert len(names) >= 2
    client = tracking.client_for(settings)
    experiment_id = tracking.create_experiment(client, settings)
    early = _add_corrections(settings, data.corrections_dir, names[: len(names) // 2])
    settings.home.joinpath("models").write_text("not a folder")
    with get_client(sync_client=True) as prefect:
        flow_run = prefect.create_flow_run(retrain, parameters={"trigger": "manual"})

    with pytest.raises(OSError):  # attempt 1: trains on the early corrections, registers, cannot save
        _rerun(flow_run.id)
    (first,) = client.search_runs([experiment_id])
    assert first.info.status == "FAILED" and first.data.tags["corrections_count"] == str(len(early))
    late = _add_corrections(settings, data.corrections_dir, names[len(names) // 2 :])

    with pytest.raises(OSError):  # attempt 2: the dataset changed, so it trains again (in a run of its own)
        _rerun(flow_run.id)
    (second_id,) = {r.info.run_id for r in client.search_runs([experiment_id])} - {first.info.run_id}
    settings.home.joinpath("models").unlink()
    _artifact_refused(client, second_id, "champion_vs_candidate.png")
    with pytest.raises(IsADirectoryError) as after_gate:  # attempt 3: same inputs as attempt 2, reused
        _rerun(flow_run.id)

    runs = {r.info.run_id: r for r in client.search_runs([experiment_id])}
    assert set(runs) == {first.info.run_id, second_id}
    second = runs[second_id]
    assert second.info.status == "FINISHED" and "models" in second.data.tags["previous_failure_reason"]
    assert runs[first.info.run_id].info.status == "FAILED"  # attempt 1's run keeps its failure
    # trained once per dataset: attempt 2 trained anew, attempt 3 logged no second epoch
    for run_id in runs:
        assert len(client.get_metric_history(run_id, "train/box_loss")) == TINY["epochs"]
    # the version the batch went into describes its batch: every correction, the dataset it was trained on
    versions = {str(v.version): v for v in client.search_model_versions(f"name = '{settings.model_name}'")}
    (version,) = (v for v in versions.values() if v.run_id == second_id)
    assert len(versions) == 2  # one version per run
    assert version.tags["corrections_count"] == str(len(early) + len(late)) == second.data.params["corrections"]
    assert version.tags["dataset_digest"] == second.data.tags["dataset_digest"] == second.data.params["dataset_digest"]
    (stale,) = (v for v in versions.values() if v.run_id == first.info.run_id)
    assert stale.tags["dataset_digest"] != version.tags["dataset_digest"]
    assert stale.tags["weights_sha256"] != version.tags["weights_sha256"]
    assert "run_failed" in stale.tags and not stale.aliases
    # the plot failed after the promotion: it stands, the batch is accepted into it, the error says so
    assert f"the gate's decision stands: version {version.version} promoted" in after_gate.value.__notes__[0]
    second_run = tracking.RetrainRun(second_id, experiment_id, str(flow_run.id))
    _assert_decision_stands(settings, client, second_run, version, early + late)


def test_a_failed_retrains_cleanup_does_each_part_and_reports_what_it_could_not(monkeypatch, tmp_path):
    """Without Prefect: the claim is released although the run cannot be ended (MLflow has no such run), and
    that is returned, not raised."""
    settings, corrections, client, experiment_id = _home_with_corrections(monkeypatch, tmp_path)
    with CorrectionStore.from_settings(settings) as store:
        assert len(store.claim("batch-1")) == len(corrections)

    (problem,) = end_abandoned_retrain(settings, "batch-1", "no-such-run", "FAILED", "ValueError: boom").problems

    assert problem.startswith("MLflow run no-such-run not ended FAILED: MlflowException: ")
    with CorrectionStore.from_settings(settings) as store:
        assert store.pending_count() == len(corrections)
    assert client.search_runs([experiment_id]) == []  # nothing made up for the missing run



def _claimed(settings: Settings, client, experiment_id: str, batch: str, data, names: list[str]):
    """A retrain of ``batch`` past its claim and setup: corrections ``names`` claimed, its MLflow run open."""
    corrections = _add_corrections(settings, data.corrections_dir, names)
    with CorrectionStore.from_settings(settings) as store:
        assert len(store.claim(batch)) == len(corrections)
    run_id = tracking.start_retrain_run(client, experiment_id, batch, {"type": "retraining"}, {"dataset_digest": batch})
    return tracking.RetrainRun(run_id, experiment_id, batch), corrections


def _registered(settings: Settings, run: tracking.RetrainRun, weights: Path, post: EvalMetrics, pre: EvalMetrics):
    """Steps 9-10 through the real task bodies: the candidate logged, registered, saved as models/retrained_vN.pt."""
    version = register_model.fn(settings, run, str(weights), {"dataset_digest": "d" * 64, "parent_version": "1"}, post, pre)
    return version, save_model.fn(settings, run, version, str(weights))


def _artifact_refused(client, run_id: str, name: str) -> None:
    """The run's artifact store cannot take ``name``: a folder holds that name (MLflow's atomic rename of the file
    onto it fails), so logging that artifact fails for real."""
    taken = Path(urlparse(client.get_run(run_id).info.artifact_uri).path) / name
    taken.mkdir(parents=True)
    (taken / "in-the-way").write_text("")


def _batch(settings: Settings, corrections) -> set[tuple[str, str | None]]:
    with CorrectionStore.from_settings(settings) as store:
        return {(store.get(c.id).status, store.get(c.id).applied_version) for c in corrections}


def test_a_failure_after_the_gate_keeps_its_decision_and_the_batch_follows_it(monkeypatch, tmp_path):
    """Champion, run, version and batch end consistent; the alias move is the gate's commit point. After it, a
    failure (the comparison plot cannot be stored) leaves the promotion standing, the batch accepted into it and
    the run FINISHED; if the correction store is unreachable then, the run stays RUNNING and the batch claimed
    until the next retrain's recovery does the same. Before it, the champion file the gate installed goes back and
    the batch is released."""
    settings = use_home(monkeypatch, tmp_path, **TINY)
    data = make_dataset(tmp_path / "demo", train=16, val=4, size=64, seed=5)
    names = sorted(p.stem for p in (data.corrections_dir / "labels").glob("*.txt"))
    assert len(names) >= 6
    client = tracking.client_for(settings)
    experiment_id = tracking.create_experiment(client, settings)
    registry.register_initial_champion(client, settings, experiment_id, untrained_weights(tmp_path / "v1.pt"))
    pre = EvalMetrics(map50=0.1, map50_95=0.1, precision=0.1, recall=0.1)
    post = EvalMetrics(map50=0.5, map50_95=0.4, precision=0.5, recall=0.5)  # better: the gate promotes
    # Real checkpoints (registration reads the size they were trained at), each its own bytes.
    candidate, other = untrained_weights(tmp_path / "candidate.pt"), untrained_weights(tmp_path / "other.pt")
    db = Path(settings.corrections_db_url.removeprefix("sqlite:///"))

    # 1. The plot cannot be stored after the promotion: the cleanup settles it.
    run, batch = _claimed(settings, client, experiment_id, "batch-1", data, names[:1])
    version, weights = _registered(settings, run, candidate, post, pre)
    _artifact_refused(client, run.run_id, "champion_vs_candidate.png")
    with pytest.raises(OSError, match="Is a directory"):
        promotion_gate.fn(settings, run, version, weights, post, pre)
    why = "IsADirectoryError: [Errno 21] Is a directory"
    cleanup = end_abandoned_retrain(settings, "batch-1", run.run_id, "FAILED", why, registered=True)
    assert cleanup.problems == [] and f"version {version.version} promoted" in cleanup.settled
    _assert_decision_stands(settings, client, run, version, batch)

    # 2. The same, and the correction store unreachable during the cleanup: the next recovery settles it.
    run, batch = _claimed(settings, client, experiment_id, "batch-2", data, names[1:2])
    version, weights = _registered(settings, run, candidate, post, post)  # the same weights again: a new version
    _artifact_refused(client, run.run_id, "champion_vs_candidate.png")
    with pytest.raises(OSError, match="Is a directory"):
        promotion_gate.fn(settings, run, version, weights, post, post)
    db.rename(db.with_name("away.db"))
    db.mkdir()  # SQLite cannot open a folder
    cleanup = end_abandoned_retrain(settings, "batch-2", run.run_id, "FAILED", why, registered=True)
    (problem,) = cleanup.problems
    assert "unable to open database file" in problem and cleanup.settled is None
    assert client.get_run(run.run_id).info.status == "RUNNING"  # not FAILED: the champion's run
    db.rmdir()
    db.with_name("away.db").rename(db)
    assert _batch(settings, batch) == {("claimed", None)}  # not released: the champion learned them
    recovery = recover_orphans(settings, None, by="test")
    assert recovery.settled_runs == [run.run_id] and recovery.killed_runs == [] and recovery.released_batches == {}
    _assert_decision_stands(settings, client, run, version, batch)

    # 3. The gate installed the champion file, then failed before moving the alias: the file goes back.
    champion = registry.version_by_alias(client, settings.model_name, "champion")
    run, batch = _claimed(settings, client, experiment_id, "batch-3", data, names[2:3])
    version, weights = _registered(settings, run, other, post, post)
    client.set_model_version_tag(version.name, version.version, "gate_decision", "promoted")  # apply_gate's order:
    registry.install_champion(settings, weights)  # tags, the local file, then the alias (not reached here)
    cleanup = end_abandoned_retrain(settings, "batch-3", run.run_id, "FAILED", "MlflowException: x", registered=True)
    assert cleanup.problems == [] and cleanup.settled is None
    assert file_sha256(settings.champion_weights) == champion.tags["weights_sha256"] != version.tags["weights_sha256"]
    assert registry.version_by_alias(client, settings.model_name, "champion").version == champion.version
    assert client.get_run(run.run_id).info.status == "FAILED" and "run_failed" in client.get_model_version(
        version.name, version.version
    ).tags
    assert _batch(settings, batch) == {("pending", None)}

    # 4. A screened retrain (its run has the screening metrics) whose screening.json cannot be read: its batch is
    #    never settled as if unscreened (all accepted); it stays claimed for the next recovery.
    _add_corrections(settings, data.corrections_dir, names[3:4])
    with CorrectionStore.from_settings(settings) as store:
        batch = store.claim("batch-4")  # this one and batch-3's, released to pending above
    run_id = tracking.start_retrain_run(client, experiment_id, "batch-4", {"type": "retraining"}, {"dataset_digest": "4"})
    run = tracking.RetrainRun(run_id, experiment_id, "batch-4")
    version, weights = _registered(settings, run, candidate, post, pre)
    tracking.log_metrics(client, run.run_id, {"screened_corrections": 1.0, "suspicious_corrections": 0.0})
    _artifact_refused(client, run.run_id, "champion_vs_candidate.png")
    with pytest.raises(OSError, match="Is a directory"):
        promotion_gate.fn(settings, run, version, weights, post, pre)
    cleanup = end_abandoned_retrain(settings, "batch-4", run.run_id, "FAILED", why, registered=True)
    (problem,) = cleanup.problems
    assert "screening.json" in problem and cleanup.settled is None
    assert _batch(settings, batch) == {("claimed", None)}

    # 5. A screened retrain refused for a class's drop, failing after the gate: settled as the finish step would.
    _settles_a_class_drop_refusal(settings, client, experiment_id, data, names[4:6], candidate)


def _settles_a_class_drop_refusal(settings: Settings, client, experiment_id: str, data, names: list[str], weights: Path) -> None:
    """The gate refused the candidate for 'circle''s drop, then the retrain failed after the gate (its comparison plot
    cannot be stored): the cleanup settles the batch as the finish step would have, holding the correction that
    relabels boxes into or out of 'circle' (what screening.json recorded), accepting the other on its merit."""
    run, batch = _claimed(settings, client, experiment_id, "batch-5", data, names)
    relabelling, other = batch
    check = BatchCheck(
        ScreeningResult([Verdict(relabelling.id, False, (), 1), Verdict(other.id, False, (), 1)]),
        Retention(), Retention(), ["square", "circle"], relabels={relabelling.id: ("square", "circle"), other.id: ()},
    )
    tracking.log_metrics(client, run.run_id, check.as_mlflow())
    tracking.log_json(client, run.run_id, check.report(), "screening.json")
    pre = EvalMetrics(map50=0.5, map50_95=0.4, precision=0.5, recall=0.5, per_class_ap={"square": 0.4, "circle": 0.4})
    post = EvalMetrics(map50=0.5, map50_95=0.4, precision=0.5, recall=0.5, per_class_ap={"square": 0.5, "circle": 0.1})
    version, local = _registered(settings, run, weights, post, pre)
    _artifact_refused(client, run.run_id, "champion_vs_candidate.png")
    with pytest.raises(OSError, match="Is a directory"):
        promotion_gate.fn(settings, run, version, local, post, pre, None, check)
    cleanup = end_abandoned_retrain(settings, "batch-5", run.run_id, "FAILED", "IsADirectoryError", registered=True)
    assert cleanup.problems == [] and f"version {version.version} rejected" in cleanup.settled
    with CorrectionStore.from_settings(settings) as store:
        held, accepted = store.get(relabelling.id), store.get(other.id)
    assert (held.status, accepted.status) == ("suspicious", "accepted")
    assert "relabels boxes into or out of 'circle', whose AP dropped" in held.status_reason


def _assert_decision_stands(settings: Settings, client, run: tracking.RetrainRun, version, batch) -> None:
    """The version is champion (alias and local file), its run FINISHED with the late error on record, its batch
    accepted into it."""
    assert registry.version_by_alias(client, settings.model_name, "champion").version == version.version
    assert file_sha256(settings.champion_weights) == version.tags["weights_sha256"]
    finished = client.get_run(run.run_id)
    assert finished.info.status == "FINISHED" and "failure_reason" not in finished.data.tags
    assert finished.data.tags["gate_decision"] == "promoted" and "Is a directory" in finished.data.tags["failure_after_gate"]
    assert "run_failed" not in client.get_model_version(version.name, version.version).tags
    assert _batch(settings, batch) == {("accepted", str(version.version))}

