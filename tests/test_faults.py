"""Faults injected for real: a tracking server killed mid-retrain, a locked correction database, a full disk.

After each: every accepted correction is pending or applied exactly once, no MLflow run is left RUNNING, and
the champion alias points to a version whose weights load.
"""

from __future__ import annotations

import io
import logging
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from conftest import TINY, decided, import_corrections, seed_mlflow_database, use_home
from mlflow import MlflowClient
from PIL import Image
from typer.testing import CliRunner
from ultralytics import YOLO

from flows.retrain import retrain
from yolo_retrain import registry, tracking
from yolo_retrain.callbacks.mlflow_run import MetricQueue
from yolo_retrain.cli import app
from yolo_retrain.config import Settings
from yolo_retrain.disk import DiskSpaceError
from yolo_retrain.errors import TransientError
from yolo_retrain.hashing import file_sha256
from yolo_retrain.recovery import recover_orphans, retrain_lock
from yolo_retrain.store import CorrectionStore, CorrectionStoreBusy
from yolo_retrain.synthetic import make_dataset, untrained_weights

MLFLOW = Path(sys.executable).with_name("mlflow")


# helpers ------------------------------------------------------------------------------------------------------


def statuses(settings: Settings) -> dict[str, str]:
    with CorrectionStore.from_settings(settings) as store:
        return {c.id: c.status for c in store.list()}


def running_runs(client: MlflowClient, settings: Settings) -> list:
    experiment = client.get_experiment_by_name(settings.experiment_name)
    return client.search_runs([experiment.experiment_id], "attributes.status = 'RUNNING'")


def assert_champion_loads(client: MlflowClient, settings: Settings, version: str | int) -> None:
    champion = registry.version_by_alias(client, settings.model_name, "champion")
    assert champion is not None and str(champion.version) == str(version)
    assert file_sha256(settings.champion_weights) == champion.tags["weights_sha256"]
    assert YOLO(str(settings.champion_weights)).model is not None


# (a) the tracking server stops for 10 s in the middle of a retrain ------------------------------------------


