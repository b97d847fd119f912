"""Parsers of the metrics topic (contract 4): line protocol, Telegraf JSON, auto-detection."""

from __future__ import annotations

import json
import math
import re
import time

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from incidents import parsing
from incidents.parsing import (
    INT64_MAX,
    INT64_MIN,
    MAX_TIMESTAMP_NS,
    MIN_TIMESTAMP_NS,
    ParseResult,
    format_line_protocol,
    parse_line_protocol,
    parse_message,
    parse_telegraf_json,
)
from incidents.schemas import MetricPoint, series_key, tenant_of

TS = 1_700_000_000_000_000_000
DEFAULT_TS = 123


def pts(result: ParseResult) -> list[tuple[str, tuple[tuple[str, str], ...], str, float, int]]:
    return [(p.measurement, p.tags, p.field, p.value, p.timestamp_ns) for p in result.points]


def lp(line: str | bytes, **kwargs: object) -> ParseResult:
    data = line.encode() if isinstance(line, str) else line
    kwargs.setdefault("default_timestamp_ns", DEFAULT_TS)
    return parse_line_protocol(data, **kwargs)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- line protocol: valid

VALID_LINES: list[
    tuple[str, str, list[tuple[str, tuple[tuple[str, str], ...], str, float, int]]]
] = [
    (
        "basic",
        "cpu,host=a usage_user=12.5 1700000000000000000",
        [("cpu", (("host", "a"),), "usage_user", 12.5, TS)],
    ),
    (
        "tags sorted, fields in order",
        "cpu,z=1,a=2 x=1,y=2 5",
        [
            ("cpu", (("a", "2"), ("z", "1")), "x", 1.0, 5),
            ("cpu", (("a", "2"), ("z", "1")), "y", 2.0, 5),
        ],
    ),
    ("no tags", "mem used_percent=40.5 7", [("mem", (), "used_percent", 40.5, 7)]),
    ("no timestamp uses default", "mem v=1", [("mem", (), "v", 1.0, DEFAULT_TS)]),
    (
        "measurement escapes comma and space",
        r"my\ meas\,x,t=1 v=1 1",
        [("my meas,x", (("t", "1"),), "v", 1.0, 1)],
    ),
    ("measurement may contain '='", "a=b v=1 1", [("a=b", (), "v", 1.0, 1)]),
    (
        "tag key and value escapes",
        r"m,t\ k\=x\,y=v\ 1\=2\,3 f=1 1",
        [("m", (("t k=x,y", "v 1=2,3"),), "f", 1.0, 1)],
    ),
    ("field key escapes", r"m f\ k\=\,=1 1", [("m", (), "f k=,", 1.0, 1)]),
    (
        "double backslash is one backslash, other backslashes are literal",
        r"m\\,t=a\\,u=b\c f=1 1",
        [("m\\", (("t", "a\\"), ("u", "b\\c")), "f", 1.0, 1)],
    ),
    (
        "string fields are skipped, numeric ones kept",
        r'm s="a \"q\" , = \\ x",v=2,e="" 1',
        [("m", (), "v", 2.0, 1)],
    ),
    ("string value with literal backslash", r'm s="a\b",v=1 1', [("m", (), "v", 1.0, 1)]),
    ("integer", "m v=12i 1", [("m", (), "v", 12.0, 1)]),
    ("negative integer", "m v=-12i 1", [("m", (), "v", -12.0, 1)]),
    ("int64 max", f"m v={INT64_MAX}i 1", [("m", (), "v", float(INT64_MAX), 1)]),
    ("int64 min", f"m v={INT64_MIN}i 1", [("m", (), "v", float(INT64_MIN), 1)]),
    ("unsigned", "m v=12u 1", [("m", (), "v", 12.0, 1)]),
    ("uint64 max", f"m v={2**64 - 1}u 1", [("m", (), "v", float(2**64 - 1), 1)]),
    ("float integer form", "m v=1 1", [("m", (), "v", 1.0, 1)]),
    ("float trailing dot", "m v=1. 1", [("m", (), "v", 1.0, 1)]),
    ("float leading dot", "m v=.5 1", [("m", (), "v", 0.5, 1)]),
    ("float negative", "m v=-0.25 1", [("m", (), "v", -0.25, 1)]),
    ("float exponent", "m v=1e3 1", [("m", (), "v", 1000.0, 1)]),
    ("float signed exponent", "m v=-1.5E-3 1", [("m", (), "v", -0.0015, 1)]),
    ("float plus exponent", "m v=2E+2 1", [("m", (), "v", 200.0, 1)]),
    ("timestamp-less with trailing spaces", "m v=1   ", [("m", (), "v", 1.0, DEFAULT_TS)]),
    ("several spaces between sections", "m,t=a   v=1    9", [("m", (("t", "a"),), "v", 1.0, 9)]),
    ("leading whitespace", " \t m v=1 9", [("m", (), "v", 1.0, 9)]),
    ("CRLF", "m v=1 9\r\n", [("m", (), "v", 1.0, 9)]),
    ("quoted tag value is literal", 'm,t="x" v=1 9', [("m", (("t", '"x"'),), "v", 1.0, 9)]),
]


