"""Retirement of old local outputs: a year of nightly retrains must not fill the disk.

What goes (settings ``keep_*``): the working folders of all but the newest finished retrains (Ultralytics'
training and evaluation folders, train.log: their record is in MLflow), local weights files of versions
(and their verified exports, ``models/exports/vN/``) that are neither the champion, the version it replaced (a quick
rollback), nor among the newest, and dataset
folders no registered version names once unused for some days.

What never goes: anything of a RUNNING retrain, the champion's files, the previous champion's weights, a dataset a
version names (its lineage), the store of corrected files and the hash cache. Weights retired here stay in
MLflow: ``registry.verified_weights`` fetches them again (sha256-checked) when a rollback or ``verify`` needs them.
Call while holding the retrain lock (the flow does; ``yolo-retrain housekeeping`` takes it).
"""

from __future__ import annotations

import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from mlflow import MlflowClient

from yolo_retrain import registry, tracking
from yolo_retrain.config import Settings
from yolo_retrain.disk import mb, tree_bytes

DATASET_FOLDER = re.compile(r"^[0-9a-f]{16}$")  # datasets/<digest[:16]>
VERSION_WEIGHTS = re.compile(r"^retrained_v(\d+)\.pt$")
VERSION_EXPORTS = re.compile(r"^v(\d+)$")  # models/exports/v<N>/
RUN_FOLDER = re.compile(r"^[a-z]+-([0-9a-f]{8})$")  # runs/{train,pre,post,log}-<run id[:8]>


@dataclass(frozen=True)
class Retired:
    path: Path
    category: str
    bytes: int
    why: str


@dataclass
class Housekeeping:
    """What the retention policy retires (``dry_run``: would retire) and what it keeps on purpose."""

    retired: list[Retired] = field(default_factory=list)
    dry_run: bool = False

    @property
    def freed(self) -> int:
        return sum(r.bytes for r in self.retired)

    def text(self) -> str:
        verb = "would remove" if self.dry_run else "removed"
        lines = [f"{verb} {r.path} ({r.category}, {mb(r.bytes)}): {r.why}" for r in self.retired]
        lines.append(f"{'would free' if self.dry_run else 'freed'} {mb(self.freed)} ({len(self.retired)} item(s))")
        return "\n".join(lines)


def plan(settings: Settings, client: MlflowClient) -> list[Retired]:
    """What the policy retires now, with the reason for each; deletes nothing."""
    experiment_id = tracking.resolve_experiment(client, settings)
    runs = client.search_runs([experiment_id], order_by=["attributes.start_time DESC"], max_results=10_000)
    running = {r.info.run_id[:8] for r in runs if r.info.status == "RUNNING"}
    versions = client.search_model_versions(f"name = '{settings.model_name}'")
    return [
        *_run_folders(settings, runs, running),
        *_version_weights(settings, client, versions),
        *_datasets(settings, versions, running),
    ]


def housekeeping(settings: Settings, dry_run: bool = False) -> Housekeeping:
    """Apply the retention policy (or, ``dry_run``, only say what it would remove and the space it would free)."""
    result = Housekeeping(plan(settings, tracking.client_for(settings)), dry_run)
    if not dry_run:
        for item in result.retired:
            if item.path.is_dir():
                shutil.rmtree(item.path, ignore_errors=True)
            else:
                item.path.unlink(missing_ok=True)
    return result


def _run_folders(settings: Settings, runs: list, running: set[str]) -> list[Retired]:
    """Working folders of all but the newest ``keep_run_folders`` finished retrains (newest first by run start)."""
    if not settings.runs_dir.is_dir():
        return []
    order = [r.info.run_id[:8] for r in runs]
    folders: dict[str, list[Path]] = {}
    for folder in settings.runs_dir.iterdir():
        found = RUN_FOLDER.match(folder.name)
        if found and found.group(1) in order and found.group(1) not in running:
            folders.setdefault(found.group(1), []).append(folder)
    finished = sorted(folders, key=order.index)  # newest first
    old = [
        Retired(folder, "training runs", tree_bytes(folder), f"retrain {prefix} is older than the newest {settings.keep_run_folders}")
        for prefix in finished[settings.keep_run_folders :]
        for folder in sorted(folders[prefix])
    ]
    # Of the folders kept, the checkpoints go at once: the logged model holds the weights (one copy of record).
    why = "checkpoint of a finished retrain: its weights are the run's logged model in MLflow"
    checkpoints = [
        Retired(weights, "training runs", weights.stat().st_size, why)
        for prefix in finished[: settings.keep_run_folders]
        for folder in folders[prefix]
        for weights in sorted(folder.glob("weights/*.pt"))
    ]
    return old + checkpoints


def _version_weights(settings: Settings, client: MlflowClient, versions: list) -> list[Retired]:
    """``models/retrained_vN.pt`` of versions other than the champion, the one it replaced and the newest few."""
    if not settings.models_dir.is_dir():
        return []
    champion = registry.version_by_alias(client, settings.model_name, "champion")
    keep = {str(champion.version), champion.tags.get("replaced_champion")} if champion else set()
    newest = sorted((int(v.version) for v in versions), reverse=True)[: settings.keep_local_weights]
    keep |= {str(n) for n in newest}
    retired = []
    for path in settings.models_dir.iterdir():
        found = VERSION_WEIGHTS.match(path.name)
        if found and found.group(1) not in keep:
            why = f"version {found.group(1)}: in MLflow (fetched again, sha256-checked, when needed)"
            retired.append(Retired(path, "models", path.stat().st_size, why))
    # Their exports by the same rule: the run's artifacts hold them (a rollback fetches them: exports/champion_folder).
    for folder in sorted(settings.exports_dir.iterdir()) if settings.exports_dir.is_dir() else []:
        found = VERSION_EXPORTS.match(folder.name)
        if found and found.group(1) not in keep:
            why = f"exports of version {found.group(1)}: in its run's artifacts (fetched again when a rollback needs them)"
            retired.append(Retired(folder, "models", tree_bytes(folder), why))
    return retired


def _datasets(settings: Settings, versions: list, running: set[str]) -> list[Retired]:
    """Dataset folders no version names, unused for ``keep_unused_datasets_days`` (none while a retrain runs: its
    dataset has no version yet)."""
    if running or not settings.datasets_dir.is_dir():
        return []
    named = {str(v.tags.get("dataset_digest", ""))[:16] for v in versions}
    cutoff = time.time() - settings.keep_unused_datasets_days * 86400
    retired = []
    for folder in settings.datasets_dir.iterdir():
        if DATASET_FOLDER.match(folder.name) and folder.name not in named and _last_written(folder) < cutoff:
            why = f"no version names it, unused for over {settings.keep_unused_datasets_days} day(s)"
            retired.append(Retired(folder, "datasets", tree_bytes(folder), why))
    return retired


def _last_written(folder: Path) -> float:
    """When a build last wrote the dataset folder (a rebuild of the same digest rewrites its lists)."""
    return max(p.lstat().st_mtime for p in (folder, *folder.iterdir()))
