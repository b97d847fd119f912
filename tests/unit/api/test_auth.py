"""Authentication and authorisation: token issuance, 401 and 403 for every protected route."""

import logging
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from incidents.records import Role, User
from incidents.security import ConfigurationError, create_access_token

TOKEN_URL = "/api/v1/auth/token"
SOME_ID = "0b6f1f9e-3f55-4c55-9d55-2f1b7c1d9a01"
JWT_SECRET = "jwt-secret-for-tests-0123456789abcdef"

# (method, path, lowest role allowed)
PROTECTED = [
    ("POST", "/api/v1/incidents", Role.RESPONDER),
    ("GET", "/api/v1/incidents", Role.VIEWER),
    ("GET", "/api/v1/incidents/{incident_id}", Role.VIEWER),
    ("PUT", "/api/v1/incidents/{incident_id}", Role.RESPONDER),
    ("POST", "/api/v1/incidents/{incident_id}/acknowledge", Role.RESPONDER),
    ("POST", "/api/v1/incidents/{incident_id}/resolve", Role.RESPONDER),
    ("GET", "/api/v1/incidents/{incident_id}/timeline", Role.VIEWER),
    ("POST", "/api/v1/incidents/{incident_id}/comments", Role.RESPONDER),
    ("GET", "/api/v1/metrics", Role.VIEWER),
    ("GET", "/api/v1/metrics/history", Role.VIEWER),
    ("GET", "/api/v1/analytics/anomalies", Role.VIEWER),
    ("GET", "/api/v1/analytics/forecast", Role.VIEWER),
    ("GET", "/api/v1/analytics/summary", Role.VIEWER),
    ("POST", "/api/v1/silences", Role.RESPONDER),
    ("GET", "/api/v1/silences", Role.VIEWER),
    ("GET", "/api/v1/silences/{silence_id}", Role.VIEWER),
    ("DELETE", "/api/v1/silences/{silence_id}", Role.RESPONDER),
    ("POST", "/api/v1/webhooks/alertmanager", Role.RESPONDER),
    ("POST", "/api/v1/webhooks/grafana", Role.RESPONDER),
    ("POST", "/api/v1/admin/users", Role.ADMIN),
    ("GET", "/api/v1/admin/health", Role.ADMIN),
    ("GET", "/api/v1/admin/config", Role.ADMIN),
    ("POST", "/api/v1/admin/migrate", Role.ADMIN),
    ("POST", "/api/v1/automation/rules", Role.RESPONDER),
    ("GET", "/api/v1/automation/rules", Role.VIEWER),
    ("GET", "/api/v1/automation/rules/{rule_id}", Role.VIEWER),
    ("PUT", "/api/v1/automation/rules/{rule_id}", Role.RESPONDER),
    ("DELETE", "/api/v1/automation/rules/{rule_id}", Role.RESPONDER),
    ("POST", "/api/v1/incidents/{incident_id}/remediate", Role.RESPONDER),
    ("GET", "/api/v1/remediations", Role.VIEWER),
    ("GET", "/api/v1/remediations/runs", Role.VIEWER),
    ("GET", "/api/v1/remediations/runs/{run_id}", Role.VIEWER),
    ("POST", "/api/v1/remediations/runs/{run_id}/approve", Role.RESPONDER),
    ("POST", "/api/v1/remediations/runs/{run_id}/reject", Role.RESPONDER),
    ("POST", "/api/v1/escalation/policies", Role.RESPONDER),
    ("GET", "/api/v1/escalation/policies", Role.VIEWER),
    ("GET", "/api/v1/escalation/policies/{policy}", Role.VIEWER),
    ("PUT", "/api/v1/escalation/policies/{policy}", Role.RESPONDER),
    ("DELETE", "/api/v1/escalation/policies/{policy}", Role.RESPONDER),
]
PUBLIC = {("POST", TOKEN_URL), ("GET", "/health"), ("GET", "/health/database"), ("GET", "/metrics")}
ROLES_BY_RANK = [Role.VIEWER, Role.RESPONDER, Role.ADMIN]


def url(path: str) -> str:
    return (
        path.replace("{incident_id}", SOME_ID)
        .replace("{silence_id}", SOME_ID)
        .replace("{rule_id}", SOME_ID)
        .replace("{run_id}", SOME_ID)
        .replace("{policy}", SOME_ID)
    )


def route_id(route) -> str:
    return f"{route[0]} {route[1]}"


def test_route_table_covers_every_api_route(app):
    """A new endpoint must be added to PROTECTED (or PUBLIC) and so get the auth tests."""
    served = {
        (method.upper(), path)
        for path, operations in app.openapi()["paths"].items()
        for method in operations
    }
    listed = {(m, p) for m, p, _ in PROTECTED} | PUBLIC
    assert served | {("GET", "/metrics")} == listed


def test_openapi_marks_protected_routes_with_the_bearer_scheme(app):
    paths = app.openapi()["paths"]
    for method, path, _ in PROTECTED:
        assert paths[path][method.lower()].get("security"), (method, path)
    assert "security" not in paths["/health"]["get"]


@pytest.mark.parametrize("route", PROTECTED, ids=route_id)
@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer", "Bearer not-a-jwt", "Basic dXNlcjpwYXNz", "Bearer a.b.c"],
    ids=["missing", "empty", "garbage", "basic", "bad-segments"],
)
def test_protected_routes_need_a_valid_bearer_token(client, route, authorization):
    method, path, _ = route
    headers = {"Authorization": authorization} if authorization else {}
    r = client.request(method, url(path), headers=headers)
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == "Bearer"
    assert isinstance(r.json()["detail"], str) and r.json()["detail"]


