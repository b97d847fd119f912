"""Automation rules and their actions: the pure part (no I/O).

A rule is a condition (``incidents.policy``) and a list of actions. An action is either a
concrete action (webhook, Slack, e-mail, escalate, remediate) or the *name* of a configured
action definition (the seed's ``restart_service``, ``notify_dba``, ``create_incident``), which
``plan_actions`` expands from configuration (``AUTOMATION_ACTIONS``) when the rule fires.

Firing: a rule fires once per incident — at the first change of the incident at which its
condition holds — and, with ``fire_on_repeat``, again at every repeat of the (deduplicated)
incident at which it holds. ``firing_key`` turns that into a unique key per (rule, incident) that
the store records, so two workers or a replayed event cannot fire a rule twice.

Executing actions is I/O and lives in ``connectors.automation_actions``; ``ActionExecutor`` is the
interface an executor implements, so escalation and remediation can plug in later.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage
from enum import StrEnum
from functools import lru_cache
from typing import Any, Protocol
from urllib.parse import urlsplit

from incidents.policy import Condition, compile_condition, incident_view
from incidents.records import Incident, TimelineType

MAX_ACTIONS = 20
MAX_HEADERS = 20
MAX_RECIPIENTS = 50
HTTP_METHODS = ("POST", "PUT", "PATCH")
SEED_ACTION_NAMES = ("restart_service", "notify_dba", "create_incident")
"""The seed's named actions: always accepted in rules; they run as configured in
``AUTOMATION_ACTIONS``, and as ``not_configured`` while they have no definition."""

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z\-]{1,64}$")
_EMAIL = re.compile(r"^[^@\s<>,;\"]{1,64}@[^@\s<>,;\"]{1,255}$")
_HOP_BY_HOP = frozenset({"host", "content-length", "transfer-encoding", "connection"})

TRIGGERING_TYPES: frozenset[TimelineType] = frozenset(
    {
        TimelineType.CREATED,
        TimelineType.REPEATED,
        TimelineType.SCORE_UPDATED,
        TimelineType.EDITED,
        TimelineType.ACKNOWLEDGED,
        TimelineType.RESOLVED,
        TimelineType.REOPENED,
    }
)
"""Timeline entries after which rules are evaluated (not the automation's own entries)."""

FIRST_FIRING = "first"


class ActionError(ValueError):
    """An action definition that is not valid (unknown type, bad URL, missing field …)."""


class ActionType(StrEnum):
    WEBHOOK = "webhook"
    SLACK = "slack"
    EMAIL = "email"
    ESCALATE = "escalate"
    REMEDIATE = "remediate"


class ActionOutcome(StrEnum):
    OK = "ok"
    ERROR = "error"
    NOT_CONFIGURED = "not_configured"
    PENDING_APPROVAL = "pending_approval"
    """A remediation waits for a responder; its run's own outcome is recorded when it runs."""
    DRY_RUN = "dry_run"
    """A remediation was planned and validated, nothing ran."""


def _http_url(url: object, what: str) -> str:
    if not isinstance(url, str) or not url.strip():
        raise ActionError(f"{what} needs a 'url'")
    url = url.strip()
    if len(url) > 2048:
        raise ActionError(f"{what}: the url is longer than 2048 characters")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ActionError(f"{what}: the url must be http:// or https:// with a host, got {url!r}")
    return url


@dataclass(frozen=True, slots=True)
class WebhookAction:
    """POST (or PUT/PATCH) the incident as JSON to ``url``."""

    url: str
    method: str = "POST"
    headers: tuple[tuple[str, str], ...] = ()
    type: ActionType = field(default=ActionType.WEBHOOK, init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "url", _http_url(self.url, "webhook"))
        method = str(self.method).upper()
        if method not in HTTP_METHODS:
            raise ActionError(f"webhook method must be one of {', '.join(HTTP_METHODS)}")
        object.__setattr__(self, "method", method)
        headers = tuple((str(k), str(v)) for k, v in dict(self.headers).items())
        if len(headers) > MAX_HEADERS:
            raise ActionError(f"a webhook may set at most {MAX_HEADERS} headers")
        for name, value in headers:
            if not _HEADER_NAME.match(name) or name.lower() in _HOP_BY_HOP:
                raise ActionError(f"webhook header name {name!r} is not allowed")
            if any(c in value for c in "\r\n\x00") or len(value) > 4096:
                raise ActionError(f"webhook header {name!r} has a value that is not allowed")
        object.__setattr__(self, "headers", headers)


@dataclass(frozen=True, slots=True)
class SlackAction:
    """A Slack-compatible incoming-webhook message (``text`` + ``blocks``)."""

    url: str
    channel: str | None = None
    type: ActionType = field(default=ActionType.SLACK, init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "url", _http_url(self.url, "slack"))
        if self.channel is not None and (not self.channel.strip() or len(self.channel) > 128):
            raise ActionError("slack channel must be 1 to 128 characters")


@dataclass(frozen=True, slots=True)
class EmailAction:
    """An e-mail over SMTP (``SMTP_*`` settings) to ``to``."""

    to: tuple[str, ...]
    subject: str | None = None
    type: ActionType = field(default=ActionType.EMAIL, init=False)

    def __post_init__(self) -> None:
        if isinstance(self.to, str):
            raise ActionError("email 'to' must be a list of addresses")
        recipients = tuple(str(a).strip() for a in self.to)
        if not recipients or len(recipients) > MAX_RECIPIENTS:
            raise ActionError(f"email needs 1 to {MAX_RECIPIENTS} addresses in 'to'")
        for address in recipients:
            if not _EMAIL.match(address):
                raise ActionError(f"{address!r} is not an e-mail address")
        object.__setattr__(self, "to", recipients)
        if self.subject is not None and (
            len(self.subject) > 200 or any(c in self.subject for c in "\r\n")
        ):
            raise ActionError("email subject must be one line of at most 200 characters")


@dataclass(frozen=True, slots=True)
class EscalateAction:
    """Start the named escalation policy (executed once escalation exists)."""

    policy: str
    type: ActionType = field(default=ActionType.ESCALATE, init=False)

    def __post_init__(self) -> None:
        if not isinstance(self.policy, str) or not _NAME.match(self.policy):
            raise ActionError("escalate needs a 'policy' name (letters, digits, _ . -)")


@dataclass(frozen=True, slots=True)
class RemediateAction:
    """Run the named remediation (executed once remediation exists)."""

    remediation: str
    type: ActionType = field(default=ActionType.REMEDIATE, init=False)

    def __post_init__(self) -> None:
        if not isinstance(self.remediation, str) or not _NAME.match(self.remediation):
            raise ActionError("remediate needs a 'remediation' name (letters, digits, _ . -)")


Action = WebhookAction | SlackAction | EmailAction | EscalateAction | RemediateAction


@dataclass(frozen=True, slots=True)
class NamedAction:
    """A reference to a configured action definition, e.g. ``"notify_dba"``."""

    name: str

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise ActionError(f"{self.name!r} is not an action name")


ActionSpec = Action | NamedAction


def parse_action(raw: object) -> ActionSpec:
    """One action of a rule from JSON: a name (string) or an object with a ``type``."""
    if isinstance(raw, str):
        return NamedAction(raw)
    if not isinstance(raw, Mapping):
        raise ActionError("an action is a name or an object with a 'type'")
    body = dict(raw)
    kind = body.pop("type", None)
    try:
        action_type = ActionType(kind)
    except ValueError:
        known = ", ".join(t.value for t in ActionType)
        raise ActionError(f"unknown action type {kind!r} (known: {known})") from None
    allowed = {
        ActionType.WEBHOOK: {"url", "method", "headers"},
        ActionType.SLACK: {"url", "channel"},
        ActionType.EMAIL: {"to", "subject"},
        ActionType.ESCALATE: {"policy"},
        ActionType.REMEDIATE: {"remediation"},
    }[action_type]
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise ActionError(f"{action_type} action does not take {', '.join(unknown)}")
    try:
        if action_type is ActionType.WEBHOOK:
            headers = body.get("headers") or {}
            if not isinstance(headers, Mapping):
                raise ActionError("webhook headers must be an object")
            return WebhookAction(
                url=body.get("url"),  # type: ignore[arg-type]
                method=body.get("method") or "POST",
                headers=tuple(headers.items()),
            )
        if action_type is ActionType.SLACK:
            return SlackAction(url=body.get("url"), channel=body.get("channel"))  # type: ignore[arg-type]
        if action_type is ActionType.EMAIL:
            to = body.get("to")
            if not isinstance(to, list | tuple):
                raise ActionError("email 'to' must be a list of addresses")
            return EmailAction(to=tuple(to), subject=body.get("subject"))
        if action_type is ActionType.ESCALATE:
            return EscalateAction(policy=body.get("policy"))  # type: ignore[arg-type]
        return RemediateAction(remediation=body.get("remediation"))  # type: ignore[arg-type]
    except TypeError as exc:
        raise ActionError(f"{action_type} action: {exc}") from None


SecretTransform = Callable[[str, str], str]
"""``(field, text) -> text``: applied to each secret field of a stored action."""


def map_action_secrets(raw: Any, transform: SecretTransform) -> Any:
    """A stored action (``action_to_json``) with ``transform`` applied to its secrets: a
    webhook's header values (tokens) and a Slack incoming-webhook URL (the URL is the token)."""
    if not isinstance(raw, Mapping):
        return raw
    out = dict(raw)
    if out.get("type") == "webhook" and isinstance(out.get("headers"), Mapping):
        out["headers"] = {k: transform("header", str(v)) for k, v in out["headers"].items()}
    elif out.get("type") == "slack" and isinstance(out.get("url"), str):
        out["url"] = transform("url", out["url"])
    return out


def action_to_json(spec: ActionSpec) -> str | dict[str, Any]:
    """Inverse of ``parse_action`` (what is stored and shown)."""
    if isinstance(spec, NamedAction):
        return spec.name
    if isinstance(spec, WebhookAction):
        return {
            "type": "webhook",
            "url": spec.url,
            "method": spec.method,
            "headers": dict(spec.headers),
        }
    if isinstance(spec, SlackAction):
        out: dict[str, Any] = {"type": "slack", "url": spec.url}
        if spec.channel is not None:
            out["channel"] = spec.channel
        return out
    if isinstance(spec, EmailAction):
        email: dict[str, Any] = {"type": "email", "to": list(spec.to)}
        if spec.subject is not None:
            email["subject"] = spec.subject
        return email
    if isinstance(spec, EscalateAction):
        return {"type": "escalate", "policy": spec.policy}
    return {"type": "remediate", "remediation": spec.remediation}


def parse_named_actions(raw: Mapping[str, Any]) -> dict[str, Action]:
    """``AUTOMATION_ACTIONS``: ``{"notify_dba": {"type": "email", "to": [...]}, …}``."""
    named: dict[str, Action] = {}
    for name, body in raw.items():
        NamedAction(name)  # validates the name
        spec = parse_action(body)
        if isinstance(spec, NamedAction):
            raise ActionError(f"action {name!r} must be defined by an object, not another name")
        named[name] = spec
    return named


def known_action_names(named: Mapping[str, Action]) -> frozenset[str]:
    return frozenset(SEED_ACTION_NAMES) | frozenset(named)


def check_action_names(specs: Iterable[ActionSpec], named: Mapping[str, Action]) -> None:
    """Refuse names that are neither the seed's nor configured (a typo would never run)."""
    known = known_action_names(named)
    for spec in specs:
        if isinstance(spec, NamedAction) and spec.name not in known:
            raise ActionError(
                f"unknown named action {spec.name!r} (known: {', '.join(sorted(known))}; "
                "define more in AUTOMATION_ACTIONS)"
            )


# --- rules ----------------------------------------------------------------------------------


@lru_cache(maxsize=1024)
def compiled_condition(text: str) -> Condition:
    """Conditions are compiled once per text (rules are re-read from the store on each pass)."""
    return compile_condition(text)


@dataclass(frozen=True, slots=True)
class AutomationRule:
    id: str
    tenant: str
    name: str
    condition: str
    actions: tuple[ActionSpec, ...]
    enabled: bool = True
    fire_on_repeat: bool = False
    created_at: datetime | None = None
    updated_at: datetime | None = None
    created_by: str | None = None

    @property
    def compiled(self) -> Condition:
        return compiled_condition(self.condition)


def validate_rule_parts(
    condition: str, actions: Sequence[object], named: Mapping[str, Action]
) -> tuple[Condition, tuple[ActionSpec, ...]]:
    """Compile the condition and parse the actions; raise ``ConditionError``/``ActionError``."""
    compiled = compile_condition(condition)
    if not actions:
        raise ActionError("a rule needs at least one action")
    if len(actions) > MAX_ACTIONS:
        raise ActionError(f"a rule may have at most {MAX_ACTIONS} actions")
    specs = tuple(a if isinstance(a, ActionSpec) else parse_action(a) for a in actions)
    check_action_names(specs, named)
    return compiled, specs


def is_silenced(incident: Incident) -> bool:
    """Silenced incidents (``metadata.silenced`` is true) fire no actions."""
    return incident.metadata.get("silenced") is True


def firing_key(
    rule: AutomationRule, event_type: TimelineType, event_id: int, fired: bool
) -> str | None:
    """The key of this firing, or ``None`` when the rule must not fire (again).

    ``fired``: the rule has fired for this incident before.
    """
    if not fired:
        return FIRST_FIRING
    if rule.fire_on_repeat and event_type is TimelineType.REPEATED:
        return f"repeat:{event_id}"
    return None


@dataclass(frozen=True, slots=True)
class Firing:
    rule: AutomationRule
    key: str


def rules_to_fire(
    rules: Iterable[AutomationRule],
    incident: Incident,
    event_type: TimelineType,
    event_id: int,
    fired_rule_ids: frozenset[str] | set[str],
) -> list[Firing]:
    """The enabled rules of the incident's tenant that fire on this change of the incident."""
    if event_type not in TRIGGERING_TYPES or is_silenced(incident):
        return []
    view = incident_view(incident)
    firings = []
    for rule in rules:
        if not rule.enabled or rule.tenant != incident.tenant:
            continue
        key = firing_key(rule, event_type, event_id, rule.id in fired_rule_ids)
        if key is not None and rule.compiled.matches(view):
            firings.append(Firing(rule, key))
    return firings


@dataclass(frozen=True, slots=True)
class PlannedAction:
    """One action to run for a firing; ``action`` is None for a name with no definition."""

    action: Action | None
    name: str | None = None

    @property
    def type(self) -> str:
        return str(self.action.type) if self.action is not None else "named"

    def describe(self) -> dict[str, Any]:
        """For the timeline: what will run, without secrets (no URL path, no header values)."""
        out: dict[str, Any] = {"type": self.type}
        if self.name is not None:
            out["name"] = self.name
        if self.action is not None:
            out.update(action_target(self.action))
        return out


def plan_actions(rule: AutomationRule, named: Mapping[str, Action]) -> list[PlannedAction]:
    """Concrete actions of a firing, named ones expanded from the configured definitions."""
    planned = []
    for spec in rule.actions:
        if isinstance(spec, NamedAction):
            planned.append(PlannedAction(named.get(spec.name), spec.name))
        else:
            planned.append(PlannedAction(spec))
    return planned


def action_target(action: Action) -> dict[str, Any]:
    """Where an action goes, safe to show: scheme and host of URLs (Slack webhook URLs carry
    their secret in the path), recipients of e-mails, names of policies and remediations."""
    if isinstance(action, WebhookAction | SlackAction):
        parts = urlsplit(action.url)
        port = f":{parts.port}" if parts.port else ""
        return {"target": f"{parts.scheme}://{parts.hostname}{port}"}
    if isinstance(action, EmailAction):
        return {"target": list(action.to)}
    if isinstance(action, EscalateAction):
        return {"target": action.policy}
    return {"target": action.remediation}


@dataclass(frozen=True, slots=True)
class ActionResult:
    outcome: ActionOutcome
    status_code: int | None = None
    error: str | None = None
    duration_ms: float | None = None

    @classmethod
    def ok(cls, status_code: int | None = None) -> ActionResult:
        return cls(ActionOutcome.OK, status_code)

    @classmethod
    def failed(cls, error: str, status_code: int | None = None) -> ActionResult:
        return cls(ActionOutcome.ERROR, status_code, error[:500])

    @classmethod
    def not_configured(cls, reason: str) -> ActionResult:
        return cls(ActionOutcome.NOT_CONFIGURED, None, reason[:500])


class ActionExecutor(Protocol):
    """Runs one concrete action for a firing; returns a result and never raises for a failed
    delivery (the dispatcher turns an exception into an ``error`` result anyway)."""

    def __call__(
        self, action: Action, incident: Incident, rule: AutomationRule
    ) -> ActionResult: ...


# --- payloads -------------------------------------------------------------------------------


def incident_document(incident: Incident) -> dict[str, Any]:
    """The incident as JSON-ready values (what webhooks receive)."""
    return {
        "id": incident.id,
        "tenant": incident.tenant,
        "fingerprint": incident.fingerprint,
        "title": incident.title,
        "description": incident.description,
        "severity": str(incident.severity),
        "category": str(incident.category),
        "status": str(incident.status),
        "kind": str(incident.kind),
        "source": incident.source,
        "series": incident.series,
        "metadata": json.loads(json.dumps(incident.metadata, default=str)),
        "tags": list(incident.tags),
        "score": incident.score,
        "peak_score": incident.peak_score,
        "repeat_count": incident.repeat_count,
        "first_seen": incident.first_seen.isoformat(),
        "last_seen": incident.last_seen.isoformat(),
        "created_at": incident.created_at.isoformat(),
    }


def webhook_payload(incident: Incident, rule: AutomationRule) -> dict[str, Any]:
    return {
        "event": "automation.rule_fired",
        "rule": {"id": rule.id, "name": rule.name, "condition": rule.condition},
        "incident": incident_document(incident),
    }


def summary_line(incident: Incident) -> str:
    severity = str(incident.severity).upper()
    return f"[{severity}] {incident.title} ({incident.category}, {incident.status})"


def slack_payload(incident: Incident, rule: AutomationRule, channel: str | None) -> dict[str, Any]:
    """An incoming-webhook message: ``text`` for notifications, ``blocks`` for the layout."""
    text = f"{summary_line(incident)} — rule '{rule.name}'"
    fields = [
        {"type": "mrkdwn", "text": f"*Severity*\n{incident.severity}"},
        {"type": "mrkdwn", "text": f"*Category*\n{incident.category}"},
        {"type": "mrkdwn", "text": f"*Status*\n{incident.status}"},
        {"type": "mrkdwn", "text": f"*Source*\n{incident.source}"},
    ]
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": incident.title[:150]}},
        {"type": "section", "fields": fields},
    ]
    if incident.description:
        blocks.append(
            {"type": "section", "text": {"type": "mrkdwn", "text": incident.description[:2900]}}
        )
    blocks.append(
        {
            "type": "context",
            "elements": [
                {"type": "mrkdwn", "text": f"incident `{incident.id}` · rule `{rule.name}`"}
            ],
        }
    )
    payload: dict[str, Any] = {"text": text, "blocks": blocks}
    if channel:
        payload["channel"] = channel
    return payload


def email_message(
    incident: Incident, rule: AutomationRule, action: EmailAction, sender: str
) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = ", ".join(action.to)
    message["Subject"] = action.subject or summary_line(incident)
    lines = [
        summary_line(incident),
        "",
        incident.description,
        "",
        f"incident:  {incident.id}",
        f"severity:  {incident.severity}",
        f"category:  {incident.category}",
        f"status:    {incident.status}",
        f"source:    {incident.source}",
        f"first seen {incident.first_seen.isoformat()}",
        f"rule:      {rule.name} ({rule.condition})",
    ]
    message.set_content("\n".join(lines))
    return message
