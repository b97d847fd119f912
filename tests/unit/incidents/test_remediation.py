"""Remediation configuration, templates, value validation, plans and breaker decisions (pure)."""

import re
from datetime import UTC, datetime, timedelta

import pytest

from incidents.records import Incident
from incidents.remediation import (
    DEFAULT_PATTERN,
    CommandPlan,
    HttpPlan,
    RemediationConfigError,
    RunState,
    Template,
    TemplateError,
    backoff_seconds,
    breaker_refusal,
    check_value,
    initial_state,
    parse_remediations,
    plan_run,
    public_catalogue,
    truncate_output,
)
from incidents.schemas import Category, IncidentKind, IncidentStatus, Severity

TOOL = "/opt/tools/svcctl"
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def exists(path: str) -> bool:
    return path == TOOL


def incident(**metadata) -> Incident:
    return Incident(
        id="0b0e8a3c-2f4e-4b8e-9a55-6f2b8d7c1a00",
        fingerprint="fp",
        tenant="acme",
        title="Datenbank-Verbindungs-Timeout",
        description="",
        severity=Severity.CRITICAL,
        category=Category.DATABASE,
        status=IncidentStatus.OPEN,
        kind=IncidentKind.MANUAL,
        source="monitoring",
        series=None,
        metadata=dict(metadata),
        score=None,
        peak_score=None,
        repeat_count=0,
        first_seen=NOW,
        last_seen=NOW,
        created_at=NOW,
        updated_at=NOW,
    )


def config(**remediations) -> dict:
    return {"allowed_commands": [TOOL], "remediations": remediations}


def restart(**extra) -> dict:
    return {
        "kind": "command",
        "executable": TOOL,
        "args": ["restart", "{metadata.service}"],
        **extra,
    }


def parse_one(body: dict, name: str = "r"):
    return parse_remediations(config(**{name: body}), exists)[name]


# --- templates --------------------------------------------------------------------------------


def test_a_template_names_its_incident_fields_and_renders_braces_literally():
    template = Template("{{x}} {severity}/{metadata.db.host}")
    assert template.fields == ("severity", "metadata.db.host")
    assert template.render({"severity": "high", "metadata.db.host": "db1"}) == "{x} high/db1"


@pytest.mark.parametrize(
    "source",
    [
        "{__class__}",
        "{metadata.a!r}",
        "{metadata.a:>10}",
        "{0}",
        "{}",
        "{title.upper}",
        "{metadata.__class__.__init__}",
        "{tags}",
        "restart {",
        "}",
    ],
)
def test_templates_may_reference_incident_fields_only(source):
    with pytest.raises(RemediationConfigError):
        Template(source)


@pytest.mark.parametrize(
    "value",
    [
        "; rm -rf /",
        "api; rm -rf /",
        "$(touch /tmp/pwned)",
        "`id`",
        "api\nrm -rf /",
        "api\r",
        "-rf",
        "--help",
        "a" * 129,
        "",
        "api service",
        "a|b",
        "a&&b",
        "${IFS}",
        "x>y",
    ],
)
def test_the_default_pattern_refuses_injection_attempts(value):
    with pytest.raises(TemplateError):
        check_value("metadata.service", value, DEFAULT_PATTERN)


@pytest.mark.parametrize("value", ["api", "db-1.example.org:5432", "user@host", "a/b_c", "a" * 128])
def test_the_default_pattern_accepts_plain_names(value):
    assert check_value("metadata.service", value, DEFAULT_PATTERN) == value


def test_a_permissive_pattern_still_refuses_options_control_characters_and_huge_values():
    anything = re.compile(r"(?s).*")
    for value in ("-rf", "a\nb", "tab\there", "x" * 1025):
        with pytest.raises(TemplateError):
            check_value("metadata.service", value, anything)
    assert check_value("metadata.service", "a; b", anything) == "a; b"


def test_a_pattern_must_match_in_full_not_just_a_prefix():
    with pytest.raises(TemplateError, match="does not match"):
        check_value("metadata.service", "api;reboot", re.compile(r"[a-z]+"))


# --- plans ------------------------------------------------------------------------------------


def test_a_command_plan_is_an_argv_list_with_validated_values():
    remediation = parse_one(restart())
    plan = plan_run(remediation, incident(service="billing-api"))
    assert plan == CommandPlan((TOOL, "restart", "billing-api"))
    assert plan.describe() == {"kind": "command", "argv": [TOOL, "restart", "billing-api"]}


def test_a_refused_or_missing_value_refuses_the_whole_plan():
    remediation = parse_one(restart())
    with pytest.raises(TemplateError, match="does not match"):
        plan_run(remediation, incident(service="api; rm -rf /"))
    with pytest.raises(TemplateError, match="has no value"):
        plan_run(remediation, incident())
    with pytest.raises(TemplateError, match="not a single value"):
        plan_run(remediation, incident(service={"name": "api"}))


def test_a_per_argument_pattern_replaces_the_default():
    remediation = parse_one(
        restart(args=["restart", {"template": "{metadata.service}", "pattern": "[a-z]{1,8}"}])
    )
    assert plan_run(remediation, incident(service="api")).argv[-1] == "api"
    with pytest.raises(TemplateError):
        plan_run(remediation, incident(service="billing-api"))  # allowed by the default


