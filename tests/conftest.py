"""Shared by the e2e and integration tests: the product started as a real process tree."""

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

SERVICE_VARIABLES = (
    "KAFKA_BOOTSTRAP_SERVERS",
    "KAFKA_METRICS_TOPIC",
    "KAFKA_DLQ_TOPIC",
    "KAFKA_INCIDENTS_TOPIC",
    "INFLUX_URL",
    "INFLUX_TOKEN",
    "INFLUX_ORG",
    "INFLUX_BUCKET",
    "DATABASE_URL",
)
"""What ``./deploy.sh services env`` sets for the real services (contract 3 of ARCHITECTURE.md)."""


@dataclass
class ProductRun:
    base: str
    proc: subprocess.Popen
    log: Path
    api_up_at: float


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def _run_product(
    environment: str, env: dict[str, str], workdir: Path, timeout_s: float
) -> Iterator[ProductRun]:
    """``incidents run --environment …`` on a free port in ``workdir`` until its API answers;
    SIGINT at exit."""
    env = {**env, "API_PORT": str(free_port())}
    log_path = workdir / "run.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "incidents", "run", "--environment", environment],
            cwd=workdir,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        base = f"http://127.0.0.1:{env['API_PORT']}"
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert proc.poll() is None, log_path.read_text()
            try:
                if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.3)
        else:
            os.killpg(proc.pid, signal.SIGKILL)
            pytest.fail(f"API did not answer within {timeout_s:.0f} s:\n" + log_path.read_text())
        try:
            yield ProductRun(base, proc, log_path, time.monotonic())
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)


@pytest.fixture(scope="session")
def run_product() -> Callable[..., contextlib.AbstractContextManager[ProductRun]]:
    """``with run_product(environment, env, workdir, timeout_s) as run: ...``"""
    return _run_product
