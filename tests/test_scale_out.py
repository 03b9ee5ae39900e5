"""The multi-process topology end to end on loopback, every piece started by this test and stopped at its end.

PostgreSQL (the Debian packages' initdb/pg_ctl, a throwaway cluster) holds three databases: ``prefect`` for
`prefect server`, ``mlflow`` for `mlflow server` (proxied artifacts: the server stores them), ``corrections``
for the correction store. A real `prefect worker` pulls from the process work pool; the intake takes
corrections over HTTP. The product code is the same as in the embedded default: only settings change
(``YOLO_RETRAIN_TRACKING_URI``, ``YOLO_RETRAIN_CORRECTIONS_DB_URL``, ``PREFECT_API_URL``).
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import pytest
import store_races
from mlflow import MlflowClient
from prefect.client.orchestration import SyncPrefectClient
from prefect.client.schemas.objects import FlowRun

from yolo_retrain import processes
from yolo_retrain.config import PROJECT_ROOT, Settings
from yolo_retrain.hashing import file_sha256
from yolo_retrain.store import CorrectionStore
from yolo_retrain.synthetic import make_dataset

BIN = processes.BIN
DEPLOYMENT = "retrain/yolo-retrain"
THRESHOLD = 2
ARTIFACT_LOCATION = "mlflow-artifacts:/yolo-retrain"
DATABASES = ("prefect", "mlflow", "corrections")


def _postgres_bindir() -> Path | None:
    """Where the PostgreSQL server binaries are: Debian's /usr/lib/postgresql/<version>/bin, newest first, or PATH."""
    debian = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]), reverse=True)
    found = debian[0] if debian else shutil.which("initdb")
    return Path(found).resolve().parent if found else None


PG_BIN = _postgres_bindir()
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
NO_POSTGRES = (
    "PostgreSQL server binaries not found (no /usr/lib/postgresql/*/bin/initdb, no initdb on PATH); "
    "install them with `apt-get install postgresql` (.ci/run does)"
)

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(PG_BIN is None and not IN_CI, reason=NO_POSTGRES),
    pytest.mark.timeout(300),
]


class Postgres:
    """A throwaway PostgreSQL cluster on a free loopback port, trust auth, run as the ``postgres`` OS user when
    we are root (the server refuses root). ``stop`` stops it and deletes every file it had."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        # A short path (the socket lives here too) that the postgres user can reach when we are root.
        self.root = Path(tempfile.mkdtemp(prefix="yrtest-pg-", dir="/tmp" if os.geteuid() == 0 else None))
        self.data = self.root / "data"
        self.log = self.root / "postgres.log"
        self.port = processes.free_port()
        self.as_user: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
            self.as_user = ["runuser", "-u", "postgres", "--"]

    def _pg(self, tool: str, *args: str) -> None:
        cmd = [*self.as_user, str(self.bindir / tool), *args]
        result = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=60, cwd=self.root)
        if result.returncode != 0:
            log = self.log.read_text()[-3000:] if self.log.exists() else ""
            raise RuntimeError(
                f"{' '.join(cmd)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}\n{log}"
            )

    def start(self) -> None:
        self._pg("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off"
        self._pg("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.log), "-w", "-t", "60", "start")
        import psycopg

        with psycopg.connect(self.url("postgres", driver=None), autocommit=True) as conn:
            for name in DATABASES:
                conn.execute(f'CREATE DATABASE "{name}"')

    def url(self, database: str, driver: str | None = "psycopg") -> str:
        scheme = f"postgresql+{driver}" if driver else "postgresql"
        return f"{scheme}://postgres@127.0.0.1:{self.port}/{database}"

    def query(self, database: str, sql: str, *params: object) -> list[tuple]:
        import psycopg

        with psycopg.connect(self.url(database, driver=None)) as conn:
            return conn.execute(sql, params).fetchall()

    def stop(self) -> None:
        try:
            if (self.data / "postmaster.pid").exists():
                try:
                    self._pg("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "-t", "30", "stop")
                except (RuntimeError, subprocess.TimeoutExpired):
                    self._pg("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "-t", "30", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


@dataclass
class Stack:
    env: dict[str, str]
    home: Path
    pg: Postgres
    mlflow_uri: str
    artifacts_root: Path
    api_url: str
    intake_url: str
    settings: Settings
    corrections: list[tuple[Path, Path]]
    timings: dict[str, float]

    def mlflow(self) -> MlflowClient:
        return MlflowClient(tracking_uri=self.mlflow_uri, registry_uri=self.mlflow_uri)

    def flow_runs(self) -> list[FlowRun]:
        """The deployment's runs that are not the nightly ones scheduled for later."""
        with SyncPrefectClient(self.api_url) as client:
            deployment = client.read_deployment_by_name(DEPLOYMENT)
            runs = client.read_flow_runs()
        return [r for r in runs if r.deployment_id == deployment.id and r.parameters.get("trigger") != "schedule"]

    def submit(self, image: Path, labels: Path) -> httpx.Response:
        files = {
            "image": (image.name, image.read_bytes(), "image/png"),
            "labels": (labels.name, labels.read_bytes(), "text/plain"),
        }
        return httpx.post(f"{self.intake_url}/corrections", files=files, timeout=30)


