"""Grouping decisions: group keys from labels, the parent within the window."""

from datetime import UTC, datetime, timedelta

import pytest

from incidents.config import Settings
from incidents.grouping import (
    GroupCandidate,
    GroupingPolicy,
    choose_parent,
    group_key,
    parse_group_by,
)
from incidents.labels import incident_labels

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
POLICY = GroupingPolicy(group_by=("service",), window_seconds=300)


def labels(*tags: str, **metadata):
    return incident_labels(tags=tags, metadata=metadata)


def test_parse_group_by():
    assert parse_group_by(" service, host ,,service") == ("service", "host")
    assert parse_group_by("") == ()


def test_settings_build_the_policy():
    policy = Settings(incident_group_by="host", incident_group_window_seconds=60).grouping_policy
    assert policy == GroupingPolicy(group_by=("host",), window_seconds=60)
    assert Settings().grouping_policy == GroupingPolicy(("service",), 300)


def test_same_service_same_key_from_any_label_source():
    from_tag = group_key(POLICY, labels("service=db"))
    assert from_tag is not None
    assert group_key(POLICY, labels("service:db")) == from_tag
    assert group_key(POLICY, labels(service="db")) == from_tag
    assert group_key(POLICY, incident_labels(metadata={"labels": {"service": "db"}})) == from_tag
    assert group_key(POLICY, labels("service=web")) != from_tag


def test_without_the_label_or_with_grouping_off_there_is_no_group():
    assert group_key(POLICY, labels("host=a")) is None
    assert group_key(GroupingPolicy(group_by=()), labels("service=db")) is None
    assert group_key(GroupingPolicy(window_seconds=0), labels("service=db")) is None


def test_several_group_by_labels_must_all_agree():
    policy = GroupingPolicy(group_by=("service", "env"))
    a = group_key(policy, labels("service=db", "env=prod"))
    assert a == group_key(policy, labels("env=prod", "service=db"))
    assert a != group_key(policy, labels("service=db", "env=dev"))
    # a missing one counts as empty (Alertmanager): still a group, but another one
    only_service = group_key(policy, labels("service=db"))
    assert only_service is not None and only_service != a


def test_group_keys_of_different_policies_differ():
    assert group_key(GroupingPolicy(("host",)), labels("host=a")) != group_key(
        GroupingPolicy(("service",)), labels("service=a")
    )


@pytest.mark.parametrize(
    ("offset_s", "parent"),
    [(0, "root"), (1, "root"), (300, "root"), (301, None), (-1, None)],
)
def test_parent_only_within_the_window_after_the_root(offset_s, parent):
    roots = [GroupCandidate("root", T0)]
    assert choose_parent(POLICY, roots, T0 + timedelta(seconds=offset_s)) == parent


def test_the_earliest_root_wins_and_ties_are_broken_by_id():
    roots = [
        GroupCandidate("later", T0 + timedelta(seconds=200)),
        GroupCandidate("b", T0),
        GroupCandidate("a", T0),
    ]
    assert choose_parent(POLICY, roots, T0 + timedelta(seconds=250)) == "a"
    # 400 s after T0 only the later root's window still covers it
    assert choose_parent(POLICY, roots, T0 + timedelta(seconds=400)) == "later"


def test_no_roots_no_parent_and_negative_window_refused():
    assert choose_parent(POLICY, [], T0) is None
    with pytest.raises(ValueError, match="negative"):
        GroupingPolicy(window_seconds=-1)
