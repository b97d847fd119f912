"""Bad input never causes a 500: each case is a 4xx with a JSON message that says what is wrong."""

import json

import pytest

SOME_ID = "0b6f1f9e-3f55-4c55-9d55-2f1b7c1d9a01"
MAX_BODY = 64 * 1024  # conftest's max_request_bytes


def deep(levels: int) -> dict:
    value: dict = {}
    for _ in range(levels):
        value = {"a": value}
    return value


# (id, method, path, request kwargs, expected status, text expected in the detail)
CASES = [
    # --- create: types, unknown fields, enums, sizes
    (
        "title-not-a-string",
        "POST",
        "/api/v1/incidents",
        {"json": {"title": 123}},
        422,
        "valid string",
    ),
    (
        "title-missing",
        "POST",
        "/api/v1/incidents",
        {"json": {"severity": "high"}},
        422,
        "Field required",
    ),
    (
        "title-blank",
        "POST",
        "/api/v1/incidents",
        {"json": {"title": "   "}},
        422,
        "at least 1 character",
    ),
    (
        "title-too-long",
        "POST",
        "/api/v1/incidents",
        {"json": {"title": "x" * 501}},
        422,
        "at most 500",
    ),
    (
        "unknown-field",
        "POST",
        "/api/v1/incidents",
        {"json": {"title": "t", "priority": 1}},
        422,
        "Extra inputs are not permitted",
    ),
    (
        "bad-severity",
        "POST",
        "/api/v1/incidents",
        {"json": {"title": "t", "severity": "urgent"}},
        422,
        "'critical'",
    ),
    (
        "bad-category",
        "POST",
        "/api/v1/incidents",
        {"json": {"title": "t", "category": "weather"}},
        422,
        "'database'",
    ),
    (
        "metadata-list",
        "POST",
        "/api/v1/incidents",
        {"json": {"title": "t", "metadata": [1]}},
        422,
        "valid dictionary",
    ),
    (
        "metadata-too-deep",
        "POST",
        "/api/v1/incidents",
        {"json": {"title": "t", "metadata": deep(40)}},
        422,
        "nested deeper",
    ),
    (
        "tags-not-list",
        "POST",
        "/api/v1/incidents",
        {"json": {"title": "t", "tags": "a,b"}},
        422,
        "valid list",
    ),
    (
        "too-many-tags",
        "POST",
        "/api/v1/incidents",
        {"json": {"title": "t", "tags": [f"t{i}" for i in range(51)]}},
        422,
        "at most 50",
    ),
    (
        "fingerprint-spaces",
        "POST",
        "/api/v1/incidents",
        {"json": {"title": "t", "fingerprint": "a b"}},
        422,
        "pattern",
    ),
    (
        "body-is-array",
        "POST",
        "/api/v1/incidents",
        {"json": [{"title": "t"}]},
        422,
        "valid dictionary",
    ),
    (
        "body-not-json",
        "POST",
        "/api/v1/incidents",
        {"content": b"{title:", "headers": {"content-type": "application/json"}},
        422,
        "JSON decode error",
    ),
    ("body-missing", "POST", "/api/v1/incidents", {}, 422, "Field required"),
    (
        "body-too-large",
        "POST",
        "/api/v1/incidents",
        {"json": {"title": "t", "description": "x" * (MAX_BODY + 10)}},
        413,
        "larger than the limit",
    ),
    # --- ids
    ("id-not-uuid", "GET", "/api/v1/incidents/not-an-id", {}, 422, "valid UUID"),
    ("id-sql", "GET", "/api/v1/incidents/1%27%20OR%20%271%27=%271", {}, 422, "valid UUID"),
    ("id-unknown", "GET", f"/api/v1/incidents/{SOME_ID}", {}, 404, "not found"),
    ("ack-unknown", "POST", f"/api/v1/incidents/{SOME_ID}/acknowledge", {}, 404, "not found"),
    ("timeline-bad-id", "GET", "/api/v1/incidents/xyz/timeline", {}, 422, "valid UUID"),
    # --- list: pagination, enums, dates
    ("limit-zero", "GET", "/api/v1/incidents?limit=0", {}, 422, "greater than or equal to 1"),
    ("limit-huge", "GET", "/api/v1/incidents?limit=100000", {}, 422, "less than or equal to 500"),
    ("limit-negative", "GET", "/api/v1/incidents?limit=-1", {}, 422, "greater than or equal to 1"),
    ("limit-text", "GET", "/api/v1/incidents?limit=ten", {}, 422, "valid integer"),
    (
        "offset-negative",
        "GET",
        "/api/v1/incidents?offset=-5",
        {},
        422,
        "greater than or equal to 0",
    ),
    (
        "offset-overflow",
        "GET",
        f"/api/v1/incidents?offset={10**30}",
        {},
        422,
        "less than or equal to",
    ),
    ("status-bogus", "GET", "/api/v1/incidents?status=closed", {}, 422, "'acknowledged'"),
    ("severity-bogus", "GET", "/api/v1/incidents?severity=5", {}, 422, "'critical'"),
    ("kind-bogus", "GET", "/api/v1/incidents?kind=guessed", {}, 422, "'detected'"),
    ("order-bogus", "GET", "/api/v1/incidents?order=sideways", {}, 422, "'newest'"),
    ("since-not-a-date", "GET", "/api/v1/incidents?since=yesterday", {}, 422, "datetime"),
    (
        "since-after-until",
        "GET",
        "/api/v1/incidents?since=2024-02-01T00:00:00Z&until=2024-01-01T00:00:00Z",
        {},
        422,
        "must not be after",
    ),
    # --- update
    ("put-empty", "PUT", "/api/v1/incidents/{id}", {"json": {}}, 422, "at least one field"),
    ("put-null", "PUT", "/api/v1/incidents/{id}", {"json": {"title": None}}, 422, "cannot be null"),
    (
        "put-bad-status",
        "PUT",
        "/api/v1/incidents/{id}",
        {"json": {"status": "closed"}},
        422,
        "'resolved'",
    ),
    (
        "put-unknown-field",
        "PUT",
        "/api/v1/incidents/{id}",
        {"json": {"fingerprint": "x"}},
        422,
        "Extra inputs are not permitted",
    ),
    ("put-bad-id", "PUT", "/api/v1/incidents/42", {"json": {"title": "t"}}, 422, "valid UUID"),
    (
        "resolve-wrong-type",
        "POST",
        "/api/v1/incidents/{id}/resolve",
        {"json": {"resolution": 5}},
        422,
        "valid string",
    ),
    (
        "resolve-unknown-field",
        "POST",
        "/api/v1/incidents/{id}/resolve",
        {"json": {"reason": "x"}},
        422,
        "Extra inputs are not permitted",
    ),
    # --- metrics and analytics
    ("history-no-series", "GET", "/api/v1/metrics/history", {}, 422, "Field required"),
    (
        "history-limit-zero",
        "GET",
        "/api/v1/metrics/history?series=s&limit=0",
        {},
        422,
        "greater than or equal to 1",
    ),
    (
        "history-limit-huge",
        "GET",
        "/api/v1/metrics/history?series=s&limit=99999999",
        {},
        422,
        "less than or equal to",
    ),
    ("metrics-limit-text", "GET", "/api/v1/metrics?limit=all", {}, 422, "valid integer"),
    (
        "anomalies-score-above-1",
        "GET",
        "/api/v1/analytics/anomalies?min_score=2",
        {},
        422,
        "less than or equal to 1",
    ),
    ("anomalies-score-nan", "GET", "/api/v1/analytics/anomalies?min_score=nan", {}, 422, "finite"),
    (
        "anomalies-score-text",
        "GET",
        "/api/v1/analytics/anomalies?min_score=high",
        {},
        422,
        "valid number",
    ),
    (
        "anomalies-bad-until",
        "GET",
        "/api/v1/analytics/anomalies?until=32-13-2024",
        {},
        422,
        "datetime",
    ),
    # --- admin and auth
    (
        "user-short-password",
        "POST",
        "/api/v1/admin/users",
        {"json": {"username": "u1", "password": "short"}},
        422,
        "at least 8",
    ),
    (
        "user-bad-role",
        "POST",
        "/api/v1/admin/users",
        {"json": {"username": "u1", "password": "long-enough", "role": "root"}},
        422,
        "'admin'",
    ),
    (
        "user-bad-name",
        "POST",
        "/api/v1/admin/users",
        {"json": {"username": "a b", "password": "long-enough"}},
        422,
        "pattern",
    ),
    (
        "user-bad-tenant",
        "POST",
        "/api/v1/admin/users",
        {"json": {"username": "u1", "password": "long-enough", "tenant": "../x"}},
        422,
        "pattern",
    ),
    (
        "token-missing-password",
        "POST",
        "/api/v1/auth/token",
        {"data": {"username": "viewer"}},
        422,
        "Field required",
    ),
    (
        "token-json-not-form",
        "POST",
        "/api/v1/auth/token",
        {"json": {"username": "viewer", "password": "x"}},
        422,
        "Field required",
    ),
]


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "message"),
    [pytest.param(*case[1:], id=case[0]) for case in CASES],
)
def test_bad_input_is_a_clear_4xx(
    client, auth, create_incident, method, path, kwargs, status, message
):
    if "{id}" in path:
        path = path.replace("{id}", create_incident()["id"])
    headers = {**auth("admin"), **kwargs.pop("headers", {})}
    r = client.request(method, path, headers=headers, **kwargs)
    assert r.status_code == status, r.text
    detail = r.json()["detail"]
    assert message in json.dumps(detail), detail
    if isinstance(detail, list):  # validation errors: where, what, and no echo of the input
        assert all({"loc", "msg", "type"} == set(d) for d in detail)


