"""Escalation timers: APScheduler with a persistent job store, attached to the automation engine.

``{"type": "escalate", "policy": name}`` (a rule's action) starts an escalation of the incident:
one ``escalations`` row and one scheduler job per level, due ``after_seconds`` after the start.
The jobs live in the ``escalation_jobs`` table (APScheduler's ``SQLAlchemyJobStore`` on the
store's database), so a level still pending when the process stops fires after it starts again
— at once and only once if its time passed meanwhile (``misfire_grace_time=None``,
``coalesce=True``). At start the service also re-creates the jobs of running escalations that
have none (a crash between recording an escalation and scheduling it).

A level does not fire when the incident was acknowledged or resolved: the engine calls
``on_change`` for every acknowledgement and resolution in the incidents' timeline (from the API,
Alertmanager, or the dataflow's auto-resolve), which cancels the escalation and removes its jobs;
and every job checks the incident's state again when it fires (another process may have changed
it). Claims in ``connectors.escalation_store`` make a level fire once even with two schedulers on
one database.

Job functions are module-level (APScheduler stores a reference to them, not the function) and get
plain arguments: the service's key (a hash of the database URL), the escalation's id and the level.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import threading
from collections.abc import Mapping
from datetime import UTC
from typing import Any

from apscheduler.executors.pool import ThreadPoolExecutor as SchedulerThreadPool
from apscheduler.jobstores.base import JobLookupError
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.date import DateTrigger
from sqlalchemy.exc import SQLAlchemyError

from connectors.automation_actions import ActionDispatcher
from connectors.automation_engine import AutomationEngine
from connectors.automation_store import IncidentChange
from connectors.escalation_store import ESCALATION_JOBS_TABLE, EscalationStore
from connectors.store import Store
from incidents.automation import (
    Action,
    ActionResult,
    ActionType,
    AutomationRule,
    EscalateAction,
    plan_actions,
)
from incidents.escalation import (
    Escalation,
    EscalationStatus,
    level_job_id,
    level_rule,
    stopped_by,
    stops_escalation,
)
from incidents.records import Incident, TimelineType

log = logging.getLogger(__name__)

STOPPING_CHANGES = frozenset({TimelineType.ACKNOWLEDGED, TimelineType.RESOLVED})
SQLITE_LOCK_TIMEOUT_S = 30.0

_services: dict[str, EscalationService] = {}
_services_lock = threading.Lock()


def service_key(store: Store) -> str:
    """Stable across restarts for the same database (jobs carry it), without the password."""
    url = store.url.render_as_string(hide_password=False)
    return hashlib.sha256(url.encode()).hexdigest()[:16]


def fire_escalation_level(key: str, escalation_id: str, level: int) -> None:
    """The scheduler's job: fire one level (and any earlier one not fired yet)."""
    with _services_lock:
        service = _services.get(key)
        if service is None and len(_services) == 1:
            service = next(iter(_services.values()))
    if service is None:
        log.error("no escalation service for job %s", level_job_id(escalation_id, level))
        return
    service.fire_level(escalation_id, level)


