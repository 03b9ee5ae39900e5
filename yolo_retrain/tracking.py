"""MLflow: the experiment, the retrain run, and everything logged into it — always by explicit run id.

Prefect runs tasks in worker threads and MLflow's "active run" is thread-local, so nothing here relies on
``mlflow.active_run()``: every call names its run.
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow
from mlflow import MlflowClient
from mlflow.entities import Dataset, DatasetInput, InputTag, Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.types import ColSpec, DataType, Schema
from mlflow.types.schema import Map

from yolo_retrain.config import Settings
from yolo_retrain.errors import TrackingSetupError
from yolo_retrain.train_output import TrainOutput

if TYPE_CHECKING:
    from yolo_retrain.dataset import BuiltDataset

FLOW_RUN_TAG = "prefect.flow_run_id"
MLFLOW_DIGEST_LENGTH = 32  # MLflow's dataset digest column holds 36 characters; the full digest goes in a tag
# MLflow 3's UI opens an experiment by its kind; without one it guesses, and may show the GenAI (traces) view.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
CUSTOM_MODEL_KIND = "custom_model_development"


@dataclass(frozen=True)
class DatasetRef:
    """How MLflow names a dataset input: metrics measured on it carry the same name and digest."""

    name: str
    digest: str

    @classmethod
    def of(cls, digest: str) -> DatasetRef:
        return cls(f"retrain-{digest[:12]}", digest[:MLFLOW_DIGEST_LENGTH])


@dataclass(frozen=True)
class RetrainRun:
    """The MLflow run of one retrain, and the Prefect flow run it belongs to."""

    run_id: str
    experiment_id: str
    flow_run_id: str


def client_for(settings: Settings) -> MlflowClient:
    """Tracking URI first: set it globally too, so MLflow's fluent helpers (log_model) hit the same store.

    A tracking *server* (http/https) that has not answered this process yet is probed first, with a short
    timeout and two quick retries: a wrong or dead URI fails in seconds with a TrackingSetupError naming it,
    instead of minutes of MLflow's retries. Once it has answered, calls get MLflow's own HTTP retries
    (``MLFLOW_HTTP_REQUEST_MAX_RETRIES`` 7, backoff factor 2: about 4 minutes), so an outage in the middle
    of a retrain is ridden out rather than failing the retrain.
    """
    uri = settings.tracking_uri or ""
    if is_http_uri(uri) and uri not in _ANSWERED:
        problem = server_problem(uri, max_retries=PROBE_RETRIES, timeout=PROBE_TIMEOUT_S)
        if problem:
            raise TrackingSetupError(
                f"MLflow tracking server at {uri} is not reachable ({problem}); "
                "start it, or fix YOLO_RETRAIN_TRACKING_URI"
            )
        _ANSWERED.add(uri)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


PROBE_RETRIES = 2  # connection refused: answered in about 3 s (urllib3 backoff 0 s, then 2 s + jitter)
PROBE_TIMEOUT_S = 5  # per attempt, for a server that accepts no connection at all (packets dropped)
_ANSWERED: set[str] = set()  # tracking servers that answered this process: later failures are outages
_DOWN_STATUSES = (502, 503, 504)  # a proxy in front of a tracking server that is down


def is_http_uri(uri: str) -> bool:
    return uri.startswith(("http://", "https://"))


def server_problem(uri: str, max_retries: int = 0, timeout: float = PROBE_TIMEOUT_S) -> str | None:
    """None if the MLflow tracking server at ``uri`` answers an HTTP request, else why not (one line).

    Any answer counts (a 404 or 403 too): this asks whether the server is there, not whether the experiment
    is. Uses MLflow's own HTTP stack, so its credentials, TLS and proxy settings apply.
    """
    from mlflow.utils.credentials import get_default_host_creds
    from mlflow.utils.rest_utils import http_request

    try:
        response = http_request(
            get_default_host_creds(uri),
            "/api/2.0/mlflow/experiments/get-by-name",
            "GET",
            max_retries=max_retries,
            backoff_factor=1,
            timeout=timeout,
            retry_codes=_DOWN_STATUSES,
            raise_on_status=False,
            params={"experiment_name": "yolo-retrain-probe"},
        )
    except Exception as exc:  # noqa: BLE001 — MLflow wraps every transport error in MlflowException
        return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
    if response.status_code in _DOWN_STATUSES:
        return f"HTTP {response.status_code} {response.reason}"
    return None


def _normalise_location(location: str) -> str:
    return location.rstrip("/")


def resolve_experiment(client: MlflowClient, settings: Settings) -> str:
    """The configured experiment's id; never creates one. Fails if missing or its artifact location differs."""
    wanted = f"ID {settings.experiment_id!r}" if settings.experiment_id else f"name {settings.experiment_name!r}"
    try:
        if settings.experiment_id:
            experiment = client.get_experiment(settings.experiment_id)
        else:
            experiment = client.get_experiment_by_name(settings.experiment_name)
    except MlflowException as exc:
        if "RESOURCE_DOES_NOT_EXIST" not in str(exc.error_code):
            raise TrackingSetupError(f"MLflow at {settings.tracking_uri} failed: {exc.message}") from exc
        experiment = None
    if experiment is None or experiment.lifecycle_stage != "active":
        raise TrackingSetupError(
            f"MLflow experiment with {wanted} does not exist at {settings.tracking_uri}; "
            "run `yolo-retrain init` to create it (it is never created silently)."
        )
    if settings.artifact_location and _normalise_location(experiment.artifact_location) != _normalise_location(
        settings.artifact_location
    ):
        raise TrackingSetupError(
            f"MLflow experiment {experiment.name!r} stores artifacts at {experiment.artifact_location}, "
            f"but the configured artifact location is {settings.artifact_location}."
        )
    return experiment.experiment_id


