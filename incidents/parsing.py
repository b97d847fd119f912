"""Parsers for the metrics topic's input formats (contract 4 of ARCHITECTURE.md).

Pure functions: bytes in, :class:`MetricPoint` s and :class:`DeadLetter` s out. Nothing here does
I/O, and no input bytes can make a ``parse_*`` function raise: every bad line (line protocol) or
bad metric (Telegraf JSON) becomes a dead letter with its original bytes and a reason, and the rest
of the message still parses.

Line protocol follows the InfluxDB 2.x reference:

- ``measurement[,tag_key=tag_value...] field_key=field_value[,...] [timestamp]``
- measurement escapes ``,`` and space; tag keys, tag values and field keys escape ``,`` ``=`` and
  space; ``\\\\`` is a literal backslash everywhere and any other backslash is literal;
- string field values are double-quoted with ``\\"`` and ``\\\\`` escapes; they are valid but
  never become points;
- ``12i`` (int64), ``12u`` (uint64), floats (``1``, ``-1.5E-3``, ``.5``), booleans
  ``t T true True TRUE f F false False FALSE`` (1.0 / 0.0);
- optional integer timestamp scaled by ``precision``; blank lines and ``#`` comments are skipped;
  leading spaces/tabs and a trailing ``\\r`` are tolerated.

A string field value cannot span lines here (lines are split on ``\\n`` first).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from incidents.schemas import DeadLetter, MetricPoint, Tags, series_head, tenant_of

PRECISION_MULTIPLIERS: dict[str, int] = {
    "ns": 1,
    "us": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
}
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
UINT64_MAX = 2**64 - 1
MIN_TIMESTAMP_NS = 0
MAX_TIMESTAMP_NS = 4_102_444_800 * 1_000_000_000
"""Supported event times: 1970-01-01 up to (excluding) 2100-01-01 UTC. Wider int64 timestamps
are valid line protocol but no metric comes from there, and window ends near int64's limit
would overflow every store."""

_BOOLS: dict[str, float] = {
    "t": 1.0,
    "T": 1.0,
    "true": 1.0,
    "True": 1.0,
    "TRUE": 1.0,
    "f": 0.0,
    "F": 0.0,
    "false": 0.0,
    "False": 0.0,
    "FALSE": 0.0,
}
_NON_FINITE_WORDS = frozenset({"nan", "inf", "infinity"})
_FLOAT_START = frozenset("-.0123456789")
_FLOAT_END = frozenset(".0123456789")

_MEASUREMENT_STOPS = frozenset(", ")
_MEASUREMENT_ESCAPABLE = frozenset(", \\")
_KEY_STOPS = frozenset(",= ")
_KEY_ESCAPABLE = frozenset(",= \\")
_STRING_ESCAPABLE = frozenset('"\\')
_BLANK_OR_COMMENT = frozenset(" \t#")

_MAX_SHOWN = 64
_KEY_CACHE_MAX = 65_536
_KEY_CACHE: dict[str, tuple[str, Tags, str, str]] = {}
"""Line head -> (measurement, tags, series head + " ", tenant)."""
"""Parsed ``measurement,tags`` prefixes of plain lines: agents repeat the same series forever."""


@dataclass(frozen=True, slots=True)
class ParseResult:
    points: list[MetricPoint]
    dead_letters: list[DeadLetter]


class _Invalid(Exception):
    """One line or metric is invalid; the message is the reason (without the line number)."""


def _shown(text: str) -> str:
    return text if len(text) <= _MAX_SHOWN else text[: _MAX_SHOWN - 3] + "..."


def _precision_multiplier(precision: str) -> int:
    try:
        return PRECISION_MULTIPLIERS[precision]
    except KeyError:
        allowed = ", ".join(PRECISION_MULTIPLIERS)
        raise ValueError(f"precision must be one of {allowed}, got {precision!r}") from None


def _default_timestamp(default_timestamp_ns: int | None) -> int:
    return time.time_ns() if default_timestamp_ns is None else default_timestamp_ns


def _internal_error(data: bytes, exc: Exception) -> ParseResult:
    """Last line of defence: a parser bug must cost one message, never the dataflow."""
    reason = f"internal parser error: {type(exc).__name__}: {exc}"
    return ParseResult([], [DeadLetter(bytes(data), reason)])


# --------------------------------------------------------------------------- field values


def _invalid_value(key: str, token: str) -> _Invalid:
    if token.lower().lstrip("+-") in _NON_FINITE_WORDS:
        return _Invalid(f"field '{key}' has non-finite value '{_shown(token)}'")
    return _Invalid(f"field '{key}' has invalid value '{_shown(token)}'")


def _parse_integer(key: str, token: str, *, unsigned: bool) -> float:
    digits = token[:-1]
    if unsigned:
        ok = digits.isascii() and digits.isdigit()
    else:
        ok = digits.isascii() and (digits.isdigit() or (digits[:1] == "-" and digits[1:].isdigit()))
    if not ok:
        raise _invalid_value(key, token)
    value = int(digits)
    low, high = (0, UINT64_MAX) if unsigned else (INT64_MIN, INT64_MAX)
    if not low <= value <= high:
        kind = "unsigned integer" if unsigned else "integer"
        raise _Invalid(f"field '{key}' has {kind} out of range '{_shown(token)}'")
    return float(value)


def _parse_float(key: str, token: str) -> float:
    """A float in InfluxDB's grammar (``-1.5E-3``, ``.5``, ``1.``), finite.

    Python's ``float`` alone would also accept ``1_0``, ``nan``, surrounding whitespace and
    non-ASCII digits, hence the character checks first.
    """
    if not (
        token[0] in _FLOAT_START
        and token[-1] in _FLOAT_END
        and token.isascii()
        and "_" not in token
    ):
        raise _invalid_value(key, token)
    try:
        value = float(token)
    except ValueError:
        raise _invalid_value(key, token) from None
    if value - value != 0.0:
        raise _Invalid(f"field '{key}' has non-finite value '{_shown(token)}'")
    return value


def _parse_value(key: str, token: str) -> float:
    """A non-string field value as a float; raises :class:`_Invalid` naming the field."""
    if not token:
        raise _Invalid(f"field '{key}' has no value")
    last = token[-1]
    if last == "i":
        return _parse_integer(key, token, unsigned=False)
    if last == "u":
        return _parse_integer(key, token, unsigned=True)
    boolean = _BOOLS.get(token)
    if boolean is not None:
        return boolean
    return _parse_float(key, token)


def _parse_timestamp(token: str, multiplier: int) -> int:
    if not token.isascii() or not (token.isdigit() or (token[:1] == "-" and token[1:].isdigit())):
        raise _Invalid(f"invalid timestamp '{_shown(token)}'")
    return _checked_timestamp(int(token) * multiplier, token)


def _checked_timestamp(timestamp: int, shown: object) -> int:
    if not MIN_TIMESTAMP_NS <= timestamp < MAX_TIMESTAMP_NS:
        raise _Invalid(f"timestamp {_shown(str(shown))} is outside the supported range 1970..2099")
    return timestamp


# --------------------------------------------------------------------------- plain lines


def _check_tag(key: str, has_equals: bool, value: str, value_stop: str) -> None:
    if not key:
        raise _Invalid("empty tag key")
    if not has_equals:
        raise _Invalid(f"tag '{key}' has no '='")
    if value_stop == "=":
        raise _Invalid(f"tag '{key}' has an unescaped '=' in its value")
    if not value:
        raise _Invalid(f"tag '{key}' has an empty value")


def _sorted_tags(tags: list[tuple[str, str]]) -> Tags:
    tags.sort()
    for (first, _), (second, _) in zip(tags, tags[1:], strict=False):
        if first == second:
            raise _Invalid(f"duplicate tag '{first}'")
    return tuple(tags)


def _parse_plain_key(key: str) -> tuple[str, Tags]:
    measurement, *tag_parts = key.split(",")
    if not measurement:
        raise _Invalid("missing measurement")
    tags: list[tuple[str, str]] = []
    for part in tag_parts:
        tag_key, equals, value = part.partition("=")
        _check_tag(tag_key, bool(equals), value, "=" if "=" in value else "")
        tags.append((tag_key, value))
    return measurement, _sorted_tags(tags)


def _cached_plain_key(key: str) -> tuple[str, Tags, str, str]:
    parsed = _KEY_CACHE.get(key)
    if parsed is None:
        measurement, tags = _parse_plain_key(key)
        parsed = (measurement, tags, series_head(measurement, tags) + " ", tenant_of(tags))
        if len(_KEY_CACHE) >= _KEY_CACHE_MAX:
            _KEY_CACHE.clear()
        _KEY_CACHE[key] = parsed
    return parsed


def _parse_plain_line(line: str, multiplier: int, default_ts: int, out: list[MetricPoint]) -> None:
    """Fast path for a line without backslash or double quote: no escapes, no string fields."""
    parts = line.split(" ")
    if "" in parts:
        parts = [p for p in parts if p]
    count = len(parts)
    if count == 3:
        token = parts[2]
        if multiplier == 1 and token.isascii() and token.isdigit():
            timestamp = int(token)
            if timestamp >= MAX_TIMESTAMP_NS:
                timestamp = None
        else:
            try:
                timestamp = _parse_timestamp(token, multiplier)
            except _Invalid:
                timestamp = None
    elif count == 2:
        timestamp = default_ts
    else:
        timestamp = None
    if timestamp is None:
        # Rare and invalid in some way: let the full scanner name the first error, as it would.
        _parse_escaped_line(line, multiplier, default_ts, out)
        return
    # A field name of a plain line holds no character that a series key escapes.
    measurement, tags, head, tenant = _cached_plain_key(parts[0])
    append = out.append
    for item in parts[1].split(","):
        key, equals, token = item.partition("=")
        if not key:
            raise _Invalid("empty field key")
        if not equals:
            raise _Invalid(f"field '{key}' has no '='")
        if (
            token
            and token[-1] in _FLOAT_END
            and token[0] in _FLOAT_START
            and token.isascii()
            and "_" not in token
        ):
            try:
                value = float(token)
            except ValueError:
                value = _parse_value(key, token)
            if value - value != 0.0:
                value = _parse_value(key, token)
        else:
            value = _parse_value(key, token)
        append(MetricPoint(measurement, tags, key, value, timestamp, head + key, tenant))


# --------------------------------------------------------------------------- escaped lines


def _scan_name(
    line: str, start: int, stops: frozenset[str], escapable: frozenset[str]
) -> tuple[str, int]:
    """Unescaped text from ``start`` up to the first unescaped stop character (or the end).

    Returns the text and the index of the stop character (``len(line)`` at the end).
    """
    pieces: list[str] = []
    end = len(line)
    i = start
    chunk = start
    while i < end:
        char = line[i]
        if char == "\\" and i + 1 < end and line[i + 1] in escapable:
            pieces.append(line[chunk:i])
            chunk = i + 1
            i += 2
        elif char in stops:
            break
        else:
            i += 1
    pieces.append(line[chunk:i])
    return "".join(pieces), i


def _scan_string(line: str, start: int, key: str) -> int:
    """Index just after the closing quote of the string value opened at ``start - 1``."""
    end = len(line)
    i = start
    while i < end:
        char = line[i]
        if char == "\\" and i + 1 < end and line[i + 1] in _STRING_ESCAPABLE:
            i += 2
        elif char == '"':
            return i + 1
        else:
            i += 1
    raise _Invalid(f"field '{key}' has an unterminated string value")


def _skip_spaces(line: str, i: int) -> int:
    end = len(line)
    while i < end and line[i] == " ":
        i += 1
    return i


def _scan_tags(line: str, i: int) -> tuple[Tags, int]:
    end = len(line)
    tags: list[tuple[str, str]] = []
    while i < end and line[i] == ",":
        key, i = _scan_name(line, i + 1, _KEY_STOPS, _KEY_ESCAPABLE)
        has_equals = i < end and line[i] == "="
        value, i = _scan_name(line, i + 1, _KEY_STOPS, _KEY_ESCAPABLE) if has_equals else ("", i)
        _check_tag(key, has_equals, value, line[i] if i < end else "")
        tags.append((key, value))
    return _sorted_tags(tags), i


def _scan_fields(line: str, i: int) -> tuple[list[tuple[str, float]], int]:
    """Numeric fields from ``i`` (string fields are validated and dropped), and the end index."""
    end = len(line)
    fields: list[tuple[str, float]] = []
    while True:
        key, i = _scan_name(line, i, _KEY_STOPS, _KEY_ESCAPABLE)
        if not key:
            raise _Invalid("empty field key")
        if i >= end or line[i] != "=":
            raise _Invalid(f"field '{key}' has no '='")
        i += 1
        if i < end and line[i] == '"':
            i = _scan_string(line, i + 1, key)
            if i < end and line[i] not in ", ":
                raise _Invalid(f"field '{key}' has data after its closing quote")
        else:
            stop = i
            while stop < end and line[stop] not in ", ":
                stop += 1
            fields.append((key, _parse_value(key, line[i:stop])))
            i = stop
        if i >= end or line[i] == " ":
            return fields, i
        i += 1


def _parse_escaped_line(
    line: str, multiplier: int, default_ts: int, out: list[MetricPoint]
) -> None:
    """Careful character scanner for lines with backslashes or quoted strings."""
    end = len(line)
    measurement, i = _scan_name(line, 0, _MEASUREMENT_STOPS, _MEASUREMENT_ESCAPABLE)
    if not measurement:
        raise _Invalid("missing measurement")
    tags, i = _scan_tags(line, i)
    i = _skip_spaces(line, i)
    if i >= end:
        raise _Invalid("missing fields")
    fields, i = _scan_fields(line, i)
    i = _skip_spaces(line, i)
    timestamp = default_ts
    if i < end:
        stop = line.find(" ", i)
        stop = end if stop < 0 else stop
        timestamp = _parse_timestamp(line[i:stop], multiplier)
        if _skip_spaces(line, stop) < end:
            raise _Invalid("unexpected data after timestamp")
    out.extend(MetricPoint(measurement, tags, key, value, timestamp) for key, value in fields)


# --------------------------------------------------------------------------- line protocol


def _line_body(line: str) -> str:
    """The parseable part of a line: no trailing ``\\r``, no leading blanks; '' when skipped."""
    if line[-1] == "\r":
        line = line[:-1]
    if line and line[0] in " \t":
        line = line.lstrip(" \t")
    if not line or line[0] == "#":
        return ""
    return line


def _parse_lines(
    lines: Iterable[tuple[int, str | None, bytes | None]],
    multiplier: int,
    default_ts: int,
) -> ParseResult:
    """Parse numbered lines; ``text`` is None when the raw bytes of that line are not UTF-8."""
    points: list[MetricPoint] = []
    dead: list[DeadLetter] = []
    for number, text, raw in lines:
        if text is None:
            dead.append(DeadLetter(raw or b"", f"line {number}: invalid UTF-8"))
            continue
        if not text:
            continue
        body = text if text[-1] != "\r" and text[0] not in _BLANK_OR_COMMENT else _line_body(text)
        if not body:
            continue
        mark = len(points)
        try:
            if "\\" in body or '"' in body:
                _parse_escaped_line(body, multiplier, default_ts, points)
            else:
                _parse_plain_line(body, multiplier, default_ts, points)
        except _Invalid as err:
            del points[mark:]
            original = raw if raw is not None else text.encode("utf-8")
            dead.append(DeadLetter(original, f"line {number}: {err}"))
    return ParseResult(points, dead)


def _decoded_lines(data: bytes) -> Iterable[tuple[int, str | None, bytes | None]]:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return _per_line_decoded(data)
    return ((number, line, None) for number, line in enumerate(text.split("\n"), 1))


def _per_line_decoded(data: bytes) -> Iterable[tuple[int, str | None, bytes | None]]:
    """Lines of a message that is not valid UTF-8 as a whole; comments are skipped undecoded."""
    for number, raw in enumerate(data.split(b"\n"), 1):
        if raw.lstrip(b" \t").startswith(b"#"):
            continue
        try:
            yield number, raw.decode("utf-8"), raw
        except UnicodeDecodeError:
            yield number, None, raw


def parse_line_protocol(
    data: bytes, *, precision: str = "ns", default_timestamp_ns: int | None = None
) -> ParseResult:
    """Parse one message of InfluxDB line protocol (any number of lines).

    Lines without a timestamp get ``default_timestamp_ns`` (or the current time). Raises
    ``ValueError`` only for an unknown ``precision`` (a configuration error, not bad input).
    """
    multiplier = _precision_multiplier(precision)
    try:
        default_ts = _default_timestamp(default_timestamp_ns)
        return _parse_lines(_decoded_lines(data), multiplier, default_ts)
    except Exception as exc:
        return _internal_error(data, exc)


# --------------------------------------------------------------------------- Telegraf JSON


def _compact_json(value: Any) -> bytes:
    try:
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
        return text.encode("utf-8")
    except (UnicodeEncodeError, ValueError, RecursionError):
        return json.dumps(value, separators=(",", ":")).encode("ascii")


def _json_tags(tags: Any) -> Tags:
    if tags is None:
        return ()
    if not isinstance(tags, dict):
        raise _Invalid("'tags' must be an object")
    pairs: list[tuple[str, str]] = []
    for key, value in tags.items():
        if not key:
            raise _Invalid("empty tag key")
        if isinstance(value, str):
            text = value
        elif isinstance(value, int | float) and not isinstance(value, bool):
            if value - value != 0:
                raise _Invalid(f"tag '{key}' has non-finite value")
            text = str(value)
        else:
            raise _Invalid(f"tag '{key}' must be a string, got {type(value).__name__}")
        if not text:
            raise _Invalid(f"tag '{key}' has an empty value")
        pairs.append((key, text))
    return _sorted_tags(pairs)


def _json_field_value(key: str, value: Any) -> float | None:
    """The numeric value of a field, None for a string field (ignored for detection)."""
    if isinstance(value, str):
        return None
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, int):
        try:
            number = float(value)
        except OverflowError:
            raise _Invalid(f"field '{key}' has a number out of range") from None
    elif isinstance(value, float):
        number = value
    else:
        shown = _shown(_compact_json(value).decode("utf-8", "replace"))
        raise _Invalid(f"field '{key}' has invalid value {shown}")
    if number - number != 0.0:
        raise _Invalid(f"field '{key}' has non-finite value {value!r}")
    return number


def _json_timestamp(value: Any, default_ts: int) -> int:
    if value is None:
        return default_ts
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Invalid("'timestamp' must be a number of seconds")
    if isinstance(value, int):
        timestamp = value * 1_000_000_000
    elif value - value != 0.0:
        raise _Invalid("'timestamp' is not finite")
    elif abs(value) >= MAX_TIMESTAMP_NS / 1e9:
        return _checked_timestamp(MAX_TIMESTAMP_NS, value)
    else:
        # Rounded to microseconds: a double near 1.7e9 s cannot carry more, and this keeps
        # 1700000000.123 at ...123000000 ns instead of ...122999906 ns.
        timestamp = round(value * 1_000_000) * 1_000
    return _checked_timestamp(timestamp, value)


def _json_metric_points(metric: Any, default_ts: int) -> list[MetricPoint]:
    if not isinstance(metric, dict):
        raise _Invalid(f"a metric must be an object, got {type(metric).__name__}")
    name = metric.get("name")
    if not isinstance(name, str) or not name:
        raise _Invalid("'name' must be a non-empty string")
    tags = _json_tags(metric.get("tags"))
    fields = metric.get("fields")
    if not isinstance(fields, dict) or not fields:
        raise _Invalid("'fields' must be a non-empty object")
    timestamp = _json_timestamp(metric.get("timestamp"), default_ts)
    points: list[MetricPoint] = []
    for key, value in fields.items():
        if not key:
            raise _Invalid("empty field key")
        number = _json_field_value(key, value)
        if number is not None:
            points.append(MetricPoint(name, tags, key, number, timestamp))
    return points


def _whole_message_dead(data: bytes, reason: str) -> ParseResult:
    return ParseResult([], [DeadLetter(bytes(data), reason)])


def _parse_json_document(data: bytes, default_ts: int) -> ParseResult:
    try:
        document = json.loads(data)
    except (ValueError, RecursionError) as exc:
        return _whole_message_dead(data, f"invalid JSON: {exc}")
    if not isinstance(document, dict):
        return _whole_message_dead(
            data, f"JSON message must be an object, got {type(document).__name__}"
        )
    if "metrics" not in document:
        try:
            return ParseResult(_json_metric_points(document, default_ts), [])
        except _Invalid as err:
            return _whole_message_dead(data, str(err))
    metrics = document["metrics"]
    if not isinstance(metrics, list):
        return _whole_message_dead(data, "'metrics' must be a list")
    points: list[MetricPoint] = []
    dead: list[DeadLetter] = []
    for index, metric in enumerate(metrics):
        try:
            points.extend(_json_metric_points(metric, default_ts))
        except _Invalid as err:
            dead.append(DeadLetter(_compact_json(metric), f"metrics[{index}]: {err}"))
    return ParseResult(points, dead)


def parse_telegraf_json(data: bytes, *, default_timestamp_ns: int | None = None) -> ParseResult:
    """Parse Telegraf's JSON output: one metric object or a batch ``{"metrics": [...]}``.

    ``timestamp`` is in seconds (int or float). A broken message becomes one dead letter with the
    whole bytes; in a batch, each broken element becomes one dead letter of its compact JSON.
    """
    try:
        return _parse_json_document(data, _default_timestamp(default_timestamp_ns))
    except Exception as exc:
        return _internal_error(data, exc)


def _first_non_blank(data: bytes) -> int | None:
    for byte in data:
        if byte not in b" \t\r\n":
            return byte
    return None


def parse_message(
    data: bytes, *, default_timestamp_ns: int | None = None, precision: str = "ns"
) -> ParseResult:
    """Parse a metrics message of either format: JSON when it starts with ``{``."""
    if _first_non_blank(data) == ord("{"):
        return parse_telegraf_json(data, default_timestamp_ns=default_timestamp_ns)
    return parse_line_protocol(data, precision=precision, default_timestamp_ns=default_timestamp_ns)


# --------------------------------------------------------------------------- formatting


def _escape(text: str, specials: str) -> str:
    if "\\" in text:
        text = text.replace("\\", "\\\\")
    for char in specials:
        if char in text:
            text = text.replace(char, "\\" + char)
    return text


def _checked_name(text: str, what: str) -> str:
    if not text:
        raise ValueError(f"{what} must not be empty")
    if "\n" in text:
        raise ValueError(f"{what} must not contain a newline: {text!r}")
    return text


def format_key(measurement: str, tags: Mapping[str, str] | Tags) -> str:
    """The escaped ``measurement,tag=value,...`` prefix of a line, tags sorted by key."""
    _checked_name(measurement, "measurement")
    if measurement[0] in "#\t":
        raise ValueError(f"measurement must not start with '#' or a tab: {measurement!r}")
    items = sorted(tags.items() if isinstance(tags, Mapping) else tags)
    parts = [_escape(measurement, ", ")]
    for key, value in items:
        parts.append(
            f"{_escape(_checked_name(key, 'tag key'), ',= ')}"
            f"={_escape(_checked_name(value, f'tag {key!r} value'), ',= ')}"
        )
    return ",".join(parts)


def format_field_value(value: float | int | bool | str) -> str:
    """One field value in line protocol: ``12i``, ``true``, ``12.5`` (repr), ``"text"``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        if not INT64_MIN <= value <= INT64_MAX:
            raise ValueError(f"integer field value out of int64 range: {value}")
        return f"{value}i"
    if isinstance(value, float):
        if value - value != 0.0:
            raise ValueError(f"field value must be finite: {value!r}")
        return repr(value)
    if isinstance(value, str):
        if "\n" in value:
            raise ValueError(f"string field value must not contain a newline: {value!r}")
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    raise TypeError(f"unsupported field value type: {type(value).__name__}")


def format_line_protocol(
    measurement: str,
    tags: Mapping[str, str],
    fields: Mapping[str, float | int | bool | str],
    timestamp_ns: int | None = None,
) -> str:
    """One line of line protocol (without newline) that :func:`parse_line_protocol` reads back.

    Raises ``ValueError`` for what line protocol cannot represent: empty names or tag values,
    newlines, a measurement starting with ``#`` or a tab, no fields, non-finite floats.
    """
    if not fields:
        raise ValueError("at least one field is required")
    field_part = ",".join(
        f"{_escape(_checked_name(key, 'field key'), ',= ')}={format_field_value(value)}"
        for key, value in fields.items()
    )
    line = f"{format_key(measurement, tags)} {field_part}"
    return line if timestamp_ns is None else f"{line} {int(timestamp_ns)}"
