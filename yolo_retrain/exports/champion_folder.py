"""``models/champion/``: the champion's verified exports and their ``exports.json``, beside ``champion.pt``.

It is a link to the version's folder (``models/exports/v<N>/``), replaced by renaming a new link over it: a reader
sees the old champion's exports or the new one's, never a mix. ``exports.json`` names the version and its weights'
sha256, so a service can check that the export it loaded belongs to the ``champion.pt`` it expects. A version whose
folder is not here (retired, another machine, a rollback) gets it from its run's artifacts; a version made before
exports, or none passed, gets a manifest that lists no deployable format. With no export formats configured
(``YOLO_RETRAIN_EXPORT_FORMATS=""``) there is no ``models/champion``.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid
from pathlib import Path

from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

from yolo_retrain.config import Settings
from yolo_retrain.exports.verify import MANIFEST, version_folder


def point_champion_folder(settings: Settings, client: MlflowClient, version: ModelVersion) -> Path | None:
    """Make ``models/champion`` the exports of ``version`` (fetched or written first if missing); atomic. With no
    export formats configured there is no such folder (a link left from before is removed): None."""
    link = settings.champion_exports
    if link.exists() and not link.is_symlink():
        raise RuntimeError(f"{link} is not the link yolo-retrain keeps there: move it away")
    if not settings.export_format_list:
        link.unlink(missing_ok=True)
        return None
    folder = _version_exports(settings, client, version)
    temporary = link.with_name(f".champion-{uuid.uuid4().hex[:8]}")
    os.symlink(os.path.relpath(folder, link.parent), temporary, target_is_directory=True)
    try:
        os.replace(temporary, link)  # rename(2): the link changes in one step
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return link


def champion_folder_version(settings: Settings) -> str | None:
    """The version whose exports ``models/champion`` holds now, None if there is no such folder."""
    manifest = settings.champion_exports / MANIFEST
    try:
        return str(json.loads(manifest.read_text())["version"])
    except (OSError, ValueError, KeyError):
        return None


def _version_exports(settings: Settings, client: MlflowClient, version: ModelVersion) -> Path:
    folder = version_folder(settings, version.version)
    if _manifest_matches(folder, version):
        return folder
    staging = Path(tempfile.mkdtemp(prefix=f".v{version.version}-", dir=_ensure(settings.exports_dir)))
    try:
        fetched = _fetch(client, version, staging)
        if not fetched:
            manifest = {
                "version": str(version.version),
                "weights_sha256": version.tags.get("weights_sha256", ""),
                "formats": {},
                "note": "no verified exports recorded for this version",
            }
            (staging / MANIFEST).write_text(json.dumps(manifest, indent=2))
        shutil.rmtree(folder, ignore_errors=True)
        staging.rename(folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def _fetch(client: MlflowClient, version: ModelVersion, staging: Path) -> bool:
    """The version's exports from its run's artifacts into ``staging``; False if it has none recorded."""
    if not version.run_id or not any(v == "true" for k, v in version.tags.items() if k.startswith("deployable_")):
        return False
    with tempfile.TemporaryDirectory(dir=staging.parent) as tmp:
        try:
            downloaded = Path(client.download_artifacts(version.run_id, f"exports/v{version.version}", tmp))
        except (MlflowException, OSError):
            return False
        if not _manifest_matches(downloaded, version):
            return False
        for item in downloaded.iterdir():
            item.rename(staging / item.name)
    return True


def _manifest_matches(folder: Path, version: ModelVersion) -> bool:
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    return str(manifest.get("version")) == str(version.version) and manifest.get("weights_sha256") == version.tags.get(
        "weights_sha256", ""
    )


def _ensure(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return folder
