"""The in-process automation engine: evaluates rules on incident changes and runs actions.

It follows the incidents' timeline (``incident_events``) by id, so it sees every change no matter
which process made it — the API (``POST /api/v1/incidents``, edits, acknowledgements) or the
detection dataflow applying its incident updates through the store — without either of them
waiting for it. The API wakes it after a change, so actions start at once; otherwise it polls
every ``AUTOMATION_POLL_SECONDS``. Its position is kept in ``automation_cursors``, so a restart
goes on where it stopped; a first start begins at the newest entry (no backlog of old incidents).

Actions run on a small thread pool, in order within one firing, each with its own timeout; their
results go to the incident's timeline and to ``automation_action_results`` (the source of the
Prometheus ``automation_actions_total`` and ``automation_success_rate``).

On PostgreSQL, timeline ids are taken from a sequence before their transactions commit, so an
entry with a smaller id can become visible after a larger one. The engine therefore looks back
over the last ``LOOKBACK_EVENTS`` ids on every pass and skips the ones it has already processed;
firing keys make a second evaluation of the same change harmless anyway.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Protocol

from sqlalchemy.exc import SQLAlchemyError

from connectors.automation_actions import ActionDispatcher
from connectors.automation_store import AutomationStore, IncidentChange
from connectors.store import Store
from incidents.automation import (
    Action,
    AutomationRule,
    Firing,
    PlannedAction,
    plan_actions,
    rules_to_fire,
)
from incidents.config import Settings
from incidents.records import Incident

log = logging.getLogger(__name__)

BATCH = 500
LOOKBACK_EVENTS = 1_000
ORIGIN_SUFFIX = ":origin"
"""The cursor named ``<engine>:origin`` keeps where the engine first started: the look-back never
reaches before it (history from before the first start is not replayed, on any restart)."""
ERROR_BACKOFF_S = 5.0


class EngineCompanion(Protocol):
    """Something that runs with the engine (escalation timers): started before the engine's
    thread, stopped after its actions drained, and told about every timeline change it reads."""

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def on_change(self, change: IncidentChange) -> None: ...


class AutomationEngine:
    def __init__(
        self,
        store: Store,
        settings: Settings,
        dispatcher: ActionDispatcher | None = None,
        *,
        name: str = "in-process",
        action_threads: int = 4,
        named_actions: dict[str, Action] | None = None,
    ) -> None:
        self.automation = AutomationStore(store)
        self.store = store
        self.name = name
        self.poll_s = settings.automation_poll_seconds
        self.named = named_actions if named_actions is not None else settings.named_actions
        self.dispatcher = dispatcher or ActionDispatcher.from_settings(settings)
        self._pool = ThreadPoolExecutor(
            max_workers=max(action_threads, 1), thread_name_prefix="automation-action"
        )
        self._pending: set[Future[None]] = set()
        self._pending_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._cursor: int | None = None
        self._floor = 0
        self._seen: OrderedDict[int, None] = OrderedDict()
        self._lookback = store.dialect == "postgresql"
        self._companions: list[EngineCompanion] = []

    def attach(self, companion: EngineCompanion) -> None:
        """Run ``companion`` with this engine (call before ``start``)."""
        self._companions.append(companion)

    # -- running -----------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            return
        for companion in self._companions:
            companion.start()
        self._thread = threading.Thread(target=self._loop, name="automation-engine", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """Look for changes now (called by the API after it changed an incident)."""
        self._wake.set()

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop polling and wait for the actions under way (each has its own timeout)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout_s)
            self._thread = None
        self.drain(timeout_s)
        for companion in self._companions:
            companion.stop()
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.dispatcher.close()

    def drain(self, timeout_s: float | None = None) -> None:
        """Wait until every action submitted so far has run and been recorded."""
        with self._pending_lock:
            pending = set(self._pending)
        if pending:
            wait(pending, timeout=timeout_s)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                processed = self.run_once()
            except SQLAlchemyError as exc:
                log.warning("automation engine cannot read the store: %s", type(exc).__name__)
                self._stop.wait(ERROR_BACKOFF_S)
                continue
            except Exception:  # keep the engine alive whatever one change does
                log.exception("automation engine pass failed")
                self._stop.wait(ERROR_BACKOFF_S)
                continue
            if processed < BATCH:
                self._wake.wait(self.poll_s)
                self._wake.clear()

    # -- one pass ----------------------------------------------------------------------------

    def _start_cursor(self) -> int:
        if self._cursor is None:
            origin_name = f"{self.name}{ORIGIN_SUFFIX}"
            stored = self.automation.cursor(self.name)
            if stored is None:
                stored = self.automation.last_event_id()
                self.automation.set_cursor(origin_name, stored)
                self.automation.set_cursor(self.name, stored)
            origin = self.automation.cursor(origin_name)
            self._floor = origin if origin is not None else 0
            self._cursor = stored
        return self._cursor

    def run_once(self) -> int:
        """Process the changes after the cursor (one batch); returns how many were new."""
        cursor = self._start_cursor()
        since = max(cursor - LOOKBACK_EVENTS, self._floor) if self._lookback else cursor
        changes = [
            c for c in self.automation.changes_after(since, BATCH) if c.event_id not in self._seen
        ]
        if not changes:
            return 0
        rules = self.automation.list_rules(enabled_only=True)
        by_tenant: dict[str, list[AutomationRule]] = {}
        for rule in rules:
            by_tenant.setdefault(rule.tenant, []).append(rule)
        for change in changes:
            tenant_rules = by_tenant.get(change.tenant)
            if tenant_rules:
                self.process_change(change, tenant_rules)
            self._tell_companions(change)
            self._remember(change.event_id)
        newest = max(c.event_id for c in changes)
        if newest > cursor:
            self._cursor = newest
            self.automation.set_cursor(self.name, newest)
        return len(changes)

    def _tell_companions(self, change: IncidentChange) -> None:
        for companion in self._companions:
            try:
                companion.on_change(change)
            except Exception:  # one companion's failure must not hold up the rules
                log.exception("automation companion failed on event %s", change.event_id)

    def _remember(self, event_id: int) -> None:
        if not self._lookback:
            return
        self._seen[event_id] = None
        while len(self._seen) > 4 * LOOKBACK_EVENTS:
            self._seen.popitem(last=False)

    def process_change(
        self, change: IncidentChange, rules: Iterable[AutomationRule]
    ) -> list[Firing]:
        """Fire the rules that match this change; returns the firings claimed here."""
        incident = self.store.get_incident(change.tenant, change.incident_id)
        if incident is None:
            return []
        fired = self.automation.fired_rule_ids(incident.id)
        claimed = []
        for firing in rules_to_fire(rules, incident, change.type, change.event_id, fired):
            planned = plan_actions(firing.rule, self.named)
            claim = self.automation.claim_firing
            if claim(incident, firing.rule, firing.key, change.event_id, planned):
                claimed.append(firing)
                self._submit(incident, firing.rule, planned)
        return claimed

    def _submit(
        self, incident: Incident, rule: AutomationRule, planned: list[PlannedAction]
    ) -> None:
        future = self._pool.submit(self._execute, incident, rule, planned)
        with self._pending_lock:
            self._pending.add(future)
        future.add_done_callback(self._done)

    def _done(self, future: Future[None]) -> None:
        with self._pending_lock:
            self._pending.discard(future)

    def _execute(
        self, incident: Incident, rule: AutomationRule, planned: list[PlannedAction]
    ) -> None:
        for action in planned:
            result = self.dispatcher.run(action, incident, rule)
            try:
                self.automation.record_action_result(incident, rule, action, result)
            except SQLAlchemyError as exc:
                log.error(
                    "could not record the result of %s for incident %s: %s",
                    action.type,
                    incident.id,
                    type(exc).__name__,
                )