@pytest.mark.parametrize(
    ("line", "expected"), [c[1:] for c in VALID_LINES], ids=[c[0] for c in VALID_LINES]
)
def test_valid_line_protocol(line: str, expected: list[tuple[object, ...]]) -> None:
    result = lp(line)
    assert result.dead_letters == []
    assert pts(result) == expected


BOOLEANS = [("t", 1.0), ("T", 1.0), ("true", 1.0), ("True", 1.0), ("TRUE", 1.0)] + [
    ("f", 0.0),
    ("F", 0.0),
    ("false", 0.0),
    ("False", 0.0),
    ("FALSE", 0.0),
]


@pytest.mark.parametrize(("token", "value"), BOOLEANS)
def test_booleans(token: str, value: float) -> None:
    assert pts(lp(f"m v={token} 1")) == [("m", (), "v", value, 1)]


@pytest.mark.parametrize(
    ("precision", "expected"),
    [("ns", 17), ("us", 17_000), ("ms", 17_000_000), ("s", 17_000_000_000)],
)
def test_precision_scales_timestamps(precision: str, expected: int) -> None:
    assert lp("m v=1 17", precision=precision).points[0].timestamp_ns == expected


def test_precision_does_not_scale_default_timestamp() -> None:
    assert lp("m v=1", precision="s").points[0].timestamp_ns == DEFAULT_TS


def test_unknown_precision_is_a_configuration_error() -> None:
    with pytest.raises(ValueError, match="precision"):
        parse_line_protocol(b"m v=1", precision="h")


def test_comments_blank_lines_and_crlf_are_skipped() -> None:
    data = b"# a comment\r\n\r\n   \n\t# indented comment\nm v=1 1\r\n\n"
    result = lp(data)
    assert result.dead_letters == []
    assert pts(result) == [("m", (), "v", 1.0, 1)]


def test_only_string_fields_gives_no_point_and_no_error() -> None:
    assert lp('m,t=a s="x",u="y" 1') == ParseResult([], [])


def test_empty_message() -> None:
    assert lp(b"") == ParseResult([], [])


def test_missing_timestamp_uses_current_time_once_per_message() -> None:
    before = time.time_ns()
    result = parse_line_protocol(b"m v=1\nm w=2\nm x=3 5")
    after = time.time_ns()
    stamps = [p.timestamp_ns for p in result.points]
    assert before <= stamps[0] <= after
    assert stamps[0] == stamps[1]
    assert stamps[2] == 5


# --------------------------------------------------------------------------- line protocol: invalid

