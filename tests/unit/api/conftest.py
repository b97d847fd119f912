"""Shared fixtures: a real app over a real SQLite file, users per role and tenant, tokens.

With ``--import-mode=importlib`` test modules cannot import this file, so helpers are fixtures.
"""

import shutil
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from connectors.store import Store
from incidents.config import Settings
from incidents.records import Role, User
from incidents.schemas import DEFAULT_TENANT, AnomalyScore, WindowAggregate
from incidents.security import create_access_token, hash_password

TOKEN_URL = "/api/v1/auth/token"
ADMIN_USERNAME = "root-admin"
ADMIN_PASSWORD = "admin-password-for-tests"
JWT_SECRET = "jwt-secret-for-tests-0123456789abcdef"
USER_PASSWORD = "user-password-123"
MAX_BODY = 64 * 1024
S = 1_000_000_000
W = 60 * S

# username -> (role, tenant); created straight in the store with one shared hash
USERS: dict[str, tuple[Role, str]] = {
    ADMIN_USERNAME: (Role.ADMIN, DEFAULT_TENANT),
    "viewer": (Role.VIEWER, "acme"),
    "responder": (Role.RESPONDER, "acme"),
    "admin": (Role.ADMIN, "acme"),
    "globex-viewer": (Role.VIEWER, "globex"),
    "globex-responder": (Role.RESPONDER, "globex"),
}


def make_settings(tmp_path, **overrides) -> Settings:
    """Test settings. No ADMIN_PASSWORD by default: the template database already holds the
    admin (argon2 at every app start would dominate the run time); bootstrap tests set it."""
    values = {
        "environment": "test",
        "database_url": f"sqlite:///{tmp_path / 'api.db'}",
        "admin_username": ADMIN_USERNAME,
        "admin_password": None,
        "jwt_secret": JWT_SECRET,
        "max_request_bytes": MAX_BODY,
        "anomaly_threshold": 0.9,
        "access_token_minutes": 30,
    }
    return Settings(**{**values, **overrides})


@pytest.fixture(scope="session")
def user_hash() -> str:
    return hash_password(USER_PASSWORD)


@pytest.fixture(scope="session")
def template_db(tmp_path_factory, user_hash) -> Path:
    """A migrated database with the users of USERS, copied for every test."""
    path = tmp_path_factory.mktemp("template") / "api.db"
    store = Store(f"sqlite:///{path}")
    store.migrate()
    for username, (role, tenant) in USERS.items():
        password_hash = hash_password(ADMIN_PASSWORD) if username == ADMIN_USERNAME else user_hash
        store.upsert_user(User(username, password_hash, role, tenant))
    with store.engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    store.close()
    return path


@pytest.fixture
def settings(tmp_path, template_db) -> Settings:
    shutil.copy(template_db, tmp_path / "api.db")
    return make_settings(tmp_path)


@pytest.fixture
def store(settings) -> Iterator[Store]:
    s = Store.from_settings(settings)
    yield s
    s.close()


@pytest.fixture
def app(settings, store):
    return create_app(settings, store)


@pytest.fixture
def client(app) -> Iterator[TestClient]:
    with TestClient(app) as c:  # runs the lifespan: migrations + admin account
        yield c


@pytest.fixture
def auth(client) -> Callable[[str], dict[str, str]]:
    """``auth("responder")`` -> Authorization header of that user.

    Tokens are minted with the app's secret rather than fetched from the token endpoint (which
    has its own tests), saving an argon2 verification per user and test.
    """

    def headers(username: str) -> dict[str, str]:
        role, tenant = USERS[username]
        token = create_access_token(
            subject=username,
            role=role,
            tenant=tenant,
            secret=JWT_SECRET,
            expires_in=timedelta(minutes=30),
        )
        return {"Authorization": f"Bearer {token}"}

    return headers


@pytest.fixture
def create_incident(client, auth) -> Callable[..., dict]:
    """``create_incident(user="responder", **fields)`` -> the created (or deduplicated) incident."""

    def create(user: str = "responder", **fields) -> dict:
        body = {"title": "Datenbank-Verbindungs-Timeout", "severity": "high", **fields}
        r = client.post("/api/v1/incidents", json=body, headers=auth(user))
        assert r.status_code in (200, 201), r.text
        return r.json()

    return create


def _scored_window(
    i: int, score: float, series: str = "cpu,host=a usage_user", tenant: str = "acme"
) -> AnomalyScore:
    agg = WindowAggregate(series, tenant, i * W, (i + 1) * W, 6, 10.0 + i, 9.0, 11.0 + i, 0.5, 10.0)
    return AnomalyScore(agg, score, score >= 0.9, {"ecod": score})


@pytest.fixture
def scored_window() -> Callable[..., AnomalyScore]:
    """``scored_window(i, score, series=…, tenant=…)``: window i (of 60 s) with that score."""
    return _scored_window


@pytest.fixture
def settings_factory(tmp_path) -> Callable[..., Settings]:
    """Settings for another app over the same tmp_path, with overrides."""
    return lambda **overrides: make_settings(tmp_path, **overrides)