@pytest.mark.parametrize("route", PROTECTED, ids=route_id)
def test_expired_and_foreign_tokens_are_401(client, route):
    method, path, _ = route
    expired = create_access_token(
        subject="admin",
        role=Role.ADMIN,
        tenant="acme",
        secret=JWT_SECRET,
        expires_in=timedelta(minutes=1),
        now=datetime.now(UTC) - timedelta(hours=1),
    )
    forged = create_access_token(
        subject="admin",
        role=Role.ADMIN,
        tenant="acme",
        secret="someone-elses-secret-0123456789abcdef",
        expires_in=timedelta(minutes=5),
    )
    for token, reason in ((expired, "expired"), (forged, "invalid")):
        r = client.request(method, url(path), headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 401
        assert reason in r.json()["detail"]
        assert r.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize("route", PROTECTED, ids=route_id)
def test_roles_below_the_required_one_get_403(client, auth, route):
    method, path, required = route
    lower = ROLES_BY_RANK[: ROLES_BY_RANK.index(required)]
    for role in lower:
        r = client.request(method, url(path), headers=auth(role.value))
        assert r.status_code == 403, (role, r.text)
        assert f"'{required.value}'" in r.json()["detail"]
    r = client.request(method, url(path), headers=auth(required.value))
    assert r.status_code not in (401, 403), r.text  # allowed (may still be 404/422 here)


def test_token_endpoint_issues_a_bearer_token(client):
    r = client.post(TOKEN_URL, data={"username": "viewer", "password": "user-password-123"})
    assert r.status_code == 200
    body = r.json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 30 * 60
    me = client.get(
        "/api/v1/incidents", headers={"Authorization": f"Bearer {body['access_token']}"}
    )
    assert me.status_code == 200


@pytest.mark.parametrize(
    ("username", "password"),
    [("viewer", "wrong-password"), ("nobody", "user-password-123"), ("viewer", "")],
)
def test_bad_credentials_are_401_with_one_message(client, username, password):
    r = client.post(TOKEN_URL, data={"username": username, "password": password})
    assert r.status_code in (401, 422)
    if r.status_code == 401:
        assert r.json() == {"detail": "incorrect username or password"}
        assert r.headers["www-authenticate"] == "Bearer"


def test_disabled_user_cannot_log_in_and_old_tokens_stop_working(client, auth, store, user_hash):
    headers = auth("responder")
    store.upsert_user(User("responder", user_hash, Role.RESPONDER, "acme", disabled=True))
    assert client.get("/api/v1/incidents", headers=headers).status_code == 401
    r = client.post(TOKEN_URL, data={"username": "responder", "password": "user-password-123"})
    assert r.status_code == 401


def test_changing_a_users_role_or_tenant_invalidates_old_tokens(client, auth, store, user_hash):
    headers = auth("admin")
    store.upsert_user(User("admin", user_hash, Role.VIEWER, "acme"))
    r = client.get("/api/v1/incidents", headers=headers)
    assert r.status_code == 401
    assert "outdated" in r.json()["detail"]


def test_no_admin_without_admin_password(settings_factory, store, caplog):
    settings = settings_factory(admin_username="boot-admin", admin_password=None)
    with caplog.at_level(logging.WARNING), TestClient(create_app(settings, store)):
        pass
    assert store.get_user("boot-admin") is None
    assert any("ADMIN_PASSWORD is not set" in m for m in caplog.messages)


def test_admin_is_created_at_startup_and_follows_a_password_change(settings_factory, store):
    first = settings_factory(admin_username="boot-admin", admin_password="first-password-1")
    with TestClient(create_app(first, store)) as c:
        r = c.post(TOKEN_URL, data={"username": "boot-admin", "password": "first-password-1"})
        assert r.status_code == 200
        admin_headers = {"Authorization": f"Bearer {r.json()['access_token']}"}
        assert c.get("/api/v1/admin/config", headers=admin_headers).status_code == 200
    assert store.get_user("boot-admin").role is Role.ADMIN
    second = settings_factory(admin_username="boot-admin", admin_password="second-password-2")
    with TestClient(create_app(second, store)) as c:
        old = c.post(TOKEN_URL, data={"username": "boot-admin", "password": "first-password-1"})
        new = c.post(TOKEN_URL, data={"username": "boot-admin", "password": "second-password-2"})
    assert (old.status_code, new.status_code) == (401, 200)


def test_startup_logs_no_secrets(settings_factory, store, caplog):
    settings = settings_factory(jwt_secret=None, admin_password="do-not-log-me-123")
    with caplog.at_level(logging.DEBUG), TestClient(create_app(settings, store)) as c:
        c.get("/health")
    text = "\n".join(caplog.messages)
    assert "JWT_SECRET is not set" in text
    assert "do-not-log-me-123" not in text


@pytest.mark.parametrize("environment", ["development", "staging", "production"])
def test_refuses_to_start_without_jwt_secret_outside_local(settings_factory, store, environment):
    with pytest.raises(ConfigurationError, match="JWT_SECRET"):
        create_app(settings_factory(environment=environment, jwt_secret=None), store)
    assert create_app(settings_factory(environment=environment), store) is not None


def test_tokens_from_one_secret_are_rejected_under_another(settings_factory, store):
    with TestClient(create_app(settings_factory(), store)) as c:
        r = c.post(
            TOKEN_URL, data={"username": "root-admin", "password": "admin-password-for-tests"}
        )
        assert r.status_code == 200
        token = r.json()["access_token"]
    other = settings_factory(jwt_secret="a-different-secret-0123456789abcdef")
    with TestClient(create_app(other, store)) as c:
        r = c.get("/api/v1/incidents", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 401
