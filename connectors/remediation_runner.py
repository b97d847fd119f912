"""Running remediations: commands without a shell, HTTP calls, retries, and the service that
ties planning (``incidents.remediation``), the breaker and the runs' store together.

Commands run as an argv list (never a shell) with a minimal environment (``PATH`` and ``LANG``
only: no secrets of this process leak into them), stdin closed, in their own process group — on
timeout the whole group is killed — with stdout and stderr captured together and truncated.
HTTP calls do not follow redirects. Error messages name the exception type, never the URL (it
may carry a token).

``Remediator.execute_action`` is the automation engine's executor for ``remediate`` actions
(``ActionDispatcher.register(ActionType.REMEDIATE, …)``), so a rule runs a remediation through
the same code path as ``POST /api/v1/incidents/{id}/remediate``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime

import httpx

from connectors.remediation_store import RemediationStore
from connectors.store import Store
from incidents import __version__
from incidents.automation import (
    Action,
    ActionOutcome,
    ActionResult,
    AutomationRule,
    RemediateAction,
)
from incidents.records import Incident, utc_now
from incidents.remediation import (
    CommandPlan,
    Execution,
    HttpPlan,
    Plan,
    Remediation,
    RemediationRun,
    RunState,
    TemplateError,
    backoff_seconds,
    initial_state,
    plan_run,
    truncate_output,
)

log = logging.getLogger(__name__)

COMMAND_ENVIRONMENT = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}
USER_AGENT = f"incidents-remediation/{__version__}"


@dataclass(frozen=True, slots=True)
class Attempt:
    succeeded: bool
    exit_code: int | None = None
    status_code: int | None = None
    output: str = ""
    error: str | None = None


class CommandRunner:
    def __init__(self, environment: Mapping[str, str] | None = None) -> None:
        self.environment = dict(environment if environment is not None else COMMAND_ENVIRONMENT)

    def __call__(self, plan: CommandPlan, timeout_s: float) -> Attempt:
        # argv list, no shell; the executable is on the configured allow-list and every
        # substituted argument passed incidents.remediation.check_value.
        process = subprocess.Popen(  # nosec B603
            list(plan.argv),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=self.environment,
            cwd="/",
            start_new_session=True,
            close_fds=True,
        )
        try:
            out, _ = process.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _kill_group(process)
            out, _ = process.communicate()
            return Attempt(
                False,
                exit_code=None,
                output=truncate_output(out.decode("utf-8", "replace")),
                error=f"timed out after {timeout_s:g} s",
            )
        text = truncate_output(out.decode("utf-8", "replace"))
        if process.returncode == 0:
            return Attempt(True, exit_code=0, output=text)
        return Attempt(
            False,
            exit_code=process.returncode,
            output=text,
            error=f"exit code {process.returncode}",
        )


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


class HttpRunner:
    def __init__(self, client: httpx.Client | None = None) -> None:
        self.client = client or httpx.Client(
            follow_redirects=False, headers={"User-Agent": USER_AGENT}
        )

    def __call__(self, plan: HttpPlan, timeout_s: float) -> Attempt:
        try:
            response = self.client.request(
                plan.method,
                plan.url,
                headers=dict(plan.headers),
                json=plan.body,
                timeout=httpx.Timeout(timeout_s),
            )
        except httpx.TimeoutException as exc:
            return Attempt(False, error=f"timed out ({type(exc).__name__})")
        except httpx.HTTPError as exc:
            return Attempt(False, error=f"HTTP request failed ({type(exc).__name__})")
        output = truncate_output(response.text)
        if response.is_success:
            return Attempt(True, status_code=response.status_code, output=output)
        return Attempt(
            False,
            status_code=response.status_code,
            output=output,
            error=f"HTTP {response.status_code} {response.reason_phrase}".strip(),
        )

    def close(self) -> None:
        self.client.close()


def execute(
    remediation: Remediation,
    plan: Plan,
    *,
    commands: Callable[[CommandPlan, float], Attempt],
    http: Callable[[HttpPlan, float], Attempt],
    sleep: Callable[[float], None] = time.sleep,
) -> Execution:
    """Run ``plan`` once and up to ``retries`` more times until it succeeds."""
    started = time.perf_counter()
    attempt = Attempt(False, error="not run")
    attempts = 0
    for attempts in range(1, remediation.retries + 2):
        if attempts > 1:
            sleep(backoff_seconds(remediation, attempts - 1))
        if isinstance(plan, CommandPlan):
            attempt = commands(plan, remediation.timeout_seconds)
        else:
            attempt = http(plan, remediation.timeout_seconds)
        if attempt.succeeded:
            break
    return Execution(
        succeeded=attempt.succeeded,
        attempts=attempts,
        exit_code=attempt.exit_code,
        status_code=attempt.status_code,
        output=attempt.output,
        error=attempt.error,
        duration_ms=round((time.perf_counter() - started) * 1000, 3),
    )


class UnknownRemediation(LookupError):
    pass


class RunNotFound(LookupError):
    pass


class RunNotPending(ValueError):
    pass


class Remediator:
    """Requests, approvals and execution of remediation runs."""

    def __init__(
        self,
        store: Store,
        remediations: Mapping[str, Remediation],
        *,
        clock: Callable[[], datetime] = utc_now,
        sleep: Callable[[float], None] = time.sleep,
        commands: Callable[[CommandPlan, float], Attempt] | None = None,
        http: HttpRunner | None = None,
    ) -> None:
        self.store = store
        self.runs = RemediationStore(store)
        self.remediations = dict(remediations)
        self.clock = clock
        self.sleep = sleep
        self.commands = commands or CommandRunner()
        self.http = http or HttpRunner()

    def close(self) -> None:
        self.http.close()

    def get(self, name: str) -> Remediation:
        remediation = self.remediations.get(name)
        if remediation is None:
            known = ", ".join(sorted(self.remediations)) or "none configured"
            raise UnknownRemediation(f"no remediation named {name!r} (known: {known})")
        return remediation

    def request(
        self,
        incident: Incident,
        name: str,
        *,
        actor: str,
        dry_run: bool | None = None,
        rule_id: str | None = None,
        record_result: bool = True,
    ) -> RemediationRun:
        """Validate, check the breaker, and run now (or wait for approval, or only plan).

        ``dry_run`` can make a run dry, never make a configured dry run real.
        """
        remediation = self.get(name)
        dry = remediation.dry_run or bool(dry_run)
        now = self.clock()
        try:
            plan = plan_run(remediation, incident)
        except TemplateError as exc:
            return self.runs.open_run(
                incident,
                remediation,
                state=RunState.INVALID,
                actor=actor,
                now=now,
                dry_run=dry,
                plan=None,
                rule_id=rule_id,
                reason=f"refused: {exc}",
                record_result=record_result,
            )
        run = self.runs.open_run(
            incident,
            remediation,
            state=initial_state(remediation, dry),
            actor=actor,
            now=now,
            dry_run=dry,
            plan=plan.describe(),
            rule_id=rule_id,
            record_result=record_result,
        )
        if run.state is not RunState.RUNNING:
            return run
        return self._execute(run, remediation, plan, record_result)

    def approve(self, tenant: str, run_id: str, *, actor: str) -> RemediationRun:
        """Approve a pending run and run it (planned again with the incident as it is now)."""
        decided = self.runs.decide(tenant, run_id, approve=True, actor=actor, now=self.clock())
        if decided is None:
            raise self._not_pending(tenant, run_id)
        remediation = self.remediations.get(decided.remediation)
        incident = self.store.get_incident(tenant, decided.incident_id)
        if remediation is None or incident is None:
            what = (
                "remediation is no longer configured" if remediation is None else "incident is gone"
            )
            return self.runs.refuse(decided, reason=f"refused: the {what}", now=self.clock())
        try:
            plan = plan_run(remediation, incident)
        except TemplateError as exc:
            return self.runs.refuse(decided, reason=f"refused: {exc}", now=self.clock())
        started = self.runs.start(decided, now=self.clock(), plan=plan.describe())
        if started is None:  # cannot happen: only the approver moves an approved run
            raise RunNotPending(f"run {run_id} was started by someone else")
        return self._execute(started, remediation, plan, record_result=True)

    def reject(
        self, tenant: str, run_id: str, *, actor: str, reason: str | None = None
    ) -> RemediationRun:
        decided = self.runs.decide(
            tenant, run_id, approve=False, actor=actor, now=self.clock(), reason=reason
        )
        if decided is None:
            raise self._not_pending(tenant, run_id)
        return decided

    def _not_pending(self, tenant: str, run_id: str) -> LookupError | ValueError:
        run = self.runs.get_run(tenant, run_id)
        if run is None:
            return RunNotFound(f"remediation run {run_id} not found")
        return RunNotPending(f"remediation run {run_id} is {run.state}, not pending_approval")

    def _execute(
        self, run: RemediationRun, remediation: Remediation, plan: Plan, record_result: bool
    ) -> RemediationRun:
        try:
            result = execute(
                remediation, plan, commands=self.commands, http=self.http, sleep=self.sleep
            )
        except Exception as exc:  # e.g. the executable vanished: the run fails, recorded
            log.exception("remediation %s failed to start", remediation.name)
            result = Execution(False, 1, error=f"could not run ({type(exc).__name__})")
        return self.runs.finish(
            run,
            succeeded=result.succeeded,
            attempts=result.attempts,
            now=self.clock(),
            exit_code=result.exit_code,
            status_code=result.status_code,
            output=result.output,
            reason=result.error,
            duration_ms=result.duration_ms,
            record_result=record_result,
        )

    # -- the automation engine's executor ----------------------------------------------------

    def execute_action(
        self, action: Action, incident: Incident, rule: AutomationRule
    ) -> ActionResult:
        """Run a rule's ``remediate`` action; the engine records the returned result."""
        if not isinstance(action, RemediateAction):
            return ActionResult.failed(f"a {action.type} action was sent to the remediate executor")
        try:
            run = self.request(
                incident,
                action.remediation,
                actor="automation",
                rule_id=rule.id,
                record_result=False,
            )
        except UnknownRemediation as exc:
            return ActionResult.not_configured(str(exc))
        return action_result(run)


def action_result(run: RemediationRun) -> ActionResult:
    code = run.status_code if run.status_code is not None else run.exit_code
    if run.state is RunState.SUCCEEDED:
        return ActionResult.ok(code)
    if run.state is RunState.PENDING_APPROVAL:
        return ActionResult(ActionOutcome.PENDING_APPROVAL, None, f"run {run.id} awaits approval")
    if run.state is RunState.DRY_RUN:
        return ActionResult(ActionOutcome.DRY_RUN, None, f"dry run {run.id}: nothing ran")
    return ActionResult.failed(f"run {run.id}: {run.reason or run.state}", code)


__all__ = [
    "Attempt",
    "CommandRunner",
    "HttpRunner",
    "Remediator",
    "RunNotFound",
    "RunNotPending",
    "UnknownRemediation",
    "action_result",
    "execute",
]
