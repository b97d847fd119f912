"""Escalation timers on the real PostgreSQL: APScheduler's job store and the level claims
(see ``test_postgres_automation`` for why the unit tests are re-run here)."""

from __future__ import annotations

import pytest

from connectors.store import Store
from tests.unit.conftest import webhook_server  # noqa: F401  (fixture)
from tests.unit.connectors.test_escalation import (  # noqa: F401
    make_engine,
    test_a_level_fires_once_and_a_late_level_brings_the_earlier_ones,
    test_a_pending_level_survives_a_restart_and_fires_once,
    test_a_running_escalation_without_jobs_gets_them_back_at_start,
    test_acknowledging_after_level_one_cancels_level_two,
    test_both_levels_fire_in_order_when_nobody_acknowledges,
    test_policies_are_stored_per_tenant_by_unique_name,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def store(postgres_url):
    s = Store(postgres_url)
    yield s
    s.close()
