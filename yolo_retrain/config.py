"""One settings object for every command, task and service, plus the process environment it implies
(set by the entry points with :func:`configure_environment`, never at import).

Every value can be set with an environment variable prefixed ``YOLO_RETRAIN_`` (for example
``YOLO_RETRAIN_EPOCHS=20``) or in a ``.env`` file in the working directory.
"""

from __future__ import annotations

import logging
import os
import shutil
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parents[1]
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# The demo's training sizes for a 2-core CPU, set explicitly by `yolo-retrain demo` (and the tests) where the user has
# not set them: the product's defaults are the champion's recipe and Ultralytics' choice of hardware.
DEMO_TRAINING = {"imgsz": 64, "batch": 16, "device": "cpu", "workers": 0}

# Ultralytics' export formats (`yolo export format=...`); ONNX's packages are the project's, others install apart.
EXPORT_FORMATS = (
    "onnx", "openvino", "engine", "torchscript", "coreml", "saved_model", "pb", "tflite", "edgetpu", "tfjs", "paddle",
    "mnn", "ncnn", "imx", "rknn", "executorch",
)
# The served model's boxes (pyfunc, exports' agreement check): from this confidence up (a request's `conf` overrides it)
SERVING_CONFIDENCE = 0.25

Trigger = Literal["manual", "schedule", "corrections-threshold", "baseline"]
GateMetric = Literal["mAP50-95", "mAP50", "precision", "recall"]


