"""Automation rules and actions, the pure part: parsing, named actions, firing once, payloads."""

import json
from datetime import UTC, datetime

import pytest

from incidents.automation import (
    FIRST_FIRING,
    ActionError,
    ActionType,
    AutomationRule,
    EmailAction,
    EscalateAction,
    NamedAction,
    RemediateAction,
    SlackAction,
    WebhookAction,
    action_target,
    action_to_json,
    email_message,
    firing_key,
    parse_action,
    parse_named_actions,
    plan_actions,
    rules_to_fire,
    slack_payload,
    validate_rule_parts,
    webhook_payload,
)
from incidents.config import Settings, load_named_actions
from incidents.policy import ConditionError
from incidents.records import Incident, TimelineType
from incidents.schemas import Severity
from tests.factories import seed_incident

NOW = datetime(2024, 1, 1, tzinfo=UTC)
SEED = "severity == 'critical' and category == 'database'"


def incident(**changes) -> Incident:
    return seed_incident(**changes)


def rule(rule_id="r1", condition=SEED, actions=("notify_dba",), **changes) -> AutomationRule:
    return AutomationRule(
        id=rule_id,
        tenant=changes.pop("tenant", "acme"),
        name=changes.pop("name", rule_id),
        condition=condition,
        actions=tuple(parse_action(a) for a in actions),
        **changes,
    )


# --- actions --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("notify_dba", NamedAction("notify_dba")),
        (
            {"type": "webhook", "url": "https://example.org/hook"},
            WebhookAction("https://example.org/hook"),
        ),
        (
            {
                "type": "webhook",
                "url": "http://127.0.0.1:9/x",
                "method": "put",
                "headers": {"X-Token": "t"},
            },
            WebhookAction("http://127.0.0.1:9/x", "PUT", (("X-Token", "t"),)),
        ),
        (
            {"type": "slack", "url": "https://hooks.example/T/B/C", "channel": "#db"},
            SlackAction("https://hooks.example/T/B/C", "#db"),
        ),
        ({"type": "email", "to": ["dba@example.org"]}, EmailAction(("dba@example.org",))),
        ({"type": "escalate", "policy": "dba-oncall"}, EscalateAction("dba-oncall")),
        ({"type": "remediate", "remediation": "restart_db"}, RemediateAction("restart_db")),
    ],
)
def test_actions_parse_and_round_trip(raw, expected):
    parsed = parse_action(raw)
    assert parsed == expected
    assert parse_action(action_to_json(parsed)) == parsed


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"type": "webhook", "url": "file:///etc/passwd"}, "http:// or https://"),
        ({"type": "webhook", "url": "ftp://example.org/x"}, "http:// or https://"),
        ({"type": "webhook", "url": "https://"}, "http:// or https://"),
        ({"type": "webhook"}, "needs a 'url'"),
        ({"type": "webhook", "url": "https://x.org", "method": "DELETE"}, "method"),
        ({"type": "webhook", "url": "https://x.org", "headers": {"Host": "evil"}}, "Host"),
        ({"type": "webhook", "url": "https://x.org", "headers": {"X": "a\r\nB: c"}}, "value"),
        ({"type": "webhook", "url": "https://x.org", "headers": ["X"]}, "object"),
        ({"type": "webhook", "url": "https://x.org", "body": "x"}, "does not take body"),
        ({"type": "slack", "url": "javascript:alert(1)"}, "http:// or https://"),
        ({"type": "email", "to": "dba@example.org"}, "list"),
        ({"type": "email", "to": []}, "1 to 50"),
        ({"type": "email", "to": ["not-an-address"]}, "not an e-mail"),
        ({"type": "email", "to": ["a@b.org"], "subject": "a\nBcc: x@y.org"}, "one line"),
        ({"type": "escalate"}, "policy"),
        ({"type": "remediate", "remediation": "../../bin/sh"}, "remediation"),
        ({"type": "shell", "command": "rm -rf /"}, "unknown action type"),
        ({"url": "https://x.org"}, "unknown action type"),
        (42, "a name or an object"),
        ("not a name!", "not an action name"),
    ],
)
def test_bad_actions_are_refused_with_a_reason(raw, message):
    with pytest.raises(ActionError, match=message):
        parse_action(raw)