INVALID_LINES: list[tuple[str, str]] = [
    ("cpu", "missing fields"),
    ("cpu,host=a", "missing fields"),
    (",t=1 v=1", "missing measurement"),
    ("cpu,t v=1", "tag 't' has no '='"),
    ("cpu,=a v=1", "empty tag key"),
    ("cpu, v=1", "empty tag key"),
    ("cpu,t= v=1", "tag 't' has an empty value"),
    ("cpu,t=a=b v=1", "tag 't' has an unescaped '='"),
    ("cpu,t=a,t=b v=1", "duplicate tag 't'"),
    ("cpu v", "field 'v' has no '='"),
    ("cpu =1", "empty field key"),
    ("cpu v=1,,w=2", "empty field key"),
    ("cpu v=1,", "empty field key"),
    ("cpu v=", "field 'v' has no value"),
    ("cpu v=,w=1", "field 'v' has no value"),
    ("cpu usage=abc", "field 'usage' has invalid value 'abc'"),
    ("cpu v=nan", "field 'v' has non-finite value 'nan'"),
    ("cpu v=NaN", "non-finite"),
    ("cpu v=-inf", "non-finite"),
    ("cpu v=+Infinity", "non-finite"),
    ("cpu v=1e400", "field 'v' has non-finite value '1e400'"),
    ("cpu v=-1e400", "non-finite"),
    ("cpu v=1_000", "invalid value '1_000'"),
    ("cpu v=+1", "invalid value '+1'"),
    ("cpu v=\u0661", "invalid value"),
    ("cpu v=0x10", "invalid value"),
    ("cpu v=1.5i", "invalid value '1.5i'"),
    ("cpu v=i", "invalid value 'i'"),
    ("cpu v=12i5", "invalid value"),
    (f"cpu v={INT64_MAX + 1}i", "integer out of range"),
    (f"cpu v={INT64_MIN - 1}i", "integer out of range"),
    ("cpu v=-1u", "invalid value '-1u'"),
    (f"cpu v={2**64}u", "unsigned integer out of range"),
    ("cpu v=truE", "invalid value 'truE'"),
    ("cpu v=yes", "invalid value 'yes'"),
    ('cpu v="abc', "field 'v' has an unterminated string value"),
    ('cpu v="abc\\"', "unterminated"),
    ('cpu v="a"b', "field 'v' has data after its closing quote"),
    ("cpu v=1 abc", "invalid timestamp 'abc'"),
    ("cpu v=1 1.5", "invalid timestamp '1.5'"),
    ("cpu v=1 1_0", "invalid timestamp"),
    ("cpu v=1 -", "invalid timestamp"),
    ("cpu v=1 99999999999999999999", "outside the supported range"),
    ("mem v=1 -5", "outside the supported range"),
    ("cpu v=1 1 2", "unexpected data after timestamp"),
    ('cpu s="x" 1 2', "unexpected data after timestamp"),
]


@pytest.mark.parametrize(("line", "reason"), INVALID_LINES)
def test_invalid_lines_become_one_dead_letter(line: str, reason: str) -> None:
    result = lp(line)
    assert result.points == []
    assert len(result.dead_letters) == 1
    letter = result.dead_letters[0]
    assert letter.raw == line.encode()
    assert letter.reason.startswith("line 1: ")
    assert reason in letter.reason


def test_timestamp_out_of_range_after_precision() -> None:
    result = lp(f"m v=1 {INT64_MAX // 10}", precision="s")
    assert "outside the supported range" in result.dead_letters[0].reason


def test_first_error_wins_whatever_the_path() -> None:
    """A bad field and a bad timestamp: the field is reported, as the scanner meets it first."""
    assert "field 'v'" in lp("m v=abc xyz").dead_letters[0].reason
    assert "field 'v'" in lp(r"m\ x v=abc xyz").dead_letters[0].reason


def test_bad_lines_do_not_stop_the_good_ones() -> None:
    data = b"m v=1 1\nm v=abc 2\r\nm v=3 3\nnot-a-line\nm v=5 5"
    result = lp(data)
    assert [p.value for p in result.points] == [1.0, 3.0, 5.0]
    assert [d.raw for d in result.dead_letters] == [b"m v=abc 2\r", b"not-a-line"]
    assert result.dead_letters[0].reason == "line 2: field 'v' has invalid value 'abc'"
    assert result.dead_letters[1].reason.startswith("line 4: ")


def test_a_bad_field_discards_the_whole_line() -> None:
    result = lp("m a=1,b=oops,c=3 1\nm d=4 1")
    assert [p.field for p in result.points] == ["d"]
    assert len(result.dead_letters) == 1


