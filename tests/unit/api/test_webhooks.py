"""Alert intake: Alertmanager (webhook payload version 4) and Grafana alerting webhooks."""

import copy

import pytest

AM = "/api/v1/webhooks/alertmanager"
GRAFANA = "/api/v1/webhooks/grafana"
INCIDENTS = "/api/v1/incidents"

# As Alertmanager sends it (webhook_config, payload version 4).
AM_FIRING = {
    "receiver": "incidents",
    "status": "firing",
    "alerts": [
        {
            "status": "firing",
            "labels": {
                "alertname": "ProbeFailure",
                "instance": "https://server.example.org",
                "job": "http_checks",
                "monitor": "master",
                "severity": "critical",
                "service": "storefront",
            },
            "annotations": {
                "description": "Instance https://server.example.org has been down for over 5m.",
                "summary": "BlackBox Probe Failure: https://server.example.org",
            },
            "startsAt": "2023-02-06T13:08:45.828Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus.example.org:9090/graph?g0.expr=probe_success",
            "fingerprint": "1a30ba71cca2921f",
        }
    ],
    "groupLabels": {"alertname": "ProbeFailure"},
    "commonLabels": {"alertname": "ProbeFailure", "severity": "critical"},
    "commonAnnotations": {},
    "externalURL": "http://alertmanager.example.org:9093",
    "version": "4",
    "groupKey": '{}/{severity="critical"}:{alertname="ProbeFailure"}',
    "truncatedAlerts": 0,
}


def resolved(payload: dict, ends_at: str = "2023-02-06T13:20:45.828Z") -> dict:
    out = copy.deepcopy(payload)
    out["status"] = "resolved"
    for alert in out["alerts"]:
        alert["status"] = "resolved"
        alert["endsAt"] = ends_at
    return out


# As Grafana's webhook contact point sends it.
GRAFANA_FIRING = {
    "receiver": "My Super Webhook",
    "status": "firing",
    "orgId": 1,
    "alerts": [
        {
            "status": "firing",
            "labels": {"alertname": "High memory usage", "team": "blue", "zone": "us-1"},
            "annotations": {
                "description": "The system has high memory usage",
                "runbook_url": "https://myrunbook.com/runbook/1234",
                "summary": "This alert was triggered for zone us-1",
            },
            "startsAt": "2021-10-12T09:51:03.157076+02:00",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "https://play.grafana.org/alerting/1afz29v7z/edit",
            "fingerprint": "c6eadffa33fcdf37",
            "silenceURL": "https://play.grafana.org/alerting/silence/new?alertmanager=grafana",
            "dashboardURL": "",
            "panelURL": "",
            "values": {"B": 44.23943737541908, "C": 1},
        },
        {
            "status": "firing",
            "labels": {"alertname": "High CPU usage", "team": "blue", "zone": "eu-1"},
            "annotations": {"description": "The system has high CPU usage"},
            "startsAt": "2021-10-12T09:56:03.157076+02:00",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "https://play.grafana.org/alerting/d1rdpdv7k/edit",
            "fingerprint": "bc97ff14869b13e3",
            "valueString": "[ metric='' labels={} value=14151.331895396988 ]",
        },
    ],
    "groupLabels": {},
    "commonLabels": {"team": "blue"},
    "commonAnnotations": {},
    "externalURL": "https://play.grafana.org/",
    "version": "1",
    "groupKey": '{}:{alertname="High memory usage"}',
    "truncatedAlerts": 0,
    "title": "[FIRING:2]  (blue)",
    "state": "alerting",
    "message": "**Firing**\n\nValue: B=44.2...",
}