def test_named_actions_come_from_configuration_and_seed_names_are_always_known():
    named = parse_named_actions(
        {
            "notify_dba": {"type": "email", "to": ["dba@example.org"]},
            "page": {"type": "escalate", "policy": "primary"},
        }
    )
    r = rule(
        actions=(
            "notify_dba",
            "restart_service",
            "page",
            {"type": "slack", "url": "https://s.example/x"},
        )
    )
    planned = plan_actions(r, named)
    assert [p.action for p in planned] == [
        EmailAction(("dba@example.org",)),
        None,  # restart_service: a seed name with no definition -> not_configured when run
        EscalateAction("primary"),
        SlackAction("https://s.example/x"),
    ]
    assert [p.name for p in planned] == ["notify_dba", "restart_service", "page", None]
    _, specs = validate_rule_parts(SEED, ["create_incident", "page"], named)
    assert specs == (NamedAction("create_incident"), NamedAction("page"))
    with pytest.raises(ActionError, match="unknown named action 'notify_dbaa'"):
        validate_rule_parts(SEED, ["notify_dbaa"], named)


def test_named_actions_cannot_point_at_other_names():
    with pytest.raises(ActionError, match="defined by an object"):
        parse_named_actions({"a": "b"})


def test_rules_need_a_valid_condition_and_at_least_one_action():
    with pytest.raises(ConditionError):
        validate_rule_parts("__import__('os')", ["notify_dba"], {})
    with pytest.raises(ActionError, match="at least one action"):
        validate_rule_parts(SEED, [], {})
    with pytest.raises(ActionError, match="at most 20"):
        validate_rule_parts(SEED, ["notify_dba"] * 21, {})


def test_automation_actions_setting_reads_json_or_a_json_file(tmp_path):
    inline = '{"notify_dba": {"type": "email", "to": ["dba@example.org"]}}'
    assert load_named_actions(inline) == {"notify_dba": EmailAction(("dba@example.org",))}
    path = tmp_path / "actions.json"
    path.write_text('{"restart_service": {"type": "remediate", "remediation": "restart"}}')
    assert Settings(automation_actions=str(path)).named_actions == {
        "restart_service": RemediateAction("restart")
    }
    with pytest.raises(ValueError, match="http:// or https://"):
        Settings(automation_actions='{"x": {"type": "webhook", "url": "file:///x"}}')
    with pytest.raises(ValueError, match="cannot be read"):
        Settings(automation_actions=str(tmp_path / "missing.json"))
    (tmp_path / "list.json").write_text("[1]")
    with pytest.raises(ValueError, match="JSON object"):
        Settings(automation_actions=str(tmp_path / "list.json"))
    with pytest.raises(ValueError, match="not valid JSON"):
        Settings(automation_actions="{not json")


def test_public_config_hides_the_smtp_password_and_action_targets():
    settings = Settings(
        smtp_host="mail.example.org",
        smtp_password="smtp-secret-value",
        automation_actions=json.dumps(
            {
                "hook": {
                    "type": "webhook",
                    "url": "https://example.org/hook?token=url-secret",
                    "headers": {"Authorization": "Bearer header-secret"},
                }
            }
        ),
    )
    view = settings.public_view()
    text = json.dumps(view, default=str)
    assert view["smtp_password"] == "set"
    assert view["automation_actions"] == {"hook": "webhook"}
    for secret in ("smtp-secret-value", "url-secret", "header-secret"):
        assert secret not in text


# --- firing ---------------------------------------------------------------------------------


def test_a_rule_fires_once_per_incident_unless_fire_on_repeat():
    once, repeat = rule("once"), rule("again", fire_on_repeat=True)
    created, repeated, edited = TimelineType.CREATED, TimelineType.REPEATED, TimelineType.EDITED
    assert firing_key(once, created, 1, fired=False) == FIRST_FIRING
    assert firing_key(once, repeated, 2, fired=True) is None
    assert firing_key(repeat, repeated, 2, fired=True) == "repeat:2"
    assert firing_key(repeat, repeated, 3, fired=True) == "repeat:3"
    assert firing_key(repeat, edited, 4, fired=True) is None  # repeats, not every edit


