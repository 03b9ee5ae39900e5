"""Every format the settings name, for one registered version: exported, checked against its ``.pt`` on the holdout,
and recorded with the version. A format that fails (the export, its classes, its agreement) is reported and the
version is not deployable in it; the others go on. Nothing here refuses the retrain: the gate judged the ``.pt``.

Recorded: per format, version tags ``export_<format>`` (``passed: <figures>`` or ``failed: <why>``) and
``deployable_<format>`` (``true``/``false``); the run's artifacts ``exports/v<N>/<format>/`` (the passing export)
and ``exports/v<N>/exports.json`` (every format's outcome and figures); locally ``models/exports/v<N>/``.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion

from yolo_retrain import console
from yolo_retrain.config import SERVING_CONFIDENCE, Settings
from yolo_retrain.data_yaml import load_data_yaml
from yolo_retrain.exports.agreement import Agreement, compare_boxes, holdout_map, predict_boxes
from yolo_retrain.exports.export import export_weights

log = logging.getLogger(__name__)
MANIFEST = "exports.json"


@dataclass(frozen=True)
class FormatOutcome:
    format: str
    deployable: bool
    detail: str  # the figures when it passed, else why not
    agreement: Agreement | None = None
    path: str | None = None  # relative to the version's exports folder, when deployable

    def tag(self) -> str:
        return f"{'passed' if self.deployable else 'failed'}: {self.detail}"[:5000]


@dataclass(frozen=True)
class ExportReport:
    version: str
    weights_sha256: str
    outcomes: list[FormatOutcome] = field(default_factory=list)

    def lines(self) -> list[str]:
        return [f"{o.format}: {o.tag()}" for o in self.outcomes]

    def manifest(self) -> dict:
        return {
            "version": self.version,
            "weights_sha256": self.weights_sha256,
            "formats": {
                o.format: {
                    "deployable": o.deployable, "detail": o.detail, "path": o.path,
                    "agreement": o.agreement.as_dict() if o.agreement else None,
                }
                for o in self.outcomes
            },
        }


def version_folder(settings: Settings, version: str | int) -> Path:
    return settings.exports_dir / f"v{version}"


def export_and_verify(
    settings: Settings, client: MlflowClient, version: ModelVersion, weights: Path, data_yaml: Path, imgsz: int,
    run_id: str | None = None, log_file: Path | None = None,
) -> ExportReport:
    """Export ``weights`` (the version's) to each of ``settings.export_format_list``, check each against them on
    ``data_yaml``'s val split (the holdout) at ``imgsz``, and record the outcomes (tags, artifacts, local folder).
    Ultralytics' output goes to ``log_file`` (default ``runs/exports-v<N>.log``); a bar shows the formats done."""
    report = ExportReport(str(version.version), version.tags.get("weights_sha256", ""))
    formats = settings.export_format_list
    if not formats:
        return report
    log_file = log_file or settings.runs_dir / f"exports-v{version.version}.log"
    with console.stage("exports", total=len(formats) + 1) as bar, console.library_output(log_file):
        _export_all(settings, client, version, weights, data_yaml, imgsz, run_id, report, bar)
    for outcome in report.outcomes:
        (log.info if outcome.deployable else log.warning)("version %s %s export %s", version.version, outcome.format, outcome.tag())
    return report


def _export_all(settings, client, version, weights, data_yaml, imgsz, run_id, report: ExportReport, bar) -> None:
    formats = settings.export_format_list
    holdout = load_data_yaml(data_yaml, "holdout data.yaml", required=("val",)).images("val")
    folder = version_folder(settings, version.version)
    staging = Path(tempfile.mkdtemp(prefix=f".v{version.version}-", dir=_ensure(settings.exports_dir)))
    scratch = Path(tempfile.mkdtemp(prefix="exports-val-", dir=_ensure(settings.runs_dir)))  # the validators' output
    try:
        reference = _Reference(weights, holdout, data_yaml, imgsz, scratch)
        bar.update(1, info=".pt on the holdout")
        for done, fmt in enumerate(formats, start=2):
            report.outcomes.append(_one_format(settings, fmt, reference, staging))
            bar.update(done, info=fmt)
        (staging / MANIFEST).write_text(json.dumps(report.manifest(), indent=2))
        _record(client, version, report, staging, run_id or version.run_id)
        _replace_folder(staging, folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(scratch, ignore_errors=True)


class _Reference:
    """The ``.pt``'s side of every comparison, computed once for all formats."""

    def __init__(self, weights: Path, holdout: list[str], data_yaml: Path, imgsz: int, scratch: Path) -> None:
        from ultralytics import YOLO

        model = YOLO(str(weights))
        self.weights, self.holdout, self.data_yaml, self.imgsz, self.scratch = weights, holdout, data_yaml, imgsz, scratch
        self.names = dict(model.names)
        self.boxes = predict_boxes(model, holdout, imgsz, SERVING_CONFIDENCE)
        self.map = holdout_map(model, data_yaml, imgsz, scratch / "val-pt")


def _one_format(settings: Settings, fmt: str, reference: _Reference, staging: Path) -> FormatOutcome:
    """One format exported into ``staging/<format>/`` and compared; its folder is removed unless it passes."""
    from ultralytics import YOLO

    target = staging / fmt
    try:
        exported = export_weights(reference.weights, fmt, reference.imgsz, target, settings.device)
        model = YOLO(str(exported.path), task="detect")
        names = dict(model.names)
        if names != reference.names:  # classes are matched by name: an export that renames them is not the model
            shutil.rmtree(target, ignore_errors=True)
            return FormatOutcome(fmt, False, f"its classes {names} are not the .pt's {reference.names}")
        boxes = predict_boxes(model, reference.holdout, reference.imgsz, SERVING_CONFIDENCE)
        mean_ap = holdout_map(model, reference.data_yaml, reference.imgsz, reference.scratch / f"val-{fmt}")
    except Exception as exc:  # an exporter or runtime failure of this format: reported, the others go on
        shutil.rmtree(target, ignore_errors=True)
        return FormatOutcome(fmt, False, f"export or inference failed ({type(exc).__name__}: {exc})")
    agreement = compare_boxes(fmt, reference.boxes, boxes, reference.map, mean_ap)
    agreement = Agreement(**{**agreement.__dict__, "export_seconds": exported.seconds})
    problem = agreement.problem(settings.export_min_agreement, settings.export_map_tolerance)
    if problem:
        shutil.rmtree(target, ignore_errors=True)
        return FormatOutcome(fmt, False, f"{problem}: {agreement.figures()}", agreement)
    return FormatOutcome(fmt, True, agreement.figures(), agreement, str(exported.path.relative_to(staging)))


def _record(client: MlflowClient, version: ModelVersion, report: ExportReport, staging: Path, run_id: str | None) -> None:
    """The passing exports and the manifest as the run's artifacts; a tag pair per format on the version."""
    if run_id:
        client.log_artifacts(run_id, str(staging), f"exports/v{version.version}")
    for outcome in report.outcomes:
        client.set_model_version_tag(version.name, version.version, f"export_{outcome.format}", outcome.tag())
        client.set_model_version_tag(version.name, version.version, f"deployable_{outcome.format}", str(outcome.deployable).lower())


def _ensure(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _replace_folder(staging: Path, folder: Path) -> None:
    """``folder`` becomes ``staging``'s content (a retried step replaces its own earlier attempt)."""
    keep = folder.with_name(f".{folder.name}-old")
    shutil.rmtree(keep, ignore_errors=True)
    if folder.exists():
        folder.rename(keep)
    staging.rename(folder)  # same filesystem: the folder appears whole
    shutil.rmtree(keep, ignore_errors=True)