def test_validation_errors_do_not_echo_secrets(client, auth):
    r = client.post(
        "/api/v1/admin/users",
        json={"username": "bad name", "password": "a-secret-password", "role": "root"},
        headers=auth("admin"),
    )
    assert r.status_code == 422
    assert "a-secret-password" not in r.text


def test_streamed_body_over_the_limit_is_413(client, auth):
    def chunks():
        for _ in range(10):
            yield b"x" * (MAX_BODY // 4)

    r = client.post(
        "/api/v1/incidents",
        content=chunks(),  # no Content-Length: chunked transfer
        headers={**auth("responder"), "content-type": "application/json"},
    )
    assert r.status_code == 413
    assert "larger than the limit" in r.json()["detail"]


def test_declared_oversize_is_rejected_before_auth(client):
    r = client.post(
        "/api/v1/incidents",
        content=b"x" * (MAX_BODY + 1),
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 413


def test_far_future_dates_are_clamped_not_errors(client, auth):
    for path in (
        "/api/v1/incidents?since=9999-12-31T00:00:00Z",
        "/api/v1/metrics/history?series=s&until=9999-12-31T23:59:59Z",
        "/api/v1/analytics/anomalies?since=0001-01-01T00:00:00Z&until=9999-12-31T00:00:00Z",
    ):
        r = client.get(path, headers=auth("viewer"))
        assert r.status_code == 200, (path, r.text)


def test_body_at_the_limit_is_accepted(client, auth):
    body = {"title": "t", "description": ""}
    overhead = len(json.dumps(body).encode())
    body["description"] = "x" * min(MAX_BODY - overhead, 20_000)
    r = client.post("/api/v1/incidents", json=body, headers=auth("responder"))
    assert r.status_code == 201
