"""/v1/webhooks: subscriptions (admin), their delivery log, and replay from a log position."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query

from api.deps import RuntimeDep, parse_id, require
from api.errors import ApiError
from api.limits import BIGINT_MAX
from api.schemas import WebhookCreate, WebhookDeliveries, WebhookOut, WebhookReplay
from ticketlog.notify.webhooks import BadSubscription, Webhook
from ticketlog.runtime import Runtime

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])
ADMIN = require()


def _webhook(runtime: Runtime, webhook_id: str) -> Webhook:
    wid = str(parse_id(webhook_id, "webhook"))
    found = runtime.webhooks.get(wid)
    if found is None:
        raise ApiError(404, "not_found", f"no webhook with id {wid}")
    return found


@router.post("", status_code=201, response_model=WebhookOut, dependencies=[ADMIN])
def create(body: WebhookCreate, runtime: RuntimeDep) -> dict[str, Any]:
    """Deliver the named event types (or `*`) recorded from now on, signed with `secret`."""
    try:
        webhook = runtime.webhooks.create(
            body.url, body.events, body.secret, body.include_personal_data, datetime.now(UTC)
        )
    except BadSubscription as e:
        raise ApiError(422, "invalid_input", str(e)) from None
    return webhook.public()


@router.get("", response_model=list[WebhookOut], dependencies=[ADMIN])
def list_webhooks(runtime: RuntimeDep) -> list[dict[str, Any]]:
    return [w.public() for w in runtime.webhooks.all()]


@router.delete("/{webhook_id}", status_code=204, dependencies=[ADMIN])
def delete(webhook_id: str, runtime: RuntimeDep) -> None:
    """Stop deliveries and destroy the stored secret; the delivery log stays."""
    webhook = _webhook(runtime, webhook_id)
    runtime.webhooks.delete(webhook.id, datetime.now(UTC))


@router.get("/{webhook_id}/deliveries", response_model=WebhookDeliveries, dependencies=[ADMIN])
def deliveries(
    webhook_id: str,
    runtime: RuntimeDep,
    after: Annotated[int, Query(ge=0, le=BIGINT_MAX)] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> dict[str, Any]:
    """Every delivery after log position `after`, with each attempt's status."""
    webhook = _webhook(runtime, webhook_id)
    return {
        "webhook_id": webhook.id,
        "items": runtime.webhooks.deliveries(webhook.id, limit, after),
    }


@router.post("/{webhook_id}/replay", response_model=WebhookReplay, dependencies=[ADMIN])
def replay(
    webhook_id: str,
    runtime: RuntimeDep,
    start: Annotated[int, Query(alias="from", ge=1, le=BIGINT_MAX)],
) -> dict[str, Any]:
    """Deliver again every subscribed event from log position `from` on (new delivery ids)."""
    webhook = _webhook(runtime, webhook_id)
    runtime.webhooks.enqueue(webhook, datetime.now(UTC))
    current = runtime.webhooks.get(webhook.id)
    assert current is not None
    queued = runtime.webhooks.replay(current, start, datetime.now(UTC))
    return {"webhook_id": webhook.id, "from": start, "queued": queued}