def _descendants(group: processes.ProcessGroup) -> list[psutil.Process]:
    found = []
    for child in group.children:
        try:
            found += [psutil.Process(child.pid), *psutil.Process(child.pid).children(recursive=True)]
        except psutil.NoSuchProcess:
            pass
    return found


def _reap(procs: list[psutil.Process]) -> list[str]:
    """Kill whatever of ``procs`` outlived its parent's shutdown; returns their command lines (a leak to report)."""
    leaked = []
    for proc in procs:
        try:
            if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                leaked.append(" ".join(proc.cmdline())[:200])
                proc.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(procs, timeout=10)
    return leaked


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[Stack]:
    if PG_BIN is None:
        pytest.fail(f"CI=true and {NO_POSTGRES}")
    t0 = time.monotonic()
    timings: dict[str, float] = {}
    home = tmp_path_factory.mktemp("scale-out")
    artifacts_root = home / "mlflow-server-artifacts"  # the server's --artifacts-destination; clients never write here
    pg = Postgres(PG_BIN)
    try:
        pg.start()
        timings["postgres up"] = time.monotonic() - t0
        prefect_port, mlflow_port, intake_port = processes.free_port(), processes.free_port(), processes.free_port()
        api_url = f"http://127.0.0.1:{prefect_port}/api"
        mlflow_uri = f"http://127.0.0.1:{mlflow_port}"
        env = {
            **os.environ,
            # Prefect: server on PostgreSQL; every client (deploy, worker, flow runs, intake) through the API URL
            "PREFECT_HOME": str(home / "prefect"),
            "PREFECT_API_URL": api_url,
            "PREFECT_API_DATABASE_CONNECTION_URL": pg.url("prefect", driver="asyncpg"),
            "PREFECT_WORKER_QUERY_SECONDS": "1",
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",  # no MLflow jobs here: only slows the server's start
            # yolo-retrain: the settings are all that differs from the embedded default
            "YOLO_RETRAIN_HOME": str(home / "home"),
            "YOLO_RETRAIN_TRACKING_URI": mlflow_uri,
            "YOLO_RETRAIN_ARTIFACT_LOCATION": ARTIFACT_LOCATION,
            "YOLO_RETRAIN_CORRECTIONS_DB_URL": pg.url("corrections"),
            "YOLO_RETRAIN_EPOCHS": "1",
            "YOLO_RETRAIN_BATCH": "8",
            "YOLO_RETRAIN_PLOTS": "false",
            "YOLO_RETRAIN_RETRAIN_THRESHOLD": str(THRESHOLD),
            "YOLO_RETRAIN_API_PORT": str(intake_port),
        }
        mlflow_server = [
            str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(mlflow_port), "--workers", "1",
            "--backend-store-uri", pg.url("mlflow"), "--artifacts-destination", str(artifacts_root),
        ]  # fmt: skip
        group = processes.ProcessGroup(env, log_dir=home / "logs")
        spawned: list[psutil.Process] = []
        try:
            with group:
                try:
                    group.start("mlflow", mlflow_server)
                    group.start("prefect-server", processes.prefect_server(prefect_port))
                    data = make_dataset(home / "home" / "demo", train=12, val=4, size=64, seed=3)
                    processes.wait_healthy(f"{mlflow_uri}/health", timeout=120)
                    timings["mlflow server up"] = time.monotonic() - t0
                    group.run([str(BIN / "yolo-retrain"), "init", "--no-train-baseline"])
                    timings["init done"] = time.monotonic() - t0
                    processes.wait_healthy(f"{api_url}/health", timeout=120)
                    timings["prefect server up"] = time.monotonic() - t0
                    group.run([str(BIN / "prefect"), "work-pool", "create", processes.WORK_POOL, "--type", "process"])
                    group.run([str(BIN / "prefect"), "--no-prompt", "deploy", "--name", "yolo-retrain"])
                    timings["deployed"] = time.monotonic() - t0
                    group.start("worker", processes.worker())
                    group.start("intake", processes.intake())
                    intake_url = f"http://127.0.0.1:{intake_port}"
                    processes.wait_healthy(f"{intake_url}/health", timeout=60)
                    timings["intake up"] = time.monotonic() - t0
                    assert group.alive(), "a service died during start-up; see the logs in " + str(home / "logs")
                    images = sorted((data.corrections_dir / "images").glob("*.png"))
                    pairs = [(p, data.corrections_dir / "labels" / f"{p.stem}.txt") for p in images]
                    assert len(pairs) >= THRESHOLD
                    settings = Settings(
                        home=home / "home",
                        tracking_uri=mlflow_uri,
                        artifact_location=ARTIFACT_LOCATION,
                        corrections_db_url=pg.url("corrections"),
                        base_data=data.data_yaml,
                    )
                    yield Stack(
                        env, home, pg, mlflow_uri, artifacts_root, api_url, intake_url, settings, pairs, timings
                    )
                finally:  # uvicorn workers and the like: stopped with their parents, checked below
                    spawned = _descendants(group)
        finally:
            leaked = _reap(spawned)
            assert not leaked, f"processes outlived their parents' shutdown: {leaked}"
    finally:
        pg.stop()
        print(f"\nscale-out stack timings (s): {json.dumps({k: round(v, 1) for k, v in timings.items()})}")
        print(f"total incl. shutdown and cluster removal: {time.monotonic() - t0:.1f} s")
    assert not pg.root.exists()