def test_invalid_utf8_line_is_dead_the_rest_parses() -> None:
    data = b"m v=1 1\nm,host=\xff\xfe v=2 2\n# comment \xff\nm v=3 3"
    result = lp(data)
    assert [p.value for p in result.points] == [1.0, 3.0]
    assert result.dead_letters == [
        parsing.DeadLetter(b"m,host=\xff\xfe v=2 2", "line 2: invalid UTF-8")
    ]


def test_points_are_real_metric_points() -> None:
    point = lp("cpu,host=a v=1 5").points[0]
    expected = MetricPoint("cpu", (("host", "a"),), "v", 1.0, 5)
    assert point == expected
    assert point.series == "cpu,host=a v"


def test_points_survive_pickle() -> None:
    import pickle

    points = lp("cpu,host=a v=1,w=2i 5").points
    assert pickle.loads(pickle.dumps(points)) == points


# --------------------------------------------------------------------------- Telegraf JSON


def js(document: object, **kwargs: object) -> ParseResult:
    kwargs.setdefault("default_timestamp_ns", DEFAULT_TS)
    return parse_telegraf_json(json.dumps(document).encode(), **kwargs)  # type: ignore[arg-type]


def metric(**overrides: object) -> dict[str, object]:
    base: dict[str, object] = {
        "name": "cpu",
        "tags": {"host": "a", "cpu": "cpu0"},
        "fields": {"usage_user": 12.5, "usage_system": 3},
        "timestamp": 1_700_000_000,
    }
    base.update(overrides)
    return base


def test_json_single_metric() -> None:
    tags = (("cpu", "cpu0"), ("host", "a"))
    assert pts(js(metric())) == [
        ("cpu", tags, "usage_user", 12.5, TS),
        ("cpu", tags, "usage_system", 3.0, TS),
    ]


def test_json_batch() -> None:
    result = js({"metrics": [metric(), metric(name="mem", tags={}, fields={"used": 1})]})
    assert result.dead_letters == []
    assert [(p.measurement, p.field) for p in result.points] == [
        ("cpu", "usage_user"),
        ("cpu", "usage_system"),
        ("mem", "used"),
    ]


JSON_VALUES = [
    ("bool true", {"b": True}, [("b", 1.0)]),
    ("bool false", {"b": False}, [("b", 0.0)]),
    ("string ignored", {"s": "x", "v": 2}, [("v", 2.0)]),
    ("only strings", {"s": "x"}, []),
    ("big int", {"v": 2**70}, [("v", float(2**70))]),
]


@pytest.mark.parametrize(
    ("fields", "expected"), [c[1:] for c in JSON_VALUES], ids=[c[0] for c in JSON_VALUES]
)
def test_json_field_types(fields: dict[str, object], expected: list[tuple[str, float]]) -> None:
    result = js(metric(fields=fields))
    assert result.dead_letters == []
    assert [(p.field, p.value) for p in result.points] == expected


@pytest.mark.parametrize(
    ("timestamp", "expected"),
    [
        (1_700_000_000, TS),
        (1_700_000_000.123, 1_700_000_000_123_000_000),
        (1.5, 1_500_000_000),
        (None, DEFAULT_TS),
    ],
)
def test_json_timestamps_in_seconds(timestamp: float | None, expected: int) -> None:
    assert js(metric(timestamp=timestamp)).points[0].timestamp_ns == expected


def test_json_missing_timestamp_and_tags() -> None:
    doc = {"name": "m", "fields": {"v": 1}}
    assert pts(js(doc)) == [("m", (), "v", 1.0, DEFAULT_TS)]


def test_json_numeric_tags_are_converted() -> None:
    result = js(metric(tags={"port": 8080, "ratio": 0.5, "host": "a"}))
    assert result.points[0].tags == (("host", "a"), ("port", "8080"), ("ratio", "0.5"))


