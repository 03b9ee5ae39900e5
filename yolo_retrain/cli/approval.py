"""A person's approval of a held candidate: ``candidate``, ``approve``, ``refuse`` (YOLO_RETRAIN_APPROVAL=required)."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from yolo_retrain.cli.common import exit_on_error
from yolo_retrain.config import get_settings

ByOption = Annotated[Optional[str], typer.Option("--by", help="Who decides (recorded on the version; default: your user name).")]


def candidate() -> None:
    """The candidate awaiting approval, with the gate's comparison (overall, per class, fixed/learned)."""
    from yolo_retrain import approval, tracking
    from yolo_retrain.approval_view import candidate_summary

    settings = get_settings()
    with exit_on_error():
        client = tracking.client_for(settings)
        for line in approval.reconcile(client, settings):  # a deadline passed: said, and settled, first
            typer.echo(f"approval: {line}")
        held = approval.awaiting(client, settings)
    if held is None:
        typer.echo("no candidate awaits approval")
        return
    typer.echo(candidate_summary(client, held))
    typer.echo(f"decide: yolo-retrain approve {held.version}  |  yolo-retrain refuse {held.version} --reason TEXT")


def approve(
    version: Annotated[str, typer.Argument(help="The registry version awaiting approval (see `yolo-retrain candidate`).")],
    by: ByOption = None,
    note: Annotated[str, typer.Option(help="Why, recorded on the version.")] = "",
) -> None:
    """Make the candidate awaiting approval the champion (alias and local file); who and when go on the version."""
    from yolo_retrain import approval, tracking
    from yolo_retrain.recovery import no_retrain_running

    settings = get_settings()
    with exit_on_error(), no_retrain_running(settings):
        decided = approval.approve(tracking.client_for(settings), settings, version, by, note)
    typer.echo(f"version {decided.version}: {approval.describe(decided)} -> {settings.champion_weights}")


def refuse(
    version: Annotated[str, typer.Argument(help="The registry version awaiting approval (see `yolo-retrain candidate`).")],
    reason: Annotated[str, typer.Option(help="Why it is refused (required; recorded on the version).")] = "",
    by: ByOption = None,
) -> None:
    """Refuse the candidate awaiting approval: it stays out of use (alias challenger); who, when and why on the version."""
    from yolo_retrain import approval, tracking
    from yolo_retrain.recovery import no_retrain_running

    settings = get_settings()
    with exit_on_error(), no_retrain_running(settings):
        decided = approval.refuse(tracking.client_for(settings), settings, version, reason, by)
    typer.echo(f"version {decided.version}: {approval.describe(decided)}")


def notify(
    webhook: Annotated[Optional[str], typer.Option(help="POST each message as JSON {\"text\": ...} to this URL (a Custom Webhook block).")] = None,
    block: Annotated[Optional[str], typer.Option(help="Or a notification block saved on the server, TYPE/NAME (e.g. slack-webhook/team).")] = None,
) -> None:
    """Create (or replace) the Prefect automation that tells people: each retrain's outcome, suspicious corrections,
    approval decisions. Needs the Prefect server (PREFECT_API_URL)."""
    from yolo_retrain.notify import AUTOMATION_NAME, wire

    with exit_on_error():
        wired = wire(webhook, block)
    typer.echo(
        f"automation {AUTOMATION_NAME!r} ({wired.automation_id}) {'replaced' if wired.replaced else 'created'}: "
        f"yolo-retrain's events -> block {wired.block}"
    )
