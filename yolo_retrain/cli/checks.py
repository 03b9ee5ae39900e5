"""Check the installation and a retrain's record: ``doctor`` and ``verify``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from yolo_retrain.cli.common import exit_on_error
from yolo_retrain.config import get_settings

if TYPE_CHECKING:
    from yolo_retrain.doctor import CheckResult


def _report(results: list[CheckResult]) -> None:
    """One line per check, a summary line, and exit code 1 if any check failed."""
    for result in results:
        if result.ok:
            typer.echo(f"✓ {result.name} — {result.detail}")
        else:
            typer.echo(f"✗ {result.name} — {result.detail}" + (f" (fix: {result.fix})" if result.fix else ""))
    failed = sum(not result.ok for result in results)
    typer.echo(f"{len(results) - failed} passed, {failed} failed")
    if failed:
        raise typer.Exit(code=1)


def doctor(
    fix: Annotated[
        bool,
        typer.Option(
            help="First end what a killed retrain left (its RUNNING run, its claim, partial files) and tag the "
            "experiment as a custom-model one for MLflow's UI."
        ),
    ] = False,
) -> None:
    """Check the setup: home, MLflow tracking and registry, experiment, champion weights, data, store, Prefect."""
    from yolo_retrain.doctor import run_checks

    settings = get_settings()
    if fix:
        _recover(settings)
    _report(run_checks(settings))


def _recover(settings) -> None:
    from yolo_retrain import tracking
    from yolo_retrain.recovery import recover_orphans, retrain_lock

    with exit_on_error(), retrain_lock(settings, wait_seconds=0):  # refuses while a retrain is alive
        recovery = recover_orphans(settings, current_batch=None, by="yolo-retrain doctor --fix")
    typer.echo(
        f"recovered: {len(recovery.killed_runs)} orphaned run(s) ended KILLED, "
        f"{sum(recovery.released_batches.values())} correction(s) released, {len(recovery.removed_files)} partial file(s) removed"
        + (f", {len(recovery.settled_runs)} run(s) stopped after their gate completed" if recovery.settled_runs else "")
    )
    for line in recovery.approvals:  # held candidates timed out, superseded, or decisions carried out
        typer.echo(f"approval: {line}")
    try:
        client = tracking.client_for(settings)
        experiment_id = tracking.resolve_experiment(client, settings)
    except Exception:  # noqa: BLE001 — no experiment yet: the experiment check below says what to do
        return
    if tracking.set_experiment_kind(client, experiment_id):
        typer.echo(f"experiment {experiment_id} tagged {tracking.EXPERIMENT_KIND_TAG}={tracking.CUSTOM_MODEL_KIND}")


def verify(
    run_id: Annotated[
        str | None, typer.Argument(help="MLflow run id of a retrain (default: the latest retrain).")
    ] = None,
) -> None:
    """Check that a retrain recorded everything: status, tags, dataset, params, metrics, model, aliases, corrections."""
    from yolo_retrain.verify import verify_run

    _report(verify_run(get_settings(), run_id))


def housekeeping(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only list what would be removed and the space it frees.")] = False,
) -> None:
    """Retire old local outputs by the retention policy (YOLO_RETRAIN_KEEP_*): old Ultralytics folders, weights
    files of old versions (kept in MLflow), unused dataset folders. Never the champion or a running retrain's."""
    from yolo_retrain.recovery import retrain_lock
    from yolo_retrain.retention import housekeeping as apply_policy

    settings = get_settings()
    with exit_on_error(), retrain_lock(settings, wait_seconds=0):  # refuses while a retrain is alive
        result = apply_policy(settings, dry_run=dry_run)
    typer.echo(result.text())
