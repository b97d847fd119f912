"""The README's first command as a user runs it: dataflow + API on the embedded default.

Starts ``incidents run --environment local`` (what ``./deploy.sh --environment local`` execs) as a
real process tree on a free port, then talks to it over HTTP only.
"""

import os
import signal
import time
from datetime import datetime
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.e2e

INCIDENT_DEADLINE_S = 60


@pytest.fixture(scope="module")
def local_run(tmp_path_factory, run_product):
    workdir: Path = tmp_path_factory.mktemp("local-run")
    env = {
        **os.environ,
        "ENVIRONMENT": "local",
        "DATABASE_URL": f"sqlite:///{workdir / 'incidents.db'}",
        "SIMULATOR_HOSTS": "4",
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("ADMIN_PASSWORD", None)
    # The embedded default, as on a machine without services (./deploy.sh test exports them).
    for name in list(env):
        if name.startswith(("KAFKA_", "INFLUX_")):
            del env[name]
    with run_product("local", env, workdir, 90) as run:
        yield {"base": run.base, "workdir": workdir, "proc": run.proc, "api_up_at": run.api_up_at}


def token(run) -> str:
    password = (run["workdir"] / "var" / "admin-password").read_text().strip()
    resp = httpx.post(
        f"{run['base']}/api/v1/auth/token", data={"username": "admin", "password": password}
    )
    assert resp.status_code == 200, resp.text
    return resp.json()["access_token"]


def test_generated_admin_password_is_printed_once_and_stored_privately(local_run):
    path = local_run["workdir"] / "var" / "admin-password"
    assert path.stat().st_mode & 0o077 == 0
    password = path.read_text().strip()
    time.sleep(0.5)
    log = (local_run["workdir"] / "run.log").read_text()
    assert log.count(password) == 1


def test_unauthenticated_calls_get_401(local_run):
    resp = httpx.get(f"{local_run['base']}/api/v1/incidents")
    assert resp.status_code == 401


def test_simulated_anomalies_become_incidents_within_60_seconds(local_run):
    headers = {"Authorization": f"Bearer {token(local_run)}"}
    deadline = local_run["api_up_at"] + INCIDENT_DEADLINE_S
    body = {}
    while time.monotonic() < deadline:
        body = httpx.get(
            f"{local_run['base']}/api/v1/incidents", params={"kind": "detected"}, headers=headers
        ).json()
        if body.get("total", 0) > 0:
            break
        time.sleep(1)
    assert body.get("total", 0) > 0, (local_run["workdir"] / "run.log").read_text()[-3000:]
    incident = body["items"][0]
    assert incident["kind"] == "detected"
    assert incident["status"] in {"open", "acknowledged", "resolved"}
    assert incident["severity"] in {"critical", "high", "medium", "low", "info"}
    assert incident["series"]


def test_the_filling_disk_gets_a_predicted_incident_before_it_fills(local_run):
    headers = {"Authorization": f"Bearer {token(local_run)}"}
    deadline = local_run["api_up_at"] + INCIDENT_DEADLINE_S
    body: dict = {}
    while time.monotonic() < deadline:
        body = httpx.get(
            f"{local_run['base']}/api/v1/incidents", params={"kind": "predicted"}, headers=headers
        ).json()
        if body.get("total", 0) > 0:
            break
        time.sleep(1)
    assert body.get("total", 0) > 0, (local_run["workdir"] / "run.log").read_text()[-3000:]
    incident = body["items"][0]
    assert incident["title"].startswith("Predicted disk.used_percent > 95 on host-")
    assert incident["series"].startswith("disk,host=host-")
    predicted = datetime.fromisoformat(incident["metadata"]["predicted_breach_time"])
    assert predicted > datetime.fromisoformat(incident["last_seen"])


def test_metrics_history_and_prometheus_are_served(local_run):
    headers = {"Authorization": f"Bearer {token(local_run)}"}
    latest = httpx.get(f"{local_run['base']}/api/v1/metrics", headers=headers)
    assert latest.status_code == 200
    prom = httpx.get(f"{local_run['base']}/metrics").text
    assert "incidents_total" in prom
    assert "pipeline_points_total" in prom


def test_progress_is_printed(local_run):
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if "[dataflow]" in (local_run["workdir"] / "run.log").read_text():
            return
        time.sleep(1)
    pytest.fail("no progress line from the dataflow")


def test_ctrl_c_stops_everything_cleanly(local_run):
    proc = local_run["proc"]
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=30) == 0
    time.sleep(0.5)
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{local_run['base']}/health", timeout=2)
