"""The pure part of escalation: parsing and validating levels, when a level stops, job ids."""

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from incidents.automation import NamedAction, WebhookAction, parse_named_actions
from incidents.escalation import (
    Escalation,
    EscalationError,
    EscalationStatus,
    level_job_id,
    level_rule,
    levels_from_json,
    levels_to_json,
    parse_levels,
    stopped_by,
    stops_escalation,
)
from incidents.records import Incident
from incidents.schemas import Category, IncidentKind, IncidentStatus, Severity

HOOK = {"type": "webhook", "url": "https://hooks.example.org/x"}


def test_levels_round_trip_through_json():
    levels = parse_levels(
        [{"after_seconds": 0, "actions": [HOOK]}, {"after_seconds": 90, "actions": ["notify_dba"]}],
        {},
    )
    assert [lv.after_seconds for lv in levels] == [0.0, 90.0]
    assert isinstance(levels[0].actions[0], WebhookAction)
    assert levels[1].actions == (NamedAction("notify_dba"),)
    assert levels_from_json(levels_to_json(levels)) == levels


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ([], "at least one level"),
        ("levels", "must be a list"),
        ([{"after_seconds": 0, "actions": [HOOK]}] * 11, "at most 10"),
        ([{"after_seconds": "soon", "actions": [HOOK]}], "number"),
        ([{"after_seconds": True, "actions": [HOOK]}], "number"),
        ([{"after_seconds": -0.1, "actions": [HOOK]}], "between 0"),
        ([{"after_seconds": 8 * 86400, "actions": [HOOK]}], "between 0"),
        (
            [{"after_seconds": 10, "actions": [HOOK]}, {"after_seconds": 10, "actions": [HOOK]}],
            "level 2: after_seconds must be greater",
        ),
        ([{"after_seconds": 0, "actions": []}], "1 to 20 actions"),
        ([{"after_seconds": 0, "actions": [HOOK] * 21}], "at most 20"),
        ([{"after_seconds": 0, "actions": [{"type": "page"}]}], "unknown action type 'page'"),
        ([{"after_seconds": 0, "actions": ["paging_robot"]}], "unknown named action"),
        ([{"after_seconds": 0, "actions": [HOOK], "every": 5}], "does not take every"),
        (
            [{"after_seconds": 0, "actions": [{"type": "escalate", "policy": "p"}]}],
            "cannot start another escalation",
        ),
    ],
)
def test_bad_levels_are_refused_with_a_message(raw, message):
    with pytest.raises(EscalationError, match=message):
        parse_levels(raw, {})


def test_a_named_action_that_escalates_is_refused_too():
    named = parse_named_actions({"page_more": {"type": "escalate", "policy": "other"}})
    with pytest.raises(EscalationError, match="another escalation"):
        parse_levels([{"after_seconds": 0, "actions": ["page_more"]}], named)


def incident(status: IncidentStatus, **fields) -> Incident:
    now = datetime(2024, 1, 1, tzinfo=UTC)
    return Incident(
        id="i-1",
        fingerprint="f",
        tenant="acme",
        title="t",
        description="",
        severity=Severity.CRITICAL,
        category=Category.DATABASE,
        status=status,
        kind=IncidentKind.MANUAL,
        source="manual",
        series=None,
        metadata={},
        score=None,
        peak_score=None,
        repeat_count=0,
        first_seen=now,
        last_seen=now,
        created_at=now,
        updated_at=now,
        **fields,
    )


def test_acknowledging_or_resolving_stops_an_escalation_and_says_who():
    assert not stops_escalation(incident(IncidentStatus.OPEN))
    acked = incident(IncidentStatus.ACKNOWLEDGED, acknowledged_by="alice")
    resolved = incident(IncidentStatus.RESOLVED, acknowledged_by="alice", resolved_by="auto")
    assert stops_escalation(acked) and stops_escalation(resolved)
    assert stopped_by(acked) == ("alice", "acknowledged")
    assert stopped_by(resolved) == ("auto", "resolved")


def test_levels_are_due_after_the_start_and_named_as_rules_for_the_payloads():
    start = datetime(2024, 1, 1, tzinfo=UTC)
    levels = parse_levels(
        [{"after_seconds": 0.5, "actions": [HOOK]}, {"after_seconds": 1.5, "actions": [HOOK]}], {}
    )
    escalation = Escalation(
        id="e-1",
        tenant="acme",
        incident_id="i-1",
        policy_id="p-1",
        policy="oncall",
        levels=levels,
        started_at=start,
        status=EscalationStatus.ACTIVE,
    )
    assert escalation.due_at(1) == start + timedelta(seconds=1.5)
    assert list(escalation.remaining_levels) == [0, 1]
    assert list(dataclasses.replace(escalation, next_level=1).remaining_levels) == [1]
    rule = level_rule(escalation, 1)
    assert (rule.id, rule.tenant, rule.name) == ("p-1", "acme", "oncall (escalation level 2)")
    assert rule.actions == levels[1].actions
    assert level_job_id("e-1", 1) == "escalation:e-1:1"