def test_rules_to_fire_evaluates_enabled_rules_of_the_incidents_tenant():
    rules = [
        rule("match"),
        rule("no-match", condition="category == 'network'"),
        rule("disabled", enabled=False),
        rule("other-tenant", tenant="globex"),
        rule("already", name="already"),
    ]
    firings = rules_to_fire(rules, incident(), TimelineType.CREATED, 7, {"already"})
    assert [(f.rule.id, f.key) for f in firings] == [("match", FIRST_FIRING)]


def test_the_first_matching_change_fires_even_if_earlier_ones_did_not_match():
    r = rule(condition="severity == 'critical'")
    low = incident(severity=Severity.LOW)
    assert rules_to_fire([r], low, TimelineType.CREATED, 1, set()) == []
    escalated = incident(severity=Severity.CRITICAL)
    firings = rules_to_fire([r], escalated, TimelineType.EDITED, 2, set())
    assert [f.key for f in firings] == [FIRST_FIRING]


def test_silenced_incidents_fire_nothing():
    silenced = incident(metadata={"database": "primary", "silenced": True})
    assert rules_to_fire([rule()], silenced, TimelineType.CREATED, 1, set()) == []
    not_really = incident(metadata={"silenced": "yes"})  # only a JSON true silences
    assert len(rules_to_fire([rule()], not_really, TimelineType.CREATED, 1, set())) == 1


def test_the_automations_own_timeline_entries_trigger_nothing():
    for own in (TimelineType.RULE_FIRED, TimelineType.ACTION):
        assert rules_to_fire([rule()], incident(), own, 1, set()) == []


# --- payloads -------------------------------------------------------------------------------


def test_webhook_payload_carries_the_incident_and_the_rule():
    payload = webhook_payload(incident(), rule())
    assert payload["event"] == "automation.rule_fired"
    assert payload["rule"] == {"id": "r1", "name": "r1", "condition": SEED}
    assert payload["incident"]["id"] == "inc-1"
    assert payload["incident"]["category"] == "database"
    assert payload["incident"]["metadata"] == {"database": "primary"}
    json.dumps(payload)  # JSON-ready


def test_slack_payload_is_an_incoming_webhook_message():
    payload = slack_payload(incident(), rule(name="db-critical"), "#dba")
    assert payload["channel"] == "#dba"
    assert "[CRITICAL] Datenbank-Verbindungs-Timeout" in payload["text"]
    assert "db-critical" in payload["text"]
    types = [b["type"] for b in payload["blocks"]]
    assert types[0] == "header" and "section" in types and types[-1] == "context"
    assert "channel" not in slack_payload(incident(), rule(), None)


def test_email_message_has_headers_and_a_readable_body():
    action = EmailAction(("dba@example.org", "ops@example.org"))
    message = email_message(incident(), rule(), action, "incidents@example.org")
    assert message["To"] == "dba@example.org, ops@example.org"
    assert message["From"] == "incidents@example.org"
    assert message["Subject"].startswith("[CRITICAL] Datenbank-Verbindungs-Timeout")
    assert "Mehrere Datenbank-Verbindungs-Timeouts" in message.get_content()
    custom = email_message(incident(), rule(), EmailAction(("a@b.org",), "DB down"), "x@y.org")
    assert custom["Subject"] == "DB down"


def test_action_targets_shown_in_the_timeline_hide_url_paths():
    slack = SlackAction("https://hooks.slack.example/services/T0/B0/SECRET")
    assert action_target(slack) == {"target": "https://hooks.slack.example"}
    hook = WebhookAction("http://127.0.0.1:8080/hook?token=SECRET", headers=(("X-Key", "k"),))
    assert action_target(hook) == {"target": "http://127.0.0.1:8080"}
    assert action_target(EmailAction(("a@b.org",))) == {"target": ["a@b.org"]}
    assert ActionType(hook.type) is ActionType.WEBHOOK