def test_threshold_over_http_retrains_on_the_worker_recorded_by_the_mlflow_server(stack: Stack):
    t0 = time.monotonic()
    submitted = []
    for image, labels in stack.corrections[:THRESHOLD]:
        response = stack.submit(image, labels)
        assert response.status_code == 201, response.text
        submitted.append(response.json()["correction"]["id"])

    # the worker runs the retrain that the threshold event triggered
    def finished() -> FlowRun | None:
        runs = stack.flow_runs()
        return runs[0] if runs and runs[0].state.is_final() else None

    triggered = processes.wait_for(finished, 150, "the triggered flow run to finish", every=1)
    stack.timings["threshold -> flow run final"] = time.monotonic() - t0
    assert len(stack.flow_runs()) == 1  # one crossing, one retrain
    assert triggered.state.is_completed(), triggered.state
    assert triggered.parameters["trigger"] == "corrections-threshold"
    assert triggered.work_pool_name == processes.WORK_POOL
    assert stack.pg.query("prefect", "SELECT state_type FROM flow_run WHERE id = %s", triggered.id) == [("COMPLETED",)]

    # the MLflow server has the run, its dataset input and dataset files, and the registered version
    client = stack.mlflow()
    experiment = client.get_experiment_by_name(stack.settings.experiment_name)
    assert experiment.artifact_location == ARTIFACT_LOCATION
    (run,) = client.search_runs([experiment.experiment_id], f"tags.`prefect.flow_run_id` = '{triggered.id}'")
    run_id = run.info.run_id
    assert run.info.status == "FINISHED"
    assert run.data.tags["trigger"] == "corrections-threshold"
    (dataset_input,) = run.inputs.dataset_inputs
    assert dataset_input.dataset.digest == run.data.tags["dataset_digest"][: len(dataset_input.dataset.digest)]
    assert {t.key: t.value for t in dataset_input.tags}["mlflow.data.context"] == "training"

    listed = {a.path for a in client.list_artifacts(run_id, "dataset")}
    json_files = sorted(p for p in listed if p.endswith(".json"))
    assert {
        "dataset/corrections_applied.json",
        "dataset/retraining_dataset_metadata.json",
        "dataset/manifest.json",
    } <= set(json_files)
    downloads = stack.home / "downloads"
    payloads = {
        p: json.loads(Path(client.download_artifacts(run_id, p, str(downloads))).read_text()) for p in json_files
    }  # through the server's proxy: the client has no access to the artifact store itself
    assert sorted(c["id"] for c in payloads["dataset/corrections_applied.json"]) == sorted(submitted)

    (version,) = client.search_model_versions(f"run_id = '{run_id}'")
    assert version.name == stack.settings.model_name and version.status == "READY"
    champion = client.get_model_version_by_alias(version.name, "champion")
    assert champion.version == version.version  # the first model: promoted
    assert stack.pg.query("mlflow", "SELECT status FROM runs WHERE run_uuid = %s", run_id) == [("FINISHED",)]

    # the corrections, in PostgreSQL, accepted with that version (the gate promoted it)
    with CorrectionStore.from_settings(stack.settings) as store:
        stored = [store.get(i) for i in submitted]
        assert store.pending_count() == 0
    assert {(c.status, c.applied_version) for c in stored} == {("accepted", str(version.version))}
    rows = stack.pg.query("corrections", "SELECT id, status, applied_version FROM corrections ORDER BY id")
    assert rows == sorted((i, "accepted", str(version.version)) for i in submitted)

    # the artifacts are in the server's artifacts destination, nowhere local
    stored_run = stack.artifacts_root / "yolo-retrain" / run_id / "artifacts"
    assert all((stored_run / p).is_file() for p in json_files), sorted(stored_run.rglob("*"))
    # the weights once, as the logged model (no second copy among the run's artifacts)
    copies = [w for w in stack.artifacts_root.rglob("*.pt") if file_sha256(w) == version.tags["weights_sha256"]]
    assert len(copies) == 1 and stored_run not in copies[0].parents, copies
    local_stores = [stack.settings.home / name for name in ("mlartifacts", "mlflow.db", "corrections.db")]
    assert not [p for p in local_stores if p.exists()]
    assert not list((PROJECT_ROOT / "mlartifacts").glob(f"**/{run_id}"))
    print(f"\nthreshold request -> flow run finished in {stack.timings['threshold -> flow run final']:.1f} s")


