"""MLflow Model Registry: log the candidate as a pyfunc, register it, move aliases, keep the local champion file.

The candidate is an MLflow 3 *logged model* linked to its retrain run (an output of the run), holding the
holdout metrics (``pre_*`` champion, ``post_*`` candidate); its registry version points at it and carries only
lineage tags (:data:`LINEAGE_TAGS`). Every version has ``weights_sha256``; local weights are used only after their
hash matches it.
"""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stderr
from dataclasses import dataclass, field
from pathlib import Path

import mlflow
import pandas as pd
from mlflow import MlflowClient
from mlflow.entities import LoggedModelOutput
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema

from yolo_retrain import tracking
from yolo_retrain.config import SERVING_CONFIDENCE, Settings
from yolo_retrain.exports.champion_folder import champion_folder_version, point_champion_folder
from yolo_retrain.errors import RetrainError
from yolo_retrain.gate import AWAITING_APPROVAL, GateDecision
from yolo_retrain.hashing import file_sha256
from yolo_retrain.metrics import EvalMetrics
from yolo_retrain.recipe import trained_imgsz

log = logging.getLogger(__name__)
PYFUNC_CODE = Path(__file__).with_name("pyfunc_model.py")
MODEL_NAME_IN_RUN = "model"
# What a version records about where it came from; its figures are the logged model's metrics.
LINEAGE_TAGS = ("dataset_digest", "parent_version", "corrections_count", "evaluation_key", "weights_sha256")


@dataclass(frozen=True)
class Champion:
    version: str
    weights: Path  # hash-checked against the version's weights_sha256
    tags: dict[str, str] = field(default_factory=dict)
    model_metrics: dict[str, float] = field(default_factory=dict)  # its logged model's (pre_*, post_*)
    run_id: str | None = None  # the retrain that made it (its per-image holdout results are there)

    def recorded_metrics(self, evaluation_key: str) -> EvalMetrics | None:
        """The holdout figures recorded when this version was made, if they were measured under ``evaluation_key``."""
        if self.tags.get("evaluation_key") != evaluation_key:
            return None
        return EvalMetrics.from_mlflow("post", self.model_metrics)


def pip_requirements() -> list[str]:
    """Explicit requirements for serving: what the pyfunc imports, pinned to what trained it."""
    from importlib.metadata import version

    torch_minor = ".".join(version("torch").split("+")[0].split(".")[:2])
    return [
        f"mlflow=={version('mlflow')}",
        f"ultralytics=={version('ultralytics')}",
        f"torch>={torch_minor}",
        f"pandas=={version('pandas')}",
    ]


def log_pyfunc_model(client: MlflowClient, experiment_id: str, run_id: str, weights: Path, imgsz: int) -> str:
    """Log the weights as an MLflow Model (models-from-code pyfunc), an output of ``run_id``; returns its model id."""
    logged = mlflow.initialize_logged_model(name=MODEL_NAME_IN_RUN, source_run_id=run_id, experiment_id=experiment_id)
    # MLflow warns (forcing the warning on) that predict has no type hints: it takes a DataFrame or a list of
    # paths on purpose. Nothing a user can act on: into our log, not the console.
    with _stderr_to_log():
        _log_pyfunc(logged.model_id, weights, imgsz)
    # The run page lists its "Logged models" from the run's outputs: without an active run nobody links it.
    client.log_outputs(run_id, [LoggedModelOutput(logged.model_id, step=0)])
    return logged.model_id


def _log_pyfunc(model_id: str, weights: Path, imgsz: int) -> None:
    with _example_not_predicted():
        mlflow.pyfunc.log_model(
            name=MODEL_NAME_IN_RUN,
            model_id=model_id,
            python_model=str(PYFUNC_CODE),
            artifacts={"weights": str(weights)},
            model_config={"imgsz": imgsz, "conf": SERVING_CONFIDENCE},
            signature=serving_signature(imgsz),
            input_example=pd.DataFrame({"image_bytes": [example_image()]}),
            pip_requirements=pip_requirements(),
        )


@contextmanager
def _example_not_predicted() -> Iterator[None]:
    """log_model loads the model it logs and predicts its input example, only to warn if that fails: seconds per
    retrain (Ultralytics' first prediction sets the model up). tests/test_serve.py serves a logged model over HTTP
    instead, the check that matters."""
    import mlflow.models.utils as model_utils

    checking = model_utils._validate_serving_input
    model_utils._validate_serving_input = lambda model_uri, serving_input: None
    try:
        yield
    finally:
        model_utils._validate_serving_input = checking


