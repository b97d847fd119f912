"""The ``incidents`` command line (also ``python -m incidents``).

The CLI is a composition root: it is the one module of the domain core that loads the outer rooms
(models, pipelines, api, connectors), lazily and per subcommand, so that ``import incidents``
stays free of them.
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import httpx

ENVIRONMENTS = ("local", "development", "staging", "production", "test")


def _cmd_score(args: argparse.Namespace) -> int:
    from models.scoring import score_csv

    try:
        rows = score_csv(Path(args.input), Path(args.output))
    except (OSError, ValueError) as exc:
        print(f"incidents score: {exc}", file=sys.stderr)
        return 2
    print(f"scored {rows} rows -> {args.output}", file=sys.stderr)
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    """NAB scores of the project's detector (or of existing result CSVs) on a labelled corpus."""
    from models.evaluation import (
        DEFAULT_WORKERS,
        format_report,
        load_corpus,
        load_profiles,
        match_scores,
        read_scores_dir,
        run_detector,
        score_corpus,
        write_json,
    )

    def progress(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    labels = Path(args.labels)
    profiles_path = Path(args.profiles) if args.profiles else labels.parent / "profiles.json"
    started = time.monotonic()
    try:
        if args.detector and not args.scores:
            raise ValueError("--detector names the result files of --scores; give --scores too")
        files = load_corpus(Path(args.data), labels)
        profiles = load_profiles(profiles_path)
        if args.scores:
            scores = match_scores(files, read_scores_dir(Path(args.scores), args.detector))
            detector = args.detector or Path(args.scores).name
            title = f"detector: {detector} (from {args.scores})"
        else:
            rows = sum(f.rows for f in files)
            progress(
                f"running the detector on {len(files)} files ({rows} rows),"
                f" {DEFAULT_WORKERS} processes"
            )
            scores = run_detector(files, progress=progress, workers=DEFAULT_WORKERS)
            detector = "models.detector"
            title = "detector: the project's online detector (models.detector)"
        result = score_corpus(files, scores, profiles)
        if args.output:
            write_json(result, Path(args.output), detector=detector)
    except (OSError, ValueError) as exc:
        print(f"incidents evaluate: {exc}", file=sys.stderr)
        return 2
    print(format_report(result, title))
    progress(f"evaluated in {time.monotonic() - started:.1f} s")
    return 0


def _cmd_migrate(args: argparse.Namespace) -> int:
    from connectors.store import Store
    from incidents.config import Settings

    store = Store.from_settings(Settings())
    store.migrate()
    store.close()
    print("database schema is up to date", file=sys.stderr)
    return 0


def _cmd_simulate(args: argparse.Namespace) -> int:
    from connectors.simulator import MetricsSimulator

    sim = MetricsSimulator(hosts=args.hosts, seed=args.seed)
    ticks = int(args.hours * 3600 / 10)
    with open(args.output, "wb") as out:
        for _ in range(ticks):
            for message in sim.tick():
                out.write(message.rstrip(b"\n") + b"\n")
    print(f"wrote {ticks} ticks of {args.hosts} hosts to {args.output}", file=sys.stderr)
    for a in sim.injected:
        print(f"  injected {a.kind:<11} {a.series}", file=sys.stderr)
    return 0


def _dataflow_argv(workers: int, recovery_dir: Path | None, snapshot_s: int) -> list[str]:
    argv = [
        sys.executable,
        "-m",
        "bytewax.run",
        "pipelines.detect:build_flow()",
        "-w",
        str(workers),
    ]
    if recovery_dir is not None:
        argv += ["-r", str(recovery_dir), "-s", str(snapshot_s), "-b", "0"]
    return argv


def _prepare_recovery(recovery_dir: Path | None) -> Path | None:
    """Create Bytewax's recovery partitions on first use (one partition: one dataflow process)."""
    if recovery_dir is None:
        return None
    if not any(recovery_dir.glob("part-*.sqlite3")):
        from bytewax.recovery import init_db_dir

        recovery_dir.mkdir(parents=True, exist_ok=True)
        init_db_dir(recovery_dir, 1)
        print(f"initialised Bytewax recovery in {recovery_dir}", file=sys.stderr)
    return recovery_dir


def _recovery_dir(args: argparse.Namespace, environment: str) -> Path | None:
    if args.no_recovery or (environment == "local" and args.recovery_dir is None):
        return None
    return Path(args.recovery_dir or "var/recovery")


def _api_argv(host: str, port: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "uvicorn",
        "api.app:create_app",
        "--factory",
        "--host",
        host,
        "--port",
        str(port),
        "--log-level",
        "warning",
    ]


def _cmd_dataflow(args: argparse.Namespace) -> int:
    environment = os.environ.get("ENVIRONMENT", "local")
    recovery = _prepare_recovery(_recovery_dir(args, environment))
    return subprocess.call(_dataflow_argv(args.workers, recovery, args.snapshot_interval))


def _cmd_api(args: argparse.Namespace) -> int:
    from incidents.config import Settings

    settings = Settings()
    return subprocess.call(_api_argv(settings.api_host, settings.api_port))


def _cmd_automate(args: argparse.Namespace) -> int:
    """The automation engine (rules + escalation timers) as a process of its own, until SIGINT
    or SIGTERM (what ``incidents run`` starts outside local mode)."""
    import logging
    import threading

    from connectors.automation_process import run_automation
    from incidents.config import Settings

    settings = Settings()
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    for chatty in ("httpx", "httpcore"):  # they log whole URLs; webhook URLs may carry secrets
        logging.getLogger(chatty).setLevel(logging.WARNING)
    stop = threading.Event()

    def request_stop(_signum: int, _frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)

    def ready() -> None:
        wake = "the incidents topic and " if settings.uses_kafka else ""
        print(
            f"automation engine running (rules, escalation timers); following {wake}the "
            "incidents' timeline in the store",
            file=sys.stderr,
            flush=True,
        )

    run_automation(settings, stop, ready)
    print("automation engine stopped", file=sys.stderr)
    return 0


def automation_in_own_process(environment: str) -> bool:
    """Outside local mode the automation engine is ``incidents automate``, not part of the API."""
    return environment != "local"


def _automate_argv() -> list[str]:
    return [sys.executable, "-m", "incidents", "automate"]


def _ensure_admin_password(env: dict[str, str], var_dir: Path) -> str | None:
    """Generate an admin password when none is configured; returns it only when generated."""
    if env.get("ADMIN_PASSWORD"):
        return None
    password = secrets.token_urlsafe(18)
    env["ADMIN_PASSWORD"] = password
    var_dir.mkdir(parents=True, exist_ok=True)
    path = var_dir / "admin-password"
    path.write_text(password + "\n")
    path.chmod(0o600)
    return password


def _wait_for_api(url: str, timeout_s: float, procs: Sequence[subprocess.Popen]) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if any(p.poll() is not None for p in procs):
            return False
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    return False


def _cmd_run(args: argparse.Namespace) -> int:
    """Run dataflow + API together until Ctrl-C (the local quick start); outside local mode
    also ``incidents automate`` (and the API without its in-process engine)."""
    from connectors.store import Store
    from incidents.config import Settings

    # Started in the background (nohup, a supervisor), SIGINT may arrive ignored; the children
    # would inherit that and ignore the SIGINT that stops them gracefully. A handler of our own
    # is reset to the default in each child.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    env = dict(os.environ)
    env["ENVIRONMENT"] = args.environment
    env.setdefault("PYTHONUNBUFFERED", "1")
    settings = Settings(environment=args.environment)
    if settings.database_url.startswith("sqlite:///"):
        Path(settings.database_url.removeprefix("sqlite:///")).parent.mkdir(
            parents=True, exist_ok=True
        )
    store = Store.from_settings(settings)
    store.migrate()
    orphaned = 0
    if _recovery_dir(args, args.environment) is None:
        orphaned = store.resolve_open_detected(
            actor="system", resolution="dataflow restarted without recovery state"
        )
    store.close()
    if orphaned:
        print(
            f"resolved {orphaned} detected incidents left open by an earlier run", file=sys.stderr
        )
    if settings.uses_kafka:
        from connectors.kafka import ensure_topics, settings_topics

        # Before anything can produce: a topic auto-created by a producer would get the
        # broker's default partition count instead of ours.
        ensure_topics(settings.kafka_bootstrap_servers or "", settings_topics(settings))
    generated = _ensure_admin_password(env, Path("var"))

    base = f"http://{settings.api_host}:{settings.api_port}"
    separate_automation = automation_in_own_process(args.environment)
    api_env = {**env, "AUTOMATION_ENABLED": "false"} if separate_automation else env
    api = subprocess.Popen(_api_argv(settings.api_host, settings.api_port), env=api_env)
    recovery = _prepare_recovery(_recovery_dir(args, args.environment))
    flow_argv = _dataflow_argv(args.workers, recovery, args.snapshot_interval)
    flow = subprocess.Popen(flow_argv, env=env)
    procs = [api, flow]
    if separate_automation:  # outside local mode the engine is a process of its own
        procs.append(subprocess.Popen(_automate_argv(), env=env))

    def stop(*_: object) -> None:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        for p in procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()

    signal.signal(signal.SIGTERM, lambda *_: (stop(), sys.exit(0)))
    try:
        if not _wait_for_api(f"{base}/health", 60, procs):
            print("the API did not come up; see the messages above", file=sys.stderr)
            stop()
            return 1
        _print_banner(base, settings.admin_username, generated)
        while all(p.poll() is None for p in procs):
            time.sleep(0.5)
        failed = [p for p in procs if p.returncode not in (0, None)]
        stop()
        return 1 if failed else 0
    except KeyboardInterrupt:
        print("\nstopping ...", file=sys.stderr)
        stop()
        return 0


def _print_banner(base: str, username: str, generated: str | None) -> None:
    lines = [
        "",
        f"  API          {base}   (docs: {base}/docs, Prometheus: {base}/metrics)",
        f"  admin user   {username}",
    ]
    if generated:
        lines.append(f"  password     {generated}   (generated; also in var/admin-password)")
    else:
        lines.append("  password     from ADMIN_PASSWORD")
    lines += [
        f"  token        curl -s -X POST {base}/api/v1/auth/token "
        f"-d username={username} -d password=...",
        f"  incidents    curl -s -H 'Authorization: Bearer $TOKEN' {base}/api/v1/incidents",
        "  Ctrl-C stops everything.",
        "",
    ]
    print("\n".join(lines), flush=True)


def _add_recovery_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--recovery-dir",
        help="Bytewax recovery directory (default var/recovery outside local mode; "
        "local mode runs without recovery unless this is given)",
    )
    parser.add_argument("--no-recovery", action="store_true", help="run without snapshots")
    parser.add_argument(
        "--snapshot-interval", type=int, default=10, help="seconds between recovery snapshots"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="incidents",
        description="Streaming incident detection and incident management.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    score = sub.add_parser(
        "score",
        help="score a timestamp,value CSV with the online detector (one point per window)",
    )
    score.add_argument("--input", required=True, help="CSV with header timestamp,value")
    score.add_argument("--output", required=True, help="CSV to write timestamp,value,anomaly_score")
    score.set_defaults(func=_cmd_score)

    evaluate = sub.add_parser(
        "evaluate",
        help="NAB-score the online detector (or existing result CSVs) on labelled streams",
    )
    evaluate.add_argument("--data", required=True, help="folder of <category>/<file>.csv")
    evaluate.add_argument(
        "--labels", required=True, help="windows.json: per data file, [start, end] windows"
    )
    evaluate.add_argument(
        "--profiles", help="NAB scoring profiles (default: profiles.json beside --labels)"
    )
    evaluate.add_argument(
        "--scores",
        help="score the result CSVs in this folder (<category>/[<detector>_]<file>.csv, column "
        "anomaly_score) instead of running the detector",
    )
    evaluate.add_argument(
        "--detector", help="the result files' prefix in --scores (default: the folder's name)"
    )
    evaluate.add_argument("--output", help="also write the scores, per profile and file, as JSON")
    evaluate.set_defaults(func=_cmd_evaluate)

    run = sub.add_parser("run", help="run the detection dataflow and the API together")
    run.add_argument("--environment", choices=ENVIRONMENTS, default="local")
    run.add_argument("--workers", type=int, default=1, help="Bytewax worker threads")
    _add_recovery_args(run)
    run.set_defaults(func=_cmd_run)

    dataflow = sub.add_parser("dataflow", help="run only the detection dataflow (bytewax.run)")
    dataflow.add_argument("--workers", type=int, default=1)
    _add_recovery_args(dataflow)
    dataflow.set_defaults(func=_cmd_dataflow)

    api = sub.add_parser("api", help="run only the API server")
    api.set_defaults(func=_cmd_api)

    automate = sub.add_parser(
        "automate",
        help="run the automation engine (rules, escalation timers) as its own process",
    )
    automate.set_defaults(func=_cmd_automate)

    migrate = sub.add_parser("migrate", help="create or upgrade the database schema")
    migrate.set_defaults(func=_cmd_migrate)

    simulate = sub.add_parser("simulate", help="write simulated metrics as line protocol")
    simulate.add_argument("--output", required=True)
    simulate.add_argument("--hours", type=float, default=6.0)
    simulate.add_argument("--hosts", type=int, default=8)
    simulate.add_argument("--seed", type=int, default=7)
    simulate.set_defaults(func=_cmd_simulate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
