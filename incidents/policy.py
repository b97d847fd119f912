"""The policy language: safe conditions over incident fields, in the seed's syntax.

``severity == 'critical' and category == 'database'``, ``metadata.database == 'primary'``,
``'db' in tags``, ``score >= 0.9 or repeat_count > 3``, ``status not in ('resolved',)``.

A condition is parsed once with ``ast.parse(mode="eval")`` and checked against a strict
allow-list of node types, then compiled into a small tree of evaluator nodes of this module.
Nothing is ever handed to ``eval``/``exec``/``compile``: there is no way to reach a call, an
attribute of an arbitrary object, a subscript, a lambda, a comprehension, an f-string or a
dunder name, because the evaluator has no node for them. Everything outside the language is
refused with a ``ConditionError`` that names the offending token and its column.

Evaluation never raises: a comparison between values that cannot be ordered (``None < 1``,
``'a' < 2``) is simply false, and a metadata key that is missing is ``None``.
"""

from __future__ import annotations

import ast
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from incidents.records import SEVERITY_RANK, Incident
from incidents.schemas import Severity

MAX_CONDITION_CHARS = 2_000
MAX_DEPTH = 32
MAX_LITERAL_ITEMS = 200
_SNIPPET_CHARS = 40

FIELDS: frozenset[str] = frozenset(
    {
        "id",
        "title",
        "description",
        "severity",
        "category",
        "status",
        "kind",
        "source",
        "series",
        "score",
        "peak_score",
        "repeat_count",
        "tags",
        "metadata",
    }
)
"""Names a condition may use; ``metadata.<key>[.<key>…]`` reads into the metadata."""

NAMED_CONSTANTS: dict[str, object] = {"true": True, "false": False, "null": None}
"""Lower-case spellings accepted besides Python's ``True``/``False``/``None``."""


class ConditionError(ValueError):
    """A condition outside the language: says what is wrong, the token and its column."""

    def __init__(
        self,
        message: str,
        *,
        offending: str | None = None,
        column: int | None = None,
        hint: str | None = None,
    ) -> None:
        self.reason = message
        self.token = offending
        self.column = column
        shown = f": {offending!r}" if offending is not None else ""
        where = f" at column {column}" if column is not None else ""
        extra = f" ({hint})" if hint else ""
        super().__init__(f"{message}{shown}{where}{extra}")


class SeverityValue(str):
    """A severity that orders by rank (``severity >= 'high'`` means high or critical).

    Equality stays plain string equality; ordering against a string that is not a severity
    falls back to ``str`` ordering.
    """

    __slots__ = ()

    def _rank_pair(self, other: object) -> tuple[int, int] | None:
        if isinstance(other, str) and other in _SEVERITY_NAMES and self in _SEVERITY_NAMES:
            return SEVERITY_RANK[Severity(str(self))], SEVERITY_RANK[Severity(other)]
        return None

    def __lt__(self, other: object) -> bool:
        pair = self._rank_pair(other)
        return pair[0] < pair[1] if pair else str.__lt__(self, other)  # type: ignore[operator]

    def __le__(self, other: object) -> bool:
        pair = self._rank_pair(other)
        return pair[0] <= pair[1] if pair else str.__le__(self, other)  # type: ignore[operator]

    def __gt__(self, other: object) -> bool:
        pair = self._rank_pair(other)
        return pair[0] > pair[1] if pair else str.__gt__(self, other)  # type: ignore[operator]

    def __ge__(self, other: object) -> bool:
        pair = self._rank_pair(other)
        return pair[0] >= pair[1] if pair else str.__ge__(self, other)  # type: ignore[operator]

    __hash__ = str.__hash__

    def __eq__(self, other: object) -> bool:
        return str.__eq__(self, other)

    def __ne__(self, other: object) -> bool:
        return str.__ne__(self, other)


_SEVERITY_NAMES = frozenset(str(s) for s in Severity)


def incident_view(incident: Incident) -> dict[str, Any]:
    """The fields a condition sees, as plain values (enums as strings, tags as a tuple)."""
    return {
        "id": incident.id,
        "title": incident.title,
        "description": incident.description,
        "severity": SeverityValue(str(incident.severity)),
        "category": str(incident.category),
        "status": str(incident.status),
        "kind": str(incident.kind),
        "source": incident.source,
        "series": incident.series,
        "score": incident.score,
        "peak_score": incident.peak_score,
        "repeat_count": incident.repeat_count,
        "tags": tuple(incident.tags),
        "metadata": dict(incident.metadata),
    }