def serving_signature(imgsz: int) -> ModelSignature:
    """What the pyfunc takes (the image's bytes, or a path on the serving host), answers (one row per box) and lets a
    request override (confidence, image size)."""
    return ModelSignature(
        inputs=Schema([ColSpec("binary", "image_bytes", required=False), ColSpec("string", "image", required=False)]),
        outputs=Schema(
            [ColSpec("long", "image"), ColSpec("long", "class_id"), ColSpec("string", "class_name"), ColSpec("double", "confidence")]
            + [ColSpec("double", corner) for corner in ("x1", "y1", "x2", "y2")]
        ),
        params=ParamSchema([ParamSpec("conf", "double", SERVING_CONFIDENCE), ParamSpec("imgsz", "long", imgsz)]),
    )


def example_image(size: int = 64) -> bytes:
    """A small grey PNG: the logged model's input example (kept with it, and run once when it is logged)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (size, size), (114, 114, 114)).save(buffer, format="PNG")
    return buffer.getvalue()


def log_model_metrics(
    client: MlflowClient, run_id: str, model_id: str, dataset_digest: str, figures: dict[str, EvalMetrics | None]
) -> None:
    """The holdout figures (``{"post": candidate, "pre": champion}``) as the logged model's metrics, measured on the
    run's dataset; the run keeps its one copy of each (same timestamps)."""
    dataset = tracking.DatasetRef.of(dataset_digest)
    for prefix, metrics in figures.items():
        if metrics is not None:
            tracking.log_metrics(
                client, run_id, metrics.as_mlflow(prefix), timestamp_ms=metrics.logged_at_ms, model_id=model_id, dataset=dataset
            )


def logged_model_id(version: ModelVersion) -> str | None:
    """The logged model a version was registered from: its ``model_id``, or (the SQL registry leaves that empty)
    its source ``models:/<model id>``; None for a version registered from run artifacts."""
    if getattr(version, "model_id", None):
        return version.model_id
    source = version.source or ""
    return source.removeprefix("models:/") if source.startswith("models:/m-") else None


def model_metrics(client: MlflowClient, version: ModelVersion) -> dict[str, float]:
    """The metrics of the logged model a version points at (latest value of each); empty for an older version
    registered without one."""
    model_id = logged_model_id(version)
    if model_id is None:
        return {}
    latest: dict[str, tuple[int, float]] = {}
    for metric in client.get_logged_model(model_id).metrics or []:
        if metric.key not in latest or metric.timestamp >= latest[metric.key][0]:
            latest[metric.key] = (metric.timestamp, metric.value)
    return {key: value for key, (_, value) in latest.items()}


def register_version(model_name: str, model_id: str, tags: dict[str, object]) -> ModelVersion:
    """A registry version whose source is the logged model ``model_id``, tagged with its lineage."""
    unknown = set(tags) - set(LINEAGE_TAGS)
    if unknown:
        raise ValueError(f"version tags are lineage only ({', '.join(LINEAGE_TAGS)}), not {', '.join(sorted(unknown))}")
    with _stderr_to_log():  # MLflow prints "Created version ..." itself
        return mlflow.register_model(f"models:/{model_id}", model_name, tags={k: str(v) for k, v in tags.items()})


@contextmanager
def _stderr_to_log() -> Iterator[None]:
    """What MLflow prints or warns on stderr while inside goes to our logger (INFO) instead of the console."""
    with redirect_stderr(io.StringIO()) as said:
        try:
            yield
        finally:
            if said.getvalue().strip():
                log.info(said.getvalue().strip())


def versions_for_run(client: MlflowClient, model_name: str, run_id: str) -> list[ModelVersion]:
    """The versions a run registered (one, unless a retry trained other weights in the same run)."""
    try:
        return client.search_model_versions(f"name = '{model_name}' and run_id = '{run_id}'")
    except MlflowException:
        return []


def find_version_for_run(
    client: MlflowClient, model_name: str, run_id: str, weights_sha256: str | None = None
) -> ModelVersion | None:
    """The version a run already registered (a retried task must not register a second one); with
    ``weights_sha256``, only a version of those very weights."""
    for version in versions_for_run(client, model_name, run_id):
        if weights_sha256 is None or version.tags.get("weights_sha256") == weights_sha256:
            return version
    return None


def mark_run_failed(client: MlflowClient, model_name: str, run_id: str, reason: str) -> None:
    """A version registered by a run that then failed stays (a retry reuses it) but is tagged ``run_failed``,
    so nobody takes it for a finished retrain's model."""
    for version in versions_for_run(client, model_name, run_id):
        client.set_model_version_tag(version.name, version.version, "run_failed", reason[:4000])


def clear_run_failed(client: MlflowClient, model_name: str, version: str) -> None:
    """The run finished after all (a retried attempt): drop the earlier attempt's ``run_failed`` tag."""
    if "run_failed" in client.get_model_version(model_name, version).tags:
        client.delete_model_version_tag(model_name, version, "run_failed")


