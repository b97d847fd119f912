"""The policy language: what it evaluates, what it refuses (with token and column), and that no
input ever runs code."""

import ast
import builtins
import math
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from incidents.policy import (
    FIELDS,
    MAX_CONDITION_CHARS,
    ConditionError,
    compile_condition,
    evaluate_condition,
    incident_view,
)
from incidents.records import Incident
from tests.factories import seed_incident

NOW = datetime(2024, 1, 1, tzinfo=UTC)


def incident(**changes) -> Incident:
    return seed_incident(
        **{
            "id": "0b6f1f9e-3f55-4c55-9d55-2f1b7c1d9a01",
            "metadata": {"database": "primary", "timeout_count": 15, "db": {"role": "leader"}},
            "score": 0.93,
            "peak_score": 0.97,
            "repeat_count": 2,
            "tags": ("db", "prod"),
            **changes,
        }
    )


SEED = "severity == 'critical' and category == 'database'"


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        (SEED, True),
        ("severity == 'critical' and category == 'network'", False),
        ("severity == 'high' or category == 'database'", True),
        ("not severity == 'critical'", False),
        ("not (severity == 'low' or severity == 'info')", True),
        ("severity in ('high', 'critical')", True),
        ("severity in ['low']", False),
        ("severity not in ['low', 'info']", True),
        ("category != 'database'", False),
        ("metadata.database == 'primary'", True),
        ("metadata.database == 'replica'", False),
        ("metadata.timeout_count >= 10", True),
        ("metadata.timeout_count > 15", False),
        ("metadata.db.role == 'leader'", True),
        ("metadata.missing == None", True),
        ("metadata.missing == null", True),
        ("metadata.missing", False),
        ("metadata.missing.deeper == None", True),
        ("metadata.database.deeper == None", True),  # a string has no keys: None, no error
        ("metadata.missing > 3", False),  # None is not ordered: false, not an error
        ("'db' in tags", True),
        ("'staging' in tags", False),
        ("'staging' not in tags", True),
        ("tags", True),
        ("'database' in metadata", True),
        ("score >= 0.9", True),
        ("score >= 0.95", False),
        ("peak_score > score", True),
        ("0.5 < score <= 1", True),
        ("0.5 < score < 0.6", False),
        ("repeat_count == 2 and status == 'open'", True),
        ("kind == 'manual' and source == 'monitoring'", True),
        ("series == None", True),
        ("'Timeout' in title", True),
        ("'timeout' in description", False),
        ("severity >= 'high'", True),  # by rank, not alphabetically ('critical' < 'high')
        ("severity < 'high'", False),
        ("severity > 'critical'", False),
        ("score > 'a'", False),  # a number and a string are not ordered
        ("severity > 1", False),
        ("metadata.db in metadata", False),  # an unhashable key: no match, no error
        ("metadata.db in tags", False),
        ("True", True),
        ("false", False),
        ("repeat_count > -1", True),
        ("(severity == 'critical') and (category == 'database' or 'x' in tags)", True),
    ],
)
def test_conditions_evaluate_against_incident_fields(condition, expected):
    assert compile_condition(condition).matches(incident()) is expected


def test_a_condition_evaluates_a_plain_dict_view_too():
    condition = compile_condition(SEED)
    assert condition.matches({"severity": "critical", "category": "database"})
    assert not condition.matches({"severity": "critical"})  # a missing field is None
    assert evaluate_condition("severity >= 'high'", {"severity": "critical"})


def test_the_view_holds_exactly_the_documented_fields():
    assert set(incident_view(incident())) == FIELDS


def test_nan_scores_never_match_an_ordering():
    assert not compile_condition("score > 0.5").matches(incident(score=math.nan))
    assert not compile_condition("score <= 0.5").matches(incident(score=math.nan))


