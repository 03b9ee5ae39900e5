"""Shared test setup: every test runs against its own home dir, real MLflow (SQLite), a real Prefect server."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

# Before yolo_retrain, Ultralytics or Prefect are imported: they read these at import time.
_SESSION_HOME = Path(tempfile.mkdtemp(prefix="yolo-retrain-tests-"))
os.environ["YOLO_RETRAIN_HOME"] = str(_SESSION_HOME)
os.environ["YOLO_RETRAIN_RETRY_DELAY_SECONDS"] = "0"
os.environ["YOLO_RETRAIN_TASK_RETRIES"] = "1"
os.environ["YOLO_VERBOSE"] = "False"

import pytest  # noqa: E402

import yolo_retrain  # noqa: E402,F401  (configures the environment)
from yolo_retrain.config import Settings, get_settings  # noqa: E402


@pytest.fixture(scope="session")
def prefect_server():
    """A real Prefect API server (temporary database) for the whole session."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


def use_home(monkeypatch: pytest.MonkeyPatch, home: Path, **env: object) -> Settings:
    """Point the settings at ``home`` (plus ``YOLO_RETRAIN_<KEY>`` overrides) for one test."""
    monkeypatch.setenv("YOLO_RETRAIN_HOME", str(home))
    for key, value in env.items():
        monkeypatch.setenv(f"YOLO_RETRAIN_{key.upper()}", str(value))
    get_settings.cache_clear()
    return get_settings()


@pytest.fixture(autouse=True)
def _fresh_settings():
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()
