"""A person's approval (``YOLO_RETRAIN_APPROVAL=required``): a candidate that passes the gate waits for a person.

The registry is the one record; a version goes through three states, each written after the one it depends on:

1. **held** (the retrain's gate, :func:`hold`): tags ``gate_decision=awaiting-approval``, ``gate_reason``,
   ``approval_deadline``, then the alias ``awaiting-approval`` moves to it (the gate's commit point). Nothing is
   installed; the retrain ends (its corrections recorded on their own merit, as always), no worker waits.
2. **decided** (:func:`approve`, :func:`refuse`, or :func:`reconcile` for a timeout or a newer candidate): tags
   ``approval`` (approved, refused, timed-out, superseded), ``approval_by``, ``approval_at``, ``approval_reason``.
3. **carried out** (:func:`carry_out`): approved → the local champion file, ``replaced_champion``, alias
   ``champion``; otherwise alias ``challenger``; then the alias ``awaiting-approval`` is removed and, last,
   ``gate_decision`` becomes ``promoted`` / ``rejected`` (on the run too), and an event tells everyone.

A crash between 2 and 3 is carried out by the next :func:`reconcile` (each retrain's recovery, ``doctor --fix``,
``approve``/``refuse``/``candidate``), which repeats it idempotently. Only one candidate waits: a newer one that
passes the gate supersedes it, and so does any change of champion (promotion, rollback) since it was compared.
The corrections are not touched: they were accepted or held on their own merit when the retrain finished.
"""

from __future__ import annotations

import getpass
import logging
from datetime import datetime, timedelta, timezone

from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

from yolo_retrain import events, registry
from yolo_retrain.config import Settings
from yolo_retrain.errors import InvalidInput, RetrainError
from yolo_retrain.gate import AWAITING_APPROVAL, GateDecision

log = logging.getLogger(__name__)

REFUSALS = ("refused", "timed-out", "superseded")  # every way a held candidate ends without becoming champion


def required(settings: Settings, champion_exists: bool) -> bool:
    """Whether a candidate that passed the gate waits for a person. The first champion needs none: ``init`` (a
    person's own command) makes it, and there is nothing in use to protect yet."""
    return settings.approval == "required" and champion_exists


def hold(client: MlflowClient, settings: Settings, version: ModelVersion, decision: GateDecision) -> None:
    """The gate passed ``version`` and a person decides: tag it, then move ``awaiting-approval`` to it (commit
    point). A candidate held before it is superseded (refused)."""
    name, number = version.name, str(version.version)
    deadline = _now() + timedelta(hours=settings.approval_timeout_hours)
    client.set_model_version_tag(name, number, "gate_decision", decision.label)
    client.set_model_version_tag(name, number, "gate_reason", decision.reason)
    client.set_model_version_tag(name, number, "approval_deadline", _iso(deadline))
    client.set_registered_model_alias(name, AWAITING_APPROVAL, number)
    reconcile(client, settings, spare=number)  # the candidate held before this one, if any: superseded


def awaiting(client: MlflowClient, settings: Settings) -> ModelVersion | None:
    """The candidate waiting for a person now (after :func:`reconcile`), if any."""
    return registry.version_by_alias(client, settings.model_name, AWAITING_APPROVAL)


def approve(client: MlflowClient, settings: Settings, number: str, by: str | None = None, note: str = "") -> ModelVersion:
    """Version ``number`` becomes champion (alias and local file). Refused (RetrainError, nothing changed) if it
    is not the candidate awaiting approval: unknown, already decided, past its deadline, or superseded."""
    version = _awaiting_version(client, settings, number)
    _decide(client, version, "approved", by or _who(), note)
    return carry_out(client, settings, _reread(client, version))


def refuse(client: MlflowClient, settings: Settings, number: str, reason: str, by: str | None = None) -> ModelVersion:
    """Version ``number`` stays out of use (alias ``challenger``), with ``reason`` on record."""
    if not reason.strip():
        raise InvalidInput("refuse: a reason is required (it is recorded on the version for whoever retrains next)")
    version = _awaiting_version(client, settings, number)
    _decide(client, version, "refused", by or _who(), reason)
    return carry_out(client, settings, _reread(client, version))


def reconcile(client: MlflowClient, settings: Settings, spare: str | None = None) -> list[str]:
    """Carry out every decision recorded but not carried out; a held candidate past its deadline counts as refused
    (timed-out), and one whose champion changed since it was compared, or that a newer held candidate displaced,
    as superseded (``spare``: a version just held, left alone). Returns one line per version it changed."""
    changed = []
    holder = awaiting(client, settings)
    champion = registry.version_by_alias(client, settings.model_name, "champion")
    for version in _undecided_or_unfinished(client, settings.model_name):
        number = str(version.version)
        if number == spare:
            continue
        if not version.tags.get("approval"):
            why = _why_it_ends(client, settings, version, holder, champion)
            if why is None:
                continue
            kind, reason = why
            _decide(client, version, kind, "yolo-retrain", reason)
            version = _reread(client, version)
        carry_out(client, settings, version)
        changed.append(f"version {number}: {describe(_reread(client, version))}")
    return changed


