"""Grouping, silences, comments, the summary and classifier corrections on the real PostgreSQL
(see ``test_postgres_automation`` for why the unit tests are re-run here)."""

from __future__ import annotations

import pytest

from connectors.classifier_store import ClassifierStore
from connectors.store import Store
from incidents.config import Settings
from tests.unit.connectors.test_classifier_store import (  # noqa: F401
    test_a_correction_round_trips,
    test_an_over_long_title_is_cut_to_the_column,
    test_corrections_are_per_tenant_and_oldest_first,
    test_only_the_newest_corrections_are_read,
)
from tests.unit.connectors.test_grouping_store import (  # noqa: F401
    test_a_matching_active_silence_marks_new_incidents,
    test_a_repeat_is_not_a_new_child,
    test_comments_go_to_the_timeline,
    test_detected_incidents_are_silenced_too,
    test_grouping_is_per_tenant,
    test_incidents_of_one_service_hang_under_the_first,
    test_metadata_keys_and_fields_are_matched,
    test_pending_and_expired_silences_do_not_apply,
    test_resolve_by_fingerprint_resolves_only_the_open_one,
    test_silence_store_lists_by_state_and_isolates_tenants,
    test_summary_with_known_timestamps,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def store(postgres_url):
    s = Store.from_settings(Settings(database_url=postgres_url))
    yield s
    s.close()


@pytest.fixture
def corrections(postgres_url):
    s = Store(postgres_url)
    yield ClassifierStore(s)
    s.close()