def test_postgres_store_announces_one_crossing_per_backlog_and_keeps_utc(stack: Stack, tmp_path):
    """Two intakes crossing the threshold at the same moment send one event; times are UTC whatever the
    database's time zone."""
    import threading
    from datetime import datetime, timezone

    import psycopg

    with psycopg.connect(stack.pg.url("postgres", driver=None), autocommit=True) as conn:
        conn.execute('CREATE DATABASE "race"')
        conn.execute("ALTER DATABASE race SET timezone TO 'America/New_York'")
    stores = [CorrectionStore(stack.pg.url("race"), tmp_path / "blobs", ["square", "circle"]) for _ in range(2)]
    try:
        for image, labels in stack.corrections[:3]:
            stores[0].add(image, labels)
        for _ in range(10):
            stores[0].rearm_threshold()
            barrier, taken = threading.Barrier(2), []

            def take(store: CorrectionStore) -> None:
                barrier.wait()
                taken.append(store.take_threshold_crossing(3))

            threads = [threading.Thread(target=take, args=(s,)) for s in stores]
            [t.start() for t in threads]
            [t.join() for t in threads]
            assert sorted(taken, key=str) == [3, None]

        newest = stores[1].list(limit=1)[0]
        (stored,) = stack.pg.query("race", "SELECT created_at AT TIME ZONE 'UTC' FROM corrections WHERE id = %s", newest.id)
        assert stored[0].replace(tzinfo=timezone.utc) == newest.created_at
        assert abs((datetime.now(timezone.utc) - newest.created_at).total_seconds()) < 600
    finally:
        for store in stores:
            store.close()


def upgrade_an_old_store(url: str, blobs: Path) -> None:
    """A store made by the release before versioned schemas (the baseline revision's tables, no version table),
    with applied rows of a promoted and a rejected version, opened by this release: upgraded, sorted, nothing lost."""
    from datetime import datetime, timezone

    from alembic import command
    from sqlalchemy import MetaData, create_engine, text

    from yolo_retrain import migrations
    from yolo_retrain.gate import GateDecision

    engine = create_engine(url)
    with engine.begin() as conn:
        command.upgrade(migrations.config(conn), migrations.BASELINE)
        conn.execute(text(f"DROP TABLE {migrations.VERSION_TABLE}"))  # that release had no version table
    tables = MetaData()
    tables.reflect(engine)
    when = datetime(2026, 11, 2, 9, tzinfo=timezone.utc)
    rows = [
        {"id": f"r{i}", "image_sha256": f"{i:064x}", "image_path": f"/blobs/{i}.png", "original_name": f"{i}.png",
         "label_text": "0 0.5 0.5 0.25 0.25\n", "num_boxes": 1, "width": 64, "height": 64, "created_at": when,
         "status": status, "batch_id": batch, "applied_version": version, "applied_at": when if version else None}
        for i, (status, batch, version) in enumerate(
            [("applied", "b-promoted", "2"), ("applied", "b-promoted", "2"), ("applied", "b-rejected", "3"), ("pending", None, None)]
        )
    ]  # fmt: skip
    with engine.begin() as conn:
        conn.execute(tables.tables["corrections"].insert(), rows)
        conn.execute(tables.tables["flags"].insert(), [{"name": "threshold_armed", "value": True}])
    engine.dispose()

    decisions = {"2": GateDecision(True, "better"), "3": GateDecision(False, "worse")}
    with CorrectionStore(url, blobs, ["square", "circle"]) as store:
        assert store.sort_applied(lambda versions: {v: decisions[v] for v in versions}) == 3
        after = {c.id: c for c in store.list()}
        assert store.pending_count() == 1
    assert {i: (c.status, c.applied_version, c.created_at) for i, c in after.items()} == {
        "r0": ("accepted", "2", when), "r1": ("accepted", "2", when), "r2": ("rejected", "3", when), "r3": ("pending", None, when)
    }  # fmt: skip
    engine = create_engine(url)
    with engine.connect() as conn:
        assert migrations.current_revision(conn) == migrations.head()
    engine.dispose()


