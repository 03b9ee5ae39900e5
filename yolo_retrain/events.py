"""Everyone told: what happened, as Prefect events carrying a summary a person can read.

Each retrain's outcome (``yolo-retrain.retrain.<outcome>``), each batch with corrections held as suspicious
(``yolo-retrain.corrections.suspicious``) and each decision on a candidate awaiting approval
(``yolo-retrain.candidate.<decision>``) is emitted with ``payload.summary``; any Prefect automation can forward it
(webhook, Slack, e-mail: :mod:`notify` wires one). Announcing never fails the work it reports: a problem is logged.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)

RETRAIN_RESOURCE = "yolo-retrain.retrain"
CORRECTIONS_RESOURCE = "yolo-retrain.corrections"  # the intake's threshold event has this resource too
CANDIDATE_RESOURCE = "yolo-retrain.candidate"

OUTCOMES = ("promoted", "rejected", "awaiting-approval", "failed")
SUSPICIOUS_EVENT = "yolo-retrain.corrections.suspicious"
DECISIONS = ("approved", "refused")

# What a notification automation listens to (never the threshold event: that one starts retrains).
NOTIFIED_EVENTS = (
    *(f"{RETRAIN_RESOURCE}.{outcome}" for outcome in OUTCOMES),
    SUSPICIOUS_EVENT,
    *(f"{CANDIDATE_RESOURCE}.{decision}" for decision in DECISIONS),
)
NOTIFIED_RESOURCES = (RETRAIN_RESOURCE, CORRECTIONS_RESOURCE, CANDIDATE_RESOURCE)


def retrain_outcome(outcome: str, summary: str, **details: Any) -> bool:
    """``yolo-retrain.retrain.<outcome>`` (promoted, rejected, awaiting-approval, failed)."""
    if outcome not in OUTCOMES:
        raise ValueError(f"unknown retrain outcome {outcome!r} (expected one of {', '.join(OUTCOMES)})")
    return announce(f"{RETRAIN_RESOURCE}.{outcome}", RETRAIN_RESOURCE, summary, outcome=outcome, **details)


def suspicious_batch(summary: str, batch_id: str | None, held: int, **details: Any) -> bool:
    return announce(SUSPICIOUS_EVENT, CORRECTIONS_RESOURCE, summary, batch_id=batch_id, held=held, **details)


def candidate_decision(decision: str, summary: str, **details: Any) -> bool:
    """``yolo-retrain.candidate.<approved|refused>`` (a timeout or a newer candidate counts as refused)."""
    if decision not in DECISIONS:
        raise ValueError(f"unknown decision {decision!r} (expected one of {', '.join(DECISIONS)})")
    return announce(f"{CANDIDATE_RESOURCE}.{decision}", CANDIDATE_RESOURCE, summary, decision=decision, **details)


def announce(event: str, resource_id: str, summary: str, **payload: Any) -> bool:
    """Emit ``event`` on ``resource_id`` with ``payload`` and the ``summary``; False (logged) where it cannot be sent:
    no Prefect server configured (never a throwaway temporary one started for it), or the emitter refused it. Events leave on Prefect's background worker, which
    sends what is queued before the process exits."""
    from prefect.events import emit_event
    from prefect.settings import get_current_settings

    if not get_current_settings().api.url:  # a temporary server dies with this process: nobody could be told
        log.info("event %s not sent: no Prefect server configured (PREFECT_API_URL)", event)
        return False
    try:
        sent = emit_event(
            event=event,
            resource={"prefect.resource.id": resource_id},
            payload={"summary": summary, **{k: v for k, v in payload.items() if v is not None}},
        )
    except Exception as exc:  # noqa: BLE001 — telling people must never fail what it tells about
        log.warning("event %s not sent: %s", event, exc)
        return False
    if sent is None:
        log.info("event %s not sent: no Prefect server to send it to", event)
        return False
    return True


def announce_report(report) -> None:
    """A finished retrain's outcome (a skipped one is not news), and its batch's suspicious corrections if any."""
    details = {"version": report.version, "run_url": report.run_url, "batch_id": report.batch_id, "trigger": report.trigger}
    if report.outcome in OUTCOMES:
        retrain_outcome(report.outcome, report.text(), message=report.message, **details)
    if report.suspicious:
        lines = [f"yolo-retrain: {len(report.suspicious)} correction(s) of batch {report.batch_id} held as suspicious"]
        lines += [f"  {item}" for item in report.suspicious[:20]]
        lines.append(report.review_hint() or "")
        suspicious_batch("\n".join(lines), report.batch_id, len(report.suspicious), version=report.version)
