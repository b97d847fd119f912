"""Alert intake from the ecosystem: Prometheus Alertmanager (webhook payload version 4) and
Grafana alerting. Firing alerts open incidents (or repeat the open one with the same
fingerprint); resolved alerts resolve them. Bearer token, role responder or higher."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from fastapi import APIRouter

from api.deps import Principal, Responder, StoreDep
from api.intake_schemas import (
    AlertmanagerPayload,
    GrafanaPayload,
    WebhookAlert,
    WebhookOutcome,
    WebhookResult,
)
from connectors.intake_store import resolve_by_fingerprint
from connectors.store import Store
from incidents.alerts import (
    AlertSource,
    AlertStatus,
    alert_event,
    alert_fingerprint,
    resolution_text,
)

router = APIRouter(prefix="/api/v1/webhooks", tags=["webhooks"])


def receive(
    store: Store,
    principal: Principal,
    source: AlertSource,
    alerts: Iterable[WebhookAlert],
    context: dict[str, Any],
) -> WebhookResult:
    """Apply each alert in order (each in its own transaction) and say what happened to it."""
    items: list[WebhookOutcome] = []
    for raw in alerts:
        alert = raw.to_domain()
        fp = alert_fingerprint(source, principal.tenant, alert)
        if alert.status is AlertStatus.FIRING:
            event = alert_event(source, principal.tenant, alert, context)
            incident, created = store.create_incident(
                event, tenant=principal.tenant, actor=principal.username
            )
            action = "opened" if created else "repeated"
            items.append(
                WebhookOutcome(
                    fingerprint=fp, status=alert.status, action=action, incident_id=incident.id
                )
            )
            continue
        resolved = resolve_by_fingerprint(
            store,
            principal.tenant,
            fp,
            actor=principal.username,
            resolution=resolution_text(source, alert),
        )
        items.append(
            WebhookOutcome(
                fingerprint=fp,
                status=alert.status,
                action="resolved" if resolved is not None else "not_open",
                incident_id=resolved.id if resolved is not None else None,
            )
        )
    return WebhookResult(received=len(items), items=items)


@router.post("/alertmanager")
def alertmanager_webhook(
    body: AlertmanagerPayload, principal: Responder, store: StoreDep
) -> WebhookResult:
    """Alertmanager's ``webhook_config`` receiver (set ``send_resolved: true``, the default)."""
    return receive(store, principal, AlertSource.ALERTMANAGER, body.alerts, body.context())


@router.post("/grafana")
def grafana_webhook(body: GrafanaPayload, principal: Responder, store: StoreDep) -> WebhookResult:
    """Grafana alerting's webhook contact point."""
    return receive(store, principal, AlertSource.GRAFANA, body.alerts, body.context())
