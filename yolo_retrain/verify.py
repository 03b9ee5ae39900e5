"""``yolo-retrain verify``: did a retrain record everything it promises? One independent check per promise.

The checks read MLflow (run, artifacts, dataset input, registry), the local models folder and the correction
store; they change nothing.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Container
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from mlflow import MlflowClient
from mlflow.entities import Run
from mlflow.entities.model_registry import ModelVersion

from yolo_retrain import registry, tracking
from yolo_retrain.config import Settings
from yolo_retrain.doctor import (
    CheckFailed,
    CheckResult,
    check,
    check_experiment_kind,
    classes_finding,
    describe,
    experiment_id_or_fail,
    local_weights_match,
    short_http_timeouts,
)
from yolo_retrain.metrics import GATE_METRICS
from yolo_retrain.recipe import RECIPE_ARTIFACT

REQUIRED_TAGS = ("type", "trigger", "experiment_id", tracking.FLOW_RUN_TAG, "corrections_count", "dataset_digest")
DATASET_FILES = tuple(
    f"dataset/{name}"
    for name in ("corrections_applied.json", "retraining_dataset_metadata.json", "data.yaml", "manifest.json")
)
REQUIRED_PARAMS = ("epochs", "imgsz", "batch", "seed", "base_model", "dataset_digest")
TRAINING_FILES = ("training/results.csv", "train.log")  # the weights: the logged model (one copy of record)
RERUN_FIX = "retrain again: `yolo-retrain run`"


@dataclass(frozen=True)
class _Target:
    """The retrain run under verification and the registry version it made (None if it made none)."""

    settings: Settings
    client: MlflowClient
    run: Run
    version: ModelVersion | None

    @property
    def run_id(self) -> str:
        return self.run.info.run_id

    @cached_property
    def artifacts(self) -> set[str]:
        """Every artifact path of the run (files only, recursively)."""
        found: set[str] = set()
        pending: list[str | None] = [None]
        while pending:
            for item in self.client.list_artifacts(self.run_id, pending.pop()):
                if item.is_dir:
                    pending.append(item.path)
                else:
                    found.add(item.path)
        return found

    def need_version(self) -> ModelVersion:
        """The run's registry version; a check that needs one fails without it."""
        if self.version is None:
            raise CheckFailed(f"run {self.run_id} registered no version of {self.settings.model_name!r}")
        return self.version


def _missing(wanted: tuple[str, ...], present: Container[str]) -> list[str]:
    return [name for name in wanted if name not in present]


@check("run finished", fix=RERUN_FIX)
def check_finished(t: _Target) -> str:
    """The run ended FINISHED (not RUNNING, FAILED or KILLED)."""
    status = t.run.info.status
    if status != "FINISHED":
        reason = t.run.data.tags.get("failure_reason")
        raise CheckFailed(f"run {t.run_id} is {status}" + (f": {reason}" if reason else ""))
    return f"run {t.run_id} FINISHED"


@check("run tags", fix=RERUN_FIX)
def check_tags(t: _Target) -> str:
    """The run carries the retrain's tags, with type=retraining."""
    tags = {k: v for k, v in t.run.data.tags.items() if v}
    missing = _missing(REQUIRED_TAGS, tags)
    if missing:
        raise CheckFailed(f"missing tags: {', '.join(missing)}")
    if tags["type"] != "retraining":
        raise CheckFailed(f"tag type is {tags['type']!r}, not 'retraining'", "verify a retrain run's id")
    flow_run = tags[tracking.FLOW_RUN_TAG]
    return f"trigger={tags['trigger']}, corrections_count={tags['corrections_count']}, flow run {flow_run}"


@check("dataset artifacts", fix=RERUN_FIX)
def check_dataset_artifacts(t: _Target) -> str:
    """The four dataset files are logged under ``dataset/``."""
    missing = _missing(DATASET_FILES, t.artifacts)
    if missing:
        raise CheckFailed(f"missing artifacts: {', '.join(missing)}")
    return f"{len(DATASET_FILES)} dataset files logged"


