"""``yolo-retrain doctor``: is this installation set up to retrain? One independent check per dependency.

Every check returns a :class:`CheckResult`; a check that fails (or raises) never stops the others.
"""

from __future__ import annotations

import functools
import os
import tempfile
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import ParamSpec

from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion

from yolo_retrain import registry, tracking
from yolo_retrain.config import Settings
from yolo_retrain.errors import RetrainError
from yolo_retrain.hashing import file_sha256

P = ParamSpec("P")

INIT_FIX = "run `yolo-retrain init`"
TRACKING_FIX = "start the MLflow tracking server, or fix YOLO_RETRAIN_TRACKING_URI"
# MLflow's REST client reads these per request: a down tracking server fails in seconds, not minutes of retries.
_SHORT_HTTP_LIMITS = {"MLFLOW_HTTP_REQUEST_TIMEOUT": "10", "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"}
_PREFECT_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one check: what it found (``detail``) and, when it failed, what to do (``fix``)."""

    name: str
    ok: bool
    detail: str
    fix: str | None = None


class CheckFailed(RetrainError):
    """Raised inside a check: it failed for a reason it can name, with a specific fix."""

    def __init__(self, detail: str, fix: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.fix = fix


def check(name: str, fix: str | None = None) -> Callable[[Callable[P, str]], Callable[P, CheckResult]]:
    """Turn ``fn(...) -> detail`` into a check: CheckFailed or any other exception becomes a failed result."""

    def wrap(fn: Callable[P, str]) -> Callable[P, CheckResult]:
        @functools.wraps(fn)
        def run(*args: P.args, **kwargs: P.kwargs) -> CheckResult:
            try:
                return CheckResult(name, True, fn(*args, **kwargs))
            except CheckFailed as failed:
                return CheckResult(name, False, failed.detail, failed.fix or fix)
            except Exception as exc:  # noqa: BLE001 — any failure of a dependency is this check's finding
                return CheckResult(name, False, describe(exc), fix)

        return run

    return wrap


def describe(exc: BaseException) -> str:
    """One line for an exception: our own errors as they are, others prefixed by their type."""
    text = (str(exc).strip().splitlines() or [""])[0][:500]
    return text if isinstance(exc, RetrainError) else f"{type(exc).__name__}: {text}"


def _directories(settings: Settings) -> list[Path]:
    return [
        settings.home,
        settings.models_dir,
        settings.corrections_dir,
        settings.datasets_dir,
        settings.runs_dir,
        settings.ultralytics_config_dir,
        settings.prefect_home,
    ]


@check("home", fix="make the directories writable, or point YOLO_RETRAIN_HOME elsewhere")
def check_home(settings: Settings) -> str:
    """The home and its sub-directories exist (or are created) and accept a file being written and deleted."""
    problems = []
    for directory in _directories(settings):
        probe = directory / f".doctor-{uuid.uuid4().hex}"
        try:
            directory.mkdir(parents=True, exist_ok=True)
            probe.write_bytes(b"probe")
            probe.unlink()
        except OSError as exc:
            problems.append(f"{directory}: {exc.strerror or exc}")
    if problems:
        raise CheckFailed("not writable: " + "; ".join(problems))
    return f"{settings.home} and {len(_directories(settings)) - 1} sub-directories writable"


@check("tracking", fix=TRACKING_FIX)
def check_tracking(settings: Settings) -> str:
    """The tracking URI answers a search for experiments."""
    uri = settings.tracking_uri or ""
    try:
        experiments = tracking.client_for(settings).search_experiments(max_results=10)
    except Exception as exc:
        where = "MLflow tracking server" if uri.startswith(("http://", "https://")) else "MLflow tracking store"
        raise CheckFailed(f"{where} at {uri} is not reachable: {describe(exc)}") from exc
    return f"{uri} reachable ({len(experiments)} experiment(s))"


def experiment_id_or_fail(client: MlflowClient, settings: Settings) -> str:
    """``tracking.resolve_experiment``, its refusal raised as CheckFailed with the fix for that refusal."""
    try:
        return tracking.resolve_experiment(client, settings)
    except RetrainError as exc:
        message = str(exc)  # tracking's messages name the case: missing, artifact location mismatch, unreachable
        if "yolo-retrain init" in message:
            fix = INIT_FIX
        elif "artifact location" in message:
            fix = "set YOLO_RETRAIN_ARTIFACT_LOCATION to the experiment's artifact location"
        else:
            fix = TRACKING_FIX
        raise CheckFailed(message, fix) from exc


KIND_FIX = "run `yolo-retrain doctor --fix` (or `yolo-retrain init`): it tags the experiment"


def check_experiment_kind(client: MlflowClient, experiment_id: str) -> str:
    """The experiment is tagged a custom-model one, so MLflow's UI opens it on runs and models (not GenAI traces)."""
    kind = client.get_experiment(experiment_id).tags.get(tracking.EXPERIMENT_KIND_TAG)
    if kind != tracking.CUSTOM_MODEL_KIND:
        raise CheckFailed(
            f"experiment {experiment_id} has {tracking.EXPERIMENT_KIND_TAG}={kind!r}, not {tracking.CUSTOM_MODEL_KIND!r}",
            KIND_FIX,
        )
    return f"{tracking.EXPERIMENT_KIND_TAG}={kind}"


