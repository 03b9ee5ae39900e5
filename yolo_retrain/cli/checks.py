"""Check the installation and a retrain's record: ``doctor`` and ``verify``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

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


def doctor() -> None:
    """Check the setup: home, MLflow tracking and registry, experiment, champion weights, data, store, Prefect."""
    from yolo_retrain.doctor import run_checks

    _report(run_checks(get_settings()))


def verify(
    run_id: Annotated[
        str | None, typer.Argument(help="MLflow run id of a retrain (default: the latest retrain).")
    ] = None,
) -> None:
    """Check that a retrain recorded everything: status, tags, dataset, params, metrics, model, aliases, corrections."""
    from yolo_retrain.verify import verify_run

    _report(verify_run(get_settings(), run_id))