class MlflowServer:
    """A real ``mlflow server`` on loopback with proxied artifacts; it can be killed and started again."""

    def __init__(self, root: Path) -> None:
        self.root = root
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.uri = f"http://127.0.0.1:{self.port}"
        self.db = root / "mlflow.db"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        seed_mlflow_database(self.db)  # the first start: no migrations of a new store (conftest)
        cmd = [
            str(MLFLOW), "server", "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1",
            "--backend-store-uri", f"sqlite:///{self.db}", "--artifacts-destination", str(self.root / "artifacts"),
        ]  # fmt: skip
        # No job runner (nothing here uses MLflow jobs): it only slows the start down.
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        log = open(self.root / "server.log", "ab")  # noqa: SIM115 — the server process keeps it
        self.proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()

    def wait_up(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None and self.proc.poll() is None, (self.root / "server.log").read_text()[-3000:]
            try:
                if httpx.get(f"{self.uri}/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"mlflow server on {self.uri} did not start in {timeout} s")

    def kill(self) -> None:
        """SIGKILL the server and its workers (its own process group), as a crash would."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.proc = None

    def count(self, metric: str) -> int:
        """How many values of ``metric`` the server stored (read from its database, not over HTTP)."""
        try:
            with sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=5) as db:
                return db.execute("SELECT COUNT(*) FROM metrics WHERE key = ?", (metric,)).fetchone()[0]
        except sqlite3.Error:
            return 0


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    server = MlflowServer(tmp_path_factory.mktemp("mlflow-server"))
    server.start()
    try:
        yield server
    finally:
        server.kill()


EPOCHS = 3  # killed after the first epoch's metrics: the next sends meet the outage, and training goes on after it


class FailedSends(logging.Handler):
    """Counts the retries of MLflow metric sends (urllib3 logs each): a send met the server while it was down."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if "Retrying" in record.getMessage() and "/runs/log-batch" in record.getMessage():
            self.count += 1


@pytest.mark.e2e
def test_tracking_server_outage_during_training_loses_nothing(prefect_server, mlflow_server, monkeypatch, tmp_path):
    settings = use_home(
        monkeypatch,
        tmp_path / "home",
        tracking_uri=mlflow_server.uri,
        artifact_location="mlflow-artifacts:/yolo-retrain",  # proxied: the server stores the artifacts
        epochs=EPOCHS,
        imgsz=64,
        batch=8,
        plots=False,
    )
    # MLflow's retries wait 0, 2, 4, 8 ... s instead of 0, 4, 8, 16 ... s: the send still rides out the outage (~2 min
    # of retries), and resumes sooner once the server is back.
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    failed_sends = FailedSends()
    urllib3_log = logging.getLogger("urllib3.connectionpool")
    urllib3_log.addHandler(failed_sends)
    data = make_dataset(settings.home / "demo", train=24, val=8, size=64)
    mlflow_server.wait_up()
    result = CliRunner().invoke(app, ["init", "--no-train-baseline"])
    assert result.exit_code == 0, result.output
    corrections = import_corrections(settings, data)
    assert corrections

    outcome: dict = {}

    def run_flow() -> None:
        try:
            outcome["report"] = retrain(trigger="manual")
        except BaseException as exc:  # noqa: BLE001 — reported by the assertions below
            outcome["error"] = exc

    flow = threading.Thread(target=run_flow, daemon=True)
    flow.start()
    deadline = time.monotonic() + 180
    while mlflow_server.count("train/box_loss") == 0:  # training has started: its first epoch is logged
        assert flow.is_alive(), outcome
        assert time.monotonic() < deadline, "training never logged an epoch"
        time.sleep(0.2)

    mlflow_server.kill()
    logged_before = mlflow_server.count("train/box_loss")
    try:  # down until a metric send met the outage (and is being retried): then the server comes back
        while failed_sends.count == 0:
            assert flow.is_alive(), outcome
            assert time.monotonic() < deadline, "no metric send met the outage"
            time.sleep(0.1)
    finally:
        urllib3_log.removeHandler(failed_sends)
    mlflow_server.start()  # same port, same store
    mlflow_server.wait_up()
    back = time.time()
    assert flow.is_alive() or "report" in outcome, f"the retrain gave up during the outage: {outcome}"

    flow.join(timeout=300)
    assert not flow.is_alive(), "the retrain did not finish after the server came back"
    assert "error" not in outcome, repr(outcome.get("error"))
    report = outcome["report"]
    assert report.outcome == "promoted" and report.version == "1"

    client = tracking.client_for(settings)
    run = client.get_run(report.run_id)
    assert run.info.status == "FINISHED" and run.info.end_time / 1000 > back
    assert running_runs(client, settings) == []
    # every epoch's metrics are in the run, once each: those logged while the server was down too
    assert logged_before < EPOCHS
    assert sorted(m.step for m in client.get_metric_history(report.run_id, "train/box_loss")) == list(range(EPOCHS))
    val_steps = sorted(m.step for m in client.get_metric_history(report.run_id, "metrics/mAP50-95B"))
    assert val_steps in (list(range(EPOCHS)), list(range(EPOCHS + 1)))  # + Ultralytics' final validation of best.pt
    assert {"post_mAP50-95", "post_mAP50", "post_precision", "post_recall"} <= set(run.data.metrics)
    # artifacts went through the server into its artifacts destination
    artifacts = {a.path for a in client.list_artifacts(report.run_id, "dataset")}
    assert {"dataset/corrections_applied.json", "dataset/manifest.json", "dataset/data.yaml"} <= artifacts
    stored = mlflow_server.root / "artifacts" / "yolo-retrain" / report.run_id / "artifacts"
    assert (stored / "training" / "results.csv").is_file() and not (stored / "training" / "weights").exists()
    # the registered version, the local file and the champion
    version = client.get_model_version(settings.model_name, report.version)
    assert version.run_id == report.run_id
    assert file_sha256(registry.local_weights_path(settings, report.version)) == version.tags["weights_sha256"]
    assert_champion_loads(client, settings, report.version)
    # every correction applied exactly once, into this version
    with CorrectionStore.from_settings(settings) as store:
        after = [store.get(c.id) for c in corrections]
    assert {(c.status, c.applied_version) for c in after} == {(decided(report), report.version)}


def test_metrics_of_a_longer_outage_are_queued_and_sent_when_the_server_is_back(mlflow_server, monkeypatch):
    """Past MLflow's own retries (about 4 minutes) a per-epoch send fails: training must go on, nothing dropped."""
    if mlflow_server.proc is None:
        mlflow_server.start()
    mlflow_server.wait_up()
    client = MlflowClient(mlflow_server.uri)
    run_id = client.create_run(client.create_experiment(f"queue-{uuid.uuid4().hex[:8]}")).info.run_id
    queue = MetricQueue(client.tracking_uri, run_id)
    queue.put({"loss": 1.0}, 0)
    assert queue.pending == []

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # stands for MLflow's retries running out
    mlflow_server.kill()
    started = time.monotonic()
    queue.put({"loss": 0.9}, 1)  # fails: queued, no exception reaches the trainer
    queue.put({"loss": 0.8}, 2)  # still down: a quick check, not another long send attempt
    assert [step for _, step, _ in queue.pending] == [1, 2] and time.monotonic() - started < 10
    mlflow_server.start()
    mlflow_server.wait_up()
    back = int(time.time() * 1000)
    queue.put({"loss": 0.7}, 3)  # the backlog goes first, in order, with the epochs' own timestamps
    assert queue.pending == []
    history = sorted(client.get_metric_history(run_id, "loss"), key=lambda m: m.step)
    assert [(m.step, m.value) for m in history] == [(0, 1.0), (1, 0.9), (2, 0.8), (3, 0.7)]
    assert history[1].timestamp < back <= history[3].timestamp

    mlflow_server.kill()  # down at the end of training: the last attempt warns instead of failing the training
    queue.put({"loss": 0.6}, 4)
    assert queue.flush(final=True) is False and len(queue.pending) == 1


# (b) the correction database is locked by another connection ---------------------------------------------


def hold_write_lock(db: Path, seconds: float) -> threading.Thread:
    """Another connection takes ``BEGIN EXCLUSIVE`` on ``db`` and keeps it ``seconds``; returns once it holds it."""
    locked = threading.Event()

    def hold() -> None:
        conn = sqlite3.connect(db, timeout=0, isolation_level=None)
        conn.execute("BEGIN EXCLUSIVE")
        locked.set()
        time.sleep(seconds)
        conn.execute("COMMIT")
        conn.close()

    thread = threading.Thread(target=hold, daemon=True)
    thread.start()
    assert locked.wait(5)
    return thread


def image(seed: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (24, 32, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


BOX = "0 0.5 0.5 0.25 0.25\n"


def blob_files(store: CorrectionStore) -> list[Path]:
    return sorted(p for p in store.blobs_dir.rglob("*") if p.is_file())


def test_locked_database_write_waits_and_succeeds(tmp_path):
    db = tmp_path / "corrections.db"
    with CorrectionStore(f"sqlite:///{db}", tmp_path / "blobs", ["square", "circle"]) as store:
        assert store.busy_timeout_s == 30
        holder = hold_write_lock(db, 2.0)
        started = time.monotonic()
        added = store.add(image(1), BOX, image_name="a.png")  # waits for the lock, well within 30 s
        waited = time.monotonic() - started
        holder.join()
        assert 1.5 < waited < 10
        assert [c.id for c in store.list("pending")] == [added.id]
        holder = hold_write_lock(db, 1.0)
        assert [c.id for c in store.claim("batch-1")] == [added.id]
        holder.join()


def test_locked_database_beyond_the_timeout_is_a_clear_error_and_writes_nothing(tmp_path):
    db = tmp_path / "corrections.db"
    with CorrectionStore(f"sqlite:///{db}?timeout=1", tmp_path / "blobs", ["square", "circle"]) as store:
        kept = store.add(image(1), BOX, image_name="kept.png")
        rows, blobs = store.list(), blob_files(store)

        holder = hold_write_lock(db, 2.5)
        with pytest.raises(CorrectionStoreBusy) as add_error:
            store.add(image(2), BOX, image_name="new.png")
        with pytest.raises(CorrectionStoreBusy) as claim_error:
            store.claim("batch-1")
        holder.join()

        for error in (add_error, claim_error):
            message = str(error.value)
            assert str(db) in message and "locked by another connection (waited 1 s)" in message
            assert "nothing was written" in message
        assert isinstance(add_error.value, TransientError)  # transient: Prefect's task retries try again
        assert store.list() == rows and blob_files(store) == blobs  # no row, no blob, no claim
        assert store.get(kept.id).status == "pending"
        # the same write succeeds once the lock is gone
        assert store.add(image(2), BOX, image_name="new.png").status == "pending"


# (c) the disk fills up while the model is written ---------------------------------------------------------------


def mount_tmpfs(target: Path, size_bytes: int) -> None:
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_bytes}", "tmpfs", str(target)],
        check=False,
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs at {target} to fill the disk: {result.stderr.strip()}")


@pytest.mark.e2e
def test_a_disk_too_small_for_the_retrain_is_refused_before_training(prefect_server, monkeypatch, tmp_path):
    settings = use_home(monkeypatch, tmp_path / "home", **TINY)
    data = make_dataset(settings.home / "demo", train=8, val=4, size=64)
    result = CliRunner().invoke(app, ["init", "--weights", str(untrained_weights(tmp_path / "init.pt"))])
    assert result.exit_code == 0, result.output
    corrections = import_corrections(settings, data)
    client = tracking.client_for(settings)
    champion_before = registry.version_by_alias(client, settings.model_name, "champion")
    files_before = {p.name: file_sha256(p) for p in settings.models_dir.iterdir()}
    assert set(files_before) == {"champion.pt", "retrained_v1.pt"}

    # models/ becomes a filesystem with room for what it holds plus 2 MB: the new ~6 MB weights would not fit
    saved = tmp_path / "models-saved"
    settings.models_dir.rename(saved)
    settings.models_dir.mkdir()
    used = sum(p.stat().st_size for p in saved.iterdir())
    mount_tmpfs(settings.models_dir, used + 2 * 1024 * 1024)
    try:
        for p in saved.iterdir():
            (settings.models_dir / p.name).write_bytes(p.read_bytes())

        with pytest.raises(DiskSpaceError) as refused:
            retrain(trigger="manual")

        # the figures: where, how much is free, what the retrain would write there
        message = str(refused.value)
        assert re.search(rf"{settings.models_dir} is on a filesystem with [12]\.\d MB free", message), message
        size = (settings.models_dir / "champion.pt").stat().st_size
        assert f"writes about {2 * size / 2**20:.1f} MB there" in message and "checked before training" in message
        assert {p.name: file_sha256(p) for p in settings.models_dir.iterdir()} == files_before
        assert_champion_loads(client, settings, champion_before.version)
    finally:
        subprocess.run(["umount", "-l", str(settings.models_dir)], check=False)

    # refused before anything was written: no run, no training output, no version; the corrections pending
    experiment = client.get_experiment_by_name(settings.experiment_name)
    assert client.search_runs([experiment.experiment_id], "tags.type = 'retraining'") == []
    assert not any(settings.runs_dir.glob("train-*"))
    assert [v.version for v in client.search_model_versions(f"name = '{settings.model_name}'")] == [champion_before.version]
    assert statuses(settings) == {c.id: "pending" for c in corrections}


def test_the_disk_filling_up_while_weights_are_written_leaves_no_partial_file(tmp_path):
    """Past the check (another process filled the disk meanwhile): the atomic copy names the target and leaves
    neither a partial file nor a changed one."""
    target_dir = tmp_path / "models"
    target_dir.mkdir()
    mount_tmpfs(target_dir, 1024 * 1024)
    try:
        kept = target_dir / "champion.pt"
        kept.write_bytes(b"the champion")
        weights = tmp_path / "candidate.pt"
        weights.write_bytes(os.urandom(2 * 1024 * 1024))
        with pytest.raises(OSError, match=f"cannot write {kept}: No space left on device"):
            registry.install_champion(Settings(home=tmp_path), weights)
        assert [p.name for p in target_dir.iterdir()] == ["champion.pt"] and kept.read_bytes() == b"the champion"
    finally:
        subprocess.run(["umount", "-l", str(target_dir)], check=False)


# (d) the retrain fails or is interrupted, and its cleanup meets a fault too --------------------------------------


class WaitingModel:
    """A base model the training step waits on: a FIFO, whose ``open`` blocks until a writer comes. It holds a
    retrain at a known point (corrections claimed, MLflow run open, dataset logged) while the test changes the
    world; then the path becomes a corrupt file and any waiting reader is let go (it reads nothing)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fifo = path.with_name(f"{path.name}.fifo")  # a second name for the FIFO, kept after ``corrupt``
        os.mkfifo(self._fifo)
        os.link(self._fifo, path)
        self._done = threading.Event()
        self._releaser = threading.Thread(target=self._release_readers, daemon=True)

    def corrupt(self) -> None:
        """From now on the path holds bytes that are not a model; a reader waiting on the FIFO gets EOF."""
        garbage = self.path.with_name(f"{self.path.name}.garbage")
        garbage.write_bytes(b"not a model")
        os.replace(garbage, self.path)
        self._releaser.start()

    def _release_readers(self) -> None:
        while not self._done.is_set():
            try:  # succeeds only while a reader waits in open(): it wakes up and reads EOF
                os.close(os.open(self._fifo, os.O_WRONLY | os.O_NONBLOCK))
            except OSError:  # ENXIO: nobody waiting
                pass
            time.sleep(0.05)

    def close(self) -> None:
        if not self._releaser.is_alive():
            self.corrupt()  # a reader still waiting (an interrupted retrain's task thread) must not hang
        self._done.set()
        self._releaser.join()


def _waiting_home(monkeypatch, tmp_path: Path) -> tuple[Settings, list, WaitingModel, MlflowClient]:
    model = WaitingModel(tmp_path / "base.pt")
    settings = use_home(monkeypatch, tmp_path / "home", base_model=model.path, **TINY)
    data = make_dataset(settings.home / "demo", train=8, val=4, size=64)
    client = tracking.client_for(settings)
    tracking.create_experiment(client, settings)
    return settings, import_corrections(settings, data), model, client


def _when_waiting_on_model(then) -> threading.Thread:
    """Run ``then()`` in a thread once a thread of this process waits in ``open`` of a FIFO (the kernel's
    ``wait_for_partner``): the retrain is in its training step, past its claim and its MLflow writes, so an
    interrupt lands there and not inside an MLflow transaction."""

    def waiting() -> bool:
        for wchan in Path("/proc/self/task").glob("*/wchan"):
            try:
                if wchan.read_text() == "wait_for_partner":
                    return True
            except OSError:  # the thread ended meanwhile
                pass
        return False

    def wait() -> None:
        deadline = time.monotonic() + 120
        while not waiting():
            assert time.monotonic() < deadline, "the retrain never reached its training step"
            time.sleep(0.1)
        then()

    thread = threading.Thread(target=wait, daemon=True)
    thread.start()
    return thread


def _retrain_run(client: MlflowClient, settings: Settings):
    experiment_id = client.get_experiment_by_name(settings.experiment_name).experiment_id
    (run,) = client.search_runs([experiment_id], "tags.type = 'retraining'")
    return run


@pytest.mark.e2e
def test_a_cleanup_failure_does_not_hide_why_the_retrain_failed(prefect_server, monkeypatch, tmp_path):
    settings, corrections, model, client = _waiting_home(monkeypatch, tmp_path)
    db = Path(settings.corrections_db_url.removeprefix("sqlite:///"))
    away = db.with_name("corrections.db.away")

    def store_gone_then_training_fails() -> None:
        db.rename(away)  # the store becomes unreachable (claimed already; not touched again until the cleanup)
        db.mkdir()  # SQLite cannot open a directory: "unable to open database file"
        model.corrupt()

    try:
        thread = _when_waiting_on_model(store_gone_then_training_fails)
        with pytest.raises(TypeError, match="is not a loadable checkpoint") as failure:
            retrain(trigger="manual")
        thread.join()
    finally:
        model.close()

    # the user sees the training's error, with the cleanup's failure noted on it, not instead of it
    (note,) = failure.value.__notes__
    assert "corrections of batch" in note and "not released" in note and "unable to open database file" in note
    # the MLflow part of the cleanup still ran: the run ended FAILED with the training's error as the reason
    run = _retrain_run(client, settings)
    assert run.info.status == "FAILED"
    reason = run.data.tags["failure_reason"]
    assert reason.startswith("TypeError: ") and "not a loadable checkpoint" in reason
    assert running_runs(client, settings) == []

    # the store back: the claim left behind is what the next retrain's recovery releases
    db.rmdir()
    away.rename(db)
    assert set(statuses(settings).values()) == {"claimed"}
    recovery = recover_orphans(settings, None, by="test")
    assert sum(recovery.released_batches.values()) == len(corrections)
    assert statuses(settings) == {c.id: "pending" for c in corrections}


@pytest.mark.e2e
def test_keyboard_interrupt_ends_the_run_killed_and_releases_the_claim(prefect_server, monkeypatch, tmp_path):
    settings, corrections, model, client = _waiting_home(monkeypatch, tmp_path)
    main = threading.main_thread().ident
    assert main is not None and threading.get_ident() == main  # SIGINT's KeyboardInterrupt lands in this thread

    def ctrl_c() -> None:
        signal.pthread_kill(main, signal.SIGINT)
        time.sleep(0.5)
        model.corrupt()  # the open returns if the signal did not break it: the interrupt is raised right after

    try:  # Ctrl-C while the retrain waits in its training step
        thread = _when_waiting_on_model(ctrl_c)
        with pytest.raises(KeyboardInterrupt):
            retrain(trigger="manual")
        thread.join()
    finally:
        model.close()

    run = _retrain_run(client, settings)
    assert run.info.status == "KILLED" and run.data.tags["failure_reason"] == "interrupted: KeyboardInterrupt"
    assert statuses(settings) == {c.id: "pending" for c in corrections}
    with retrain_lock(settings, wait_seconds=0):  # the lock went with the interrupted retrain
        pass
    assert client.search_model_versions(f"name = '{settings.model_name}'") == []