@check("experiment")
def check_experiment(settings: Settings) -> str:
    """The configured experiment exists, active, with the configured artifact location and kind."""
    client = tracking.client_for(settings)
    experiment_id = experiment_id_or_fail(client, settings)
    return f"id {experiment_id}, artifacts at {settings.artifact_location}, {check_experiment_kind(client, experiment_id)}"


@check("probe run", fix="check that the artifact location is writable and reachable from this machine")
def check_probe_run(settings: Settings) -> str:
    """A throwaway run writes an artifact and reads it back; the run is then ended and deleted."""
    client = tracking.client_for(settings)
    experiment_id = experiment_id_or_fail(client, settings)
    info = client.create_run(experiment_id, run_name="doctor-probe", tags={"type": "doctor-probe"}).info
    run_id, status = info.run_id, "FAILED"
    try:
        text = f"yolo-retrain doctor probe {uuid.uuid4().hex}"
        client.log_text(run_id, text, "doctor/probe.txt")
        with tempfile.TemporaryDirectory() as tmp:
            read_back = Path(client.download_artifacts(run_id, "doctor/probe.txt", tmp)).read_text()
        if read_back != text:
            raise CheckFailed(f"artifact read back from run {run_id} differs from what was written")
        status = "FINISHED"
    finally:
        client.set_terminated(run_id, status)
        client.delete_run(run_id)
    return f"wrote and read back an artifact under {info.artifact_uri} (probe run deleted)"


@check("registry", fix=TRACKING_FIX)
def check_registry(settings: Settings) -> str:
    """The model registry answers a search for registered models."""
    names = [m.name for m in tracking.client_for(settings).search_registered_models(max_results=100)]
    registered = "registered" if settings.model_name in names else "not registered yet"
    return f"reachable; model {settings.model_name!r} {registered}"


@check("champion", fix=TRACKING_FIX)
def check_champion(settings: Settings) -> str:
    """The champion alias resolves, its local weights (both files) match the version's ``weights_sha256``, and
    its class names are the base data.yaml's."""
    version = registry.version_by_alias(tracking.client_for(settings), settings.model_name, "champion")
    if version is None:
        return "no champion yet — run yolo-retrain init"
    fix = f"run `yolo-retrain rollback --to {version.version}` (re-fetches the registered weights)"
    paths = (registry.local_weights_path(settings, version.version), settings.champion_weights)
    expected = local_weights_match(version, paths, fix)
    classes = classes_finding(settings, settings.champion_weights)
    return f"v{version.version}, local weights match weights_sha256 {expected[:12]}, {classes}"


def classes_finding(settings: Settings, weights: Path) -> str:
    """``check_model_classes`` as a check's finding: CheckFailed with the fix when the classes differ."""
    from yolo_retrain.data_yaml import read_class_names
    from yolo_retrain.model_classes import ClassMismatch, check_model_classes

    assert settings.base_data is not None  # filled by Settings
    project = read_class_names(settings.base_data)
    try:
        names = check_model_classes(weights, project, f"base data.yaml {settings.base_data}")
    except ClassMismatch as exc:
        raise CheckFailed(
            str(exc), "point YOLO_RETRAIN_BASE_DATA at the data the champion was trained on, or roll back"
        ) from exc
    return f"classes {names} as in the base data.yaml"


