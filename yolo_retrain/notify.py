"""Wire a notification: a Prefect automation that forwards yolo-retrain's events (:mod:`events`) to a notification
block (a Custom Webhook made from a URL, or any block you saved: Slack, e-mail, Teams, ...).

The automation runs on the Prefect server (its triggers and actions services), so it needs one: ``PREFECT_API_URL``.
Made again under the same name, it replaces the earlier one (one automation, however often this runs).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import urlparse
from uuid import UUID

from yolo_retrain import events
from yolo_retrain.errors import InvalidInput, RetrainError

AUTOMATION_NAME = "yolo-retrain-notify"
WEBHOOK_BLOCK_NAME = "yolo-retrain-webhook"
SUBJECT = "{{ event.event }}"
BODY = "{{ event.payload.summary }}"


@dataclass(frozen=True)
class Wired:
    automation_id: UUID
    block: str  # <block type slug>/<block name>
    replaced: bool


def wire(webhook: str | None = None, block: str | None = None, name: str = AUTOMATION_NAME) -> Wired:
    """Create (or replace) the automation ``name``: every event in :data:`events.NOTIFIED_EVENTS` sends a notification
    through ``block`` (``<type slug>/<name>``, saved beforehand) or a Custom Webhook block posting to ``webhook``
    (JSON ``{"text": subject + body}``, as Slack-compatible hooks expect)."""
    from prefect.client.orchestration import get_client
    from prefect.events.actions import SendNotification
    from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture
    from prefect.settings import get_current_settings

    if (webhook is None) == (block is None):
        raise InvalidInput("notify: give either --webhook URL or --block TYPE/NAME")
    if not get_current_settings().api.url:
        raise RetrainError("notify: no Prefect server configured (set PREFECT_API_URL): automations run on the server")
    block_id, block_ref = _webhook_block(webhook) if webhook is not None else _saved_block(block)
    automation = AutomationCore(
        name=name,
        description="Tells people about yolo-retrain: each retrain's outcome, suspicious corrections, approval decisions.",
        enabled=True,
        trigger=EventTrigger(
            expect=set(events.NOTIFIED_EVENTS),
            match={"prefect.resource.id": list(events.NOTIFIED_RESOURCES)},
            posture=Posture.Reactive,
            threshold=1,
            within=timedelta(0),
        ),
        actions=[SendNotification(block_document_id=block_id, subject=SUBJECT, body=BODY)],
    )
    with get_client(sync_client=True) as client:
        earlier = client.read_automations_by_name(name=name)
        for old in earlier:
            client.delete_automation(old.id)
        created = client.create_automation(automation=automation)
    return Wired(created, block_ref, bool(earlier))


def _webhook_block(url: str) -> tuple[UUID, str]:
    from prefect.blocks.notifications import CustomWebhookNotificationBlock

    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise InvalidInput(f"--webhook {url!r}: not an http(s) URL")
    hook = CustomWebhookNotificationBlock(name=WEBHOOK_BLOCK_NAME, url=url, json_data={"text": "{{subject}}\n{{body}}"})
    block_id = hook.save(WEBHOOK_BLOCK_NAME, overwrite=True)
    return block_id, f"{hook.get_block_type_slug()}/{WEBHOOK_BLOCK_NAME}"


def _saved_block(ref: str) -> tuple[UUID, str]:
    from prefect.blocks.core import Block
    from prefect.blocks.notifications import NotificationBlock

    if "/" not in ref:
        raise InvalidInput(f"--block {ref!r}: expected TYPE/NAME, e.g. slack-webhook/team (see `prefect block ls`)")
    try:
        loaded = Block.load(ref)
    except (ValueError, KeyError) as exc:
        raise InvalidInput(f"--block {ref!r}: no such block saved on the Prefect server ({exc})") from exc
    if not isinstance(loaded, NotificationBlock) or loaded._block_document_id is None:
        raise InvalidInput(f"--block {ref!r}: not a notification block (it cannot notify)")
    return loaded._block_document_id, ref