@check("dataset input", fix=RERUN_FIX)
def check_dataset_input(t: _Target) -> str:
    """A dataset input's digest is the run's dataset_digest, cut to MLflow's digest length."""
    digest = t.run.data.tags.get("dataset_digest")
    if not digest:
        raise CheckFailed("no dataset_digest tag to compare the dataset input with")
    wanted = digest[: tracking.MLFLOW_DIGEST_LENGTH]
    found = [i.dataset.digest for i in t.run.inputs.dataset_inputs] if t.run.inputs else []
    if wanted not in found:
        raise CheckFailed(f"no dataset input with digest {wanted} (found: {', '.join(found) or 'none'})")
    return f"dataset input digest {wanted}"


@check("params", fix=RERUN_FIX)
def check_params(t: _Target) -> str:
    """The training parameters and the dataset digest are logged as params."""
    params = t.run.data.params
    missing = _missing(REQUIRED_PARAMS, params)
    if missing:
        raise CheckFailed(f"missing params: {', '.join(missing)}")
    return ", ".join(f"{name}={params[name]}" for name in REQUIRED_PARAMS if name != "dataset_digest")


@check("metrics", fix=RERUN_FIX)
def check_metrics(t: _Target) -> str:
    """``post_*`` metrics, and ``pre_*`` when the version had a parent champion to compare with."""
    parent = t.version.tags.get("parent_version", "none") if t.version else "none"
    prefixes = _prefixes(t.version) if t.version else ("post",)
    wanted = tuple(f"{prefix}_{name}" for prefix in prefixes for name in GATE_METRICS)
    missing = _missing(wanted, t.run.data.metrics)
    if missing:
        raise CheckFailed(f"missing metrics: {', '.join(missing)}")
    compared = f"pre_* against parent v{parent}" if parent != "none" else "no parent champion, so no pre_*"
    return f"post_* present; {compared}"


@check("training artifacts", fix=RERUN_FIX)
def check_training_artifacts(t: _Target) -> str:
    """``training/results.csv`` and the trained weights are logged."""
    missing = _missing(TRAINING_FILES, t.artifacts)
    if missing:
        raise CheckFailed(f"missing artifacts: {', '.join(missing)}")
    return ", ".join(TRAINING_FILES) + " logged"


@check("recipe", fix=RERUN_FIX)
def check_recipe(t: _Target) -> str:
    """The candidate was trained with the logged recipe: ``training/args.yaml`` (Ultralytics' own record) holds every
    argument of ``recipe.yaml``, and each is the run's param of that name."""
    import yaml

    if RECIPE_ARTIFACT not in t.artifacts and "training_asked" not in t.run.data.params:
        # A version retrained before recipes were recorded (its run has no `training_asked` param): nothing to hold
        # args.yaml against. A run that has the param and lost its recipe.yaml still fails below.
        return "retrained before recipes were recorded: no recipe.yaml to check args.yaml against"
    missing = _missing((RECIPE_ARTIFACT, "training/args.yaml"), t.artifacts)
    if missing:
        raise CheckFailed(f"missing artifacts: {', '.join(missing)}")
    with tempfile.TemporaryDirectory() as tmp:
        recipe = yaml.safe_load(Path(t.client.download_artifacts(t.run_id, RECIPE_ARTIFACT, tmp)).read_text())
        trained = yaml.safe_load(Path(t.client.download_artifacts(t.run_id, "training/args.yaml", tmp)).read_text())
    params = t.run.data.params
    wrong = [
        f"{key}: recipe {value!r}, args.yaml {trained.get(key, 'missing')!r}, param {params.get(key, 'missing')!r}"
        for key, value in recipe["args"].items()
        if trained.get(key, KeyError) != value or params.get(key) != str(value)
    ]
    if wrong:
        raise CheckFailed("trained otherwise than recorded: " + "; ".join(wrong))
    inherited = sum(source == "champion" for source in recipe["sources"].values())
    return f"args.yaml = recipe.yaml ({len(recipe['args'])} arguments, {inherited} from the champion)"


