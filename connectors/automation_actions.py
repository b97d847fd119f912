"""Executing automated actions: HTTP webhooks, Slack incoming webhooks, e-mail over SMTP.

``ActionDispatcher`` maps an action type to an executor (``incidents.automation.ActionExecutor``)
— the extension point: escalation and remediation register their executors here later; until
then ``escalate`` and ``remediate`` actions are recorded as ``not_configured``.

Every delivery has a timeout (``AUTOMATION_ACTION_TIMEOUT_SECONDS``); redirects are not followed.
The dispatcher turns any exception into an ``error`` result, so a broken target never stops the
engine. Error messages name the exception type and status, never the URL (it may carry a token).
"""

from __future__ import annotations

import logging
import smtplib
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace

import httpx

from incidents import __version__
from incidents.automation import (
    Action,
    ActionExecutor,
    ActionResult,
    ActionType,
    AutomationRule,
    EmailAction,
    PlannedAction,
    SlackAction,
    WebhookAction,
    email_message,
    slack_payload,
    webhook_payload,
)
from incidents.config import Settings
from incidents.records import Incident

log = logging.getLogger(__name__)

USER_AGENT = f"incidents-automation/{__version__}"


def _http_result(response: httpx.Response) -> ActionResult:
    if response.is_success:
        return ActionResult.ok(response.status_code)
    return ActionResult.failed(
        f"HTTP {response.status_code} {response.reason_phrase}".strip(), response.status_code
    )


def _wrong_type(action: Action, expected: ActionType) -> ActionResult:
    return ActionResult.failed(f"a {action.type} action was sent to the {expected} executor")


class HttpExecutor:
    """Webhook and Slack deliveries over one ``httpx.Client`` (thread-safe, pooled)."""

    def __init__(self, timeout_s: float, client: httpx.Client | None = None) -> None:
        self.client = client or httpx.Client(
            timeout=httpx.Timeout(timeout_s),
            follow_redirects=False,
            headers={"User-Agent": USER_AGENT},
        )

    def webhook(self, action: Action, incident: Incident, rule: AutomationRule) -> ActionResult:
        if not isinstance(action, WebhookAction):
            return _wrong_type(action, ActionType.WEBHOOK)
        response = self.client.request(
            action.method,
            action.url,
            json=webhook_payload(incident, rule),
            headers=dict(action.headers),
        )
        return _http_result(response)

    def slack(self, action: Action, incident: Incident, rule: AutomationRule) -> ActionResult:
        if not isinstance(action, SlackAction):
            return _wrong_type(action, ActionType.SLACK)
        response = self.client.post(action.url, json=slack_payload(incident, rule, action.channel))
        return _http_result(response)

    def close(self) -> None:
        self.client.close()


@dataclass(frozen=True)
class SmtpConfig:
    host: str | None
    port: int
    user: str | None
    password: str | None
    sender: str
    starttls: bool
    timeout_s: float

    @classmethod
    def from_settings(cls, settings: Settings) -> SmtpConfig:
        password = settings.smtp_password.get_secret_value() if settings.smtp_password else None
        return cls(
            host=settings.smtp_host,
            port=settings.smtp_port,
            user=settings.smtp_user,
            password=password,
            sender=settings.smtp_from,
            starttls=settings.smtp_starttls,
            timeout_s=settings.automation_action_timeout_seconds,
        )

    def __repr__(self) -> str:  # keep the password out of logs
        return f"SmtpConfig(host={self.host!r}, port={self.port}, user={self.user!r})"


class EmailExecutor:
    """One SMTP session per message: STARTTLS when configured, login when a user is set."""

    def __init__(self, config: SmtpConfig) -> None:
        self.config = config

    def __call__(self, action: Action, incident: Incident, rule: AutomationRule) -> ActionResult:
        if not isinstance(action, EmailAction):
            return _wrong_type(action, ActionType.EMAIL)
        config = self.config
        if not config.host:
            return ActionResult.not_configured("SMTP_HOST is not set")
        message = email_message(incident, rule, action, config.sender)
        with smtplib.SMTP(config.host, config.port, timeout=config.timeout_s) as smtp:
            if config.starttls:
                smtp.starttls(context=ssl.create_default_context())
            if config.user:
                smtp.login(config.user, config.password or "")
            refused = smtp.send_message(message)
        if refused:
            return ActionResult.failed(f"recipients refused: {', '.join(sorted(refused))}")
        return ActionResult.ok()


def not_configured(what: str) -> ActionExecutor:
    """An executor for an action type that has none yet: records ``not_configured``."""

    def execute(action: Action, incident: Incident, rule: AutomationRule) -> ActionResult:
        return ActionResult.not_configured(f"{what} is not configured yet")

    return execute


class ActionDispatcher:
    """Action type -> executor. ``run`` never raises."""

    def __init__(self, executors: Mapping[ActionType, ActionExecutor] | None = None) -> None:
        self.executors: dict[ActionType, ActionExecutor] = dict(executors or {})
        self._closers: list[HttpExecutor] = []

    def register(self, action_type: ActionType, executor: ActionExecutor) -> None:
        self.executors[ActionType(action_type)] = executor

    def run(self, planned: PlannedAction, incident: Incident, rule: AutomationRule) -> ActionResult:
        started = time.perf_counter()
        result = self._run(planned, incident, rule)
        return replace(result, duration_ms=round((time.perf_counter() - started) * 1000, 3))

    def _run(
        self, planned: PlannedAction, incident: Incident, rule: AutomationRule
    ) -> ActionResult:
        if planned.action is None:
            return ActionResult.not_configured(
                f"named action {planned.name!r} has no definition in AUTOMATION_ACTIONS"
            )
        executor = self.executors.get(planned.action.type)
        if executor is None:
            return ActionResult.not_configured(f"no executor for {planned.action.type} actions")
        try:
            return executor(planned.action, incident, rule)
        except httpx.TimeoutException as exc:
            return ActionResult.failed(f"timed out ({type(exc).__name__})")
        except httpx.HTTPError as exc:
            return ActionResult.failed(f"HTTP request failed ({type(exc).__name__})")
        except smtplib.SMTPResponseException as exc:
            return ActionResult.failed(f"SMTP error {exc.smtp_code}", exc.smtp_code)
        except (smtplib.SMTPException, OSError) as exc:
            return ActionResult.failed(f"SMTP delivery failed ({type(exc).__name__}: {exc})")
        except Exception as exc:  # an executor's bug must not stop the engine
            log.exception("action executor for %s failed", planned.action.type)
            return ActionResult.failed(f"executor failed ({type(exc).__name__})")

    def close(self) -> None:
        for closer in self._closers:
            closer.close()

    @classmethod
    def from_settings(cls, settings: Settings) -> ActionDispatcher:
        http = HttpExecutor(settings.automation_action_timeout_seconds)
        dispatcher = cls(
            {
                ActionType.WEBHOOK: http.webhook,
                ActionType.SLACK: http.slack,
                ActionType.EMAIL: EmailExecutor(SmtpConfig.from_settings(settings)),
                ActionType.ESCALATE: not_configured("escalation"),
                ActionType.REMEDIATE: not_configured("remediation"),
            }
        )
        dispatcher._closers.append(http)
        return dispatcher