def test_postgres_store_from_before_versioning_upgrades_in_place(stack: Stack, tmp_path):
    import psycopg

    with psycopg.connect(stack.pg.url("postgres", driver=None), autocommit=True) as conn:
        conn.execute('CREATE DATABASE "old_store"')
    upgrade_an_old_store(stack.pg.url("old_store"), tmp_path / "blobs")


# Two writers at once on the store (#21, windows 3 and 4): real processes on this cluster. A trigger's pg_sleep holds
# the first writer inside its transaction while the second starts (tests/store_races.py).


@pytest.fixture(scope="module")
def writers() -> Iterator[list[store_races.Writer]]:
    started = [store_races.Writer() for _ in range(2)]  # importing in parallel
    try:
        yield started
    finally:
        for w in started:
            w.close()


def test_two_writers_of_one_image_leave_one_pending_correction_and_its_blob(stack: Stack, writers, tmp_path):
    """Window 3: two writers' duplicate check and supersede under READ COMMITTED, and a failed writer's blob cleanup."""
    import hashlib

    url, blobs = store_races.new_database(stack.pg, "two_writers", ("corrections",)), tmp_path / "blobs"
    for w in writers:
        w.send(op="open", url=url, blobs=str(blobs), names=["square", "circle"])
        assert "ok" in w.answer()
    (x, _), (y, _), (z, _) = stack.corrections[:3]
    square, circle = "0 0.5 0.5 0.25 0.25\n", "1 0.5 0.5 0.25 0.25\n"

    def race(image: Path, first: tuple[str, str], second: tuple[str, str]) -> tuple[dict, dict]:
        add = {"op": "add", "image": str(image)}
        one, other = {**add, "labels": first[0], "author": first[1]}, {**add, "labels": second[0], "author": second[1]}
        return store_races.race(stack.pg, "two_writers", *writers, one, other)

    a, b = race(x, (square, "slow"), (circle, "fast"))  # other labels: the later supersedes the earlier
    assert "ok" in a and "ok" in b, (a, b)
    c, d = race(y, (square, "slow"), (square, "fast"))  # the same labels: one stored, one refused
    assert "ok" in c and d.get("error") == "DuplicateCorrection", (c, d)
    e, f = race(z, (square, "slow-then-fail"), (circle, "fast"))  # a failure after writing a new blob
    assert "injected failure" in e.get("message", "") and "ok" in f, (e, f)
    with CorrectionStore(url, blobs, ["square", "circle"]) as store:
        rows = store.list()
    assert sorted(r.id for r in rows if r.status == "pending") == sorted([b["ok"], c["ok"], f["ok"]])
    assert {r.id: r.status for r in rows}[a["ok"]] == "superseded"
    for row in rows:  # every row's image is there, with the bytes it names
        assert hashlib.sha256(Path(row.image_path).read_bytes()).hexdigest() == row.image_sha256


def test_two_first_opens_with_other_class_names_refuse_the_loser(stack: Stack, writers, tmp_path):
    """Window 4: of two first opens of an empty store, and of two opens appending other classes, one is refused."""
    url = store_races.new_database(stack.pg, "first_opens", ("project_classes",))
    names, opening = ["square", "circle"], {"op": "open", "url": url, "blobs": str(tmp_path / "blobs")}
    a, b = store_races.race(stack.pg, "first_opens", *writers, {**opening, "names": names}, {**opening, "names": names[::-1]})
    assert a == {"ok": names} and b.get("error") == "ClassContractChanged", (a, b)
    star, ring = {**opening, "names": [*names, "star"]}, {**opening, "names": [*names, "ring"]}
    a, b = store_races.race(stack.pg, "first_opens", *writers, star, ring)
    assert a == {"ok": [*names, "star"]} and b.get("error") == "ClassContractChanged", (a, b)