class EscalationService:
    """Starts, fires and cancels escalations; owns the APScheduler ``BackgroundScheduler``."""

    def __init__(
        self,
        store: Store,
        dispatcher: ActionDispatcher,
        named_actions: Mapping[str, Action],
        *,
        threads: int = 4,
    ) -> None:
        self.store = store
        self.escalations = EscalationStore(store)
        self.dispatcher = dispatcher
        self.named = dict(named_actions)
        self.key = service_key(store)
        self.threads = max(threads, 1)
        self.scheduler: BackgroundScheduler | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def _build_scheduler(self) -> BackgroundScheduler:
        options: dict[str, Any] = {}
        if self.store.dialect == "sqlite":
            options["connect_args"] = {"timeout": SQLITE_LOCK_TIMEOUT_S}
        else:
            options["pool_pre_ping"] = True
        jobstore = SQLAlchemyJobStore(
            url=self.store.url, tablename=ESCALATION_JOBS_TABLE, engine_options=options
        )
        return BackgroundScheduler(
            jobstores={"default": jobstore},
            executors={"default": SchedulerThreadPool(self.threads)},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
            timezone=UTC,
        )

    def start(self) -> None:
        if self.scheduler is not None:
            return
        with _services_lock:
            _services[self.key] = self
        self.scheduler = self._build_scheduler()
        self.scheduler.start()
        try:
            self.reschedule_missing()
        except SQLAlchemyError as exc:
            log.warning("could not check the running escalations: %s", type(exc).__name__)

    def stop(self) -> None:
        """Stop the timers (waiting for levels under way); pending jobs stay in the database."""
        scheduler, self.scheduler = self.scheduler, None
        if scheduler is not None:
            scheduler.shutdown(wait=True)
        with _services_lock:
            if _services.get(self.key) is self:
                del _services[self.key]

    def reschedule_missing(self) -> int:
        """Jobs for the pending levels of running escalations that have none; returns how many."""
        if self.scheduler is None:
            return 0
        added = 0
        for escalation in self.escalations.active():
            for level in escalation.remaining_levels:
                if self.scheduler.get_job(level_job_id(escalation.id, level)) is None:
                    self._schedule_level(escalation, level)
                    added += 1
        return added

    # -- starting ----------------------------------------------------------------------------

    def start_escalation(
        self, action: Action, incident: Incident, rule: AutomationRule
    ) -> ActionResult:
        """The ``escalate`` action's executor (registered on the engine's dispatcher)."""
        if not isinstance(action, EscalateAction):
            return ActionResult.failed(f"a {action.type} action was sent to the escalate executor")
        policy = self.escalations.find_policy(incident.tenant, action.policy)
        if policy is None:
            return ActionResult.not_configured(
                f"no escalation policy named {action.policy!r} in the tenant"
            )
        escalation = self.escalations.start(
            incident, policy, source={"rule": rule.name, "rule_id": rule.id}
        )
        if escalation is None:  # this policy already escalates the incident
            return ActionResult.ok()
        self.schedule(escalation)
        current = self.store.get_incident(incident.tenant, incident.id)
        if current is not None and stops_escalation(current):  # acknowledged in the meantime
            self.cancel_for(current)
        return ActionResult.ok()

    def schedule(self, escalation: Escalation) -> None:
        for level in escalation.remaining_levels:
            self._schedule_level(escalation, level)

    def _schedule_level(self, escalation: Escalation, level: int) -> None:
        if self.scheduler is None:
            raise RuntimeError("the escalation scheduler is not running")
        self.scheduler.add_job(
            fire_escalation_level,
            trigger=DateTrigger(run_date=escalation.due_at(level), timezone=UTC),
            args=[self.key, escalation.id, level],
            id=level_job_id(escalation.id, level),
            name=f"escalation {escalation.policy} level {level + 1}",
            replace_existing=True,
            misfire_grace_time=None,
            coalesce=True,
        )

    # -- firing ------------------------------------------------------------------------------

    def fire_level(self, escalation_id: str, level: int) -> list[int]:
        """Fire ``level`` (and earlier unfired ones) unless the incident was acknowledged or
        resolved; returns the levels fired here."""
        escalation = self.escalations.get(escalation_id)
        if escalation is None or escalation.status is not EscalationStatus.ACTIVE:
            return []
        incident = self.store.get_incident(escalation.tenant, escalation.incident_id)
        if incident is None:
            return []
        if stops_escalation(incident):
            self.cancel_for(incident)
            return []
        claimed_escalation, claimed = self.escalations.claim_levels(escalation_id, level)
        if claimed_escalation is None or not claimed:
            return []
        for index in claimed:
            rule = level_rule(claimed_escalation, index)
            for planned in plan_actions(rule, self.named):
                result = self.dispatcher.run(planned, incident, rule)
                try:
                    self.escalations.record_action_result(
                        claimed_escalation, index, planned, result
                    )
                except SQLAlchemyError as exc:
                    log.error(
                        "could not record an escalation action of incident %s: %s",
                        incident.id,
                        type(exc).__name__,
                    )
        if claimed_escalation.status is EscalationStatus.COMPLETED:
            self.escalations.record_completed(claimed_escalation)
        return claimed

    # -- cancelling --------------------------------------------------------------------------

    def cancel_for(self, incident: Incident) -> list[Escalation]:
        """Cancel the incident's running escalations (who and why from its state) and remove
        their pending jobs."""
        by, reason = stopped_by(incident)
        cancelled = self.escalations.cancel_active(
            incident.tenant, incident.id, by=by, reason=reason
        )
        for escalation in cancelled:
            self._remove_jobs(escalation)
        return cancelled

    def _remove_jobs(self, escalation: Escalation) -> None:
        if self.scheduler is None:
            return
        for level in escalation.remaining_levels:
            # already run, or removed by another process: nothing to remove
            with contextlib.suppress(JobLookupError):
                self.scheduler.remove_job(level_job_id(escalation.id, level))

    def on_change(self, change: IncidentChange) -> None:
        """Called by the engine for every timeline change it reads."""
        if change.type not in STOPPING_CHANGES:
            return
        incident = self.store.get_incident(change.tenant, change.incident_id)
        if incident is not None and stops_escalation(incident):
            self.cancel_for(incident)


def attach_escalation(engine: AutomationEngine, *, threads: int = 4) -> EscalationService:
    """Escalation on this engine: its dispatcher runs ``escalate`` actions, its timeline
    changes cancel escalations, and the scheduler starts and stops with it."""
    service = EscalationService(engine.store, engine.dispatcher, engine.named, threads=threads)
    engine.dispatcher.register(ActionType.ESCALATE, service.start_escalation)
    engine.attach(service)
    return service


__all__ = [
    "EscalationService",
    "attach_escalation",
    "fire_escalation_level",
    "service_key",
]