def test_alertmanager_firing_then_resolved_is_one_incident(client, auth):
    r = client.post(AM, json=AM_FIRING, headers=auth("responder"))
    assert r.status_code == 200, r.text
    (outcome,) = r.json()["items"]
    assert (outcome["action"], outcome["fingerprint"]) == (
        "opened",
        "alertmanager:1a30ba71cca2921f",
    )
    incident = client.get(f"{INCIDENTS}/{outcome['incident_id']}", headers=auth("viewer")).json()
    assert incident["status"] == "open"
    assert incident["title"] == "BlackBox Probe Failure: https://server.example.org"
    assert incident["description"].startswith("Instance https://server.example.org")
    assert incident["severity"] == "critical"
    assert incident["source"] == "alertmanager"
    assert "alertname=ProbeFailure" in incident["tags"]
    assert incident["metadata"]["labels"]["job"] == "http_checks"
    assert incident["metadata"]["external_url"] == "http://alertmanager.example.org:9093"

    r = client.post(AM, json=resolved(AM_FIRING), headers=auth("responder"))
    assert r.status_code == 200, r.text
    (outcome2,) = r.json()["items"]
    assert (outcome2["action"], outcome2["incident_id"]) == ("resolved", incident["id"])
    after = client.get(f"{INCIDENTS}/{incident['id']}", headers=auth("viewer")).json()
    assert after["status"] == "resolved"
    assert after["resolved_by"] == "responder"
    assert "Alertmanager" in after["resolution"]
    assert "2023-02-06T13:20:45.828000+00:00" in after["resolution"]
    timeline = client.get(f"{INCIDENTS}/{incident['id']}/timeline", headers=auth("viewer"))
    assert [e["type"] for e in timeline.json()["items"]] == ["created", "resolved"]


def test_repeated_firing_is_the_same_incident_with_a_growing_repeat_count(client, auth):
    ids = set()
    for expected_repeats in range(3):
        r = client.post(AM, json=AM_FIRING, headers=auth("responder"))
        (outcome,) = r.json()["items"]
        ids.add(outcome["incident_id"])
        incident = client.get(f"{INCIDENTS}/{outcome['incident_id']}", headers=auth("viewer"))
        assert incident.json()["repeat_count"] == expected_repeats
    assert len(ids) == 1
    assert client.get(INCIDENTS, headers=auth("viewer")).json()["total"] == 1


def test_firing_after_resolved_opens_a_new_incident(client, auth):
    first = client.post(AM, json=AM_FIRING, headers=auth("responder")).json()["items"][0]
    client.post(AM, json=resolved(AM_FIRING), headers=auth("responder"))
    again = client.post(AM, json=AM_FIRING, headers=auth("responder")).json()["items"][0]
    assert again["action"] == "opened"
    assert again["incident_id"] != first["incident_id"]


def test_resolved_without_an_open_incident_is_reported_not_invented(client, auth):
    r = client.post(AM, json=resolved(AM_FIRING), headers=auth("responder"))
    assert r.status_code == 200
    assert r.json()["items"][0] == {
        "fingerprint": "alertmanager:1a30ba71cca2921f",
        "status": "resolved",
        "action": "not_open",
        "incident_id": None,
    }
    assert client.get(INCIDENTS, headers=auth("viewer")).json()["total"] == 0


def test_alert_without_fingerprint_uses_its_labels(client, auth):
    payload = copy.deepcopy(AM_FIRING)
    del payload["alerts"][0]["fingerprint"]
    opened = client.post(AM, json=payload, headers=auth("responder")).json()["items"][0]
    assert opened["action"] == "opened"
    assert not opened["fingerprint"].startswith("alertmanager:")
    closed = client.post(AM, json=resolved(payload), headers=auth("responder")).json()["items"][0]
    assert (closed["action"], closed["incident_id"]) == ("resolved", opened["incident_id"])


def test_grafana_firing_then_resolved(client, auth):
    r = client.post(GRAFANA, json=GRAFANA_FIRING, headers=auth("responder"))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["received"] == 2
    memory, cpu = body["items"]
    assert memory["fingerprint"] == "grafana:c6eadffa33fcdf37"
    assert {memory["action"], cpu["action"]} == {"opened"}
    incident = client.get(f"{INCIDENTS}/{memory['incident_id']}", headers=auth("viewer")).json()
    assert incident["title"] == "This alert was triggered for zone us-1"
    assert incident["source"] == "grafana"
    assert incident["severity"] == "medium"  # no severity label
    assert incident["metadata"]["values"] == {"B": 44.23943737541908, "C": 1}
    assert incident["metadata"]["annotations"]["runbook_url"].startswith("https://")
    cpu_incident = client.get(f"{INCIDENTS}/{cpu['incident_id']}", headers=auth("viewer")).json()
    assert cpu_incident["title"] == "High CPU usage"

    partly = resolved(GRAFANA_FIRING, ends_at="2021-10-12T10:01:03+02:00")
    partly["alerts"] = partly["alerts"][:1]
    r = client.post(GRAFANA, json=partly, headers=auth("responder"))
    (outcome,) = r.json()["items"]
    assert (outcome["action"], outcome["incident_id"]) == ("resolved", memory["incident_id"])
    after = client.get(f"{INCIDENTS}/{memory['incident_id']}", headers=auth("viewer")).json()
    assert after["status"] == "resolved" and "Grafana" in after["resolution"]
    still = client.get(f"{INCIDENTS}/{cpu['incident_id']}", headers=auth("viewer")).json()
    assert still["status"] == "open"