INVALID_METRICS = [
    ("name missing", {"fields": {"v": 1}}, "'name'"),
    ("name not a string", metric(name=5), "'name'"),
    ("name empty", metric(name=""), "'name'"),
    ("tags not an object", metric(tags=["a"]), "'tags' must be an object"),
    ("tag value bool", metric(tags={"t": True}), "tag 't' must be a string"),
    ("tag value null", metric(tags={"t": None}), "tag 't' must be a string"),
    ("tag value object", metric(tags={"t": {}}), "tag 't' must be a string"),
    ("tag value empty", metric(tags={"t": ""}), "tag 't' has an empty value"),
    ("tag key empty", metric(tags={"": "x"}), "empty tag key"),
    ("fields missing", {"name": "m"}, "'fields'"),
    ("fields empty", metric(fields={}), "'fields'"),
    ("fields list", metric(fields=[1]), "'fields'"),
    ("field null", metric(fields={"v": None}), "field 'v' has invalid value null"),
    ("field list", metric(fields={"v": [1]}), "field 'v' has invalid value [1]"),
    ("field key empty", metric(fields={"": 1}), "empty field key"),
    ("timestamp string", metric(timestamp="now"), "'timestamp'"),
    ("timestamp bool", metric(timestamp=True), "'timestamp'"),
    ("timestamp too large", metric(timestamp=10**12), "outside the supported range"),
    ("timestamp float near max", metric(timestamp=1.797e302), "outside the supported range"),
    ("timestamp float below", metric(timestamp=-1e300), "outside the supported range"),
]


@pytest.mark.parametrize(
    ("doc", "reason"), [c[1:] for c in INVALID_METRICS], ids=[c[0] for c in INVALID_METRICS]
)
def test_json_invalid_single_metric_is_one_dead_letter_of_the_whole_bytes(
    doc: dict[str, object], reason: str
) -> None:
    data = json.dumps(doc).encode()
    result = parse_telegraf_json(data)
    assert result.points == []
    assert len(result.dead_letters) == 1
    assert result.dead_letters[0].raw == data
    assert reason in result.dead_letters[0].reason


@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity"])
def test_json_non_finite_field_rejected(token: str) -> None:
    data = b'{"name":"m","fields":{"v":' + token.encode() + b"}}"
    result = parse_telegraf_json(data)
    assert result.points == []
    assert "field 'v' has non-finite value" in result.dead_letters[0].reason


@pytest.mark.parametrize("token", ["NaN", "Infinity"])
def test_json_non_finite_timestamp_rejected(token: str) -> None:
    data = b'{"name":"m","fields":{"v":1},"timestamp":' + token.encode() + b"}"
    assert "'timestamp' is not finite" in parse_telegraf_json(data).dead_letters[0].reason


def test_json_bad_element_in_batch() -> None:
    bad = {"name": "x", "fields": {"v": "s", "w": [1, 2]}, "tags": {"é": "ü"}}
    data = json.dumps({"metrics": [metric(), bad, 7, metric(name="mem")]}).encode()
    result = parse_telegraf_json(data)
    assert [p.measurement for p in result.points] == ["cpu", "cpu", "mem", "mem"]
    assert [d.raw for d in result.dead_letters] == [
        '{"name":"x","fields":{"v":"s","w":[1,2]},"tags":{"é":"ü"}}'.encode(),
        b"7",
    ]
    assert result.dead_letters[0].reason == "metrics[1]: field 'w' has invalid value [1,2]"
    assert result.dead_letters[1].reason.startswith("metrics[2]: ")


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"{not json", "invalid JSON"),
        (b'{"name": "m", "fields": {"v": 1}', "invalid JSON"),
        (b"\xff\xfe{", "invalid JSON"),
        (b"[1, 2]", "must be an object, got list"),
        (b"42", "must be an object, got int"),
        (b'{"metrics": {"name": "m"}}', "'metrics' must be a list"),
        (b'{"metrics": null}', "'metrics' must be a list"),
        (b"[" * 100_000, "invalid JSON"),
    ],
)
def test_json_invalid_message_is_one_dead_letter(data: bytes, reason: str) -> None:
    result = parse_telegraf_json(data)
    assert result.points == []
    assert len(result.dead_letters) == 1
    assert result.dead_letters[0].raw == data
    assert reason in result.dead_letters[0].reason