@pytest.mark.parametrize(
    ("condition", "reason", "token", "column"),
    [
        ("__import__('os').system('touch /tmp/x')", "function calls", "__import__(", 1),
        ("().__class__.__bases__", "names starting with '_'", "__class__", 4),
        ("metadata.__class__", "names starting with '_'", "__class__", 10),
        ("severity == 'x' and __builtins__", "names starting with '_'", "__builtins__", 21),
        ("lambda: 1", "lambdas", "lambda: 1", 1),
        ("f'{severity}' == 'critical'", "f-strings", "f'{severity}'", 1),
        ("tags[0] == 'db'", "subscripts", "tags[0]", 1),
        ("[t for t in tags]", "comprehensions", "[t for t in tags]", 1),
        ("score + 1 > 2", "arithmetic", "score + 1", 1),
        ("2 ** 100000 > 1", "arithmetic", "2 ** 100000", 1),
        ("open('/etc/passwd')", "function calls", "open('/etc/passwd')", 1),
        ("severity == 'a' if True else 'b'", "conditional", "severity == 'a' if", 1),
        ("(x := 1)", "assignments", "x := 1", 2),
        ("{'a': 1}", "dict literals", "{'a': 1}", 1),
        ("severity is None", "'is' comparisons", "is", 13),
        ("hostname == 'db1'", "unknown field", "hostname", 1),
        ("severity == 'x' or owner", "unknown field", "owner", 20),
        ("score.real > 0", "only metadata has keys", "score.real", 1),
        ("os.system", "unknown field", "os", 1),
        ("severity in (title,)", "list items must be literals", "title", 14),
        ("severity == b'critical'", "bytes literals", "b'critical'", 13),
        ("score > 1j", "complex literals", "1j", 9),
        ("score > ...", "ellipsis literals", "...", 9),
        ("severity = 'critical'", "syntax error", "=", 10),
        ("severity ==", "syntax error", "end of condition", 12),
        ("severity == 'critical' and", "syntax error", "end of condition", 27),
        ("import os", "syntax error", "import", 1),
        ("severity == 'a'; __import__('os')", "syntax error", ";", 16),
    ],
)
def test_anything_outside_the_language_is_refused_naming_token_and_column(
    condition, reason, token, column
):
    with pytest.raises(ConditionError) as caught:
        compile_condition(condition)
    error = caught.value
    assert reason in str(error)
    assert error.token is not None and error.token.startswith(token), error.token
    assert error.column == column, str(error)
    assert f"at column {column}" in str(error)


@pytest.mark.parametrize(
    ("condition", "message"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("x" * (MAX_CONDITION_CHARS + 1), "longer than"),
        ("not " * 40 + "true", "nested deeper"),
        ("severity == 'a\x00'", "NUL"),
        ("(" * 300 + "1" + ")" * 300, "parenthes"),
    ],
)
def test_empty_oversized_and_over_deep_conditions_are_refused(condition, message):
    with pytest.raises(ConditionError, match=message):
        compile_condition(condition)


def test_a_condition_that_is_not_a_string_is_refused():
    with pytest.raises(ConditionError):
        compile_condition(42)  # type: ignore[arg-type]


CODE_RUNNING_CONDITIONS = [
    "__import__('os').system('touch {path}')",
    "().__class__.__bases__[0].__subclasses__()",
    "[c for c in ().__class__.__base__.__subclasses__() if c.__name__ == 'Popen'][0]"
    "('touch {path}')",
    "(lambda: __import__('os').system('touch {path}'))()",
    "f\"{{__import__('os').system('touch {path}')}}\"",
    "metadata.__class__.__init__.__globals__",
    "exec(\"open('{path}', 'w')\")",
    "eval(\"open('{path}', 'w')\")",
    "open('{path}', 'w')",
    "breakpoint()",
    "globals()['__builtins__']",
    "getattr(metadata, 'clear')()",
]


@pytest.mark.parametrize("template", CODE_RUNNING_CONDITIONS)
def test_conditions_that_try_to_run_code_are_refused_and_never_run(template, tmp_path):
    marker = tmp_path / "pwned"
    condition = template.format(path=marker)
    with no_code_execution(), pytest.raises(ConditionError):
        compile_condition(condition)
    assert not marker.exists()