class Settings(BaseSettings):
    """Everything yolo-retrain is configured with; defaults run the embedded single-machine setup."""

    model_config = SettingsConfigDict(env_prefix="YOLO_RETRAIN_", env_file=".env", extra="ignore")

    # Where everything local lives (git-ignored inside the checkout by default).
    home: Path = Field(default=PROJECT_ROOT / ".yolo-retrain", description="Directory for all local state.")

    # MLflow
    tracking_uri: str | None = Field(default=None, description="MLflow tracking URI; default sqlite:///<home>/mlflow.db.")
    experiment_name: str = Field(default="yolo-retrain", description="MLflow experiment name (used when no ID is set).")
    experiment_id: str | None = Field(default=None, description="MLflow experiment ID; wins over the name.")
    artifact_location: str | None = Field(
        default=None, description="Experiment artifact location; default <home>/mlartifacts. Checked on every run."
    )
    model_name: str = Field(default="yolo-retrain-detector", description="Registered model name in the MLflow registry.")
    mlflow_ui_url: str = Field(default="http://127.0.0.1:5000", description="Where `mlflow ui` serves, for links.")

    # Data
    base_data: Path | None = Field(default=None, description="Base dataset data.yaml; default the demo's <home>/demo/data.yaml.")
    corrections_db_url: str | None = Field(default=None, description="SQLAlchemy URL; default sqlite:///<home>/corrections.db.")
    holdout_fraction: float = Field(default=0.1, ge=0.0, lt=1.0, description="Share of new (non-base) images held out, by hash.")

    # Retrain policy
    retrain_threshold: int = Field(default=50, ge=1, description="Pending corrections that trigger a retrain.")
    min_corrections: int = Field(default=1, ge=0, description="Fewer pending corrections than this: the flow skips.")

    # Training: the champion's own recipe (imgsz, batch, hyperparameters) unless set here; see yolo_retrain/recipe.py.
    base_model: str = Field(default="yolov8n.yaml", description="Model (YAML or local .pt) for the first retrain.")
    recipe: Path | None = Field(
        default=None, description="The team's recipe: a YAML of Ultralytics train arguments (as `yolo train cfg=`)."
    )
    epochs: int = Field(default=10, ge=1)
    imgsz: int | None = Field(default=None, ge=32, description="Default: the champion's, else the recipe's, else 640.")
    batch: int | None = Field(default=None, ge=-1, description="Default: the champion's; -1 is AutoBatch (GPU).")
    device: str | None = Field(default=None, description="Ultralytics device: cpu, 0, 0,1 ...; default the first GPU, else cpu.")
    workers: int | None = Field(default=None, ge=0, description="Dataloader workers; default Ultralytics' (8), capped by CPUs.")
    seed: int = 0
    plots: bool = Field(
        default=True, description="Ultralytics' training plots (results.png, PR curves, confusion matrix) logged with the run."
    )

    # Prefect deployment and intake service
    prefect_api_url: str | None = Field(
        default=None, description="Prefect server API (sets PREFECT_API_URL); default: Prefect's own setting or embedded."
    )
    deployment: str = Field(default="retrain/yolo-retrain", description="<flow>/<deployment> that triggers and /retrain start.")
    api_host: str = Field(default="127.0.0.1", description="Intake service bind address.")
    api_port: int = Field(default=8000, ge=1, le=65535)
    api_token: SecretStr | None = Field(default=None, description="Bearer token for the intake; required off loopback.")
    max_upload_bytes: int = Field(default=20 * 1024 * 1024, ge=1024, description="Largest accepted request body.")

    # Label Studio ML backend (`yolo-retrain labelstudio`)
    label_studio_url: str = Field(default="http://127.0.0.1:8080", description="Label Studio, where task images are read.")
    label_studio_api_key: SecretStr | None = Field(
        default=None, description="Label Studio API token (legacy) or personal access token, to read task images."
    )
    label_studio_secret: SecretStr | None = Field(
        default=None, description="Shared secret Label Studio sends (X-Yolo-Retrain-Secret, or basic auth password)."
    )
    label_studio_backend_host: str = Field(default="127.0.0.1", description="ML backend bind address.")
    label_studio_backend_port: int = Field(default=9090, ge=1, le=65535)
    label_studio_min_score: float = Field(default=0.25, ge=0.0, le=1.0, description="Champion boxes below this confidence are not pre-annotated.")
    label_studio_diff_iou: float = Field(default=0.5, gt=0.0, le=1.0, description="IoU below which a kept box counts as moved.")
    label_studio_metadata_fields: str = Field(
        default="", description="Task data fields kept as image metadata (comma-separated, e.g. camera,site): the gate's slices."
    )
    label_studio_max_predict_tasks: int = Field(
        default=100, ge=1, description="Most tasks one /predict request may carry (each: an image fetched, predicted)."
    )

    label_studio_project: int | None = Field(
        default=None, ge=1, description="Label Studio project (id) that selected images become tasks of; none: CSV only."
    )

    # Selection for review (#22): which unlabelled images reviewers see next
    selection_budget: int = Field(default=50, ge=1, description="Images picked per selection.")
    selection_threshold: float = Field(
        default=0.25, gt=0.0, lt=1.0, description="The decision threshold: a box whose confidence is near it makes an image uncertain."
    )
    selection_min_confidence: float = Field(default=0.05, gt=0.0, lt=1.0, description="Champion boxes below this are ignored.")
    selection_near_duplicate_bits: int = Field(
        default=6, ge=0, le=64, description="Two images whose 64-bit difference hashes differ in at most this many bits are near-duplicates."
    )
    selection_coverage_weight: float = Field(
        default=0.3, ge=0.0, description="Bonus for an image of a class the selection holds few of (rare classes not crowded out)."
    )

    # The sample pool (POST /samples): capture rules and limits
    samples_min_confidence: float | None = Field(
        default=None, ge=0.0, le=1.0, description="Keep only samples with a production box at or above this confidence ..."
    )
    samples_max_confidence: float | None = Field(default=None, ge=0.0, le=1.0, description="... and at or below this one.")
    samples_classes: str | None = Field(
        default=None, description="Keep only samples with a production box of one of these classes (names, comma separated)."
    )
    samples_per_minute: int | None = Field(default=None, ge=1, description="Samples kept per minute at most (429 beyond).")
    samples_per_day: int | None = Field(default=None, ge=1, description="Samples kept per day at most (429 beyond).")
    samples_max_kept: int = Field(default=10_000, ge=1, description="Unselected samples kept; the oldest beyond are dropped.")
    samples_max_age_days: float = Field(default=30, gt=0, description="Unselected samples older than this are dropped.")
    samples_max_meta_bytes: int = Field(default=4096, ge=2, description="Largest metadata JSON of a sample.")

    # Promotion gate
    gate_metric: GateMetric = "mAP50-95"
    gate_tolerance: float = Field(default=0.0, ge=0.0, description="Candidate may be this much below the champion.")
    gate_max_class_drop: float = Field(default=0.05, ge=0.0, description="Largest allowed drop of any class's AP50-95.")
    gate_margin: float = Field(
        default=0.02, ge=0.0, description="Non-inferiority margin: promoted when the 95% interval of the mAP50-95 difference ends above -margin."
    )
    gate_slice_max_drop: float = Field(
        default=0.05, ge=0.0, description="Largest allowed mAP50-95 drop on any slice (camera=cam2...) judged, by its 95% interval."
    )
    gate_slice_min_images: int = Field(
        default=30, ge=1, description="Holdout images a slice needs to be judged; a smaller one is reported, not gated."
    )
    gate_resamples: int = Field(default=1000, ge=100, le=100_000, description="Paired bootstrap draws of the holdout's images.")
    screen_confidence: float = Field(default=0.5, gt=0.0, le=1.0, description="A model sees a class at a box from this confidence up.")
    screen_margin: float = Field(default=0.2, ge=0.0, le=1.0, description="... and above the box's other classes by this much.")
    screen_candidate_confidence: float = Field(
        default=0.4, gt=0.0, le=1.0, description="The candidate, trained on a label, still prefers another class from here: suspicious."
    )
    screen_agreement_confidence: float = Field(
        default=0.25, gt=0.0, le=1.0, description="Both models prefer another class than the label, each from here: suspicious."
    )
    screen_contaminated_share: float = Field(
        default=0.5, ge=0.0, le=1.0,
        description="More suspicious corrections than this share of the batch: the candidate (trained on them) no longer vouches for a label.",
    )
    screen_max_suspicious_share: float = Field(
        default=0.1, ge=0.0, le=1.0, description="More suspicious corrections than this share of the batch: the candidate is not promoted."
    )
    forgetting_sample: int = Field(default=500, ge=0, description="Earlier accepted corrections re-checked each retrain (stable sample by hash).")
    forgetting_tolerance: float = Field(
        default=0.05, ge=0.0, le=1.0, description="Share of those boxes the candidate may un-learn before it is refused."
    )

    # A person's approval (approval.py): a candidate that passes the gate waits for `yolo-retrain approve` / `refuse`
    approval: Literal["none", "required"] = Field(
        default="none", description="required: a candidate that passes the gate waits for a person before it becomes champion."
    )
    approval_timeout_hours: float = Field(
        default=72, gt=0, description="A candidate nobody approved within this many hours counts as refused."
    )

    # Exports: what production deploys, made for every registered version and checked against its .pt on the holdout
    export_formats: str = Field(
        default="onnx", description="Comma-separated Ultralytics export formats (onnx, openvino, engine, ...); empty: none."
    )
    export_min_agreement: float = Field(
        default=0.95, ge=0.0, le=1.0, description="Least share of the .pt's boxes (and of their classes) an export must match."
    )
    export_map_tolerance: float = Field(
        default=0.01, ge=0.0, le=1.0, description="Largest mAP50-95 difference between an export and its .pt on the holdout."
    )

    # Disk: a retrain refused up front when a filesystem it writes to would keep less than this free
    min_free_disk_mb: int = Field(
        default=200, ge=0, description="Free space (MB) a retrain must leave on each filesystem it writes; checked before training."
    )

    # Retention: what each retrain's housekeeping (and `yolo-retrain housekeeping`) keeps locally
    keep_run_folders: int = Field(
        default=3, ge=0, description="Finished retrains whose Ultralytics folders and train.log stay under runs/ (all in MLflow)."
    )
    keep_local_weights: int = Field(
        default=2, ge=0, description="Newest versions whose models/retrained_vN.pt stays, besides the champion and the one it replaced."
    )
    keep_unused_datasets_days: float = Field(
        default=7, ge=0, description="Days a dataset folder that no registered version names is kept after it was last built."
    )

    # Prefect task retries (exponential backoff)
    task_retries: int = Field(default=2, ge=0)
    retry_delay_seconds: float = Field(default=2.0, ge=0.0)

    @model_validator(mode="after")
    def _fill_defaults(self) -> Settings:
        unknown = [f for f in self.export_format_list if f not in EXPORT_FORMATS]
        if unknown:
            raise ValueError(f"export_formats: {', '.join(unknown)} not an Ultralytics export format ({', '.join(EXPORT_FORMATS)})")
        if self.batch == 0:
            raise ValueError("batch: 0 is no batch size (a whole number >= 1, or -1 for AutoBatch)")
        self.home = self.home.expanduser().resolve()
        if self.tracking_uri is None:
            self.tracking_uri = f"sqlite:///{self.home / 'mlflow.db'}"
        if self.artifact_location is None:
            self.artifact_location = (self.home / "mlartifacts").as_uri()
        if self.base_data is None:
            self.base_data = self.home / "demo" / "data.yaml"
        if self.corrections_db_url is None:
            self.corrections_db_url = f"sqlite:///{self.home / 'corrections.db'}"
        return self

    @property
    def export_format_list(self) -> list[str]:
        return list(dict.fromkeys(f.strip().lower() for f in self.export_formats.split(",") if f.strip()))

    # Derived local paths -------------------------------------------------------------------
    @property
    def models_dir(self) -> Path:
        return self.home / "models"

    @property
    def champion_weights(self) -> Path:
        """The current champion's weights, always at this one path (what production loads)."""
        return self.models_dir / "champion.pt"

    @property
    def champion_exports(self) -> Path:
        """The champion's verified exports (and ``exports.json``), beside ``champion.pt``: a link swapped atomically."""
        return self.models_dir / "champion"

    @property
    def exports_dir(self) -> Path:
        """Each version's verified exports, ``exports/vN/``."""
        return self.models_dir / "exports"

    @property
    def corrections_dir(self) -> Path:
        """Content-addressed image and label blobs of the correction store."""
        return self.home / "corrections"

    @property
    def samples_dir(self) -> Path:
        """Content-addressed images of the review pool (POST /samples)."""
        return self.home / "samples"

    @property
    def selections_dir(self) -> Path:
        """Each selection's CSV and contact sheet."""
        return self.home / "selections"

    @property
    def datasets_dir(self) -> Path:
        """Retraining datasets, one folder per content digest."""
        return self.home / "datasets"

    @property
    def runs_dir(self) -> Path:
        """Ultralytics training/validation outputs."""
        return self.home / "runs"

    @property
    def ultralytics_config_dir(self) -> Path:
        return self.home / "ultralytics"

    @property
    def prefect_home(self) -> Path:
        return self.home / "prefect"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()