def carry_out(client: MlflowClient, settings: Settings, version: ModelVersion) -> ModelVersion:
    """What the recorded ``approval`` decision means, done (again, if a crash stopped it part way)."""
    name, number = version.name, str(version.version)
    kind = version.tags["approval"]
    if kind == "approved":
        champion = registry.version_by_alias(client, name, "champion")
        if champion is None or str(champion.version) != number:
            weights = registry.verified_weights(settings, client, version)
            if champion is not None and "replaced_champion" not in version.tags:
                client.set_model_version_tag(name, number, "replaced_champion", str(champion.version))
            registry.install_champion(settings, weights)
            client.set_registered_model_alias(name, "champion", number)
        final = "promoted"
    else:
        client.set_registered_model_alias(name, "challenger", number)
        final = "rejected"
    holder = registry.version_by_alias(client, name, AWAITING_APPROVAL)
    if holder is not None and str(holder.version) == number:
        client.delete_registered_model_alias(name, AWAITING_APPROVAL)
    registry.restore_local_champion(client, settings)  # the file holds the champion alias's weights, whatever happened
    if version.run_id:
        try:
            client.set_tag(version.run_id, "gate_decision", final)
            client.set_tag(version.run_id, "approval", kind)
        except MlflowException as exc:  # a deleted run: the version is the record
            log.warning("run %s of version %s not tagged: %s", version.run_id, number, exc)
    client.set_model_version_tag(name, number, "gate_decision", final)  # last: marks the decision carried out
    done = _reread(client, version)
    events.candidate_decision(
        "approved" if kind == "approved" else "refused",
        f"yolo-retrain: candidate version {number} {describe(done)}",
        version=number, approval=kind, by=done.tags.get("approval_by"), reason=done.tags.get("approval_reason"),
    )
    return done


def describe(version: ModelVersion) -> str:
    """Where a version stands, in a few words a person can read."""
    tags = version.tags
    kind = tags.get("approval")
    if kind and tags.get("gate_decision") != AWAITING_APPROVAL:
        said = f"{kind} by {tags.get('approval_by', '?')} at {tags.get('approval_at', '?')}"
        reason = tags.get("approval_reason")
        outcome = "made champion" if kind == "approved" else "not promoted"
        return f"{said}{f' ({reason})' if reason else ''}: {outcome}"
    if tags.get("run_failed"):
        return f"its retrain failed ({tags['run_failed'][:200]}): never held for approval"
    if tags.get("gate_decision") == AWAITING_APPROVAL:
        return f"awaiting approval until {tags.get('approval_deadline', '?')}"
    return f"gate decision {tags.get('gate_decision', 'none')}"


def _why_it_ends(
    client: MlflowClient, settings: Settings, version: ModelVersion, holder: ModelVersion | None, champion: ModelVersion | None
) -> tuple[str, str] | None:
    """(kind, reason) if this undecided held candidate ends now, None if it still waits (or never was held)."""
    number = str(version.version)
    if holder is not None and str(holder.version) == number:
        deadline = version.tags.get("approval_deadline")
        if deadline and _now() >= datetime.fromisoformat(deadline):
            hours = f"{settings.approval_timeout_hours:g}"
            return "timed-out", f"nobody approved it by its deadline {deadline} (YOLO_RETRAIN_APPROVAL_TIMEOUT_HOURS={hours})"
        parent = version.tags.get("parent_version")
        if champion is not None and parent not in (None, "none", str(champion.version)):
            return "superseded", f"it was compared with v{parent}, but the champion is now v{champion.version}: retrain instead"
        return None
    # Tagged awaiting but not holding the alias: displaced by a newer candidate once its retrain finished (a gate
    # that never moved the alias belongs to a failed run, which the recovery tags run_failed: never held).
    if version.run_id and _run_status(client, version.run_id) == "FINISHED":
        newer = f"v{holder.version}" if holder is not None else "a newer candidate"
        return "superseded", f"{newer} passed the gate after it and awaits approval instead"
    return None


def _awaiting_version(client: MlflowClient, settings: Settings, number: str) -> ModelVersion:
    reconcile(client, settings)  # a deadline passed or a crash part way: settled before anyone decides
    try:
        version = client.get_model_version(settings.model_name, str(number))
    except MlflowException as exc:
        raise InvalidInput(f"version {number}: model {settings.model_name!r} has no such version") from exc
    holder = awaiting(client, settings)
    if version.tags.get("gate_decision") != AWAITING_APPROVAL or holder is None or str(holder.version) != str(number):
        now = f"; version {holder.version} awaits approval" if holder is not None else "; no candidate awaits approval"
        raise InvalidInput(f"version {number}: not awaiting approval ({describe(version)}){now}")
    return version


def _undecided_or_unfinished(client: MlflowClient, model_name: str) -> list[ModelVersion]:
    """Versions still tagged ``awaiting-approval``: held, or decided and not yet carried out."""
    try:
        found = client.search_model_versions(f"name = '{model_name}' and tags.gate_decision = '{AWAITING_APPROVAL}'")
    except MlflowException:  # no such model yet
        return []
    return sorted(found, key=lambda v: int(v.version))


def _decide(client: MlflowClient, version: ModelVersion, kind: str, by: str, reason: str) -> None:
    """Step 2: the decision on record before anything is done about it (a crash after it is carried out later)."""
    name, number = version.name, str(version.version)
    client.set_model_version_tag(name, number, "approval_by", by)
    client.set_model_version_tag(name, number, "approval_at", _iso(_now()))
    client.set_model_version_tag(name, number, "approval_reason", reason[:4000])
    client.set_model_version_tag(name, number, "approval", kind)  # last: the decision is whole once this is set


def _reread(client: MlflowClient, version: ModelVersion) -> ModelVersion:
    return client.get_model_version(version.name, str(version.version))


def _run_status(client: MlflowClient, run_id: str) -> str | None:
    try:
        return client.get_run(run_id).info.status
    except MlflowException:
        return None


def _who() -> str:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 — no user name in this environment
        raise RetrainError("who decides? pass --by NAME (no user name in this environment)") from None


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")
