"""A store from the release before the lifecycle: its ``applied`` rows sorted into accepted or rejected by their
version's gate decision in MLflow's registry (a version without a decision is held as rejected, for a person).

Until the registry can be reached they stay ``applied``: out of the pending count and of datasets.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from yolo_retrain.config import Settings
from yolo_retrain.gate import GateDecision
from yolo_retrain.store.engine import Database
from yolo_retrain.store.lifecycle import keep_newest_accepted
from yolo_retrain.store.schema import LEGACY_APPLIED, CorrectionRow

Decisions = Callable[[set[str]], Mapping[str, GateDecision] | None]


def sort_applied(db: Database, decisions: Decisions) -> int:
    """Sort the ``applied`` rows; returns how many were sorted. ``decisions(versions)`` gives the decision per
    version, or None when it cannot tell (then nothing changes)."""
    with Session(db.reader) as session:
        query = select(CorrectionRow.applied_version).where(CorrectionRow.status == LEGACY_APPLIED).distinct()
        versions = set(session.scalars(query))
    if not versions:
        return 0
    found = decisions({v for v in versions if v is not None})
    if found is None:
        return 0
    sorted_rows = 0
    with db.busy("sort the applied corrections"), Session(db.writer) as session, session.begin():
        for version in versions:
            decision = found.get(version) if version is not None else None
            if decision is None:
                status, reason = "rejected", f"v{version} has no gate decision in the model registry: held for review"
            else:
                status = "accepted" if decision.promote else "rejected"
                reason = f"gate {decision.label} v{version}: {decision.reason}"
            result = session.execute(
                update(CorrectionRow)
                .where(CorrectionRow.status == LEGACY_APPLIED, CorrectionRow.applied_version == version)
                .values(status=status, status_reason=f"{reason} (sorted when the store was upgraded)")
            )
            sorted_rows += result.rowcount
        keep_newest_accepted(session, select(CorrectionRow.image_sha256).where(CorrectionRow.status == "accepted"))
    return sorted_rows


def registry_decisions(settings: Settings) -> Decisions:
    """The gate's decision on versions of the configured model, read from MLflow's registry when asked."""

    def lookup(versions: set[str]) -> dict[str, GateDecision] | None:
        from yolo_retrain import registry, tracking  # MLflow is imported only if a store needs sorting

        return registry.gate_decisions(tracking.client_for(settings), settings.model_name, versions)

    return lookup