def test_json_empty_batch() -> None:
    assert parse_telegraf_json(b'{"metrics": []}') == ParseResult([], [])


# --------------------------------------------------------------------------- auto-detection


@pytest.mark.parametrize(
    ("data", "measurement"),
    [
        (b'{"name":"j","fields":{"v":1},"timestamp":1}', "j"),
        (b' \r\n\t {"name":"j","fields":{"v":1},"timestamp":1}', "j"),
        (b"lp v=1 1", "lp"),
        (b"\n\nlp v=1 1", "lp"),
    ],
)
def test_parse_message_detects_the_format(data: bytes, measurement: str) -> None:
    result = parse_message(data)
    assert [p.measurement for p in result.points] == [measurement]


def test_parse_message_bad_json_is_not_retried_as_line_protocol() -> None:
    result = parse_message(b"{oops v=1 1")
    assert result.points == []
    assert "invalid JSON" in result.dead_letters[0].reason


def test_parse_message_passes_default_timestamp_and_precision() -> None:
    assert parse_message(b"m v=1", default_timestamp_ns=9).points[0].timestamp_ns == 9
    assert parse_message(b"m v=1 2", precision="s").points[0].timestamp_ns == 2 * 10**9
    doc = b'{"name":"j","fields":{"v":1}}'
    assert parse_message(doc, default_timestamp_ns=9).points[0].timestamp_ns == 9


# --------------------------------------------------------------------------- formatting


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("cpu", {"host": "a"}, {"v": 1.5}, 7), "cpu,host=a v=1.5 7"),
        (("cpu", {}, {"v": 1.5}, None), "cpu v=1.5"),
        (("cpu", {"z": "1", "a": "2"}, {"v": 1.0}, 1), "cpu,a=2,z=1 v=1.0 1"),
        (("m", {}, {"i": 3, "b": True, "f": False}, 1), "m i=3i,b=true,f=false 1"),
        (("m", {}, {"s": 'say "hi" \\o/'}, 1), r'm s="say \"hi\" \\o/" 1'),
        (("m", {}, {"x": 1e20, "y": -0.001}, 1), "m x=1e+20,y=-0.001 1"),
        (("my m,x", {"t k": "a=b,c"}, {"f,k=": 1}, 1), r"my\ m\,x,t\ k=a\=b\,c f\,k\==1i 1"),
        (("a=b", {"k": "v\\"}, {"f": 1}, 1), r"a=b,k=v\\ f=1i 1"),
    ],
)
def test_format_line_protocol(args: tuple[object, ...], expected: str) -> None:
    assert format_line_protocol(*args) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (("", {}, {"v": 1}), ValueError),
        (("#m", {}, {"v": 1}), ValueError),
        (("\tm", {}, {"v": 1}), ValueError),
        (("m\n", {}, {"v": 1}), ValueError),
        (("m", {"": "a"}, {"v": 1}), ValueError),
        (("m", {"t": ""}, {"v": 1}), ValueError),
        (("m", {}, {}), ValueError),
        (("m", {}, {"": 1}), ValueError),
        (("m", {}, {"v": math.nan}), ValueError),
        (("m", {}, {"v": math.inf}), ValueError),
        (("m", {}, {"v": 2**63}), ValueError),
        (("m", {}, {"v": "a\nb"}), ValueError),
        (("m", {}, {"v": None}), TypeError),
    ],
)
def test_format_rejects_what_line_protocol_cannot_say(
    args: tuple[object, ...], error: type[Exception]
) -> None:
    with pytest.raises(error):
        format_line_protocol(*args)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- properties

NAME = st.text(
    st.characters(exclude_categories=("Cs",), exclude_characters="\n"), min_size=1, max_size=12
)
MEASUREMENT = NAME.filter(lambda s: s[0] not in "#\t")
TAGS = st.dictionaries(NAME, NAME, max_size=4)
FIELD_VALUE = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(min_value=INT64_MIN, max_value=INT64_MAX),
    st.booleans(),
    st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\n"), max_size=10),
)
FIELDS = st.dictionaries(NAME, FIELD_VALUE, min_size=1, max_size=5)
TIMESTAMP = st.one_of(
    st.none(), st.integers(min_value=MIN_TIMESTAMP_NS, max_value=MAX_TIMESTAMP_NS - 1)
)
LINE = st.tuples(MEASUREMENT, TAGS, FIELDS, TIMESTAMP)