@check("experiment kind")
def check_kind(t: _Target) -> str:
    """The run's experiment is tagged a custom-model experiment (MLflow's UI then shows runs and models)."""
    return check_experiment_kind(t.client, t.run.info.experiment_id)


def _prefixes(version: ModelVersion) -> tuple[str, ...]:
    """``post`` always; ``pre`` too when the version had a parent champion to be compared with."""
    return ("pre", "post") if version.tags.get("parent_version", "none") != "none" else ("post",)


@check("logged model", fix=RERUN_FIX)
def check_logged_model(t: _Target) -> str:
    """The version's source is an MLflow logged model of this run (an output of the run, READY), holding the
    holdout figures as its metrics, measured on the run's dataset."""
    version = t.need_version()
    model_id = registry.logged_model_id(version)
    if not model_id:
        raise CheckFailed(f"v{version.version} points at no logged model (source {version.source})")
    model = t.client.get_logged_model(model_id)
    if model.source_run_id != t.run_id:
        raise CheckFailed(f"logged model {model_id} comes from run {model.source_run_id}, not {t.run_id}")
    if str(model.status) != "READY":
        raise CheckFailed(f"logged model {model_id} is {model.status}, not READY")
    outputs = [o.model_id for o in (t.run.outputs.model_outputs if t.run.outputs else [])]
    if model_id not in outputs:
        raise CheckFailed(f"run {t.run_id} does not list logged model {model_id} among its outputs")
    metrics = {m.key: m for m in model.metrics or []}
    wanted = tuple(f"{prefix}_{name}" for prefix in _prefixes(version) for name in GATE_METRICS)
    missing = _missing(wanted, metrics)
    if missing:
        raise CheckFailed(f"logged model {model_id} lacks metrics: {', '.join(missing)}")
    digest = t.run.data.tags.get("dataset_digest", "")[: tracking.MLFLOW_DIGEST_LENGTH]
    elsewhere = sorted(k for k in wanted if metrics[k].dataset_digest != digest)
    if elsewhere:
        raise CheckFailed(f"metrics {', '.join(elsewhere)} of {model_id} are not linked to the run's dataset {digest}")
    return f"{model_id} ({model.name}) from this run, {len(metrics)} metrics on dataset {digest[:12]}"


@check("version tags", fix=RERUN_FIX)
def check_version_tags(t: _Target) -> str:
    """The version carries its lineage as tags, and no metrics (those are the logged model's)."""
    version = t.need_version()
    missing = _missing(registry.LINEAGE_TAGS, version.tags)
    if missing:
        raise CheckFailed(f"v{version.version} lacks lineage tags: {', '.join(missing)}")
    figures = sorted(k for k in version.tags if k.startswith(("pre_", "post_")))
    if figures:
        raise CheckFailed(f"v{version.version} has metrics as tags: {', '.join(figures[:5])}")
    return f"v{version.version}: {', '.join(registry.LINEAGE_TAGS)}"


@check("registry version")
def check_registry_version(t: _Target) -> str:
    """The run's registry version exists, ``models/retrained_vN.pt`` matches its ``weights_sha256``, and its class
    names are the base data.yaml's."""
    version = t.need_version()
    path = registry.local_weights_path(t.settings, version.version)
    if not path.exists():  # retired by the retention policy: MLflow's copy is the record, checked without keeping it
        with tempfile.TemporaryDirectory() as tmp:
            fetched = registry.fetch_weights(version, Path(tmp))
            classes = classes_finding(t.settings, fetched)
        return f"v{version.version}: no local copy (retired); MLflow's matches weights_sha256, {classes}"
    fix = f"restore it from the registry: `mlflow artifacts download -u models:/{version.name}/{version.version}`"
    expected = local_weights_match(version, [path], fix)
    classes = classes_finding(t.settings, path)
    return f"v{version.version}: {path.name} matches weights_sha256 {expected[:12]}, {classes}"