# --- compiled nodes -------------------------------------------------------------------------

Evaluator = Callable[[Mapping[str, Any]], Any]


def _constant(value: object) -> Evaluator:
    return lambda _view: value


def _field(name: str) -> Evaluator:
    def read(view: Mapping[str, Any]) -> Any:
        value = view.get(name)
        if name == "severity" and isinstance(value, str) and not isinstance(value, SeverityValue):
            return SeverityValue(value)
        return value

    return read


def _metadata_path(path: tuple[str, ...]) -> Evaluator:
    def read(view: Mapping[str, Any]) -> Any:
        value: Any = view.get("metadata")
        for key in path:
            if not isinstance(value, Mapping):
                return None
            value = value.get(key)
        return value

    return read


def _sequence(items: Sequence[Evaluator]) -> Evaluator:
    return lambda view: tuple(item(view) for item in items)


def _and(parts: Sequence[Evaluator]) -> Evaluator:
    return lambda view: all(_truthy(p(view)) for p in parts)


def _or(parts: Sequence[Evaluator]) -> Evaluator:
    return lambda view: any(_truthy(p(view)) for p in parts)


def _not(operand: Evaluator) -> Evaluator:
    return lambda view: not _truthy(operand(view))


def _negate(operand: Evaluator) -> Evaluator:
    def negate(view: Mapping[str, Any]) -> Any:
        value = operand(view)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return -value
        return None

    return negate


def _truthy(value: Any) -> bool:
    try:
        return bool(value)
    except Exception:  # a value from metadata is plain JSON; be safe anyway
        return False


def _contains(container: Any, item: Any) -> bool:
    if isinstance(container, str):
        return isinstance(item, str) and item in container
    if isinstance(container, Mapping | tuple | list | set | frozenset):
        try:
            return item in container
        except TypeError:  # an unhashable item against a mapping's keys
            return False
    return False


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


def _compare_pair(op: type[ast.cmpop], left: Any, right: Any) -> bool:
    if op is ast.Eq:
        return bool(left == right)
    if op is ast.NotEq:
        return bool(left != right)
    if op is ast.In:
        return _contains(right, left)
    if op is ast.NotIn:
        return not _contains(right, left)
    if left is None or right is None or isinstance(left, bool) != isinstance(right, bool):
        return False
    if _is_nan(left) or _is_nan(right):
        return False
    try:
        if op is ast.Lt:
            return bool(left < right)
        if op is ast.LtE:
            return bool(left <= right)
        if op is ast.Gt:
            return bool(left > right)
        return bool(left >= right)
    except TypeError:  # e.g. 'a' < 1: not ordered, so not matching
        return False


def _compare(first: Evaluator, rest: Sequence[tuple[type[ast.cmpop], Evaluator]]) -> Evaluator:
    def compare(view: Mapping[str, Any]) -> bool:
        left = first(view)
        for op, operand in rest:
            right = operand(view)
            if not _compare_pair(op, left, right):
                return False
            left = right
        return True

    return compare


# --- compiling ------------------------------------------------------------------------------

_COMPARISONS: dict[type[ast.cmpop], str] = {
    ast.Eq: "==",
    ast.NotEq: "!=",
    ast.Lt: "<",
    ast.LtE: "<=",
    ast.Gt: ">",
    ast.GtE: ">=",
    ast.In: "in",
    ast.NotIn: "not in",
}

_REFUSED: dict[type[ast.AST], str] = {
    ast.Call: "function calls are not allowed",
    ast.Subscript: "subscripts are not allowed",
    ast.Lambda: "lambdas are not allowed",
    ast.JoinedStr: "f-strings are not allowed",
    ast.FormattedValue: "f-strings are not allowed",
    ast.ListComp: "comprehensions are not allowed",
    ast.SetComp: "comprehensions are not allowed",
    ast.DictComp: "comprehensions are not allowed",
    ast.GeneratorExp: "comprehensions are not allowed",
    ast.NamedExpr: "assignments are not allowed",
    ast.IfExp: "conditional expressions are not allowed",
    ast.BinOp: "arithmetic is not allowed",
    ast.Await: "await is not allowed",
    ast.Yield: "yield is not allowed",
    ast.YieldFrom: "yield is not allowed",
    ast.Starred: "starred expressions are not allowed",
    ast.Dict: "dict literals are not allowed",
    ast.Set: "set literals are not allowed; use a list or tuple",
    ast.Slice: "slices are not allowed",
}