def expected_points(
    measurement: str, tags: dict[str, str], fields: dict[str, object], ts: int | None
) -> list[MetricPoint]:
    sorted_tags = tuple(sorted(tags.items()))
    return [
        MetricPoint(measurement, sorted_tags, key, float(value), DEFAULT_TS if ts is None else ts)
        for key, value in fields.items()
        if not isinstance(value, str)
    ]


@given(st.lists(LINE, min_size=1, max_size=5), st.sampled_from(["\n", "\r\n"]))
@example([("a\\", {"k\\": "v\\"}, {"f\\": "s\\"}, None)], "\n")
@example([(" m", {" ": ","}, {"=": 1.5, '"': 'x"y'}, 1)], "\n")
@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
def test_round_trip(
    lines: list[tuple[str, dict[str, str], dict[str, object], int | None]], eol: str
) -> None:
    text = eol.join(format_line_protocol(*line) for line in lines)
    result = parse_line_protocol(text.encode("utf-8"), default_timestamp_ns=DEFAULT_TS)
    assert result.dead_letters == []
    assert result.points == [p for line in lines for p in expected_points(*line)]
    for point in result.points:  # what the parser caches is what the schema computes
        assert point.series == series_key(point.measurement, point.tags, point.field)
        assert point.tenant == tenant_of(point.tags)


def line_is_skipped(raw: bytes) -> bool:
    body = raw[:-1] if raw.endswith(b"\r") else raw
    body = body.lstrip(b" \t")
    return body == b"" or body.startswith(b"#")


LP_ALPHABET = st.sampled_from(
    [b"m", b"v", b"t", b"=", b",", b" ", b"\\", b'"', b"1", b"-", b".", b"e", b"i", b"u", b"#"]
    + [b"\n", b"\r", b"\t", b"\xff", b"\xc3\xa9", b"nan", b"true", b"99999999999999999999"]
)
LP_BYTES = st.one_of(st.binary(max_size=200), st.lists(LP_ALPHABET, max_size=40).map(b"".join))


@given(LP_BYTES)
@settings(max_examples=600)
def test_line_protocol_accounts_for_every_line(data: bytes) -> None:
    result = parse_line_protocol(data, default_timestamp_ns=DEFAULT_TS)
    assert not any("internal" in d.reason for d in result.dead_letters)
    expected_points: list[MetricPoint] = []
    expected_dead: list[bytes] = []
    for raw in data.split(b"\n"):
        alone = parse_line_protocol(raw, default_timestamp_ns=DEFAULT_TS)
        if line_is_skipped(raw):
            assert alone == ParseResult([], [])
            continue
        if alone.points:
            assert alone.dead_letters == []
        elif alone.dead_letters:
            assert [d.raw for d in alone.dead_letters] == [raw]
        else:
            assert b'"' in raw, "a line with neither points nor error must be string-only"
        expected_points += alone.points
        expected_dead += [d.raw for d in alone.dead_letters]
    assert result.points == expected_points
    assert [d.raw for d in result.dead_letters] == expected_dead


@given(st.binary(max_size=300))
@settings(max_examples=300)
def test_arbitrary_bytes_never_raise(data: bytes) -> None:
    for parse in (parse_message, parse_line_protocol, parse_telegraf_json):
        result = parse(data)
        assert isinstance(result, ParseResult)
        assert not any("internal" in d.reason for d in result.dead_letters)


@given(st.binary(max_size=200))
def test_invalid_json_bytes_are_one_dead_letter(data: bytes) -> None:
    try:
        json.loads(data)
    except (ValueError, RecursionError):
        result = parse_telegraf_json(data)
        assert result.points == []
        assert [d.raw for d in result.dead_letters] == [data]