def configure_environment(settings: Settings | None = None) -> Settings:
    """Point Ultralytics, MLflow and Prefect at our own dirs and keep them offline; called by each entry point
    (CLI, flow, intake app, served deployments, tests).

    Best before ``ultralytics`` or ``prefect`` is imported: both read these variables at import time.
    Variables the user already set are left alone. Idempotent.
    """
    settings = settings or get_settings()
    settings.home.mkdir(parents=True, exist_ok=True)
    env = {
        "YOLO_CONFIG_DIR": str(settings.ultralytics_config_dir),
        "YOLO_OFFLINE": "1",
        "YOLO_AUTOINSTALL": "false",  # Ultralytics' exporter would pip-install what a format needs: never at run time
        "YOLO_VERBOSE": os.environ.get("YOLO_VERBOSE", "True"),
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "DO_NOT_TRACK": "1",
        "PREFECT_HOME": str(settings.prefect_home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90",
    }
    if settings.prefect_api_url:
        env["PREFECT_API_URL"] = settings.prefect_api_url
    for key, value in env.items():
        os.environ.setdefault(key, value)
    _install_offline_fonts(Path(os.environ["YOLO_CONFIG_DIR"]) / "Ultralytics")
    return settings


def _install_offline_fonts(config_dir: Path) -> None:
    """Ultralytics' check_font downloads Arial unless the file is in its config dir: give it matplotlib's DejaVu."""
    config_dir.mkdir(parents=True, exist_ok=True)
    wanted = [config_dir / "Arial.ttf", config_dir / "Arial.Unicode.ttf"]
    if all(p.exists() for p in wanted):
        return
    import matplotlib  # local import: only needed once per home dir

    source = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
    for target in wanted:
        if not target.exists():
            shutil.copyfile(source, target)


def setup_logging(level: int = logging.INFO) -> None:
    """Our own log lines on stderr (entry points only); nothing below ``level`` reaches that handler, whichever
    library logs it (records of other loggers propagate to the root's handlers whatever the root's level)."""
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)  # does nothing if logging is set up already
    for handler in logging.getLogger().handlers:
        if type(handler) is logging.StreamHandler:  # basicConfig's, not a library's or a test harness's
            handler.setLevel(level)
