#!/usr/bin/env bash
# Set up and run the incident platform.
#
#   ./deploy.sh --environment local        simulator -> dataflow -> SQLite -> API (one command)
#   ./deploy.sh --environment development  Kafka -> dataflow -> InfluxDB + PostgreSQL -> API
#   ./deploy.sh test                       lint, security scan and the whole test suite
#   ./deploy.sh services up|down|status|env|logs   Kafka, InfluxDB, PostgreSQL on loopback
#   ./deploy.sh migrate                    create or upgrade the database schema
#
# Options: --workers N (Bytewax worker threads), --dry-run (print what would run), -h/--help.
set -euo pipefail
cd "$(dirname "$0")"

ENVIRONMENT=""
VERB=""
WORKERS="${WORKERS:-1}"
DRY_RUN=0

log() { printf '[deploy] %s\n' "$*" >&2; }
die() { printf '[deploy] error: %s\n' "$*" >&2; exit 1; }

usage() { sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
  case "$1" in
    --environment|-e) [ $# -ge 2 ] || die "--environment needs a value"; ENVIRONMENT="$2"; shift 2 ;;
    --environment=*) ENVIRONMENT="${1#*=}"; shift ;;
    --workers) [ $# -ge 2 ] || die "--workers needs a value"; WORKERS="$2"; shift 2 ;;
    --dry-run) DRY_RUN=1; shift ;;
    -h|--help|help) usage; exit 0 ;;
    test|migrate) VERB="$1"; shift ;;
    services) shift; exec bash scripts/services.sh "$@" ;;
    *) die "unknown argument '$1' (see ./deploy.sh --help)" ;;
  esac
done
[ -n "$VERB" ] || [ -n "$ENVIRONMENT" ] || { usage; exit 2; }

pick_python() {
  for candidate in "${PYTHON:-}" python3.11 python3.12 python3.13 python3; do
    [ -n "$candidate" ] || continue
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; raise SystemExit(sys.version_info < (3, 11))' 2>/dev/null; then
      echo "$candidate"; return 0
    fi
  done
  die "Python 3.11 or newer is required (set PYTHON=/path/to/python3.11)"
}

ensure_venv() {
  if [ ! -x .venv/bin/python ]; then
    local py; py="$(pick_python)"
    log "creating .venv with $("$py" --version 2>&1)"
    "$py" -m venv .venv
  fi
  local stamp=".venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)"
  if [ ! -f "$stamp" ]; then
    log "installing the project and its dependencies into .venv (first run takes a few minutes)"
    if ! { .venv/bin/python -m pip install --upgrade pip &&
           .venv/bin/python -m pip install -e ".[dev]"; } > .venv/install.log 2>&1; then
      tail -n 30 .venv/install.log >&2
      die "installing dependencies failed; the whole log is .venv/install.log"
    fi
    rm -f .venv/.installed-*
    touch "$stamp"
    log "installed"
  fi
}

run() {
  if [ "$DRY_RUN" = 1 ]; then printf '[dry-run] %s\n' "$*"; else "$@"; fi
}

run_tests() {
  ensure_venv
  log "ruff (lint + format)"
  run .venv/bin/ruff check .
  run .venv/bin/ruff format --check .
  log "bandit (security scan of the product code)"
  run .venv/bin/bandit -q -c pyproject.toml -r incidents pipelines connectors models api
  log "services for the integration tests (Kafka, InfluxDB, PostgreSQL)"
  run bash scripts/services.sh up
  local service_env
  service_env="$(bash scripts/services.sh env)" || die "the services harness could not print its settings"
  eval "$service_env"
  export INCIDENTS_REQUIRE_SERVICES=1
  log "pytest"
  run .venv/bin/python -m pytest -q tests
}

case "$VERB" in
  test) run_tests; exit $? ;;
  migrate) ensure_venv; run .venv/bin/incidents migrate; exit $? ;;
esac

case "$ENVIRONMENT" in
  local|development|staging|production) ;;
  *) die "unknown environment '$ENVIRONMENT' (local, development, staging, production)" ;;
esac
if [ "$ENVIRONMENT" != local ] && [ -z "${KAFKA_BOOTSTRAP_SERVERS:-}" ]; then
  die "$ENVIRONMENT needs KAFKA_BOOTSTRAP_SERVERS, INFLUX_* and DATABASE_URL; for the services on this machine run: ./deploy.sh services up && eval \"\$(./deploy.sh services env)\""
fi
ensure_venv
export ENVIRONMENT
log "starting the $ENVIRONMENT deployment (Ctrl-C stops it)"
run .venv/bin/incidents run --environment "$ENVIRONMENT" --workers "$WORKERS"