def test_an_http_plan_quotes_url_values_and_describes_itself_without_secrets():
    remediation = parse_one(
        {
            "kind": "http",
            "method": "post",
            "url": "https://ops.example.org/services/{metadata.service}/restart?token=s3cret",
            "headers": {"Authorization": "Bearer s3cret", "X-Incident": "{id}"},
            "body": {"incident": "{id}", "why": "{title}", "n": 3, "list": ["{severity}"]},
        }
    )
    plan = plan_run(remediation, incident(service="a:b@c"))
    assert isinstance(plan, HttpPlan)
    assert plan.method == "POST"
    assert plan.url == "https://ops.example.org/services/a%3Ab%40c/restart?token=s3cret"
    assert dict(plan.headers)["X-Incident"] == incident().id
    assert plan.body == {
        "incident": incident().id,
        "why": "Datenbank-Verbindungs-Timeout",
        "n": 3,
        "list": ["critical"],
    }
    described = plan.describe()
    assert "s3cret" not in repr(described)
    assert described["headers"] == ["Authorization", "X-Incident"]


def test_the_body_takes_free_text_but_url_values_are_validated():
    remediation = parse_one(
        {"kind": "http", "url": "http://h/{metadata.service}", "body": {"t": "{title}"}}
    )
    with pytest.raises(TemplateError):
        plan_run(remediation, incident(service="a b"))


# --- configuration ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"remediations": {"r": restart()}}, "not in allowed_commands"),
        ({"allowed_commands": ["/opt/tools/missing"], "remediations": {}}, "does not exist"),
        ({"allowed_commands": ["svcctl"], "remediations": {}}, "absolute paths"),
        (config(r=restart(executable="svcctl")), "absolute"),
        (config(r={"kind": "shell", "command": "reboot"}), "kind must be"),
        (config(r=restart(shell=True)), "does not take shell"),
        (config(r=restart(args="restart api")), "args must be a list"),
        (config(r=restart(args=["{__import__}"])), "not an incident field"),
        (config(r=restart(timeout_seconds=0)), "timeout_seconds"),
        (config(r=restart(retries=99)), "retries"),
        (config(r=restart(dry_run="yes")), "dry_run"),
        (config(r=restart(max_runs_per_incident=0)), "max_runs_per_incident"),
        (config(r={"kind": "http", "url": "ftp://h/x"}), "http://"),
        (config(r={"kind": "http", "url": "http://{metadata.host}/x"}), "host may not"),
        (config(r={"kind": "http", "url": "http://h", "headers": {"Host": "x"}}), "not allowed"),
        (config(r={"kind": "http", "url": "http://h", "headers": {"X": "a\nb"}}), "one line"),
        (config(**{"bad name!": restart()}), "not a remediation name"),
        ({"commands": []}, "does not take commands"),
    ],
)
def test_bad_configuration_is_refused_with_the_reason(raw, message):
    with pytest.raises(RemediationConfigError, match=message):
        parse_remediations(raw, exists)


def test_defaults_and_the_public_view_mask_header_values():
    parsed = parse_remediations(
        config(
            restart=restart(),
            hook={
                "kind": "http",
                "url": "https://ops.example.org/hook?token=abc",
                "headers": {"Authorization": "Bearer abc"},
                "requires_approval": True,
            },
        ),
        exists,
    )
    command = parsed["restart"]
    assert (command.max_runs_per_incident, command.max_runs_per_hour) == (3, 20)
    assert (command.retries, command.dry_run, command.requires_approval) == (0, False, False)
    listed = public_catalogue(parsed)
    assert [r["name"] for r in listed] == ["hook", "restart"]
    assert listed[0]["headers"] == {"Authorization": "***"}
    assert "abc" not in repr(listed)
    assert listed[1]["args"][1] == {
        "template": "{metadata.service}",
        "pattern": DEFAULT_PATTERN.pattern,
    }


# --- breaker, states, retries -----------------------------------------------------------------


def test_the_breaker_refuses_per_incident_and_per_hour():
    remediation = parse_one(restart(max_runs_per_incident=2, max_runs_per_hour=5))
    assert breaker_refusal(remediation, 1, 4) is None
    assert "2 times for this incident" in breaker_refusal(remediation, 2, 0)
    assert "5 times in the last hour" in breaker_refusal(remediation, 0, 5)


def test_initial_states():
    plain = parse_one(restart())
    risky = parse_one(restart(requires_approval=True))
    assert initial_state(plain, dry_run=False) is RunState.RUNNING
    assert initial_state(risky, dry_run=False) is RunState.PENDING_APPROVAL
    assert initial_state(risky, dry_run=True) is RunState.DRY_RUN


def test_backoff_doubles_and_is_capped():
    remediation = parse_one(restart(retries=5, retry_backoff_seconds=10))
    assert [backoff_seconds(remediation, n) for n in (1, 2, 3, 4)] == [10, 20, 40, 60]


def test_output_is_truncated():
    text = truncate_output("x" * 10_000, limit=100)
    assert len(text) < 130 and text.endswith("more characters]")
    assert truncate_output("short") == "short"


def test_hour_window_is_one_hour():
    from incidents.remediation import hour_window_start

    assert NOW - hour_window_start(NOW) == timedelta(hours=1)
