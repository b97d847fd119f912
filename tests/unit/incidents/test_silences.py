"""Silence matching (Alertmanager's semantics), validation and expiry, all pure."""

import time
from datetime import UTC, datetime, timedelta

import pytest

from incidents.labels import incident_labels
from incidents.silences import (
    MAX_REGEX_LENGTH,
    Matcher,
    Silence,
    SilenceError,
    SilenceState,
    expired_times,
    matching_silence,
    validate_silence,
)

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
LABELS = incident_labels(
    tags=["service=checkout", "env:prod"],
    metadata={"database": "primary"},
    fields={"severity": "critical", "category": "database", "source": "api"},
)


def silence(*matchers: Matcher, start=NOW - HOUR, end=NOW + HOUR, sid="s1") -> Silence:
    return Silence(sid, "acme", matchers, start, end, "maintenance", "ops", start, start)


@pytest.mark.parametrize(
    ("matcher", "matches"),
    [
        (Matcher("service", "checkout"), True),
        (Matcher("service", "Checkout"), False),
        (Matcher("service", "check"), False),
        (Matcher("service", "check.*", is_regex=True), True),
        (Matcher("service", "check", is_regex=True), False),  # anchored at both ends
        (Matcher("service", "checkout", is_equal=False), False),
        (Matcher("service", "web", is_equal=False), True),
        (Matcher("service", "web|api", is_regex=True, is_equal=False), True),
        (Matcher("env", "prod"), True),
        (Matcher("database", "primary"), True),
        (Matcher("severity", "critical"), True),
        (Matcher("category", "database"), True),
        (Matcher("source", "api"), True),
        (Matcher("team", ""), True),  # an absent label is the empty string
        (Matcher("team", "payments"), False),
        (Matcher("team", "payments", is_equal=False), True),
        (Matcher("team", ".*", is_regex=True), True),
    ],
)
def test_matcher_semantics(matcher, matches):
    assert matcher.matches(LABELS) is matches


def test_any_value_of_a_multi_valued_label_matches():
    labels = incident_labels(
        metadata={"labels": {"severity": "warning"}}, fields={"severity": "medium"}
    )
    assert Matcher("severity", "warning").matches(labels)
    assert Matcher("severity", "medium").matches(labels)
    assert not Matcher("severity", "warning", is_equal=False).matches(labels)


def test_a_silence_needs_all_matchers():
    both = silence(Matcher("service", "checkout"), Matcher("env", "prod"))
    one_off = silence(Matcher("service", "checkout"), Matcher("env", "staging"))
    assert both.matches(LABELS)
    assert not one_off.matches(LABELS)


def test_states_and_active_window():
    s = silence(Matcher("service", "checkout"), start=NOW, end=NOW + HOUR)
    assert s.state(NOW - timedelta(seconds=1)) is SilenceState.PENDING
    assert s.state(NOW) is SilenceState.ACTIVE
    assert s.state(NOW + HOUR - timedelta(microseconds=1)) is SilenceState.ACTIVE
    assert s.state(NOW + HOUR) is SilenceState.EXPIRED


def test_matching_silence_picks_the_first_active_match():
    pending = silence(Matcher("service", "checkout"), start=NOW + HOUR, end=NOW + 2 * HOUR)
    other = silence(Matcher("service", "web"), sid="s2")
    active = silence(Matcher("service", "checkout"), sid="s3")
    assert matching_silence([pending, other, active], LABELS, NOW) is active
    assert matching_silence([pending, other], LABELS, NOW) is None
    assert matching_silence([active], LABELS, NOW + 2 * HOUR) is None


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        ("(", "missing )"),
        ("[a", "missing ]"),
        ("a)|(b", "unexpected )"),
        (r"(a)\1", "invalid escape"),  # backreferences are not RE2
        ("x" * (MAX_REGEX_LENGTH + 1), "longer than"),
    ],
)
def test_bad_regexes_are_refused_with_a_reason(pattern, reason):
    with pytest.raises(SilenceError, match="matcher 'service'") as err:
        Matcher("service", pattern, is_regex=True)
    assert reason in str(err.value)


def test_the_same_text_is_fine_as_a_literal():
    assert Matcher("service", "(").matches(incident_labels(tags=["service=("]))


def test_catastrophic_pattern_runs_in_linear_time():
    matcher = Matcher("service", "(a+)+$", is_regex=True)
    labels = incident_labels(tags=["service=" + "a" * 3000 + "b"])
    start = time.perf_counter()
    assert not matcher.matches(labels)
    assert time.perf_counter() - start < 0.5  # backtracking engines take ages on this


def test_validate_silence():
    m = Matcher("service", "checkout")
    assert validate_silence([m], NOW, NOW + HOUR, NOW) == (m,)
    cases = [
        ([], NOW, NOW + HOUR, "at least one matcher"),
        ([Matcher("team", "")], NOW, NOW + HOUR, "must not match an empty value"),
        ([Matcher("team", ".*", is_regex=True)], NOW, NOW + HOUR, "empty value"),
        ([m], NOW + 2 * HOUR, NOW + HOUR, "after starts_at"),
        ([m], NOW - HOUR, NOW, "in the future"),
        ([m], NOW - 2 * HOUR, NOW - HOUR, "in the future"),
        ([m] * 33, NOW, NOW + HOUR, "at most"),
    ]
    for matchers, start, end, message in cases:
        with pytest.raises(SilenceError, match=message):
            validate_silence(matchers, start, end, NOW)


def test_matcher_name_and_value_limits():
    with pytest.raises(SilenceError, match="name"):
        Matcher("", "x")
    with pytest.raises(SilenceError, match="longer than"):
        Matcher("k", "v" * 2000)


def test_expired_times():
    active = silence(Matcher("service", "checkout"))
    assert expired_times(active, NOW) == (active.starts_at, NOW)
    pending = silence(Matcher("service", "checkout"), start=NOW + HOUR, end=NOW + 2 * HOUR)
    start, end = expired_times(pending, NOW)
    assert (start, end) == (NOW, NOW)
    ended = silence(Matcher("service", "checkout"), start=NOW - 2 * HOUR, end=NOW - HOUR)
    assert expired_times(ended, NOW) == (ended.starts_at, ended.ends_at)


def test_matcher_round_trips_through_its_dict():
    m = Matcher("service", "a|b", is_regex=True, is_equal=False)
    assert Matcher.from_mapping(m.as_dict()) == m
