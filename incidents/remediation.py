"""Remediations (the seed's "repair bot"): the pure part — configuration, templates, plans,
validation of substituted values, and the circuit breaker's decision. No I/O here: running a
plan is ``connectors.remediation_runner``, storing runs ``connectors.remediation_store``.

A remediation is configured by name (``REMEDIATIONS``), of one of two kinds:

* ``http``: ``method``, ``url``, ``headers`` and a JSON ``body`` template;
* ``command``: an ``executable`` that must be on the configuration's ``allowed_commands``
  allow-list (an absolute path; the loader checks it exists and is executable) and ``args``, a
  list of argument templates, each a string or ``{"template": …, "pattern": …}``.

Templates reference incident fields only: ``{id}``, ``{title}``, ``{severity}``,
``{metadata.service}`` … (``TEMPLATE_FIELDS``); ``{{``/``}}`` are literal braces. A template that
names anything else (``{__class__}``, ``{metadata.a!r}``, ``{0}``) is a configuration error.
Every value substituted into a command argument, URL or header must match the argument's
``pattern`` — or ``DEFAULT_VALUE_PATTERN`` — in full, must not start with ``-`` (it could turn
into an option) and must not hold control characters, whatever the pattern says. A value that
fails refuses the whole run before anything starts. Commands run without a shell (an argv list),
so ``;``, ``$(…)`` and backticks are never interpreted anyway; the validation keeps hostile
values from reaching the program at all.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Literal
from urllib.parse import quote, urlsplit

from incidents.records import Incident

DEFAULT_VALUE_PATTERN = r"[A-Za-z0-9._:@/-]{1,128}"
"""What a substituted value may be unless the argument says otherwise (matched in full)."""
MAX_VALUE_CHARS = 1024
"""No substituted value is longer, whatever its pattern allows."""
DEFAULT_TIMEOUT_SECONDS = 30.0
MAX_TIMEOUT_SECONDS = 300.0
MAX_RETRIES = 5
DEFAULT_BACKOFF_SECONDS = 1.0
MAX_BACKOFF_SECONDS = 60.0
DEFAULT_MAX_RUNS_PER_INCIDENT = 3
DEFAULT_MAX_RUNS_PER_HOUR = 20
MAX_ARGS = 64
MAX_OUTPUT_CHARS = 4000
HTTP_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
REDACTED = "***"

TEMPLATE_FIELDS = frozenset(
    {
        "id",
        "tenant",
        "fingerprint",
        "title",
        "description",
        "severity",
        "category",
        "status",
        "kind",
        "source",
        "series",
    }
)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
_METADATA_FIELD = re.compile(r"^metadata(\.[A-Za-z0-9][A-Za-z0-9_\-]{0,63}){1,8}$")
_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z\-]{1,64}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

Kind = Literal["http", "command"]


class RemediationConfigError(ValueError):
    """``REMEDIATIONS`` holds something that is not allowed; the message says what."""


class TemplateError(ValueError):
    """A substituted value was refused (or missing); nothing was run."""


class RunState(StrEnum):
    PENDING_APPROVAL = "pending_approval"
    APPROVED = "approved"
    REJECTED = "rejected"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    DRY_RUN = "dry_run"
    CIRCUIT_OPEN = "circuit_open"
    INVALID = "invalid"


COUNTED_STATES: frozenset[RunState] = frozenset(
    {
        RunState.PENDING_APPROVAL,
        RunState.APPROVED,
        RunState.RUNNING,
        RunState.SUCCEEDED,
        RunState.FAILED,
    }
)
"""Runs the circuit breaker counts: the ones that ran or may still run (not dry runs, not
refused or rejected ones)."""
FINAL_STATES: frozenset[RunState] = frozenset(
    {
        RunState.REJECTED,
        RunState.SUCCEEDED,
        RunState.FAILED,
        RunState.DRY_RUN,
        RunState.CIRCUIT_OPEN,
        RunState.INVALID,
    }
)


# --- templates ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Template:
    """A string with ``{field}`` placeholders, checked when the configuration is read."""

    source: str
    fields: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        if not isinstance(self.source, str):
            raise RemediationConfigError(f"a template must be a string, got {self.source!r}")
        names = []
        for match in _PLACEHOLDER.finditer(self.source):
            if match.group(0) in ("{{", "}}"):
                continue
            name = match.group(1)
            if name is None:
                raise RemediationConfigError(
                    f"template {self.source!r}: unbalanced brace at column {match.start() + 1}"
                )
            if name not in TEMPLATE_FIELDS and not _METADATA_FIELD.match(name):
                known = ", ".join(sorted(TEMPLATE_FIELDS))
                raise RemediationConfigError(
                    f"template {self.source!r}: {{{name}}} is not an incident field "
                    f"(use {known} or metadata.<key>)"
                )
            names.append(name)
        object.__setattr__(self, "fields", tuple(names))

    def render(self, values: Mapping[str, str], quote_value: Callable[[str], str] = str) -> str:
        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name is None:  # "{{" or "}}": a literal brace
                return match.group(0)[0]
            return quote_value(values[name])

        return _PLACEHOLDER.sub(replace, self.source)


def field_value(incident: Incident, name: str) -> str:
    """The text of an incident field for a template; ``TemplateError`` when it has none."""
    if name.startswith("metadata."):
        value: Any = incident.metadata
        for key in name.split(".")[1:]:
            value = value.get(key) if isinstance(value, Mapping) else None
    else:
        value = getattr(incident, name)
    if value is None:
        raise TemplateError(f"{{{name}}} has no value for this incident")
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    raise TemplateError(f"{{{name}}} is not a single value (a {type(value).__name__})")


def check_value(name: str, value: str, pattern: re.Pattern[str]) -> str:
    """Refuse a substituted value that is not safe to pass on; returns it unchanged."""
    if len(value) > MAX_VALUE_CHARS:
        raise TemplateError(f"{{{name}}} is longer than {MAX_VALUE_CHARS} characters")
    if _CONTROL.search(value):
        raise TemplateError(f"{{{name}}} holds a control character (newline, tab, NUL …)")
    if value.startswith("-"):
        raise TemplateError(f"{{{name}}} starts with '-' (it could be taken for an option)")
    if not pattern.fullmatch(value):
        shown = value if len(value) <= 80 else value[:77] + "..."
        raise TemplateError(f"{{{name}}} = {shown!r} does not match {pattern.pattern!r}")
    return value


def render_checked(
    template: Template,
    incident: Incident,
    pattern: re.Pattern[str],
    quote_value: Callable[[str], str] = str,
) -> str:
    values = {
        name: check_value(name, field_value(incident, name), pattern) for name in template.fields
    }
    return template.render(values, quote_value)


def _compile_pattern(raw: object, where: str) -> re.Pattern[str]:
    if not isinstance(raw, str) or not raw or len(raw) > 512:
        raise RemediationConfigError(f"{where}: a pattern is a regular expression (1-512 chars)")
    try:
        return re.compile(raw)
    except re.error as exc:
        raise RemediationConfigError(f"{where}: pattern {raw!r} is invalid: {exc}") from None


DEFAULT_PATTERN = re.compile(DEFAULT_VALUE_PATTERN)


# --- configuration --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CommandArgument:
    template: Template
    pattern: re.Pattern[str] = DEFAULT_PATTERN


@dataclass(frozen=True, slots=True)
class HttpSpec:
    method: str
    url: Template
    headers: tuple[tuple[str, Template], ...] = ()
    body: Any = None
    """A JSON value whose strings are templates (``None``: no body)."""


@dataclass(frozen=True, slots=True)
class CommandSpec:
    executable: str
    args: tuple[CommandArgument, ...] = ()


@dataclass(frozen=True, slots=True)
class Remediation:
    name: str
    kind: Kind
    spec: HttpSpec | CommandSpec
    description: str = ""
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS
    retries: int = 0
    retry_backoff_seconds: float = DEFAULT_BACKOFF_SECONDS
    dry_run: bool = False
    requires_approval: bool = False
    max_runs_per_incident: int = DEFAULT_MAX_RUNS_PER_INCIDENT
    max_runs_per_hour: int = DEFAULT_MAX_RUNS_PER_HOUR
    value_pattern: re.Pattern[str] = DEFAULT_PATTERN
    """For an http remediation: what values substituted into its URL and headers must match."""

    def public(self) -> dict[str, Any]:
        """What ``GET /api/v1/remediations`` shows: everything but header values."""
        out: dict[str, Any] = {
            "name": self.name,
            "kind": self.kind,
            "description": self.description,
            "timeout_seconds": self.timeout_seconds,
            "retries": self.retries,
            "retry_backoff_seconds": self.retry_backoff_seconds,
            "dry_run": self.dry_run,
            "requires_approval": self.requires_approval,
            "max_runs_per_incident": self.max_runs_per_incident,
            "max_runs_per_hour": self.max_runs_per_hour,
        }
        if isinstance(self.spec, HttpSpec):
            parts = urlsplit(self.spec.url.source)
            out["method"] = self.spec.method
            out["url"] = f"{parts.scheme}://{parts.netloc}{parts.path}"
            out["headers"] = {name: REDACTED for name, _ in self.spec.headers}
            out["has_body"] = self.spec.body is not None
            out["value_pattern"] = self.value_pattern.pattern
        else:
            out["executable"] = self.spec.executable
            out["args"] = [
                {"template": a.template.source, "pattern": a.pattern.pattern}
                for a in self.spec.args
            ]
        return out


COMMON_KEYS = frozenset(
    {
        "kind",
        "description",
        "timeout_seconds",
        "retries",
        "retry_backoff_seconds",
        "dry_run",
        "requires_approval",
        "max_runs_per_incident",
        "max_runs_per_hour",
    }
)
KIND_KEYS: dict[str, frozenset[str]] = {
    "http": frozenset({"method", "url", "headers", "body", "value_pattern"}),
    "command": frozenset({"executable", "args"}),
}


def _number(body: Mapping[str, Any], key: str, default: float, low: float, high: float) -> float:
    value = body.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise RemediationConfigError(f"{key} must be a number in [{low:g}, {high:g}]")
    return float(value)


def _integer(body: Mapping[str, Any], key: str, default: int, low: int, high: int) -> int:
    value = body.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise RemediationConfigError(f"{key} must be an integer in [{low}, {high}]")
    return value


def _flag(body: Mapping[str, Any], key: str) -> bool:
    value = body.get(key, False)
    if not isinstance(value, bool):
        raise RemediationConfigError(f"{key} must be true or false")
    return value


def _templated_json(value: Any, where: str, depth: int = 0) -> Any:
    """Check a JSON body template: strings become ``Template``s."""
    if depth > 16:
        raise RemediationConfigError(f"{where}: the body is nested too deeply")
    if isinstance(value, str):
        return Template(value)
    if isinstance(value, Mapping):
        return {str(k): _templated_json(v, where, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [_templated_json(v, where, depth + 1) for v in value]
    if value is None or isinstance(value, bool | int | float):
        return value
    raise RemediationConfigError(f"{where}: the body must be JSON")


def _http_spec(name: str, body: Mapping[str, Any]) -> HttpSpec:
    method = str(body.get("method", "POST")).upper()
    if method not in HTTP_METHODS:
        raise RemediationConfigError(f"method must be one of {', '.join(HTTP_METHODS)}")
    raw_url = body.get("url")
    if not isinstance(raw_url, str) or not raw_url.strip() or len(raw_url) > 2048:
        raise RemediationConfigError("an http remediation needs a 'url' (at most 2048 chars)")
    parts = urlsplit(raw_url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise RemediationConfigError(f"url must be http:// or https:// with a host: {raw_url!r}")
    if "{" in parts.netloc or "}" in parts.netloc:
        raise RemediationConfigError("url: the host may not be templated")
    headers_raw = body.get("headers") or {}
    if not isinstance(headers_raw, Mapping) or len(headers_raw) > 20:
        raise RemediationConfigError("headers must be an object of at most 20 headers")
    headers = []
    for header, value in headers_raw.items():
        if not _HEADER_NAME.match(str(header)) or str(header).lower() in {
            "host",
            "content-length",
            "transfer-encoding",
            "connection",
        }:
            raise RemediationConfigError(f"header name {header!r} is not allowed")
        if not isinstance(value, str) or _CONTROL.search(value) or len(value) > 4096:
            raise RemediationConfigError(f"header {header!r} must be one line of text")
        headers.append((str(header), Template(value)))
    json_body = body.get("body")
    return HttpSpec(
        method=method,
        url=Template(raw_url.strip()),
        headers=tuple(headers),
        body=None if json_body is None else _templated_json(json_body, f"{name}.body"),
    )


def _command_spec(
    body: Mapping[str, Any], allowed: frozenset[str], executable_ok: Callable[[str], bool]
) -> CommandSpec:
    executable = body.get("executable")
    if not isinstance(executable, str) or not executable.startswith("/"):
        raise RemediationConfigError("a command remediation needs an absolute 'executable' path")
    if executable not in allowed:
        raise RemediationConfigError(
            f"executable {executable!r} is not in allowed_commands (list it there explicitly)"
        )
    if not executable_ok(executable):
        raise RemediationConfigError(
            f"executable {executable!r} does not exist or is not executable"
        )
    raw_args = body.get("args", [])
    if not isinstance(raw_args, list) or len(raw_args) > MAX_ARGS:
        raise RemediationConfigError(f"args must be a list of at most {MAX_ARGS} arguments")
    args = []
    for i, raw in enumerate(raw_args):
        if isinstance(raw, str):
            args.append(CommandArgument(Template(raw)))
        elif isinstance(raw, Mapping) and set(raw) <= {"template", "pattern"} and "template" in raw:
            pattern = (
                _compile_pattern(raw["pattern"], f"args[{i}]")
                if "pattern" in raw
                else DEFAULT_PATTERN
            )
            args.append(CommandArgument(Template(raw["template"]), pattern))
        else:
            raise RemediationConfigError(
                f"args[{i}] must be a string or {{'template': ..., 'pattern': ...}}"
            )
    return CommandSpec(executable=executable, args=tuple(args))


def parse_remediation(
    name: str,
    body: Mapping[str, Any],
    allowed_commands: frozenset[str],
    executable_ok: Callable[[str], bool],
) -> Remediation:
    if not isinstance(name, str) or not _NAME.match(name):
        raise RemediationConfigError(f"{name!r} is not a remediation name (letters, digits, _ . -)")
    if not isinstance(body, Mapping):
        raise RemediationConfigError(f"remediation {name!r} must be an object")
    kind = body.get("kind")
    if kind not in KIND_KEYS:
        raise RemediationConfigError(f"remediation {name!r}: kind must be 'http' or 'command'")
    unknown = sorted(set(body) - COMMON_KEYS - KIND_KEYS[kind])
    if unknown:
        raise RemediationConfigError(f"remediation {name!r} does not take {', '.join(unknown)}")
    try:
        spec: HttpSpec | CommandSpec = (
            _http_spec(name, body)
            if kind == "http"
            else _command_spec(body, allowed_commands, executable_ok)
        )
        description = body.get("description", "")
        if not isinstance(description, str) or len(description) > 500:
            raise RemediationConfigError("description must be text of at most 500 characters")
        value_pattern = (
            _compile_pattern(body["value_pattern"], "value_pattern")
            if "value_pattern" in body
            else DEFAULT_PATTERN
        )
        return Remediation(
            name=name,
            kind=kind,
            spec=spec,
            description=description,
            timeout_seconds=_number(
                body, "timeout_seconds", DEFAULT_TIMEOUT_SECONDS, 0.01, MAX_TIMEOUT_SECONDS
            ),
            retries=_integer(body, "retries", 0, 0, MAX_RETRIES),
            retry_backoff_seconds=_number(
                body, "retry_backoff_seconds", DEFAULT_BACKOFF_SECONDS, 0.0, MAX_BACKOFF_SECONDS
            ),
            dry_run=_flag(body, "dry_run"),
            requires_approval=_flag(body, "requires_approval"),
            max_runs_per_incident=_integer(
                body, "max_runs_per_incident", DEFAULT_MAX_RUNS_PER_INCIDENT, 1, 1000
            ),
            max_runs_per_hour=_integer(
                body, "max_runs_per_hour", DEFAULT_MAX_RUNS_PER_HOUR, 1, 100_000
            ),
            value_pattern=value_pattern,
        )
    except RemediationConfigError as exc:
        message = str(exc)
        if message.startswith(f"remediation {name!r}"):
            raise
        raise RemediationConfigError(f"remediation {name!r}: {message}") from None


def parse_remediations(
    raw: Mapping[str, Any], executable_ok: Callable[[str], bool]
) -> dict[str, Remediation]:
    """``REMEDIATIONS``: ``{"allowed_commands": [...], "remediations": {name: {...}}}``.

    ``executable_ok(path)`` says whether an allowed executable exists and may be run (the
    configuration loader passes a file-system check; tests may pass their own).
    """
    if not isinstance(raw, Mapping):
        raise RemediationConfigError("REMEDIATIONS must be a JSON object")
    unknown = sorted(set(raw) - {"allowed_commands", "remediations"})
    if unknown:
        raise RemediationConfigError(
            f"REMEDIATIONS does not take {', '.join(unknown)} "
            "(it holds 'allowed_commands' and 'remediations')"
        )
    allowed_raw = raw.get("allowed_commands", [])
    if not isinstance(allowed_raw, list) or not all(
        isinstance(p, str) and p.startswith("/") for p in allowed_raw
    ):
        raise RemediationConfigError("allowed_commands must be a list of absolute paths")
    allowed = frozenset(allowed_raw)
    for path in sorted(allowed):
        if not executable_ok(path):
            raise RemediationConfigError(
                f"allowed command {path!r} does not exist or is not executable"
            )
    remediations = raw.get("remediations", {})
    if not isinstance(remediations, Mapping):
        raise RemediationConfigError("remediations must be an object of name -> remediation")
    return {
        name: parse_remediation(name, body, allowed, executable_ok)
        for name, body in remediations.items()
    }


# --- plans ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CommandPlan:
    argv: tuple[str, ...]

    def describe(self) -> dict[str, Any]:
        return {"kind": "command", "argv": list(self.argv)}


@dataclass(frozen=True, slots=True)
class HttpPlan:
    method: str
    url: str
    headers: tuple[tuple[str, str], ...] = field(repr=False, default=())
    body: Any = None

    def describe(self) -> dict[str, Any]:
        """Safe to store and show: scheme, host and path of the URL (no query: it may carry a
        token), header names only, the body."""
        parts = urlsplit(self.url)
        return {
            "kind": "http",
            "method": self.method,
            "url": f"{parts.scheme}://{parts.netloc}{parts.path}",
            "headers": [name for name, _ in self.headers],
            "body": self.body,
        }


Plan = CommandPlan | HttpPlan


def _render_json(value: Any, incident: Incident) -> Any:
    if isinstance(value, Template):
        rendered = {n: field_value(incident, n) for n in value.fields}
        for name, text in rendered.items():
            if len(text) > MAX_VALUE_CHARS:
                raise TemplateError(f"{{{name}}} is longer than {MAX_VALUE_CHARS} characters")
        return value.render(rendered)
    if isinstance(value, dict):
        return {k: _render_json(v, incident) for k, v in value.items()}
    if isinstance(value, list):
        return [_render_json(v, incident) for v in value]
    return value


def plan_run(remediation: Remediation, incident: Incident) -> Plan:
    """The concrete command line or request for ``incident``; ``TemplateError`` if any value is
    refused (then nothing may run)."""
    spec = remediation.spec
    if isinstance(spec, CommandSpec):
        argv = [spec.executable]
        for argument in spec.args:
            argv.append(render_checked(argument.template, incident, argument.pattern))
        return CommandPlan(tuple(argv))
    pattern = remediation.value_pattern
    url = render_checked(spec.url, incident, pattern, lambda v: quote(v, safe=""))
    headers = tuple((name, render_checked(t, incident, pattern)) for name, t in spec.headers)
    body = None if spec.body is None else _render_json(spec.body, incident)
    json.dumps(body)  # always JSON by construction; fails loudly if not
    return HttpPlan(spec.method, url, headers, body)


# --- circuit breaker ------------------------------------------------------------------------


def hour_window_start(now: datetime) -> datetime:
    return now - timedelta(hours=1)


def breaker_refusal(
    remediation: Remediation, runs_for_incident: int, runs_last_hour: int
) -> str | None:
    """Why the circuit breaker refuses another run now, or ``None`` when it may run.

    ``runs_for_incident``: counted runs (``COUNTED_STATES``) of this remediation for the
    incident; ``runs_last_hour``: of this remediation for any incident in the last hour.
    """
    if runs_for_incident >= remediation.max_runs_per_incident:
        return (
            f"circuit open: {remediation.name!r} has run {runs_for_incident} times for this "
            f"incident (at most {remediation.max_runs_per_incident})"
        )
    if runs_last_hour >= remediation.max_runs_per_hour:
        return (
            f"circuit open: {remediation.name!r} has run {runs_last_hour} times in the last hour "
            f"(at most {remediation.max_runs_per_hour})"
        )
    return None


def initial_state(remediation: Remediation, dry_run: bool) -> RunState:
    """The state a run that passed validation and the breaker starts in."""
    if dry_run:
        return RunState.DRY_RUN
    if remediation.requires_approval:
        return RunState.PENDING_APPROVAL
    return RunState.RUNNING


def backoff_seconds(remediation: Remediation, attempt: int) -> float:
    """Wait before retry number ``attempt`` (1-based): backoff, doubling, capped."""
    return min(remediation.retry_backoff_seconds * 2 ** (attempt - 1), MAX_BACKOFF_SECONDS)


def truncate_output(text: str, limit: int = MAX_OUTPUT_CHARS) -> str:
    if len(text) <= limit:
        return text
    return text[: limit - 20] + f"\n… [{len(text) - limit + 20} more characters]"


def public_catalogue(remediations: Mapping[str, Remediation]) -> list[dict[str, Any]]:
    return [remediations[name].public() for name in sorted(remediations)]


# --- runs -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RemediationRun:
    """One requested run of a remediation and what became of it."""

    id: str
    tenant: str
    incident_id: str
    remediation: str
    kind: str
    state: RunState
    dry_run: bool
    requested_by: str
    requested_at: datetime
    rule_id: str | None = None
    decided_by: str | None = None
    decided_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    attempts: int = 0
    exit_code: int | None = None
    status_code: int | None = None
    output: str | None = None
    reason: str | None = None
    plan: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Execution:
    """What running a plan gave (after retries)."""

    succeeded: bool
    attempts: int
    exit_code: int | None = None
    status_code: int | None = None
    output: str = ""
    error: str | None = None
    duration_ms: float | None = None
