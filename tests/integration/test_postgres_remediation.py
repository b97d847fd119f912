"""Remediation runs on the real PostgreSQL: the circuit breaker's advisory lock and counts
(see ``test_postgres_automation`` for why the unit tests are re-run here)."""

from __future__ import annotations

import pytest

from connectors.store import Store
from tests.unit.conftest import webhook_server  # noqa: F401  (fixture)
from tests.unit.connectors.test_remediation_runner import (  # noqa: F401
    calls,
    test_a_command_runs_with_its_validated_arguments,
    test_a_rule_with_a_remediate_action_runs_it_through_the_same_path,
    test_a_run_that_needs_approval_waits_and_runs_once_approved,
    test_pending_runs_count_for_the_breaker,
    test_the_breaker_opens_per_hour_and_closes_an_hour_later,
    test_the_breaker_opens_per_incident,
    tool,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def store(postgres_url):
    s = Store(postgres_url)
    yield s
    s.close()
