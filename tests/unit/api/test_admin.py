"""Admin endpoints: users, system health, configuration without secrets, migrations."""

from fastapi.testclient import TestClient

from api.app import create_app

ADMIN = "/api/v1/admin"


def test_admin_creates_users_who_can_sign_in_with_their_role(client, auth):
    r = client.post(
        f"{ADMIN}/users",
        json={
            "username": "nina",
            "password": "nina-password",
            "role": "responder",
            "tenant": "initech",
        },
        headers=auth("admin"),
    )
    assert r.status_code == 201
    assert r.json() == {
        "username": "nina",
        "role": "responder",
        "tenant": "initech",
        "disabled": False,
    }
    assert "password" not in r.text
    token = client.post(
        "/api/v1/auth/token", data={"username": "nina", "password": "nina-password"}
    )
    assert token.status_code == 200
    nina = {"Authorization": f"Bearer {token.json()['access_token']}"}
    created = client.post("/api/v1/incidents", json={"title": "x"}, headers=nina)
    assert created.status_code == 201
    assert created.json()["tenant"] == "initech"
    assert client.get(f"{ADMIN}/config", headers=nina).status_code == 403


def test_creating_an_existing_user_is_a_conflict(client, auth, store):
    before = store.get_user("viewer")
    r = client.post(
        f"{ADMIN}/users",
        json={"username": "viewer", "password": "another-password", "role": "admin"},
        headers=auth("admin"),
    )
    assert r.status_code == 409
    assert "already exists" in r.json()["detail"]
    assert store.get_user("viewer").password_hash == before.password_hash
    assert store.get_user("viewer").role == before.role


def test_config_shows_settings_but_no_secrets(settings_factory, store):
    secrets = {
        "jwt_secret": "jwt-secret-for-tests-0123456789abcdef",
        "admin_password": "very-secret-admin-pw",
        "secret_key": "secret-key-value-42",
        "encryption_key": "encryption-key-value-42",
        "influx_token": "influx-token-value-42",
    }
    settings = settings_factory(admin_username="boot-admin", **secrets)
    with TestClient(create_app(settings, store)) as c:
        token = c.post(
            "/api/v1/auth/token",
            data={"username": "boot-admin", "password": "very-secret-admin-pw"},
        ).json()["access_token"]
        r = c.get(f"{ADMIN}/config", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200
    body = r.json()
    for name, value in secrets.items():
        assert value not in r.text
        assert body[name] == "set"
    assert body["environment"] == "test"
    assert body["anomaly_threshold"] == 0.9


def test_config_redacts_a_password_in_the_database_url(settings_factory, store, auth):
    settings = settings_factory(database_url="postgresql://app:pg-pass-123@db:5432/incidents")
    with TestClient(create_app(settings, store)) as c:  # the given (SQLite) store is used
        r = c.get(f"{ADMIN}/config", headers=auth("admin"))
    assert r.json()["database_url"] == "postgresql://app:***@db:5432/incidents"
    assert "pg-pass-123" not in r.text


def test_system_health_reports_database_and_pipeline(client, auth, store):
    store.record_pipeline_stats("w0", {"points": 7})
    r = client.get(f"{ADMIN}/health", headers=auth("admin"))
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ok"
    assert body["database"] == "up"
    assert body["pipeline"] == {"points": 7.0}
    assert body["uptime_seconds"] >= 0


def test_migrate_endpoint_is_idempotent(client, auth):
    for _ in range(2):
        r = client.post(f"{ADMIN}/migrate", headers=auth("admin"))
        assert r.json() == {"status": "ok"}
