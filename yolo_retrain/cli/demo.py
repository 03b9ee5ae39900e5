"""``yolo-retrain demo``: the whole product on generated data, in a few minutes on a CPU."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from yolo_retrain.cli.common import VerboseOption, exit_on_error, use_console
from yolo_retrain.cli.refusals import refusals_in_one_line
from yolo_retrain.config import DEMO_TRAINING, Settings, get_settings


def demo_settings() -> Settings:
    """The demo's small training sizes (:data:`DEMO_TRAINING`) wherever the user set none (environment or .env): put in
    the environment, so the flows it runs read them too."""
    chosen = get_settings().model_fields_set
    for key, value in DEMO_TRAINING.items():
        if key not in chosen:
            os.environ[f"YOLO_RETRAIN_{key.upper()}"] = str(value)
    get_settings.cache_clear()
    return get_settings()


def demo(
    reset: Annotated[bool, typer.Option(help="Start from a clean demo state (only in a home the demo created).")] = True,
    train_images: Annotated[int, typer.Option(help="Generated training images (half mislabelled).")] = 320,
    val_images: Annotated[int, typer.Option(help="Generated holdout images (correctly labelled).")] = 80,
    epochs: Annotated[int, typer.Option(help="Epochs for the baseline and for the retrain.")] = 20,
    verbose: VerboseOption = False,
) -> None:
    """Generate data with wrong labels, train a baseline champion, submit fixes, retrain, report."""
    with use_console(verbose):  # before Prefect and MLflow are imported: they set up their logging then
        from flows.retrain import retrain
        from yolo_retrain import demo as steps
        from yolo_retrain import tracking
        from yolo_retrain.store import CorrectionStore

        settings = demo_settings()
        with exit_on_error(), refusals_in_one_line():
            if reset:
                steps.reset_home(settings)
            data = steps.prepare_data(settings, train_images, val_images, settings.imgsz)
            typer.echo(f"[1/4] dataset: {data.data_yaml} ({train_images} train, {val_images} holdout; {data.wrong_images} mislabelled)")
            tracking.create_experiment(tracking.client_for(settings), settings)
            typer.echo("[2/4] baseline champion: training on the partly wrong labels")
            baseline = retrain(trigger="baseline", force=True, epochs=epochs)
            typer.echo(f"      baseline v{baseline.version}: mAP50-95 {baseline.post.map50_95:.4f}")
            with CorrectionStore.from_settings(settings) as store:
                added = store.import_dir(data.corrections_dir, author="demo-reviewer", source_model_version=baseline.version)
            typer.echo(f"[3/4] reviewers submitted {len(added)} corrections")
            typer.echo("[4/4] retraining on the corrections")
            report = retrain(trigger="manual", epochs=epochs)
        typer.echo("")
        typer.echo(report.text())
        typer.echo("")
        typer.echo(steps.explain(report))
        typer.echo("")
        typer.echo(steps.ui_instructions(settings))