@check("gate aliases")
def check_gate(t: _Target) -> str:
    """The champion alias agrees with the gate: promoted → champion now or once (replaced or rolled back since);
    rejected → not the champion."""
    version = t.need_version()
    number = str(version.version)
    decision, run_tag = version.tags.get("gate_decision"), t.run.data.tags.get("gate_decision")
    if decision is None or run_tag != decision:
        raise CheckFailed(f"gate decision of v{number} is {decision!r} but the run's tag says {run_tag!r}")
    champion = registry.version_by_alias(t.client, version.name, "champion")
    champion_number = str(champion.version) if champion else None
    if decision == "awaiting-approval":  # held for a person (approval.py): holds that alias, not the champion's
        holder = registry.version_by_alias(t.client, version.name, "awaiting-approval")
        if holder is None or str(holder.version) != number or champion_number == number:
            raise CheckFailed(
                f"v{number} is tagged awaiting approval but does not hold the alias awaiting-approval (or is the champion)",
                "`yolo-retrain doctor --fix` settles a decision left part way",
            )
        return f"awaiting approval until {version.tags.get('approval_deadline', '?')}; v{number} is not the champion"
    if decision == "rejected":
        if champion_number == number:
            raise CheckFailed(f"the gate rejected v{number}, yet it is the champion")
        return f"rejected; v{number} is not the champion"
    if champion_number == number:
        return f"promoted; v{number} is the champion"
    # No longer champion: only legitimate if a later promotion replaced it or a rollback moved the alias away.
    replaced_by = [
        str(v.version)
        for v in t.client.search_model_versions(f"name = '{version.name}'")
        if v.tags.get("replaced_champion") == number
    ]
    if replaced_by:
        return f"promoted; was champion until v{replaced_by[0]} replaced it"
    if "rolled_back_to" in version.tags:
        return f"promoted; was champion until a rollback to v{version.tags['rolled_back_to']}"
    raise CheckFailed(
        f"the gate promoted v{number}, but the champion is {f'v{champion_number}' if champion else 'none'} "
        "and no later version replaced it nor did a rollback move it",
        f"`yolo-retrain rollback --to {number}` if it should be the champion",
    )


@check("corrections applied")
def check_corrections_applied(t: _Target) -> str:
    """Every correction in ``corrections_applied.json`` is in the store; this batch's carry the run's version and its
    decision: screened on their own merit (accepted, or suspicious with a reason; a run that logged
    ``screened_corrections``), or the gate's (accepted if promoted, rejected if not) before screening existed;
    unless a person or a newer correction moved them since."""
    from yolo_retrain.store import CorrectionStore

    version = t.need_version()
    number, promoted = str(version.version), version.tags.get("gate_decision") == "promoted"
    screened = "screened_corrections" in t.client.get_run(t.run_id).data.metrics
    expected = "accepted or suspicious" if screened else "accepted" if promoted else "rejected"
    with tempfile.TemporaryDirectory() as tmp:
        local = t.client.download_artifacts(t.run_id, "dataset/corrections_applied.json", tmp)
        items = json.loads(Path(local).read_text())
    with CorrectionStore.from_settings(t.settings) as store:
        found = {item["id"]: store.get(item["id"]) for item in items}
    batch = [item["id"] for item in items if item.get("origin", "batch") == "batch"]
    wrong = [f"{i} (not in the store)" for i, c in found.items() if c is None]
    for i in batch:
        c = found[i]
        if c is None or c.reviewed_at is not None or c.status == "superseded" or c.source_deleted_at is not None:
            continue  # reported above, or moved on since: a person's review, a newer accepted correction, withdrawn
        if c.status in ("claimed", "pending") or (c.applied_version == number and c.status not in expected.split(" or ")):
            wrong.append(f"{i} ({c.status}, version {c.applied_version or '-'})")
    if wrong:
        raise CheckFailed(f"not recorded as {expected} with v{number}: {', '.join(wrong)}")
    return f"{len(batch)} correction(s) of this batch {expected} with v{number}, {len(items) - len(batch)} from earlier retrains"


