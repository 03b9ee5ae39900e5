"""The demo: a partly mislabelled synthetic dataset, a baseline champion, reviewers' fixes, a retrain."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from yolo_retrain.config import Settings
from yolo_retrain.errors import RetrainError
from yolo_retrain.summary import RetrainReport
from yolo_retrain.synthetic import SyntheticDataset, make_dataset

MARKER = ".demo-home"  # written by the demo: only a home holding it (or an empty one) may be reset
STATE = ["mlflow.db", "mlartifacts", "corrections.db", "corrections", "models", "datasets", "runs", "demo"]


def reset_home(settings: Settings) -> None:
    """Delete the demo's previous state, refusing if the home holds anything the demo did not make."""
    home = settings.home
    if home.exists() and any(home.iterdir()) and not (home / MARKER).exists():
        if any((home / name).exists() for name in STATE):
            raise RetrainError(
                f"{home} holds data the demo did not create; set YOLO_RETRAIN_HOME to another folder for the demo"
            )
    for name in STATE:
        path = home / name
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    home.mkdir(parents=True, exist_ok=True)
    (home / MARKER).touch()


def prepare_data(settings: Settings, train: int, val: int, imgsz: int) -> SyntheticDataset:
    if Path(settings.base_data) != settings.home / "demo" / "data.yaml":
        raise RetrainError(f"the demo writes its own base dataset; unset YOLO_RETRAIN_BASE_DATA (now {settings.base_data})")
    return make_dataset(settings.home / "demo", train=train, val=val, size=imgsz, wrong_fraction=0.5, seed=settings.seed)


VENV_BIN = Path(sys.executable).parent


def mlflow_ui_command(settings: Settings) -> str:
    return f"MLflow UI: {VENV_BIN}/mlflow ui --backend-store-uri {settings.tracking_uri}   -> {settings.mlflow_ui_url}"


def ui_instructions(settings: Settings) -> str:
    prefect = f"Prefect UI: PREFECT_HOME={settings.prefect_home} {VENV_BIN}/prefect server start   -> http://127.0.0.1:4200"
    return f"Open the UIs:\n  {mlflow_ui_command(settings)}\n  {prefect}"


def explain(report: RetrainReport) -> str:
    """One line a person reads first: did the corrections make the model better, and what did the gate do."""
    if report.post is None or report.pre is None:
        return f"Retrain {report.outcome}: {report.message}"
    delta = report.post.map50_95 - report.pre.map50_95
    verdict = "better" if delta > 0 else "not better"
    return f"The retrained model is {verdict} on the holdout (mAP50-95 {delta:+.4f}); gate: {report.outcome} ({report.message})."