def create_experiment(client: MlflowClient, settings: Settings) -> str:
    """Create the experiment with the configured artifact location and its kind (``yolo-retrain init``); idempotent:
    an existing experiment only gets the kind tag if it lacks it."""
    existing = client.get_experiment_by_name(settings.experiment_name)
    if existing is None:
        client.create_experiment(
            settings.experiment_name,
            artifact_location=settings.artifact_location,
            tags={EXPERIMENT_KIND_TAG: CUSTOM_MODEL_KIND},
        )
    experiment_id = resolve_experiment(client, settings)
    set_experiment_kind(client, experiment_id)
    return experiment_id


def set_experiment_kind(client: MlflowClient, experiment_id: str) -> bool:
    """Tag the experiment as a custom-model one, so MLflow's UI shows runs and models; True if it changed."""
    if client.get_experiment(experiment_id).tags.get(EXPERIMENT_KIND_TAG) == CUSTOM_MODEL_KIND:
        return False
    client.set_experiment_tag(experiment_id, EXPERIMENT_KIND_TAG, CUSTOM_MODEL_KIND)
    return True


def start_retrain_run(
    client: MlflowClient, experiment_id: str, flow_run_id: str, tags: dict[str, str], params: dict[str, Any]
) -> str:
    """Open the run for this flow run, or resume the one a previous attempt of the same flow run opened with the
    same parameters (dataset digest included) and did not finish. An attempt with other inputs (corrections
    arrived between the attempts) gets a run of its own: a run's parameters describe what it trained on."""
    earlier = client.search_runs([experiment_id], filter_string=f"tags.`{FLOW_RUN_TAG}` = '{flow_run_id}'")
    wanted = {k: str(v) for k, v in params.items()}
    for run in earlier:
        if run.info.status != "FINISHED" and all(run.data.params.get(k, v) == v for k, v in wanted.items()):
            run_id = run.info.run_id
            previous = run.data.tags.get("failure_reason")
            if previous:  # keep the earlier attempt's failure on record, but not as this attempt's
                set_tags(client, run_id, {"previous_failure_reason": previous})
                client.delete_tag(run_id, "failure_reason")
            client.update_run(run_id, status="RUNNING")
            return run_id
    attempts = {"previous_attempt_run_ids": ",".join(r.info.run_id for r in earlier)} if earlier else {}
    run = client.create_run(
        experiment_id,
        run_name=f"retrain-{flow_run_id[:8]}",
        tags={"type": "retraining", "experiment_id": experiment_id, FLOW_RUN_TAG: flow_run_id, **tags, **attempts},
    )
    log_params(client, run.info.run_id, params)
    return run.info.run_id


def log_params(client: MlflowClient, run_id: str, params: dict[str, Any]) -> None:
    client.log_batch(run_id, params=[Param(k, str(v)) for k, v in params.items()])