def test_alerts_of_one_service_are_grouped_and_silences_apply(client, auth):
    client.post(
        "/api/v1/silences",
        json={
            "matchers": [{"name": "alertname", "value": "Disk.*", "isRegex": True}],
            "endsAt": "2099-01-01T00:00:00Z",
        },
        headers=auth("responder"),
    )
    payload = copy.deepcopy(AM_FIRING)
    second = copy.deepcopy(payload["alerts"][0])
    second["labels"]["alertname"] = "DiskFull"
    second["annotations"]["summary"] = "Disk full on storefront"
    second["fingerprint"] = "2b41cb82ddb3a32f"
    payload["alerts"].append(second)
    first, other = client.post(AM, json=payload, headers=auth("responder")).json()["items"]
    parent = client.get(f"{INCIDENTS}/{first['incident_id']}", headers=auth("viewer")).json()
    child = client.get(f"{INCIDENTS}/{other['incident_id']}", headers=auth("viewer")).json()
    assert child["parent_id"] == parent["id"] and parent["child_count"] == 1
    assert child["metadata"]["silenced"] is True
    assert "silenced" not in parent["metadata"]


@pytest.mark.parametrize(
    ("mutate", "where"),
    [
        (lambda p: p.update(version="3"), "version"),
        (lambda p: p.pop("alerts"), "alerts"),
        (lambda p: p["alerts"][0].update(status="pending"), "status"),
        (lambda p: p["alerts"][0].update(labels=["not", "a", "dict"]), "labels"),
        (lambda p: p["alerts"][0]["labels"].update(n=5), "labels"),
        (lambda p: p["alerts"][0].update(startsAt="yesterday"), "startsAt"),
        (lambda p: p.update(alerts=[{}] * 1001), "alerts"),
    ],
)
def test_bad_alertmanager_payloads_are_422(client, auth, mutate, where):
    payload = copy.deepcopy(AM_FIRING)
    mutate(payload)
    r = client.post(AM, json=payload, headers=auth("responder"))
    assert r.status_code == 422, r.text
    assert any(where in map(str, problem["loc"]) for problem in r.json()["detail"])
    assert client.get(INCIDENTS, headers=auth("viewer")).json()["total"] == 0


def test_non_json_body_is_422(client, auth):
    headers = {**auth("responder"), "Content-Type": "application/json"}
    r = client.post(AM, content=b"{not json", headers=headers)
    assert r.status_code == 422


def test_unknown_fields_of_newer_senders_are_ignored(client, auth):
    payload = copy.deepcopy(AM_FIRING)
    payload["someFutureField"] = {"x": 1}
    payload["alerts"][0]["anotherNewField"] = True
    assert client.post(AM, json=payload, headers=auth("responder")).status_code == 200


def test_webhooks_need_a_responder_token(client, auth):
    assert client.post(AM, json=AM_FIRING).status_code == 401
    assert client.post(GRAFANA, json=GRAFANA_FIRING, headers=auth("viewer")).status_code == 403
    assert client.get(INCIDENTS, headers=auth("viewer")).json()["total"] == 0


def test_tenant_of_the_token_owns_the_incidents(client, auth):
    mine = client.post(AM, json=AM_FIRING, headers=auth("responder")).json()["items"][0]
    theirs = client.post(AM, json=AM_FIRING, headers=auth("globex-responder")).json()["items"][0]
    assert theirs["action"] == "opened" and theirs["incident_id"] != mine["incident_id"]
    r = client.post(AM, json=resolved(AM_FIRING), headers=auth("globex-responder"))
    assert r.json()["items"][0]["incident_id"] == theirs["incident_id"]
    still = client.get(f"{INCIDENTS}/{mine['incident_id']}", headers=auth("viewer")).json()
    assert still["status"] == "open"
