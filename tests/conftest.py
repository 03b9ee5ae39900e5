"""Shared test setup: every test runs against its own home dir, real MLflow (SQLite), a real Prefect server."""

from __future__ import annotations

import os
import shutil
import sqlite3
import tempfile
from contextlib import closing, suppress
from pathlib import Path

# Before yolo_retrain, Ultralytics or Prefect are imported: they read these at import time.
_SESSION_HOME = Path(tempfile.mkdtemp(prefix="yolo-retrain-tests-"))
os.environ["YOLO_RETRAIN_HOME"] = str(_SESSION_HOME)
os.environ["YOLO_RETRAIN_RETRY_DELAY_SECONDS"] = "0"
os.environ["YOLO_RETRAIN_TASK_RETRIES"] = "1"
# Exports (ONNX, checked on the holdout: seconds per retrain) are made in test_serve only, where they are the subject.
os.environ["YOLO_RETRAIN_EXPORT_FORMATS"] = ""
os.environ["YOLO_RETRAIN_GATE_RESAMPLES"] = "100"  # the gate's bootstrap: its plumbing is tested here, its precision in bench/
# The demo's small sizes, set explicitly (the product's defaults are the champion's recipe and Ultralytics' hardware
# choice); tests of the recipe itself unset them.
for _key, _value in {"IMGSZ": 64, "BATCH": 16, "DEVICE": "cpu", "WORKERS": 0}.items():
    os.environ[f"YOLO_RETRAIN_{_key}"] = str(_value)

from dataclasses import dataclass  # noqa: E402

import pytest  # noqa: E402
from mlflow import MlflowClient  # noqa: E402

from yolo_retrain import tracking  # noqa: E402
from yolo_retrain.config import PROJECT_ROOT, Settings, configure_environment, get_settings  # noqa: E402

configure_environment()  # what every entry point does first; tests are one
from yolo_retrain.store import Correction, CorrectionStore  # noqa: E402
from yolo_retrain.summary import RetrainReport  # noqa: E402
from yolo_retrain.synthetic import SyntheticDataset, make_dataset  # noqa: E402

# A Prefect database migrated once (`make test` makes it): a server started on a copy of it is up in ~5 s, where a
# new database costs ~15 s of migrations. Without it a server migrates its database as usual.
PREFECT_DB_TEMPLATE = PROJECT_ROOT / ".cache" / "prefect-db" / "prefect.db"


def seed_prefect_database(database: Path) -> Path:
    """Copy the migrated template to ``database`` (a new file), if there is a template."""
    if PREFECT_DB_TEMPLATE.is_file() and not database.exists():
        database.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(PREFECT_DB_TEMPLATE, database)
    return database


# The subprocesses tests start (the CLI, with Prefect's temporary server) share this worker's PREFECT_HOME.
seed_prefect_database(Path(os.environ["PREFECT_HOME"]) / "prefect.db")

# An empty MLflow tracking store migrated once per worker: a test's new home starts from a copy of it (~0.2 s), where
# MLflow's own migrations of a new SQLite store take ~3 s on 2 cores, and the suite makes dozens of homes.
# tests/test_deployments.py and the bench smoke still start from no store at all, as a new user does.
_MLFLOW_DB_TEMPLATE = _SESSION_HOME / "mlflow-template" / "mlflow.db"


def seed_mlflow_database(database: Path) -> Path:
    """Copy the migrated empty MLflow store to ``database`` (a new file); the template is made on first use."""
    if database.exists():
        return database
    if not _MLFLOW_DB_TEMPLATE.is_file():
        building = _MLFLOW_DB_TEMPLATE.with_name("building.db")
        building.parent.mkdir(parents=True, exist_ok=True)
        MlflowClient(f"sqlite:///{building}").search_experiments()  # MLflow creates and migrates its tables
        _sqlite_copy(building, _MLFLOW_DB_TEMPLATE)
    try:
        database.parent.mkdir(parents=True, exist_ok=True)
        _sqlite_copy(_MLFLOW_DB_TEMPLATE, database)
    except (OSError, sqlite3.Error):  # a home a test made unusable on purpose: the product meets it as it is
        with suppress(OSError):
            database.unlink()
    return database


def _sqlite_copy(source: Path, target: Path) -> None:
    """A consistent copy of a SQLite database, whatever its journal mode or open connections."""
    with closing(sqlite3.connect(source)) as src, closing(sqlite3.connect(target)) as dst:
        src.backup(dst)


# `make test` runs two pytest-xdist workers (`-n 2 --dist loadscope`) with the scheduler below: one unit of work per
# test module, except that the modules using the shared trained world form one unit, so it is trained once.
# Units share no state (each worker has its own session home, ports are free ones); a module's tests stay together,
# so its module-scoped servers start once. (pytest-xdist's own `loadgroup` does not group under pytest 9.)
WORLD_MODULES = {
    "test_api", "test_approval", "test_checks", "test_console", "test_labelstudio_backend", "test_labelstudio_live", "test_mlflow_ui",
    "test_retrain_flow", "test_select_flow", "test_slices_gate",
}
# Longest first (measured with --durations): a worker that took one of these last would run alone for minutes. The
# rest follow in file order, short ones that fill the end.
_LONG_FIRST = (
    "world", "test_deployments", "test_scale_out", "test_bench_smoke", "test_recovery", "test_faults", "test_callbacks",
    "test_bad_input", "test_lifecycle_flow", "test_serve", "test_formats",
)  # fmt: skip


