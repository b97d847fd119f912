"""The automation engine, escalation timers and remediation runs on the real PostgreSQL.

Their unit tests run on SQLite; the paths that differ on PostgreSQL (``ON CONFLICT`` claims,
advisory locks of the remediation breaker, APScheduler's job store, ids that become visible out
of order) are exercised here by re-running those tests with the store on PostgreSQL (a fresh
schema per test, see ``postgres_url``).
"""

from __future__ import annotations

import pytest

from connectors.store import Store
from tests.unit.conftest import smtp_server, webhook_server  # noqa: F401  (fixtures)
from tests.unit.connectors.test_automation_engine import (  # noqa: F401
    make_engine,
    rules,
    test_a_firing_is_claimed_once,
    test_a_matching_incident_fires_its_webhook_once_even_when_repeated,
    test_action_results_feed_the_counts,
    test_detected_incidents_from_the_dataflow_fire_rules,
    test_fire_on_repeat_fires_again_on_each_repeat,
    test_rules_are_stored_per_tenant_with_unique_names,
    test_the_cursor_survives_a_restart_and_a_first_start_skips_history,
)
from tests.unit.connectors.test_sealed_secrets import (  # noqa: F401
    test_a_secret_that_does_not_open_leaves_the_action_unusable_not_the_read,
    test_escalation_levels_are_sealed_too,
    test_rules_store_sealed_secrets_and_read_them_back,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def db_url(postgres_url):
    return postgres_url


@pytest.fixture
def store(postgres_url):
    s = Store(postgres_url)
    yield s
    s.close()