def local_weights_match(version: ModelVersion, paths: Iterable[Path], fix: str) -> str:
    """Each file in ``paths`` exists and has the sha256 the registry recorded for ``version`` (its tag
    ``weights_sha256``, returned). CheckFailed naming the first file that does not, with ``fix``."""
    expected = version.tags.get("weights_sha256")
    if not expected:
        raise CheckFailed(f"version {version.version} has no weights_sha256 tag", "re-register the version")
    for path in paths:
        if not path.is_file():
            raise CheckFailed(f"v{version.version}: {path} is missing", fix)
        if file_sha256(path) != expected:
            raise CheckFailed(f"v{version.version}: {path} sha256 differs from weights_sha256 {expected[:12]}", fix)
    return expected


@check("base dataset", fix="fix the data.yaml, or point YOLO_RETRAIN_BASE_DATA at a valid one")
def check_base_dataset(settings: Settings) -> str:
    """The base data.yaml is valid and lists train and val images."""
    from yolo_retrain.dataset import SPLITS, load_base_dataset

    assert settings.base_data is not None  # filled by Settings
    base = load_base_dataset(settings.base_data)
    counts = " / ".join(f"{sum(i.split == split for i in base.images)} {split}" for split in SPLITS)
    return f"{settings.base_data}: {counts} images, {len(base.names)} classes"


@check("recipe", fix="fix the key named (Ultralytics train arguments: `yolo cfg`), or unset YOLO_RETRAIN_RECIPE")
def check_recipe(settings: Settings) -> str:
    """The team's recipe file passes Ultralytics' argument checks (the champion's own recipe needs none)."""
    from yolo_retrain.recipe import read_recipe_file

    if settings.recipe is None:
        return "none set: retrains use the champion's own training arguments"
    arguments = read_recipe_file(settings)
    return f"{settings.recipe}: " + (", ".join(f"{k}={v}" for k, v in arguments.items()) or "empty")


@check("corrections", fix="check YOLO_RETRAIN_CORRECTIONS_DB_URL and the base data.yaml (class names)")
def check_corrections(settings: Settings) -> str:
    """The correction store opens and counts its corrections; held ones are pointed out for review."""
    from yolo_retrain.store import CorrectionStore

    with CorrectionStore.from_settings(settings) as store:
        stats = store.stats()
    counts = ", ".join(f"{status} {count}" for status, count in stats.items())
    held = [f"`corrections list --status {s}`" for s in ("suspicious", "rejected") if stats.get(s)]
    return counts + (f" (held for a person: {', '.join(held)})" if held else "")


@check("prefect", fix="start the Prefect server, or unset PREFECT_API_URL to run embedded")
def check_prefect(settings: Settings) -> str:
    """The Prefect API answers ``/health`` when one is configured; embedded otherwise."""
    from prefect.client.orchestration import get_client
    from prefect.settings import get_current_settings

    url = get_current_settings().api.url
    if not url:
        return "embedded (no server configured)"
    with get_client(httpx_settings={"timeout": _PREFECT_TIMEOUT_S}, sync_client=True) as client:
        error = client.api_healthcheck()
    if error is not None:
        raise CheckFailed(f"Prefect API at {url} is not healthy: {describe(error)}")
    return f"Prefect API at {url} healthy"


@check("disk", fix="free space (`yolo-retrain housekeeping`), or point YOLO_RETRAIN_HOME at a larger disk")
def check_disk(settings: Settings) -> str:
    """Free space where a retrain writes, against what one needs; what the home holds, by category."""
    from yolo_retrain import disk

    usage = disk.usage_by_category(settings)
    held = ", ".join(f"{name} {disk.mb(size)}" for name, size in usage.items())
    try:
        figures = disk.check_free_space(settings)
    except disk.DiskSpaceError as exc:
        raise CheckFailed(f"{exc}; the home holds {held}") from exc
    return f"{figures}; the home holds {held}"


CHECKS: tuple[Callable[[Settings], CheckResult], ...] = (
    check_home,
    check_tracking,
    check_experiment,
    check_probe_run,
    check_registry,
    check_champion,
    check_base_dataset,
    check_recipe,
    check_corrections,
    check_disk,
    check_prefect,
)


@contextmanager
def short_http_timeouts() -> Iterator[None]:
    """MLflow HTTP calls time out quickly and are not retried while inside (restores the environment after)."""
    saved = {key: os.environ.get(key) for key in _SHORT_HTTP_LIMITS}
    os.environ.update(_SHORT_HTTP_LIMITS)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def run_checks(settings: Settings) -> list[CheckResult]:
    """Every doctor check, in order, each independent of the others' outcome."""
    with short_http_timeouts():
        return [run(settings) for run in CHECKS]