def _unit(nodeid: str) -> str:
    module = Path(nodeid.split("::")[0]).stem
    return "world" if module in WORLD_MODULES else module


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log):
    if config.getvalue("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class ByUnit(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return _unit(nodeid)

    # xdist's default reorders the units by their number of tests, which undid _LONG_FIRST: the deployment tests
    # (3 tests, the longest unit) came 21st of 25, and the worker that took them ran alone at the end.
    config.option.loadscopereorder = False
    return ByUnit(config, log)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        unit = _unit(item.nodeid)
        return _LONG_FIRST.index(unit) if unit in _LONG_FIRST else len(_LONG_FIRST)

    items.sort(key=rank)  # stable: a module's own order is kept
    # One meaning for ``e2e`` (pyproject.toml): every test that uses the session's Prefect server carries it.
    uses_server = [i for i in items if "prefect_server" in getattr(i, "fixturenames", ())]
    unmarked = [i.nodeid for i in uses_server if not i.get_closest_marker("e2e")]
    if unmarked:
        raise pytest.UsageError("mark these @pytest.mark.e2e (they use a Prefect server): " + ", ".join(unmarked))


@pytest.fixture(scope="session")
def prefect_server():
    """A real Prefect API server (Prefect's test harness: a temporary database, here a copy of the migrated
    template) for the whole session."""
    import prefect.testing.utilities as harness

    def seeded_temp_dir() -> str:  # where the harness puts its database
        folder = tempfile.mkdtemp(prefix="prefect-harness-")
        seed_prefect_database(Path(folder) / "prefect-test.db")
        return folder

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(harness, "mkdtemp", seeded_temp_dir)
        with harness.prefect_test_harness(server_startup_timeout=120):
            mp.undo()
            yield


def use_home(monkeypatch: pytest.MonkeyPatch, home: Path, **env: object) -> Settings:
    """Point the settings at ``home`` (plus ``YOLO_RETRAIN_<KEY>`` overrides) for one test."""
    monkeypatch.setenv("YOLO_RETRAIN_HOME", str(home))
    for key, value in env.items():
        monkeypatch.setenv(f"YOLO_RETRAIN_{key.upper()}", str(value))
    get_settings.cache_clear()
    settings = get_settings()
    if settings.tracking_uri == f"sqlite:///{settings.home / 'mlflow.db'}":  # the default store in the home
        seed_mlflow_database(settings.home / "mlflow.db")
    return settings


@pytest.fixture(autouse=True)
def _fresh_settings():
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


# Tiny trainings; Ultralytics' plots (a third of a tiny training's time) only where a test reads them.
TINY = {"epochs": 1, "imgsz": 64, "batch": 8, "plots": False}


@dataclass
class World:
    """A home after ``init`` → baseline champion (v1) → corrections → one retrain."""

    settings: Settings
    data: SyntheticDataset
    baseline: RetrainReport
    report: RetrainReport
    corrections: list[Correction]

    @property
    def client(self) -> MlflowClient:
        return tracking.client_for(self.settings)

    def run(self, run_id: str):
        return self.client.get_run(run_id)


def decided(report: RetrainReport) -> str:
    """The status a finished retrain of the tests leaves its batch in: accepted, whatever the gate decided of the
    model (#19). A 1-epoch model at 64 px sees no class at the screening's confidence, so screening finds nothing
    against a correction."""
    return "accepted"


def import_corrections(settings: Settings, data: SyntheticDataset) -> list[Correction]:
    with CorrectionStore.from_settings(settings) as store:
        return store.import_dir(data.corrections_dir, author="test")


@pytest.fixture(scope="session")
def world(prefect_server, tmp_path_factory) -> World:
    """Built once per session with real tiny trainings; use it through ``in_world``."""
    from typer.testing import CliRunner

    from flows.retrain import retrain
    from yolo_retrain.cli import app

    home = tmp_path_factory.mktemp("world")
    with pytest.MonkeyPatch.context() as mp:
        settings = use_home(mp, home, **{**TINY, "plots": True})  # test_retrain_flow reads its plots
        data = make_dataset(home / "demo", train=24, val=12, size=64)
        result = CliRunner().invoke(app, ["init", "--no-train-baseline"])
        assert result.exit_code == 0, result.output
        baseline = retrain(trigger="baseline", force=True)
        corrections = import_corrections(settings, data)
        report = retrain(trigger="manual")
    get_settings.cache_clear()
    return World(settings, data, baseline, report, corrections)


@pytest.fixture
def world_copy(world: World, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Settings:
    """A copy of the world's home to damage. Its MLflow records still point at the original artifact store
    (absolute URIs), so that store is not copied and the artifact location setting names it; only local files
    of the copy are altered (a retrain in the copy adds its artifacts there, under a run id of its own)."""
    home = tmp_path / "home"
    skip = shutil.ignore_patterns("mlartifacts", "runs", "datasets")  # large, and not read through the copy
    shutil.copytree(world.settings.home, home, symlinks=True, ignore=skip)
    return use_home(monkeypatch, home, artifact_location=world.settings.artifact_location, **TINY)


@pytest.fixture
def in_world(world: World, monkeypatch: pytest.MonkeyPatch) -> World:
    """The shared world, with the settings pointing at its home for this test."""
    use_home(monkeypatch, world.settings.home, **TINY)
    return world