@dataclass(frozen=True, slots=True)
class Condition:
    """A compiled condition: ``matches(view)`` evaluates it against ``incident_view(...)``."""

    source: str
    _evaluate: Evaluator

    def matches(self, view: Mapping[str, Any] | Incident) -> bool:
        """Whether the condition holds; never raises for any view."""
        if isinstance(view, Incident):
            view = incident_view(view)
        try:
            return _truthy(self._evaluate(view))
        except RecursionError:  # pragma: no cover - depth is bounded at compile time
            return False

    def __str__(self) -> str:
        return self.source


class _Compiler:
    def __init__(self, text: str) -> None:
        self.text = text
        self.lines = text.splitlines() or [""]

    def column(self, node: ast.AST, offset: int | None = None) -> int:
        """1-based character column of ``node`` (``col_offset`` counts UTF-8 bytes)."""
        line_no = getattr(node, "lineno", 1)
        byte_offset = getattr(node, "col_offset", 0) if offset is None else offset
        line = self.lines[line_no - 1] if 0 < line_no <= len(self.lines) else ""
        chars = len(line.encode("utf-8")[:byte_offset].decode("utf-8", errors="ignore"))
        before = sum(len(x) + 1 for x in self.lines[: line_no - 1])
        return before + chars + 1

    def token(self, node: ast.AST) -> str:
        segment = ast.get_source_segment(self.text, node) or type(node).__name__
        segment = " ".join(segment.split())
        if len(segment) > _SNIPPET_CHARS:
            segment = segment[: _SNIPPET_CHARS - 1] + "…"
        return segment

    def refuse(
        self, node: ast.AST, reason: str, offending: str | None = None, hint: str | None = None
    ) -> ConditionError:
        return ConditionError(
            reason, offending=offending or self.token(node), column=self.column(node), hint=hint
        )

    def compile(self, node: ast.AST, depth: int = 0) -> Evaluator:
        if depth > MAX_DEPTH:
            raise self.refuse(node, f"the condition is nested deeper than {MAX_DEPTH} levels")
        if type(node) in _REFUSED:
            raise self.refuse(node, _REFUSED[type(node)])
        if isinstance(node, ast.BoolOp):
            parts = [self.compile(v, depth + 1) for v in node.values]
            return _and(parts) if isinstance(node.op, ast.And) else _or(parts)
        if isinstance(node, ast.UnaryOp):
            return self.unary(node, depth)
        if isinstance(node, ast.Compare):
            return self.comparison(node, depth)
        if isinstance(node, ast.Constant):
            return self.constant(node)
        if isinstance(node, ast.Name):
            return self.name(node)
        if isinstance(node, ast.Attribute):
            return self.attribute(node)
        if isinstance(node, ast.List | ast.Tuple):
            if len(node.elts) > MAX_LITERAL_ITEMS:
                raise self.refuse(node, f"a list may hold at most {MAX_LITERAL_ITEMS} items")
            return _sequence([self.literal_item(e, depth + 1) for e in node.elts])
        raise self.refuse(node, f"{type(node).__name__} is not allowed")

    def unary(self, node: ast.UnaryOp, depth: int) -> Evaluator:
        operand = self.compile(node.operand, depth + 1)
        if isinstance(node.op, ast.Not):
            return _not(operand)
        if isinstance(node.op, ast.USub):
            return _negate(operand)
        if isinstance(node.op, ast.UAdd):
            return _negate(_negate(operand))
        raise self.refuse(node, "operator '~' is not allowed")

    def comparison(self, node: ast.Compare, depth: int) -> Evaluator:
        rest: list[tuple[type[ast.cmpop], Evaluator]] = []
        for op, comparator in zip(node.ops, node.comparators, strict=True):
            if type(op) not in _COMPARISONS:
                # ``is``/``is not``: identity is meaningless here; say what to use instead.
                raise self.refuse(
                    comparator, "'is' comparisons are not allowed; use == or !=", offending="is"
                )
            rest.append((type(op), self.compile(comparator, depth + 1)))
        return _compare(self.compile(node.left, depth + 1), rest)

    def constant(self, node: ast.Constant) -> Evaluator:
        value = node.value
        if value is None or isinstance(value, bool | int | float | str):
            if isinstance(value, float) and not math.isfinite(value):
                raise self.refuse(node, "numbers must be finite")
            return _constant(value)
        raise self.refuse(node, f"{type(value).__name__} literals are not allowed")

    def literal_item(self, node: ast.AST, depth: int) -> Evaluator:
        """List/tuple items: literals only (``severity in ('high', 'critical')``)."""
        if isinstance(node, ast.Constant):
            return self.constant(node)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
            return self.unary(node, depth)
        if isinstance(node, ast.Name) and node.id in NAMED_CONSTANTS:
            return _constant(NAMED_CONSTANTS[node.id])
        if type(node) in _REFUSED:
            raise self.refuse(node, _REFUSED[type(node)])
        raise self.refuse(node, "list items must be literals (strings, numbers, true/false/null)")

    def name(self, node: ast.Name) -> Evaluator:
        if node.id.startswith("_"):
            raise self.refuse(node, "names starting with '_' are not allowed", offending=node.id)
        if node.id in NAMED_CONSTANTS:
            return _constant(NAMED_CONSTANTS[node.id])
        if node.id not in FIELDS:
            known = ", ".join(sorted(FIELDS))
            raise self.refuse(node, "unknown field", offending=node.id, hint=f"known: {known}")
        return _field(node.id)

    def attribute(self, node: ast.Attribute) -> Evaluator:
        """Only ``metadata.key[.key…]``; the first refused part is the one reported."""
        parts: list[ast.Attribute] = []
        root: ast.AST = node
        while isinstance(root, ast.Attribute):
            parts.append(root)
            root = root.value
        parts.reverse()
        for part in parts:
            if part.attr.startswith("_"):
                column_bytes = (part.end_col_offset or 0) - len(part.attr.encode("utf-8"))
                raise ConditionError(
                    "names starting with '_' are not allowed",
                    offending=part.attr,
                    column=self.column(part, column_bytes),
                )
        if not (isinstance(root, ast.Name) and root.id == "metadata"):
            if isinstance(root, ast.Name) and root.id in FIELDS:
                raise self.refuse(
                    root, "only metadata has keys: use metadata.<key>", offending=self.token(node)
                )
            # Report the root itself (a call, a tuple, a dunder, an unknown name …).
            self.compile(root)
            raise self.refuse(root, "attributes are allowed only on metadata")
        return _metadata_path(tuple(part.attr for part in parts))