def gate_decisions(client: MlflowClient, model_name: str, versions: set[str]) -> dict[str, GateDecision] | None:
    """The gate's decision on each of ``versions`` (its ``gate_decision`` / ``gate_reason`` tags); a version
    without them is left out. None when the registry has no model ``model_name`` at all (a wrong registry)."""
    try:
        client.get_registered_model(model_name)
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            return None
        raise
    found = {}
    for number in versions:
        try:
            tags = client.get_model_version(model_name, number).tags
        except MlflowException as exc:
            if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                continue  # deleted, or never a version number: no decision to go by
            raise
        if tags.get("gate_decision") in ("promoted", "rejected"):
            found[number] = GateDecision(tags["gate_decision"] == "promoted", tags.get("gate_reason", ""))
    return found


def version_by_alias(client: MlflowClient, model_name: str, alias: str) -> ModelVersion | None:
    try:
        return client.get_model_version_by_alias(model_name, alias)
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST" or "not found" in str(exc).lower():
            return None
        raise


def local_weights_path(settings: Settings, version: str | int) -> Path:
    return settings.models_dir / f"retrained_v{version}.pt"


def _atomic_copy(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    os.close(fd)
    try:
        shutil.copyfile(source, tmp)
        os.replace(tmp, target)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)  # no partial file left; the target, if it existed, is untouched
        if isinstance(exc, OSError) and exc.errno is not None:  # e.g. disk full: name the file, not the temporary
            raise OSError(exc.errno, f"cannot write {target}: {exc.strerror}") from exc
        raise


def save_local_weights(settings: Settings, version: ModelVersion, weights: Path) -> Path:
    """Write ``models/retrained_vN.pt`` and check it against the sha256 recorded on the version."""
    target = local_weights_path(settings, version.version)
    _atomic_copy(weights, target)
    expected = version.tags.get("weights_sha256")
    if expected and file_sha256(target) != expected:
        target.unlink(missing_ok=True)
        raise RetrainError(f"{target}: sha256 does not match weights_sha256 {expected} of version {version.version}")
    return target


def verified_weights(settings: Settings, client: MlflowClient, version: ModelVersion) -> Path:
    """Local weights of ``version`` whose sha256 matches the registry; fetched from MLflow if missing or altered."""
    expected = version.tags.get("weights_sha256")
    local = local_weights_path(settings, version.version)
    if local.exists() and file_sha256(local) == expected:
        return local
    with tempfile.TemporaryDirectory() as tmp:
        _atomic_copy(fetch_weights(version, Path(tmp)), local)
    return local


def fetch_weights(version: ModelVersion, folder: Path) -> Path:
    """The version's weights as MLflow holds them (its logged model), downloaded into ``folder`` and checked against
    its ``weights_sha256``; RetrainError if they differ."""
    expected = version.tags.get("weights_sha256")
    uri = f"models:/{version.name}/{version.version}"
    model_dir = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(folder)))
    fetched = next(model_dir.rglob("*.pt"), None)
    if fetched is None or file_sha256(fetched) != expected:
        raise RetrainError(
            f"weights of {version.name} version {version.version} do not match weights_sha256 {expected}; refusing to load them"
        )
    return fetched


def current_champion(client: MlflowClient, settings: Settings) -> Champion | None:
    version = version_by_alias(client, settings.model_name, "champion")
    if version is None:
        return None
    return Champion(
        str(version.version),
        verified_weights(settings, client, version),
        dict(version.tags),
        model_metrics(client, version),
        run_id=version.run_id,
    )


def install_champion(settings: Settings, weights: Path) -> Path:
    """The champion's weights, always at one fixed local path, replaced atomically."""
    _atomic_copy(weights, settings.champion_weights)
    return settings.champion_weights


def apply_gate(client: MlflowClient, settings: Settings, version: ModelVersion, weights: Path, decision: GateDecision) -> None:
    """Move ``champion`` to the version if the gate promotes it, else mark it ``challenger`` with the reason.

    The alias move is the commit point (:func:`committed_decision`): the tags and the local file come before it, so a
    failure before it is undone by :func:`restore_local_champion`, and after it the decision stands."""
    name, number = version.name, version.version
    client.set_model_version_tag(name, number, "gate_decision", decision.label)
    client.set_model_version_tag(name, number, "gate_reason", decision.reason)
    if decision.dropped_classes:  # a recovery settling the batch holds what relabels them, as the finish step does
        client.set_model_version_tag(name, number, "gate_dropped_classes", json.dumps(list(decision.dropped_classes)))
    if decision.promote:
        previous = version_by_alias(client, name, "champion")
        if previous is not None and previous.version != number:
            client.set_model_version_tag(name, number, "replaced_champion", previous.version)
        install_champion(settings, weights)
        _point_champion_folder(settings, client, version)
        client.set_registered_model_alias(name, "champion", number)
    else:
        client.set_registered_model_alias(name, "challenger", number)