@contextmanager
def no_code_execution():
    """Fail on eval/exec, and on any compile() that would produce code rather than an AST."""
    real_compile = builtins.compile

    def ast_only_compile(source, filename, mode, flags=0, *args, **kwargs):
        assert flags & ast.PyCF_ONLY_AST, "compile() asked for code, not an AST"
        return real_compile(source, filename, mode, flags, *args, **kwargs)

    def forbidden(*_args, **_kwargs):
        raise AssertionError("eval/exec called")

    with (
        mock.patch.object(builtins, "compile", ast_only_compile),
        mock.patch.object(builtins, "eval", forbidden),
        mock.patch.object(builtins, "exec", forbidden),
    ):
        yield


TOKENS = [
    "severity",
    "category",
    "metadata",
    "tags",
    "score",
    "title",
    "__import__",
    "__class__",
    "__bases__",
    "os",
    "system",
    "open",
    "eval",
    "lambda",
    "x",
    ":",
    "(",
    ")",
    "[",
    "]",
    "{",
    "}",
    ".",
    ",",
    "==",
    "!=",
    "<",
    ">=",
    "in",
    "not",
    "and",
    "or",
    "is",
    "if",
    "else",
    "for",
    "+",
    "*",
    "**",
    "-",
    "~",
    "@",
    ";",
    "=",
    ":=",
    "'critical'",
    "'touch /tmp/x'",
    '"db"',
    "f'{x}'",
    "b'x'",
    "1",
    "0.9",
    "-3",
    "1e309",
    "None",
    "True",
    "null",
    "...",
    "yield",
    "await",
    "\n",
]


def _check_never_anything_but_condition_error(text: str) -> None:
    with no_code_execution():
        try:
            condition = compile_condition(text)
        except ConditionError as exc:
            assert str(exc)
            return
    # Whatever compiled must evaluate to a bool against any view without raising.
    assert condition.matches(incident()) in (True, False)
    assert condition.matches({}) in (True, False)
    assert condition.matches({"metadata": "not a dict", "tags": None, "score": "x"}) in (
        True,
        False,
    )


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(TOKENS), min_size=1, max_size=25).map(" ".join))
def test_random_token_soup_only_ever_raises_condition_error(text):
    _check_never_anything_but_condition_error(text)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_random_text_only_ever_raises_condition_error(text):
    _check_never_anything_but_condition_error(text)


@st.composite
def valid_conditions(draw) -> str:
    """Conditions of the language built from its grammar: they must always compile."""
    fields = ["severity", "category", "status", "score", "repeat_count", "metadata.database"]
    literal = st.one_of(
        st.sampled_from(["'critical'", "'database'", "'open'", "0.5", "3", "None", "true"])
    )
    ops = st.sampled_from(["==", "!=", "<", "<=", ">", ">=", "in", "not in"])

    def comparison():
        op = draw(ops)
        right = draw(literal)
        if op in ("in", "not in"):
            right = "(" + ", ".join(draw(st.lists(literal, min_size=1, max_size=3))) + ",)"
        return f"{draw(st.sampled_from(fields))} {op} {right}"

    parts = [comparison() for _ in range(draw(st.integers(1, 4)))]
    text = parts[0]
    for part in parts[1:]:
        joiner = draw(st.sampled_from(["and", "or", "and not"]))
        text = f"({text}) {joiner} {part}"
    return text


@settings(max_examples=200, deadline=None)
@given(valid_conditions())
def test_conditions_built_from_the_grammar_compile_and_evaluate(text):
    condition = compile_condition(text)
    assert condition.matches(incident()) in (True, False)


def test_the_side_effect_file_is_not_created_by_evaluating_either(tmp_path: Path):
    """Even a string that contains code is only ever data to a compiled condition."""
    marker = tmp_path / "pwned"
    condition = compile_condition(f"title == \"__import__('os').system('touch {marker}')\"")
    assert condition.matches(incident()) is False
    assert not marker.exists()