def compile_condition(text: str) -> Condition:
    """Parse and check ``text``; raise ``ConditionError`` for anything outside the language."""
    if not isinstance(text, str):
        raise ConditionError("a condition must be a string")
    if not text.strip():
        raise ConditionError("the condition is empty")
    if len(text) > MAX_CONDITION_CHARS:
        raise ConditionError(f"the condition is longer than {MAX_CONDITION_CHARS} characters")
    if "\x00" in text:
        column = text.index("\x00") + 1
        raise ConditionError("the condition contains a NUL character", column=column)
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        raise _syntax_error(exc, text.strip()) from None
    except (ValueError, RecursionError, MemoryError, OverflowError) as exc:
        raise ConditionError(f"the condition cannot be parsed ({type(exc).__name__})") from None
    compiler = _Compiler(text.strip())
    try:
        evaluate = compiler.compile(tree.body)
    except RecursionError:
        raise ConditionError(f"the condition is nested deeper than {MAX_DEPTH} levels") from None
    return Condition(source=text.strip(), _evaluate=evaluate)


def _syntax_error(exc: SyntaxError, text: str) -> ConditionError:
    """Name the token where the parser gave up (``offset`` 0 means the end of the input)."""
    lines = text.splitlines() or [""]
    line_no = min(max(exc.lineno or 1, 1), len(lines))
    line = lines[line_no - 1]
    before = sum(len(x) + 1 for x in lines[: line_no - 1])
    offset = exc.offset or 0
    if offset <= 0 or offset > len(line):
        return ConditionError(
            f"syntax error: {exc.msg}", offending="end of condition", column=len(text) + 1
        )
    rest = line[offset - 1 :].split()
    token = rest[0][:_SNIPPET_CHARS] if rest else None
    return ConditionError(f"syntax error: {exc.msg}", offending=token, column=before + offset)


def evaluate_condition(text: str, view: Mapping[str, Any] | Incident) -> bool:
    """Compile and evaluate in one step (for one-off checks; rules keep their ``Condition``)."""
    return compile_condition(text).matches(view)


__all__ = [
    "FIELDS",
    "Condition",
    "ConditionError",
    "SeverityValue",
    "compile_condition",
    "evaluate_condition",
    "incident_view",
]
