"""Silences (maintenance windows): matchers over an incident's labels and a time range.

The shape and the matching rules are Alertmanager's: a silence has one or more matchers
``{name, value, is_regex, is_equal}``, all of which must match; a regex is anchored at both
ends; an absent label has the value ``""`` (so ``team=""`` matches incidents without a team);
``is_equal: false`` negates the matcher. A silence is *active* from ``starts_at`` (inclusive)
to ``ends_at`` (exclusive). Expiring one sets ``ends_at`` to now.

Regexes run on RE2 (``google-re2``), whose matching time is linear in the input, so a
pattern like ``(a+)+$`` cannot stall the API or the dataflow (no catastrophic backtracking);
patterns are also capped in length, and compiled once per pattern.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from functools import lru_cache
from typing import Any

import re2

from incidents.labels import Labels

MAX_MATCHERS = 32
MAX_NAME_LENGTH = 128
MAX_VALUE_LENGTH = 1_024
MAX_REGEX_LENGTH = 256
MAX_COMMENT_LENGTH = 5_000
RE2_MAX_MEMORY = 8 << 20
"""Bytes RE2 may use for one compiled pattern; a larger pattern is refused, not built."""


class SilenceError(ValueError):
    """A silence or matcher that cannot be accepted; the message says why (the API's 422)."""


class SilenceState(StrEnum):
    PENDING = "pending"
    ACTIVE = "active"
    EXPIRED = "expired"


def _options() -> re2.Options:
    options = re2.Options()
    options.log_errors = False  # a user's bad pattern is a 422, not a line in our log
    options.max_mem = RE2_MAX_MEMORY
    return options


@lru_cache(maxsize=1_024)
def compile_anchored(pattern: str) -> Any:
    """RE2 program of ``pattern``, used with ``fullmatch`` (anchored at both ends, as
    Alertmanager's ``^(?:pattern)$``); ``SilenceError`` when it is not a valid RE2 pattern.

    The pattern is compiled as given rather than wrapped, so ``a)|(b`` is refused instead of
    turning into a valid but different expression.
    """
    if len(pattern) > MAX_REGEX_LENGTH:
        raise SilenceError(f"regex is longer than {MAX_REGEX_LENGTH} characters")
    try:
        return re2.compile(pattern, options=_options())
    except re2.error as exc:
        reason = exc.args[0] if exc.args else "invalid"
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        raise SilenceError(f"invalid regex {pattern!r}: {reason}") from exc


@dataclass(frozen=True, slots=True)
class Matcher:
    """One condition on one label. Validated on construction (``SilenceError``)."""

    name: str
    value: str
    is_regex: bool = False
    is_equal: bool = True

    def __post_init__(self) -> None:
        if not self.name or len(self.name) > MAX_NAME_LENGTH:
            raise SilenceError(f"matcher name must have 1 to {MAX_NAME_LENGTH} characters")
        if len(self.value) > MAX_VALUE_LENGTH:
            raise SilenceError(
                f"matcher {self.name!r}: value is longer than {MAX_VALUE_LENGTH} characters"
            )
        if self.is_regex:
            try:
                compile_anchored(self.value)
            except SilenceError as exc:
                raise SilenceError(f"matcher {self.name!r}: {exc}") from None

    def matches_value(self, value: str) -> bool:
        """The positive test (``=`` or ``=~``) on one value, ignoring ``is_equal``."""
        if self.is_regex:
            return compile_anchored(self.value).fullmatch(value) is not None
        return value == self.value

    def matches(self, labels: Labels) -> bool:
        values = labels.get(self.name) or ("",)
        hit = any(self.matches_value(v) for v in values)
        return hit if self.is_equal else not hit

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "value": self.value,
            "is_regex": self.is_regex,
            "is_equal": self.is_equal,
        }

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any]) -> Matcher:
        return cls(
            name=str(raw["name"]),
            value=str(raw.get("value", "")),
            is_regex=bool(raw.get("is_regex", False)),
            is_equal=bool(raw.get("is_equal", True)),
        )


@dataclass(frozen=True, slots=True)
class Silence:
    id: str
    tenant: str
    matchers: tuple[Matcher, ...]
    starts_at: datetime
    ends_at: datetime
    comment: str
    created_by: str
    created_at: datetime
    updated_at: datetime

    def state(self, now: datetime) -> SilenceState:
        if now < self.starts_at:
            return SilenceState.PENDING
        if now < self.ends_at:
            return SilenceState.ACTIVE
        return SilenceState.EXPIRED

    def is_active(self, now: datetime) -> bool:
        return self.state(now) is SilenceState.ACTIVE

    def matches(self, labels: Labels) -> bool:
        """All matchers match (a silence always has at least one)."""
        return all(m.matches(labels) for m in self.matchers)


def validate_silence(
    matchers: Iterable[Matcher], starts_at: datetime, ends_at: datetime, now: datetime
) -> tuple[Matcher, ...]:
    """The matchers of a new silence, or ``SilenceError`` saying what is wrong.

    As in Alertmanager: at least one matcher, and at least one that does not match an absent
    label (otherwise the silence would match nearly everything, e.g. ``{name: "x", value: ""}``);
    the end lies after the start and in the future.
    """
    checked = tuple(matchers)
    if not checked:
        raise SilenceError("a silence needs at least one matcher")
    if len(checked) > MAX_MATCHERS:
        raise SilenceError(f"a silence has at most {MAX_MATCHERS} matchers")
    if all(m.matches({}) for m in checked):
        raise SilenceError(
            "at least one matcher must not match an empty value, otherwise the silence "
            "would match (almost) every incident"
        )
    if ends_at <= now:
        raise SilenceError("ends_at must be in the future")
    if ends_at <= starts_at:
        raise SilenceError("ends_at must be after starts_at")
    return checked


def matching_silence(silences: Iterable[Silence], labels: Labels, now: datetime) -> Silence | None:
    """The first of ``silences`` that is active at ``now`` and matches ``labels``."""
    for silence in silences:
        if silence.is_active(now) and silence.matches(labels):
            return silence
    return None


def expired_times(silence: Silence, now: datetime) -> tuple[datetime, datetime]:
    """(starts_at, ends_at) after expiring ``silence`` at ``now``: it stops matching at once.

    A pending silence ends before it began (both become ``now``); an expired one is unchanged.
    """
    state = silence.state(now)
    if state is SilenceState.EXPIRED:
        return silence.starts_at, silence.ends_at
    if state is SilenceState.PENDING:
        return now, now
    return silence.starts_at, now