def committed_decision(client: MlflowClient, model_name: str, run_id: str) -> tuple[ModelVersion, GateDecision] | None:
    """The gate's decision on a version ``run_id`` registered, if it took effect: the version holds the alias the
    decision moves (``champion`` if promoted, else ``challenger``). None if the gate did not get that far."""
    for found in client.search_model_versions(f"name = '{model_name}' and run_id = '{run_id}'"):
        version = client.get_model_version(model_name, found.version)  # with its aliases as they are now
        label = version.tags.get("gate_decision", "")
        dropped = tuple(json.loads(version.tags.get("gate_dropped_classes", "[]")))
        decision = GateDecision.from_tags(label, version.tags.get("gate_reason", ""), dropped)
        if label in ("promoted", "rejected", AWAITING_APPROVAL) and decision.alias in version.aliases:
            return version, decision
        if label in ("promoted", "rejected") and version.tags.get("approval"):  # held, then a person (or the timeout)
            return version, decision  # decided: the gate's own decision had taken effect (approval.py)
    return None


def restore_local_champion(client: MlflowClient, settings: Settings, failed_run_id: str | None = None) -> bool:
    """Make the local champion file hold the ``champion`` alias's weights again (a gate that installed the file and
    then failed before moving the alias). With no champion at all, a file holding weights of ``failed_run_id``'s
    versions (a first promotion that never took effect) is removed. True if the file changed."""
    local = settings.champion_weights
    champion = version_by_alias(client, settings.model_name, "champion")
    if champion is None:
        stray = failed_run_id and local.is_file() and file_sha256(local) in {
            v.tags.get("weights_sha256") for v in versions_for_run(client, settings.model_name, failed_run_id)
        }
        if stray:
            local.unlink()
            if settings.champion_exports.is_symlink():  # its exports' folder went up with it
                settings.champion_exports.unlink()
        return bool(stray)
    configured = bool(settings.export_format_list)  # else no folder: a link left from before goes
    if (champion_folder_version(settings) != str(champion.version)) if configured else settings.champion_exports.is_symlink():
        try:
            _point_champion_folder(settings, client, champion)
        except Exception as exc:  # the exports' folder must not stop a recovery: the file and the alias matter first
            log.warning("could not point %s at version %s: %s", settings.champion_exports, champion.version, exc)
    if local.is_file() and file_sha256(local) == champion.tags.get("weights_sha256"):
        return False
    install_champion(settings, verified_weights(settings, client, champion))
    return True


def _point_champion_folder(settings: Settings, client: MlflowClient, version: ModelVersion) -> None:
    """``models/champion/`` (the champion's verified exports) follows ``champion.pt``: yolo_retrain/exports."""
    point_champion_folder(settings, client, version)


def rollback(client: MlflowClient, settings: Settings, to_version: str | None = None) -> ModelVersion:
    """Point ``champion`` (alias and local file) back at ``to_version``, or at the champion the current one replaced."""
    name = settings.model_name
    current = version_by_alias(client, name, "champion")
    if to_version is None:
        if current is None or "replaced_champion" not in current.tags:
            raise RetrainError(f"model {name!r} has no previous champion to roll back to; pass --to VERSION")
        to_version = current.tags["replaced_champion"]
    try:
        target = client.get_model_version(name, str(to_version))
    except MlflowException as exc:
        raise RetrainError(f"model {name!r} has no version {to_version}") from exc
    weights = verified_weights(settings, client, target)
    install_champion(settings, weights)
    _point_champion_folder(settings, client, target)
    client.set_registered_model_alias(name, "champion", target.version)
    if current is not None and current.version != target.version:
        client.set_model_version_tag(name, current.version, "rolled_back_to", target.version)
    return target


def register_initial_champion(client: MlflowClient, settings: Settings, experiment_id: str, weights: Path) -> ModelVersion:
    """Register existing weights as the first champion (``yolo-retrain init --weights``), in a run of its own."""
    from ultralytics import YOLO

    try:
        YOLO(str(weights))
    except Exception as exc:  # Ultralytics raises many types for a bad file
        raise RetrainError(f"{weights}: not loadable as YOLO weights ({exc})") from exc
    run_id = client.create_run(experiment_id, run_name="initial-champion", tags={"type": "baseline"}).info.run_id
    try:
        model_id = log_pyfunc_model(client, experiment_id, run_id, weights, settings.imgsz or trained_imgsz(weights))
        version = register_version(settings.model_name, model_id, {"weights_sha256": file_sha256(weights), "parent_version": "none"})
        local = save_local_weights(settings, version, weights)
        apply_gate(client, settings, version, local, GateDecision(True, "initial champion from given weights"))
    except BaseException:
        client.set_terminated(run_id, "FAILED")
        raise
    client.set_terminated(run_id, "FINISHED")
    return version
