"""Secrets of stored actions (webhook header values, Slack URLs) sealed with ENCRYPTION_KEY."""

from __future__ import annotations

import logging

import pytest
import sqlalchemy as sa

from connectors.automation_engine import AutomationEngine
from connectors.automation_store import AutomationStore
from connectors.escalation_store import EscalationStore
from connectors.store import UNREADABLE_URL, Store, engine_url
from incidents.automation import SlackAction, WebhookAction, map_action_secrets, parse_action
from incidents.config import Settings
from incidents.escalation import EscalationLevel
from incidents.records import IncidentEvent
from incidents.security import (
    SEALED_PREFIX,
    SecretUnavailable,
    derive_key,
    open_secret,
    seal_secret,
)

KEY = derive_key("a passphrase for the tests only")
OTHER_KEY = derive_key("another passphrase")
TOKEN = "Bearer s3cr3t-token-42"
SLACK = "https://hooks.slack.com/services/T000/B000/XXXXSECRETXXXX"
SEED = "severity == 'critical' and category == 'database'"


def actions(url: str) -> list:
    return [
        WebhookAction(url, headers=(("Authorization", TOKEN), ("X-Team", "dba"))),
        SlackAction(SLACK, channel="#db"),
        parse_action("notify_dba"),
    ]


@pytest.fixture
def db_url(tmp_path):
    url = f"sqlite:///{tmp_path / 'sealed.db'}"
    Store(url).migrate()
    return url


def raw_column(url: str, sql: str) -> str:
    engine = sa.create_engine(engine_url(url))
    with engine.connect() as conn:
        text = str(conn.execute(sa.text(sql)).scalar_one())
    engine.dispose()
    return text


def test_seal_and_open_round_trip_and_refuse_a_wrong_or_missing_key():
    sealed = seal_secret(TOKEN, KEY)
    assert sealed.startswith(SEALED_PREFIX) and TOKEN not in sealed
    assert seal_secret(TOKEN, KEY) != sealed  # a fresh nonce each time
    assert seal_secret(sealed, KEY) == sealed  # never sealed twice
    assert open_secret(sealed, KEY) == TOKEN
    assert open_secret("plain", None) == "plain"
    with pytest.raises(SecretUnavailable, match="ENCRYPTION_KEY is not set"):
        open_secret(sealed, None)
    with pytest.raises(SecretUnavailable, match="does not open"):
        open_secret(sealed, OTHER_KEY)
    with pytest.raises(SecretUnavailable):
        open_secret(SEALED_PREFIX + "not-base64!", KEY)


def test_only_secret_fields_are_transformed():
    upper = lambda _field, text: text.upper()  # noqa: E731
    webhook = {"type": "webhook", "url": "http://x/y", "method": "POST", "headers": {"A": "b"}}
    assert map_action_secrets(webhook, upper) == {**webhook, "headers": {"A": "B"}}
    slack = {"type": "slack", "url": "https://h/s", "channel": "#c"}
    assert map_action_secrets(slack, upper) == {**slack, "url": "HTTPS://H/S"}
    email = {"type": "email", "to": ["a@b"]}
    assert map_action_secrets(email, upper) == email
    assert map_action_secrets("notify_dba", upper) == "notify_dba"


def test_rules_store_sealed_secrets_and_read_them_back(db_url):
    store = Store(db_url, encryption_key=KEY)
    rule = AutomationStore(store).create_rule(
        "acme", name="db", condition=SEED, actions=actions("http://127.0.0.1:9/hook")
    )
    stored = raw_column(db_url, "SELECT actions FROM automation_rules")
    assert TOKEN not in stored and SLACK not in stored and SEALED_PREFIX in stored
    assert "X-Team" in stored and "hooks.slack.com" not in stored
    again = AutomationStore(Store(db_url, encryption_key=KEY)).get_rule("acme", rule.id)
    assert again is not None and again.actions == rule.actions
    webhook, slack, _ = again.actions
    assert dict(webhook.headers)["Authorization"] == TOKEN and slack.url == SLACK


def test_escalation_levels_are_sealed_too(db_url):
    store = Store(db_url, encryption_key=KEY)
    levels = [EscalationLevel(0.0, tuple(actions("http://127.0.0.1:9/page")))]
    policy = EscalationStore(store).create_policy("acme", name="oncall", levels=levels)
    stored = raw_column(db_url, "SELECT levels FROM escalation_policies")
    assert TOKEN not in stored and SLACK not in stored
    found = EscalationStore(Store(db_url, encryption_key=KEY)).find_policy("acme", policy.id)
    assert found is not None and found.levels == policy.levels


def test_without_a_key_actions_are_stored_as_they_are(db_url):
    AutomationStore(Store(db_url)).create_rule(
        "acme", name="db", condition=SEED, actions=actions("http://127.0.0.1:9/hook")
    )
    stored = raw_column(db_url, "SELECT actions FROM automation_rules")
    assert TOKEN in stored and SEALED_PREFIX not in stored


@pytest.mark.parametrize("key", [None, OTHER_KEY], ids=["no key", "another key"])
def test_a_secret_that_does_not_open_leaves_the_action_unusable_not_the_read(db_url, key, caplog):
    rule = AutomationStore(Store(db_url, encryption_key=KEY)).create_rule(
        "acme", name="db", condition=SEED, actions=actions("http://127.0.0.1:9/hook")
    )
    with caplog.at_level(logging.WARNING):
        (read,) = AutomationStore(Store(db_url, encryption_key=key)).list_rules()
    assert read.id == rule.id
    webhook, slack, _ = read.actions
    assert dict(webhook.headers) == {"Authorization": "", "X-Team": ""}
    assert slack.url == UNREADABLE_URL
    assert "ENCRYPTION_KEY" in caplog.text and TOKEN not in caplog.text


def test_the_engine_sends_the_opened_header(db_url, webhook_server):
    store = Store(db_url, encryption_key=KEY)
    rule_actions = [WebhookAction(webhook_server.url, headers=(("Authorization", TOKEN),))]
    AutomationStore(store).create_rule("acme", name="db", condition=SEED, actions=rule_actions)
    engine = AutomationEngine(store, Settings(environment="test"))
    engine.run_once()  # the first pass only sets the cursor
    store.create_incident(
        IncidentEvent(
            title="Datenbank-Verbindungs-Timeout",
            severity="critical",
            metadata={"database": "primary"},
        ),
        tenant="acme",
        actor="t",
    )
    while engine.run_once():
        pass
    engine.drain(10)
    (request,) = webhook_server.wait_for(1)
    assert request.headers["Authorization"] == TOKEN