JSON_SCALAR = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(),
    st.text(max_size=5),
)
JSON_ANY = st.recursive(
    JSON_SCALAR,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=10,
)
JSON_METRIC = st.one_of(
    JSON_ANY,
    st.fixed_dictionaries(
        {
            "name": st.one_of(st.text(max_size=4), JSON_SCALAR),
            "tags": st.one_of(
                st.dictionaries(st.text(max_size=3), JSON_SCALAR, max_size=3), JSON_ANY
            ),
            "fields": st.one_of(
                st.dictionaries(st.text(max_size=3), JSON_SCALAR, max_size=3), JSON_ANY
            ),
            "timestamp": st.one_of(JSON_SCALAR, st.floats()),
        }
    ),
)


@given(st.lists(JSON_METRIC, max_size=6))
@settings(max_examples=300)
def test_json_batch_accounts_for_every_element(metrics: list[object]) -> None:
    data = json.dumps({"metrics": metrics}).encode()
    result = parse_telegraf_json(data, default_timestamp_ns=DEFAULT_TS)
    assert not any("internal" in d.reason for d in result.dead_letters)
    expected_points: list[MetricPoint] = []
    expected_reasons: list[str] = []
    for index, element in enumerate(metrics):
        if not isinstance(element, dict):
            expected_reasons.append(f"metrics[{index}]: a metric must be an object")
            continue
        alone = parse_telegraf_json(json.dumps(element).encode(), default_timestamp_ns=DEFAULT_TS)
        assert len(alone.dead_letters) <= 1
        assert not (alone.points and alone.dead_letters)
        expected_points += alone.points
        expected_reasons += [f"metrics[{index}]: {d.reason}" for d in alone.dead_letters]
    assert result.points == expected_points
    reasons = [d.reason for d in result.dead_letters]
    assert len(reasons) == len(expected_reasons)
    for reason, expected in zip(reasons, expected_reasons, strict=True):
        assert reason.startswith(expected)
    for letter in result.dead_letters:
        json.loads(letter.raw)


PLAIN_LINE = st.lists(
    st.sampled_from(
        ["m", "v", "t", "=", ",", " ", "1", "-", ".", "e", "i", "u", "#", "T", "\t", "é"]
    ),
    min_size=1,
    max_size=30,
).map("".join)


@given(PLAIN_LINE)
@settings(max_examples=600)
def test_fast_path_agrees_with_full_scanner(line: str) -> None:
    line = line.lstrip(" \t")
    if not line or line.startswith("#"):
        return

    def run(parser: object) -> tuple[list[MetricPoint], str | None]:
        out: list[MetricPoint] = []
        try:
            parser(line, 1, DEFAULT_TS, out)  # type: ignore[operator]
        except parsing._Invalid as err:
            return [], str(err)
        return out, None

    assert run(parsing._parse_plain_line) == run(parsing._parse_escaped_line)


FLOAT_GRAMMAR = re.compile(r"-?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?", re.ASCII)


@given(
    st.one_of(
        st.text(st.sampled_from("0123456789.-+eE_in\u0661"), min_size=1, max_size=8),
        st.floats(allow_nan=False, allow_infinity=False).map(repr),
    )
)
@settings(max_examples=600)
def test_float_tokens_follow_influx_grammar(token: str) -> None:
    result = lp(f"m v={token} 1")
    accepted = bool(result.points)
    in_grammar = FLOAT_GRAMMAR.fullmatch(token) is not None
    finite = in_grammar and math.isfinite(float(token))
    if not token.endswith(("i", "u")):
        assert accepted == finite, result


def test_plain_lines_carry_series_and_tenant_equal_to_the_schema():
    result = parse_line_protocol(
        b"cpu,tenant=acme,host=a usage_user=1.5,usage_system=2 1\ncpu,host=b idle=3i 2",
        default_timestamp_ns=DEFAULT_TS,
    )
    assert [(p.series, p.tenant) for p in result.points] == [
        ("cpu,host=a,tenant=acme usage_user", "acme"),
        ("cpu,host=a,tenant=acme usage_system", "acme"),
        ("cpu,host=b idle", "default"),
    ]
    for point in result.points:
        assert point.known_series is not None
        assert point.series == series_key(point.measurement, point.tags, point.field)