@check("exports")
def check_exports(t: _Target) -> str:
    """Each configured export format has its outcome on the version (``export_<f>``, ``deployable_<f>``); a deployable
    one is in the run's artifacts; a champion's are in ``models/champion/``. A failed format passes as reported."""
    from yolo_retrain.exports.champion_folder import champion_folder_version

    version = t.need_version()
    formats = t.settings.export_format_list
    if not formats:
        return "no export formats configured (YOLO_RETRAIN_EXPORT_FORMATS)"
    number = str(version.version)
    missing = [f for f in formats if f"deployable_{f}" not in version.tags]
    if missing:
        raise CheckFailed(f"v{number} has no export record for {', '.join(missing)} (made before exports, or with other settings)")
    found = []
    for fmt in formats:
        if version.tags[f"deployable_{fmt}"] != "true":
            found.append(f"{fmt} not deployable ({version.tags.get(f'export_{fmt}', '?')[:200]})")
            continue
        if not any(a.startswith(f"exports/v{number}/{fmt}/") for a in t.artifacts):
            raise CheckFailed(f"v{number} is marked deployable in {fmt} but its run has no exports/v{number}/{fmt}/")
        found.append(f"{fmt} deployable")
    champion = registry.version_by_alias(t.client, version.name, "champion")
    if champion is not None and str(champion.version) == number and champion_folder_version(t.settings) != number:
        raise CheckFailed(
            f"v{number} is the champion but {t.settings.champion_exports} holds version {champion_folder_version(t.settings)}'s exports",
            f"`yolo-retrain rollback --to {number}` puts the champion's files back",
        )
    return f"v{number}: {', '.join(found)}"


CHECKS = (
    check_finished,
    check_tags,
    check_dataset_artifacts,
    check_dataset_input,
    check_params,
    check_metrics,
    check_training_artifacts,
    check_recipe,
    check_kind,
    check_logged_model,
    check_version_tags,
    check_registry_version,
    check_gate,
    check_corrections_applied,
    check_exports,
)


def _load(settings: Settings, run_id: str | None) -> _Target:
    """The run to verify (``run_id``, or the latest retrain in the experiment) and its registry version."""
    client = tracking.client_for(settings)
    if run_id is None:
        experiment_id = experiment_id_or_fail(client, settings)
        runs = client.search_runs(
            [experiment_id], "tags.type = 'retraining'", order_by=["attributes.start_time DESC"], max_results=1
        )
        if not runs:
            raise CheckFailed(f"no retrain run in experiment {experiment_id}", "retrain first: `yolo-retrain run`")
        run = runs[0]
    else:
        run = client.get_run(run_id)
    version = registry.find_version_for_run(client, settings.model_name, run.info.run_id)
    return _Target(settings, client, run, version)


def verify_run(settings: Settings, run_id: str | None = None) -> list[CheckResult]:
    """Every verify check on ``run_id`` (default: the latest run tagged type=retraining), each independent."""
    with short_http_timeouts():
        try:
            target = _load(settings, run_id)
        except CheckFailed as failed:
            return [CheckResult("run", False, failed.detail, failed.fix)]
        except Exception as exc:  # noqa: BLE001 — an unknown run id, an unreachable store
            return [CheckResult("run", False, describe(exc), "check the run id and the tracking URI")]
        return [run(target) for run in CHECKS]
