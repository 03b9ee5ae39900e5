"""Set up, retrain, inspect and roll back: ``init``, ``run``, ``status``, ``rollback``."""

from __future__ import annotations

import gc
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from yolo_retrain.cli.common import VerboseOption, exit_on_error, use_console
from yolo_retrain.cli.refusals import refusals_in_one_line
from yolo_retrain.config import Trigger, get_settings


def init(
    weights: Annotated[
        Optional[Path], typer.Option(help="Register these YOLO weights (.pt) as the first champion instead of training.")
    ] = None,
    train_baseline: Annotated[
        bool, typer.Option(help="Without --weights: train a baseline on the base dataset and make it champion.")
    ] = True,
    epochs: Annotated[Optional[int], typer.Option(help="Baseline training epochs (default: settings).")] = None,
    verbose: VerboseOption = False,
) -> None:
    """Create the MLflow experiment (artifact location, kind), and a first champion if there is none."""
    with use_console(verbose), exit_on_error():
        _init(weights, train_baseline, epochs)


def _init(weights: Path | None, train_baseline: bool, epochs: int | None) -> None:
    from yolo_retrain import registry, tracking
    from yolo_retrain.data_yaml import read_class_names
    from yolo_retrain.model_classes import check_model_classes

    settings = get_settings()
    if weights is not None:  # before anything is created: weights of other classes are refused outright
        assert settings.base_data is not None  # filled by Settings
        project = read_class_names(settings.base_data)
        check_model_classes(weights, project, f"base data.yaml {settings.base_data}")
    client = tracking.client_for(settings)
    experiment_id = tracking.create_experiment(client, settings)
    typer.echo(f"experiment {settings.experiment_name!r} (id {experiment_id}) at {settings.tracking_uri}")
    typer.echo(f"artifact location {settings.artifact_location}")
    champion = registry.version_by_alias(client, settings.model_name, "champion")
    if champion is not None:
        typer.echo(f"champion: {settings.model_name} version {champion.version} (unchanged)")
        return
    if weights is not None:
        version = registry.register_initial_champion(client, settings, experiment_id, weights)
        typer.echo(f"champion: {settings.model_name} version {version.version} from {weights}")
        _export_initial_champion(settings, client, version, weights)
    elif train_baseline:
        _run_flow("baseline", force=True, epochs=epochs)


def _export_initial_champion(settings, client, version, weights: Path) -> None:
    """Given weights are exported and checked like every retrain's candidate, on the base data's val split."""
    from yolo_retrain.exports.verify import export_and_verify
    from yolo_retrain.recipe import trained_imgsz

    assert settings.base_data is not None
    imgsz = settings.imgsz or trained_imgsz(weights)
    report = export_and_verify(settings, client, version, weights, settings.base_data, imgsz)
    for line in report.lines():
        typer.echo(f"export {line}")


def run(
    trigger: Annotated[str, typer.Option(help="Recorded as the run's trigger tag: manual, schedule, corrections-threshold.")] = "manual",
    min_corrections: Annotated[Optional[int], typer.Option(help="Skip with fewer pending corrections (default: settings).")] = None,
    force: Annotated[bool, typer.Option(help="Retrain even below --min-corrections.")] = False,
    epochs: Annotated[Optional[int], typer.Option(help="Training epochs (default: settings).")] = None,
    imgsz: Annotated[Optional[int], typer.Option(help="Image size (default: settings, else the recipe's, else the champion's).")] = None,
    batch: Annotated[Optional[int], typer.Option(help="Batch size (default: settings, else the recipe's, else the champion's).")] = None,
    verbose: VerboseOption = False,
) -> None:
    """Run the retraining flow now, in this process: a progress bar per stage, then the summary."""
    with use_console(verbose):
        _run_flow(trigger, min_corrections=min_corrections, force=force, epochs=epochs, imgsz=imgsz, batch=batch)


def _temporary_server_running() -> bool:
    """Did this process start Prefect's temporary server? Prefect imports its server module only to start one, so
    without it there is none; importing it just to ask would cost every `run` the whole server's import (~1 s)."""
    server = sys.modules.get("prefect.server.api.server")
    return server is not None and server.SubprocessASGIServer().running


def _run_flow(trigger: Trigger, **params) -> None:
    from flows.retrain import retrain

    # Prefect stops a temporary server the flow started at exit, with a log line: a refusal is printed after it.
    with exit_on_error(defer=_temporary_server_running), refusals_in_one_line():
        report = retrain(trigger=trigger, **params)
    typer.echo(report.text())
    # Exit without the interpreter's final collections over everything torch, MLflow and Prefect left
    # (2-3 s per retrain in bench/overhead.py).
    gc.freeze()


def status(
    last: Annotated[int, typer.Option(help="How many recent retrains to list.")] = 5,
) -> None:
    """Pending corrections, the champion, and the last retrains."""
    from yolo_retrain import registry, tracking
    from yolo_retrain.store import CorrectionStore

    settings = get_settings()
    with exit_on_error():
        with CorrectionStore.from_settings(settings) as store:
            stats = store.stats()
        typer.echo("corrections: " + ", ".join(f"{k} {v}" for k, v in stats.items()))
        client = tracking.client_for(settings)
        champion = registry.version_by_alias(client, settings.model_name, "champion")
        if champion is None:
            typer.echo("champion: none (run `yolo-retrain init`)")
        else:
            metric = registry.model_metrics(client, champion).get(f"post_{settings.gate_metric}", "?")
            typer.echo(f"champion: {settings.model_name} v{champion.version}  {settings.gate_metric}={metric}  -> {settings.champion_weights}")
        held = registry.version_by_alias(client, settings.model_name, "awaiting-approval")
        if held is not None:
            deadline = held.tags.get("approval_deadline", "?")
            typer.echo(f"awaiting approval: v{held.version} until {deadline} (`yolo-retrain candidate` shows the comparison)")
        experiment_id = tracking.resolve_experiment(client, settings)
        runs = client.search_runs(
            [experiment_id], "tags.type = 'retraining'", order_by=["attributes.start_time DESC"], max_results=last
        )
        typer.echo(f"last {len(runs)} retrain(s):")
        for r in runs:
            typer.echo(
                f"  {r.info.run_id[:12]}  {r.info.status:<9} trigger={r.data.tags.get('trigger', '?'):<22}"
                f" corrections={r.data.tags.get('corrections_count', '?'):<5} gate={r.data.tags.get('gate_decision', '-'):<10}"
                f" version={r.data.tags.get('model_version', '-')}"
            )


def rollback(
    to: Annotated[Optional[str], typer.Option("--to", help="Version to make champion (default: the one the champion replaced).")] = None,
) -> None:
    """Move the champion alias and the local champion file back to an earlier version."""
    from yolo_retrain import registry, tracking

    settings = get_settings()
    with exit_on_error():
        version = registry.rollback(tracking.client_for(settings), settings, to)
    typer.echo(f"champion: {settings.model_name} version {version.version} -> {settings.champion_weights}")