def log_metrics(
    client: MlflowClient,
    run_id: str,
    metrics: dict[str, float],
    step: int = 0,
    timestamp_ms: int | None = None,
    *,
    model_id: str | None = None,
    dataset: DatasetRef | None = None,
) -> int:
    """Log ``metrics`` at ``step``; returns their timestamp.

    ``timestamp_ms`` (default now) lets a buffered batch keep its original time. With ``model_id`` they are the
    logged model's metrics too (measured on ``dataset``); logged again with their first timestamp, the run's own
    copies are not duplicated (MLflow skips a metric it already holds with the same key, time, step and value).
    """
    when = int(time.time() * 1000) if timestamp_ms is None else timestamp_ms
    linked = {"model_id": model_id} if model_id else {}
    if dataset is not None:
        linked |= {"dataset_name": dataset.name, "dataset_digest": dataset.digest}
    client.log_batch(run_id, metrics=[Metric(k, float(v), when, step, **linked) for k, v in metrics.items()])
    return when


def set_tags(client: MlflowClient, run_id: str, tags: dict[str, Any]) -> None:
    client.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])


def log_json(client: MlflowClient, run_id: str, payload: Any, name: str, artifact_path: str | None = None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_text(json.dumps(payload, indent=2, default=str))
        client.log_artifact(run_id, str(path), artifact_path)


def log_dataset_input(client: MlflowClient, run_id: str, rows: int, digest: str, source: str, name: str) -> None:
    """Record the exact dataset as an MLflow dataset input: the manifest as a table (its schema and size), with the
    content digest. The schema is stated, not inferred: MLflow's inference from a DataFrame looks at every cell,
    3.5 s a retrain at 105 000 images, for a schema that never changes."""
    from yolo_retrain.dataset import MANIFEST_FIELDS  # here: the dataset package is not needed to read runs

    columns = [ColSpec("string", field, required=field != "correction_id") for field in MANIFEST_FIELDS if field != "metadata"]
    schema = Schema([*columns, ColSpec(Map(DataType.string), "metadata", required=False)])
    dataset = Dataset(
        name=name,
        digest=digest[:MLFLOW_DIGEST_LENGTH],
        source_type="local",
        source=json.dumps({"uri": source}),
        schema=json.dumps({"mlflow_colspec": schema.to_dict()}),
        profile=json.dumps({"num_rows": rows, "num_elements": rows * len(MANIFEST_FIELDS)}),
    )
    client.log_inputs(run_id, [DatasetInput(dataset, tags=[InputTag("mlflow.data.context", "training")])])


def end_run(client: MlflowClient, run_id: str, status: str, reason: str | None = None) -> None:
    """Close the run with a real terminal status (never left RUNNING)."""
    if reason:
        set_tags(client, run_id, {"failure_reason": reason[:4000]})
    client.set_terminated(run_id, status=status)


def log_dataset(client: MlflowClient, run_id: str, dataset: BuiltDataset) -> None:
    """The exact dataset: what corrections went in, its metadata, data.yaml, the manifest, and a dataset input."""
    log_json(client, run_id, dataset.corrections_applied, "corrections_applied.json", "dataset")
    log_json(client, run_id, dataset.metadata(), "retraining_dataset_metadata.json", "dataset")
    client.log_artifact(run_id, str(dataset.data_yaml), "dataset")
    client.log_artifact(run_id, str(dataset.manifest_path), "dataset")
    rows = dataset.counts["train_images"] + dataset.counts["val_images"]  # one manifest entry per image
    log_dataset_input(client, run_id, rows, dataset.digest, str(dataset.root), DatasetRef.of(dataset.digest).name)
    set_tags(client, run_id, {"dataset_digest": dataset.digest})
    log_params(client, run_id, {"dataset_digest": dataset.digest, **{f"dataset_{k}": v for k, v in dataset.counts.items()}})


def log_training_artifacts(client: MlflowClient, run_id: str, trained: TrainOutput) -> None:
    """results.csv, args.yaml, plots and train.log. Not the weights: the run's logged model holds them (one copy)."""
    for path in (trained.results_csv, trained.args_yaml):
        if path.exists():
            client.log_artifact(run_id, str(path), "training")
    for plot in trained.plots:
        client.log_artifact(run_id, str(plot), "training/plots")
    if trained.log_file is not None and trained.log_file.exists():
        client.log_artifact(run_id, str(trained.log_file))  # train.log: Ultralytics' own output
