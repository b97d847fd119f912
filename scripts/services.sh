#!/usr/bin/env bash
# Native services harness: Apache Kafka (KRaft), InfluxDB 2.x OSS and PostgreSQL on loopback,
# installed on first use, without Docker.
#
#   scripts/services.sh up     [kafka|influxdb|postgres ...]   install if missing, start, wait, set up
#   scripts/services.sh down   [kafka|influxdb|postgres ...]   stop (graceful, then kill after a timeout)
#   scripts/services.sh status [kafka|influxdb|postgres ...]   one line per component (exit 3 if any is stopped)
#   scripts/services.sh env                                    `export NAME=value` lines for the app
#   scripts/services.sh logs   [kafka|influxdb|postgres ...]   the last lines of each log
#
#   eval "$(scripts/services.sh env)"    # then run the product or the integration tests
#
# Ports: deliberately NOT the products' defaults (9092/8086/5432), so that a Kafka, InfluxDB or
# PostgreSQL the user already runs does not collide with ours. Everything binds to 127.0.0.1 only.
#   INCIDENTS_KAFKA_PORT             19092   Kafka client listener (KAFKA_BOOTSTRAP_SERVERS)
#   INCIDENTS_KAFKA_CONTROLLER_PORT  19093   KRaft controller listener
#   INCIDENTS_INFLUX_PORT            18086   InfluxDB HTTP API (INFLUX_URL)
#   INCIDENTS_POSTGRES_PORT          15432   PostgreSQL (DATABASE_URL)
#
# Versions (the caches are keyed by them):
#   INCIDENTS_KAFKA_VERSION     4.1.2    broker jars from Maven Central (scripts/services/kafka-pom.xml)
#   INCIDENTS_INFLUXDB_VERSION  2.7.12   influxd built from the Go module github.com/influxdata/influxdb/v2
#                                        with the machine's Go and Rust (scripts/services/build-influxdb.sh)
#   PostgreSQL                           Debian's package (apt-get install postgresql), newest major in
#                                        /usr/lib/postgresql, or INCIDENTS_POSTGRES_BINDIR
#
# Directories:
#   INCIDENTS_CACHE_DIR  (~/.cache/incidents)        kafka-<ver>/libs, influxdb-<ver>/bin/influxd
#   INCIDENTS_STATE_DIR  (~/.local/state/incidents)  kafka/ influxdb/ postgres/: data, logs, pid files,
#                                                    generated secrets (mode 0600)
# Other knobs: INCIDENTS_KAFKA_HEAP (-Xmx, default 512m), INCIDENTS_KAFKA_PARTITIONS (1; see the README on keyed producers),
#   INCIDENTS_INFLUX_ORG (incidents), INCIDENTS_INFLUX_BUCKET (incidents),
#   INCIDENTS_POSTGRES_DB / INCIDENTS_POSTGRES_USER (incidents), INCIDENTS_START_TIMEOUT (120 s),
#   INCIDENTS_STOP_TIMEOUT (30 s), INCIDENTS_KEEP_BUILD_CACHE=1 (keep InfluxDB's Go/Rust build trees).
#
# The first `up` downloads the Kafka jars (~10-30 s) and compiles InfluxDB from source (libflux in
# Rust ~1 min, then influxd in Go ~2-3 min: about 4-5 min on 2 cores, longer on a slow network);
# later runs start everything in seconds.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
HELPERS="$SCRIPT_DIR/services"

CACHE_DIR="${INCIDENTS_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/incidents}"
STATE_DIR="${INCIDENTS_STATE_DIR:-${XDG_STATE_HOME:-$HOME/.local/state}/incidents}"

KAFKA_VERSION="${INCIDENTS_KAFKA_VERSION:-4.1.2}"
INFLUXDB_VERSION="${INCIDENTS_INFLUXDB_VERSION:-2.7.12}"
INFLUXDB_VERSION="${INFLUXDB_VERSION#v}"

KAFKA_PORT="${INCIDENTS_KAFKA_PORT:-19092}"
KAFKA_CONTROLLER_PORT="${INCIDENTS_KAFKA_CONTROLLER_PORT:-19093}"
INFLUX_PORT="${INCIDENTS_INFLUX_PORT:-18086}"
POSTGRES_PORT="${INCIDENTS_POSTGRES_PORT:-15432}"

KAFKA_HEAP="${INCIDENTS_KAFKA_HEAP:-512m}"
KAFKA_PARTITIONS="${INCIDENTS_KAFKA_PARTITIONS:-1}"
KAFKA_TOPICS="${KAFKA_METRICS_TOPIC:-metrics} ${KAFKA_DLQ_TOPIC:-metrics.dlq} ${KAFKA_INCIDENTS_TOPIC:-incidents}"
INFLUX_ORG_NAME="${INCIDENTS_INFLUX_ORG:-incidents}"
INFLUX_BUCKET_NAME="${INCIDENTS_INFLUX_BUCKET:-incidents}"
INFLUX_USER="${INCIDENTS_INFLUX_USER:-incidents}"
POSTGRES_DB="${INCIDENTS_POSTGRES_DB:-incidents}"
POSTGRES_USER="${INCIDENTS_POSTGRES_USER:-incidents}"
START_TIMEOUT="${INCIDENTS_START_TIMEOUT:-120}"
STOP_TIMEOUT="${INCIDENTS_STOP_TIMEOUT:-30}"

HOST=127.0.0.1
ALL_COMPONENTS=(kafka influxdb postgres)

KAFKA_HOME="$CACHE_DIR/kafka-$KAFKA_VERSION"
KAFKA_STATE="$STATE_DIR/kafka"
KAFKA_LOG="$KAFKA_STATE/kafka.log"
INFLUX_HOME="$CACHE_DIR/influxdb-$INFLUXDB_VERSION"
INFLUXD="$INFLUX_HOME/bin/influxd"
INFLUX_STATE="$STATE_DIR/influxdb"
INFLUX_LOG="$INFLUX_STATE/influxd.log"
PG_STATE="$STATE_DIR/postgres"
PG_DATA="$PG_STATE/data"
PG_LOG="$PG_STATE/postgres.log"

# ---------------------------------------------------------------------------------------------
# helpers

say() { printf '[services] %s\n' "$*" >&2; }
# fail COMPONENT LOGFILE MESSAGE: name the component and its log, show the log's tail, exit 1
fail() {
  local component="$1" logfile="$2"; shift 2
  say "ERROR: $component: $*"
  if [ -n "$logfile" ]; then
    say "       log: $logfile"
    if [ -s "$logfile" ]; then
      say "       last lines of the log:"
      tail -n 25 "$logfile" | sed 's/^/         | /' >&2
    fi
  fi
  if [ -n "${FAIL_EXTRA_LOG:-}" ] && [ -s "$FAIL_EXTRA_LOG" ]; then
    say "       process output: $FAIL_EXTRA_LOG"
    tail -n 15 "$FAIL_EXTRA_LOG" | sed 's/^/         | /' >&2
  fi
  exit 1
}
need_cmd() { command -v "$1" >/dev/null 2>&1; }
is_root() { [ "$(id -u)" = 0 ]; }

# apt_install COMPONENT PACKAGE...: install Debian packages (as root), or explain what is missing
APT_UPDATED=0
apt_install() {
  local component="$1"; shift
  if ! is_root || ! need_cmd apt-get; then
    fail "$component" "" "missing prerequisites; install these packages and retry: $*"
  fi
  if [ "$APT_UPDATED" = 0 ]; then
    say "$component: apt-get update"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 || fail "$component" "" "apt-get update failed"
    APT_UPDATED=1
  fi
  say "$component: apt-get install -y $*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >&2 \
    || fail "$component" "" "apt-get install $* failed"
}

port_open() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

# pid_alive PID PATTERN: the process exists and its command line contains PATTERN
pid_alive() {
  local pid="$1" pattern="$2"
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$pattern"
}
read_pid() { if [ -f "$1" ]; then head -n 1 "$1" | tr -dc '0-9'; fi; }

# random_secret: 32 hex characters (URL-safe, so they go into DATABASE_URL without quoting)
random_secret() { od -An -N16 -tx1 /dev/urandom | tr -d ' \n'; }
# secret_file PATH: create once, mode 0600, print its content
secret_file() {
  local path="$1"
  if [ ! -s "$path" ]; then
    (umask 077 && random_secret >"$path.tmp" && mv "$path.tmp" "$path")
  fi
  cat "$path"
}

# run_logged LABEL LOGFILE CMD...: run a long command with its output in LOGFILE, print a
# progress line every 30 s (elapsed time and the log's last line) so the user knows it is alive.
run_logged() {
  local label="$1" logfile="$2"; shift 2
  local started=$SECONDS last_report=$SECONDS pid rc=0
  "$@" >>"$logfile" 2>&1 &
  pid=$!
  # shellcheck disable=SC2064
  trap "kill -- $pid 2>/dev/null; exit 130" INT TERM
  while kill -0 "$pid" 2>/dev/null; do
    sleep 2
    if [ $((SECONDS - last_report)) -ge 30 ]; then
      last_report=$SECONDS
      local line
      # the last informative line (not compiler diagnostics' context lines)
      line="$(grep -vE '^[[:space:]]*([|=]|-->|[0-9]+ *[|]|help:|note:|warning|$)' "$logfile" 2>/dev/null \
        | tail -n 1 | cut -c1-110)"
      say "  ... $label: $((SECONDS - started))s elapsed; $line"
    fi
  done
  wait "$pid" || rc=$?
  trap - INT TERM
  return "$rc"
}

# wait_for COMPONENT LOGFILE PID PATTERN CHECK...: poll CHECK until it succeeds; fail if the
# process dies or START_TIMEOUT passes.
wait_for() {
  local component="$1" logfile="$2" pid="$3" pattern="$4"; shift 4
  local started=$SECONDS last_report=$SECONDS
  until "$@" >/dev/null 2>&1; do
    if [ -n "$pid" ] && ! pid_alive "$pid" "$pattern"; then
      fail "$component" "$logfile" "the process (pid $pid) exited during start-up"
    fi
    if [ $((SECONDS - started)) -ge "$START_TIMEOUT" ]; then
      # do not leave a half-started server behind
      [ -z "$pid" ] || stop_pid "$component" "$pid" "$pattern"
      fail "$component" "$logfile" "did not answer within ${START_TIMEOUT}s (INCIDENTS_START_TIMEOUT); stopped it"
    fi
    if [ $((SECONDS - last_report)) -ge 10 ]; then
      last_report=$SECONDS
      say "  ... waiting for $component ($((SECONDS - started))s)"
    fi
    sleep 1
  done
}

# stop_pid COMPONENT PID PATTERN: SIGTERM, wait STOP_TIMEOUT, then SIGKILL
stop_pid() {
  local component="$1" pid="$2" pattern="$3" waited=0
  kill -TERM "$pid" 2>/dev/null || true
  while pid_alive "$pid" "$pattern"; do
    if [ "$waited" -ge "$STOP_TIMEOUT" ]; then
      say "$component: still running after ${STOP_TIMEOUT}s, sending SIGKILL to $pid"
      kill -KILL "$pid" 2>/dev/null || true
      sleep 1
      break
    fi
    sleep 1
    waited=$((waited + 1))
  done
}

# start_detached PIDFILE LOGFILE DIR CMD...: start CMD in its own session (so it outlives this
# script and a Ctrl-C in the terminal), output appended to LOGFILE, pid written to PIDFILE.
start_detached() {
  local pidfile="$1" logfile="$2" dir="$3"; shift 3
  rm -f "$pidfile"
  (
    cd "$dir"
    # The inner shell writes its own pid, then becomes CMD (exec keeps the pid). fd 9, the lock
    # of this script, is closed so that the server does not hold it.
    # shellcheck disable=SC2016
    setsid bash -c 'echo $$ >"$0"; exec "$@"' "$pidfile" "$@" </dev/null >>"$logfile" 2>&1 9>&- &
  )
  for _ in $(seq 1 50); do
    [ -s "$pidfile" ] && return 0
    sleep 0.2
  done
  return 1
}

port_free_or_fail() {
  local component="$1" port="$2" var="$3"
  if port_open "$port"; then
    fail "$component" "" "port $HOST:$port is already in use by another process; stop it or choose another port with $var=..."
  fi
}

# ---------------------------------------------------------------------------------------------
# Kafka (KRaft, combined broker + controller, node 1)

kafka_pid() {
  local pid
  pid="$(read_pid "$KAFKA_STATE/kafka.pid")"
  pid_alive "$pid" kafka.Kafka && echo "$pid"
}
kafka_running() { [ -n "$(kafka_pid)" ]; }
kafka_java() { java -Dlog4j2.configurationFile="$KAFKA_STATE/log4j2.properties" -cp "$KAFKA_HOME/libs/*" "$@"; }

kafka_install() {
  if [ -f "$KAFKA_HOME/.complete" ]; then
    say "kafka: $KAFKA_VERSION is installed ($KAFKA_HOME)"
    return 0
  fi
  local missing=()
  need_cmd java || missing+=(openjdk-17-jre-headless)
  need_cmd mvn || missing+=(maven)
  [ ${#missing[@]} -eq 0 ] || apt_install kafka "${missing[@]}"
  local javaver
  javaver="$(java -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = //p')"
  if [ "${javaver%%.*}" -lt 17 ] 2>/dev/null; then
    fail kafka "" "Kafka 4.x needs Java 17 or newer; java on PATH is $javaver"
  fi
  mkdir -p "$KAFKA_HOME"
  local log="$KAFKA_HOME/install.log" started=$SECONDS
  : >"$log"
  say "kafka: installing $KAFKA_VERSION: fetching the broker jars from Maven Central (log: $log)"
  rm -rf "$KAFKA_HOME/libs.tmp"
  run_logged "kafka download" "$log" \
    mvn -B -ntp -f "$HELPERS/kafka-pom.xml" -Dkafka.version="$KAFKA_VERSION" \
    -Dmaven.repo.local="$KAFKA_HOME/m2" \
    dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$KAFKA_HOME/libs.tmp" \
    || fail kafka "$log" "downloading the Kafka $KAFKA_VERSION jars with Maven failed"
  [ -f "$KAFKA_HOME/libs.tmp/kafka_2.13-$KAFKA_VERSION.jar" ] \
    || fail kafka "$log" "kafka_2.13-$KAFKA_VERSION.jar is missing after the Maven download"
  rm -rf "$KAFKA_HOME/libs" "$KAFKA_HOME/m2"
  mv "$KAFKA_HOME/libs.tmp" "$KAFKA_HOME/libs"
  touch "$KAFKA_HOME/.complete"
  say "kafka: installed $KAFKA_VERSION ($(ls "$KAFKA_HOME/libs" | wc -l) jars, $(du -sh "$KAFKA_HOME" | cut -f1)) in $((SECONDS - started))s"
}

kafka_configure() {
  mkdir -p "$KAFKA_STATE/data"
  cat >"$KAFKA_STATE/server.properties" <<EOF
# Generated by scripts/services.sh on every start; edit the script, not this file.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@$HOST:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://$HOST:$KAFKA_PORT,CONTROLLER://$HOST:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://$HOST:$KAFKA_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$KAFKA_STATE/data
num.partitions=$KAFKA_PARTITIONS
default.replication.factor=1
auto.create.topics.enable=true
offsets.topic.replication.factor=1
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
log.retention.hours=168
log.segment.bytes=104857600
EOF
  cat >"$KAFKA_STATE/log4j2.properties" <<EOF
status = warn
appender.file.type = RollingFile
appender.file.name = file
appender.file.fileName = $KAFKA_LOG
appender.file.filePattern = $KAFKA_LOG.%i
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
appender.file.policies.type = Policies
appender.file.policies.size.type = SizeBasedTriggeringPolicy
appender.file.policies.size.size = 50MB
appender.file.strategy.type = DefaultRolloverStrategy
appender.file.strategy.max = 3
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = file
logger.kafka.name = kafka
logger.kafka.level = INFO
logger.state.name = state.change.logger
logger.state.level = WARN
EOF
  if [ ! -f "$KAFKA_STATE/data/meta.properties" ]; then
    local cluster_id
    if [ ! -s "$KAFKA_STATE/cluster.id" ]; then
      cluster_id="$(kafka_java kafka.tools.StorageTool random-uuid 2>>"$KAFKA_LOG" | tail -n 1)"
      [ -n "$cluster_id" ] || fail kafka "$KAFKA_LOG" "kafka.tools.StorageTool random-uuid failed"
      echo "$cluster_id" >"$KAFKA_STATE/cluster.id"
    fi
    cluster_id="$(cat "$KAFKA_STATE/cluster.id")"
    say "kafka: formatting the KRaft log directory (cluster id $cluster_id)"
    kafka_java kafka.tools.StorageTool format -t "$cluster_id" -c "$KAFKA_STATE/server.properties" \
      >>"$KAFKA_LOG" 2>&1 || fail kafka "$KAFKA_LOG" "kafka.tools.StorageTool format failed"
  fi
}

kafka_create_topics() {
  local topic
  for topic in $KAFKA_TOPICS; do
    kafka_java org.apache.kafka.tools.TopicCommand --bootstrap-server "$HOST:$KAFKA_PORT" \
      --create --if-not-exists --topic "$topic" --partitions "$KAFKA_PARTITIONS" --replication-factor 1 \
      >>"$KAFKA_LOG" 2>&1 || fail kafka "$KAFKA_LOG" "creating topic '$topic' failed"
  done
  say "kafka: topics ready: $KAFKA_TOPICS"
}

kafka_up() {
  if kafka_running; then
    say "kafka: already running (pid $(kafka_pid), $HOST:$KAFKA_PORT)"
    return 0
  fi
  kafka_install
  port_free_or_fail kafka "$KAFKA_PORT" INCIDENTS_KAFKA_PORT
  port_free_or_fail kafka "$KAFKA_CONTROLLER_PORT" INCIDENTS_KAFKA_CONTROLLER_PORT
  kafka_configure
  local started=$SECONDS
  say "kafka: starting $KAFKA_VERSION on $HOST:$KAFKA_PORT (controller $HOST:$KAFKA_CONTROLLER_PORT, log: $KAFKA_LOG)"
  : >"$KAFKA_STATE/kafka.out"
  start_detached "$KAFKA_STATE/kafka.pid" "$KAFKA_STATE/kafka.out" "$KAFKA_STATE" \
    java "-Xms256m" "-Xmx$KAFKA_HEAP" -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
    -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$KAFKA_STATE/log4j2.properties" \
    -cp "$KAFKA_HOME/libs/*" kafka.Kafka "$KAFKA_STATE/server.properties" \
    || fail kafka "$KAFKA_STATE/kafka.out" "could not start java"
  local pid
  pid="$(read_pid "$KAFKA_STATE/kafka.pid")"
  FAIL_EXTRA_LOG="$KAFKA_STATE/kafka.out"  # the JVM's own output (before log4j starts)
  wait_for kafka "$KAFKA_LOG" "$pid" kafka.Kafka port_open "$KAFKA_PORT"
  kafka_create_topics
  FAIL_EXTRA_LOG=
  say "kafka: running (pid $pid) after $((SECONDS - started))s"
}

kafka_down() {
  local pid
  pid="$(kafka_pid || true)"
  if [ -z "$pid" ]; then
    say "kafka: not running"
    return 0
  fi
  say "kafka: stopping (pid $pid)"
  stop_pid kafka "$pid" kafka.Kafka
  rm -f "$KAFKA_STATE/kafka.pid"
  say "kafka: stopped"
}

kafka_status() {
  if kafka_running; then
    printf '%-9s running  %s:%s  pid %s  version %s  log %s\n' kafka "$HOST" "$KAFKA_PORT" "$(kafka_pid)" "$KAFKA_VERSION" "$KAFKA_LOG"
  else
    printf '%-9s stopped  %s:%s  log %s\n' kafka "$HOST" "$KAFKA_PORT" "$KAFKA_LOG"
  fi
}

# ---------------------------------------------------------------------------------------------
# InfluxDB 2.x OSS

influx_pid() {
  local pid
  pid="$(read_pid "$INFLUX_STATE/influxd.pid")"
  pid_alive "$pid" influxd && echo "$pid"
}
influx_running() { [ -n "$(influx_pid)" ]; }

influx_install() {
  if [ -x "$INFLUXD" ]; then
    say "influxdb: $INFLUXDB_VERSION is installed ($INFLUXD)"
    return 0
  fi
  local missing=()
  need_cmd go || fail influxdb "" "Go (1.23 or newer) is needed to build influxd; install it and retry"
  need_cmd cargo || fail influxdb "" "Rust (cargo) is needed to build Flux's libflux; install it and retry"
  need_cmd gcc || missing+=(gcc libc6-dev)
  need_cmd pkg-config || missing+=(pkg-config)
  need_cmd curl || missing+=(curl)
  [ ${#missing[@]} -eq 0 ] || apt_install influxdb "${missing[@]}"
  mkdir -p "$INFLUX_HOME"
  local log="$INFLUX_HOME/build.log" started=$SECONDS
  echo "=== $(date) build of influxd $INFLUXDB_VERSION" >>"$log"
  say "influxdb: building influxd $INFLUXDB_VERSION from source: libflux (Rust) then influxd (Go)."
  say "influxdb: this takes about 4-5 minutes on 2 cores, once (log: $log)"
  run_logged "influxdb build" "$log" "$HELPERS/build-influxdb.sh" "v$INFLUXDB_VERSION" "$INFLUX_HOME" \
    || fail influxdb "$log" "building influxd $INFLUXDB_VERSION failed"
  [ -x "$INFLUXD" ] || fail influxdb "$log" "the build finished but $INFLUXD is missing"
  if [ "${INCIDENTS_KEEP_BUILD_CACHE:-0}" != 1 ]; then
    say "influxdb: removing the build trees (set INCIDENTS_KEEP_BUILD_CACHE=1 to keep them)"
    chmod -R u+w "$INFLUX_HOME/gopath" 2>/dev/null || true
    rm -rf "$INFLUX_HOME/gopath" "$INFLUX_HOME/gocache" "$INFLUX_HOME/cargo-home" \
      "$INFLUX_HOME/src" "$INFLUX_HOME/wrapper"
  fi
  say "influxdb: built $INFLUXD in $((SECONDS - started))s"
}

influx_curl() { curl -sS --max-time 10 "$@"; }
influx_healthy() { influx_curl -f "http://$HOST:$INFLUX_PORT/health" | grep -q '"status": *"pass"'; }
json_escape() { printf '%s' "$1" | sed 's/\\/\\\\/g; s/"/\\"/g'; }

influx_setup() {
  local url="http://$HOST:$INFLUX_PORT" token password answer
  token="$(secret_file "$INFLUX_STATE/token")"
  password="$(secret_file "$INFLUX_STATE/password")"
  answer="$(influx_curl "$url/api/v2/setup")" || fail influxdb "$INFLUX_LOG" "GET /api/v2/setup failed"
  if printf '%s' "$answer" | grep -q '"allowed": *true'; then
    say "influxdb: first start: creating org '$INFLUX_ORG_NAME', bucket '$INFLUX_BUCKET_NAME', user '$INFLUX_USER' (token in $INFLUX_STATE/token)"
    answer="$(influx_curl -X POST "$url/api/v2/setup" -H 'Content-Type: application/json' \
      --data-binary "{\"username\":\"$(json_escape "$INFLUX_USER")\",\"password\":\"$password\",\"org\":\"$(json_escape "$INFLUX_ORG_NAME")\",\"bucket\":\"$(json_escape "$INFLUX_BUCKET_NAME")\",\"token\":\"$token\",\"retentionPeriodSeconds\":0}" \
      -w '\n%{http_code}')" || fail influxdb "$INFLUX_LOG" "POST /api/v2/setup failed"
    [ "$(printf '%s' "$answer" | tail -n 1)" = 201 ] \
      || fail influxdb "$INFLUX_LOG" "POST /api/v2/setup answered: $answer"
  fi
  # The token must work, and the bucket must exist (it may be renamed after the first setup).
  answer="$(influx_curl -H "Authorization: Token $token" \
    "$url/api/v2/buckets?org=$INFLUX_ORG_NAME&name=$INFLUX_BUCKET_NAME" -w '\n%{http_code}')" || true
  case "$(printf '%s' "$answer" | tail -n 1)" in
    200) ;;
    401) fail influxdb "$INFLUX_LOG" "the stored token ($INFLUX_STATE/token) is not accepted; this instance was set up with another token. Run '$0 down' and remove $INFLUX_STATE to start afresh" ;;
    404) fail influxdb "$INFLUX_LOG" "organization '$INFLUX_ORG_NAME' does not exist in this instance (it was set up with another INCIDENTS_INFLUX_ORG); remove $INFLUX_STATE to start afresh" ;;
    *) fail influxdb "$INFLUX_LOG" "listing buckets failed: $answer" ;;
  esac
  if ! printf '%s' "$answer" | grep -q "\"name\": *\"$INFLUX_BUCKET_NAME\""; then
    local org_id
    org_id="$(influx_curl -H "Authorization: Token $token" "$url/api/v2/orgs?org=$INFLUX_ORG_NAME" \
      | tr ',' '\n' | sed -n 's/^.*"id": *"\([0-9a-f]*\)".*$/\1/p' | head -n 1)"
    say "influxdb: creating bucket '$INFLUX_BUCKET_NAME'"
    influx_curl -f -o /dev/null -X POST "$url/api/v2/buckets" -H "Authorization: Token $token" \
      -H 'Content-Type: application/json' \
      --data-binary "{\"orgID\":\"$org_id\",\"name\":\"$(json_escape "$INFLUX_BUCKET_NAME")\",\"retentionRules\":[]}" \
      || fail influxdb "$INFLUX_LOG" "creating bucket '$INFLUX_BUCKET_NAME' failed"
  fi
}

influx_up() {
  if influx_running; then
    say "influxdb: already running (pid $(influx_pid), http://$HOST:$INFLUX_PORT)"
    return 0
  fi
  influx_install
  need_cmd curl || apt_install influxdb curl
  port_free_or_fail influxdb "$INFLUX_PORT" INCIDENTS_INFLUX_PORT
  mkdir -p "$INFLUX_STATE/engine"
  local started=$SECONDS
  say "influxdb: starting $INFLUXDB_VERSION on http://$HOST:$INFLUX_PORT (log: $INFLUX_LOG)"
  # Run in the state dir: influxd reads a config.{toml,yaml,json} from its working directory.
  start_detached "$INFLUX_STATE/influxd.pid" "$INFLUX_LOG" "$INFLUX_STATE" \
    env INFLUXD_CONFIG_PATH="$INFLUX_STATE" "$INFLUXD" \
    --bolt-path "$INFLUX_STATE/influxd.bolt" \
    --engine-path "$INFLUX_STATE/engine" \
    --sqlite-path "$INFLUX_STATE/influxd.sqlite" \
    --http-bind-address "$HOST:$INFLUX_PORT" \
    --reporting-disabled --ui-disabled --log-level info \
    || fail influxdb "$INFLUX_LOG" "could not start $INFLUXD"
  local pid
  pid="$(read_pid "$INFLUX_STATE/influxd.pid")"
  wait_for influxdb "$INFLUX_LOG" "$pid" influxd influx_healthy
  influx_setup
  say "influxdb: running (pid $pid) after $((SECONDS - started))s"
}

influx_down() {
  local pid
  pid="$(influx_pid || true)"
  if [ -z "$pid" ]; then
    say "influxdb: not running"
    return 0
  fi
  say "influxdb: stopping (pid $pid)"
  stop_pid influxdb "$pid" influxd
  rm -f "$INFLUX_STATE/influxd.pid"
  say "influxdb: stopped"
}

influx_status() {
  if influx_running; then
    printf '%-9s running  %s:%s  pid %s  version %s  log %s\n' influxdb "$HOST" "$INFLUX_PORT" "$(influx_pid)" "$INFLUXDB_VERSION" "$INFLUX_LOG"
  else
    printf '%-9s stopped  %s:%s  log %s\n' influxdb "$HOST" "$INFLUX_PORT" "$INFLUX_LOG"
  fi
}

# ---------------------------------------------------------------------------------------------
# PostgreSQL: Debian's binaries, our own cluster in the state dir

pg_bindir() {
  if [ -n "${INCIDENTS_POSTGRES_BINDIR:-}" ]; then
    echo "$INCIDENTS_POSTGRES_BINDIR"
    return 0
  fi
  local dir
  dir="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)"
  if [ -z "$dir" ] && need_cmd pg_ctl; then dir="$(dirname "$(command -v pg_ctl)")"; fi
  echo "$dir"
}

# The server must not run as root. As root, run it as the `postgres` system user; if that user
# cannot reach the state dir (e.g. it sits under /root, mode 0700), give the server process only
# the capability to traverse directories (CAP_DAC_READ_SEARCH) instead of opening up /root.
PG_RUNAS=()
pg_prepare_user() {
  PG_RUNAS=()
  mkdir -p "$PG_STATE"
  chmod 0700 "$PG_STATE"
  is_root || return 0
  id -u postgres >/dev/null 2>&1 || fail postgres "" "running as root, but there is no 'postgres' system user to run the server"
  chown postgres: "$PG_STATE"
  # a real write, not `test -w`: access(2) ignores capabilities of a non-root user
  local probe=(sh -c 'touch "$1/.probe" && rm -f "$1/.probe"' probe "$PG_STATE")
  if (cd / && runuser -u postgres -- "${probe[@]}") 2>/dev/null; then
    PG_RUNAS=(runuser -u postgres --)
  else
    PG_RUNAS=(setpriv --reuid=postgres --regid=postgres --init-groups
      --inh-caps=+dac_read_search --ambient-caps=+dac_read_search --)
    (cd / && "${PG_RUNAS[@]}" "${probe[@]}") 2>/dev/null \
      || fail postgres "" "the postgres user cannot write $PG_STATE; set INCIDENTS_STATE_DIR to a directory it can reach"
  fi
}
pg_as() { (cd / && "${PG_RUNAS[@]}" "$@" 9>&-); }

pg_pid() {
  local pid
  pid="$(read_pid "$PG_DATA/postmaster.pid")"
  pid_alive "$pid" postgres && echo "$pid"
}
pg_running() { [ -n "$(pg_pid)" ]; }

PG_BIN=""
pg_install() {
  PG_BIN="$(pg_bindir)"
  if [ -z "$PG_BIN" ] || [ ! -x "$PG_BIN/initdb" ]; then
    say "postgres: not installed; installing Debian's postgresql package"
    apt_install postgres postgresql
    PG_BIN="$(pg_bindir)"
  fi
  [ -x "$PG_BIN/initdb" ] || fail postgres "" "initdb not found (looked in /usr/lib/postgresql/*/bin; set INCIDENTS_POSTGRES_BINDIR)"
  if ! need_cmd psql && [ ! -x "$PG_BIN/psql" ]; then
    apt_install postgres postgresql-client
  fi
  say "postgres: $("$PG_BIN/postgres" --version | sed 's/^postgres (PostgreSQL) //') is installed ($PG_BIN)"
}

pg_psql() {
  local psql="$PG_BIN/psql"
  [ -x "$psql" ] || psql="psql"
  PGPASSWORD="$(cat "$PG_STATE/admin.password")" PGCONNECT_TIMEOUT=10 "$psql" -X -q -h "$HOST" \
    -p "$POSTGRES_PORT" -U postgres -d postgres -v ON_ERROR_STOP=1 -tA "$@"
}

pg_init() {
  if [ -f "$PG_DATA/PG_VERSION" ]; then
    local have want
    have="$(cat "$PG_DATA/PG_VERSION")"
    want="$("$PG_BIN/postgres" --version | sed 's/^[^0-9]*\([0-9]*\).*/\1/')"
    [ "$have" = "$want" ] || fail postgres "" "$PG_DATA was created by PostgreSQL $have but the binaries are $want; remove it (data is lost) or set INCIDENTS_POSTGRES_BINDIR"
    return 0
  fi
  say "postgres: initdb $PG_DATA (superuser 'postgres', scram-sha-256 passwords)"
  secret_file "$PG_STATE/admin.password" >/dev/null
  local pwfile="$PG_STATE/.initdb.pw"
  (umask 077 && cat "$PG_STATE/admin.password" >"$pwfile")
  if is_root; then chown postgres: "$pwfile"; fi
  rm -rf "$PG_DATA"
  pg_as "$PG_BIN/initdb" -D "$PG_DATA" -U postgres --pwfile="$pwfile" -E UTF8 --locale=C \
    --auth-local=scram-sha-256 --auth-host=scram-sha-256 >>"$PG_LOG" 2>&1 \
    || { rm -f "$pwfile"; fail postgres "$PG_LOG" "initdb failed"; }
  rm -f "$pwfile"
  echo "include_if_exists = 'incidents.conf'" >>"$PG_DATA/postgresql.conf"
}

pg_configure() {
  mkdir -p "$PG_STATE/run"
  if is_root; then chown postgres: "$PG_STATE/run"; fi
  cat >"$PG_STATE/incidents.conf.tmp" <<EOF
# Generated by scripts/services.sh on every start.
listen_addresses = '$HOST'
port = $POSTGRES_PORT
unix_socket_directories = '$PG_STATE/run'
password_encryption = scram-sha-256
max_connections = 100
shared_buffers = 128MB
fsync = on
logging_collector = off
log_min_messages = warning
log_line_prefix = '%m [%p] %q%u@%d '
EOF
  if is_root; then chown postgres: "$PG_STATE/incidents.conf.tmp"; fi
  mv "$PG_STATE/incidents.conf.tmp" "$PG_DATA/incidents.conf"
}

pg_ensure_database() {
  local password role_exists db_exists
  password="$(secret_file "$PG_STATE/password")"
  role_exists="$(pg_psql -c "SELECT 1 FROM pg_roles WHERE rolname = '$POSTGRES_USER'")" \
    || fail postgres "$PG_LOG" "cannot connect as the superuser 'postgres' with $PG_STATE/admin.password"
  if [ "$role_exists" != 1 ]; then
    say "postgres: creating role '$POSTGRES_USER'"
    pg_psql -c "CREATE ROLE \"$POSTGRES_USER\" LOGIN PASSWORD '$password'" >/dev/null \
      || fail postgres "$PG_LOG" "CREATE ROLE $POSTGRES_USER failed"
  else
    # keep the role's password in step with the stored one (it is the source of truth)
    pg_psql -c "ALTER ROLE \"$POSTGRES_USER\" LOGIN PASSWORD '$password'" >/dev/null \
      || fail postgres "$PG_LOG" "ALTER ROLE $POSTGRES_USER failed"
  fi
  db_exists="$(pg_psql -c "SELECT 1 FROM pg_database WHERE datname = '$POSTGRES_DB'")"
  if [ "$db_exists" != 1 ]; then
    say "postgres: creating database '$POSTGRES_DB' owned by '$POSTGRES_USER'"
    pg_psql -c "CREATE DATABASE \"$POSTGRES_DB\" OWNER \"$POSTGRES_USER\"" >/dev/null \
      || fail postgres "$PG_LOG" "CREATE DATABASE $POSTGRES_DB failed"
  fi
}

pg_up() {
  if pg_running; then
    say "postgres: already running (pid $(pg_pid), $HOST:$POSTGRES_PORT)"
    return 0
  fi
  pg_install
  pg_prepare_user
  port_free_or_fail postgres "$POSTGRES_PORT" INCIDENTS_POSTGRES_PORT
  touch "$PG_LOG"
  if is_root; then chown postgres: "$PG_LOG"; fi
  pg_init
  pg_configure
  local started=$SECONDS
  say "postgres: starting on $HOST:$POSTGRES_PORT (log: $PG_LOG)"
  # a stale postmaster.pid (after a crash or kill -9) is handled by postgres itself
  pg_as "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$PG_LOG" -w -t "$START_TIMEOUT" start >/dev/null 2>>"$PG_LOG" \
    || fail postgres "$PG_LOG" "pg_ctl start failed"
  wait_for postgres "$PG_LOG" "" "" port_open "$POSTGRES_PORT"
  pg_ensure_database
  say "postgres: running (pid $(pg_pid)) after $((SECONDS - started))s"
}

pg_down() {
  local pid
  pid="$(pg_pid || true)"
  if [ -z "$pid" ]; then
    say "postgres: not running"
    return 0
  fi
  PG_BIN="$(pg_bindir)"
  pg_prepare_user
  say "postgres: stopping (pid $pid)"
  if ! pg_as "$PG_BIN/pg_ctl" -D "$PG_DATA" -m fast -w -t "$STOP_TIMEOUT" stop >/dev/null 2>>"$PG_LOG"; then
    say "postgres: pg_ctl stop timed out; sending SIGQUIT, then SIGKILL"
    kill -QUIT "$pid" 2>/dev/null || true
    sleep 3
    if pid_alive "$pid" postgres; then kill -KILL "$pid" 2>/dev/null || true; fi
  fi
  say "postgres: stopped"
}

pg_status() {
  if pg_running; then
    printf '%-9s running  %s:%s  pid %s  version %s  log %s\n' postgres "$HOST" "$POSTGRES_PORT" "$(pg_pid)" "$(cat "$PG_DATA/PG_VERSION")" "$PG_LOG"
  else
    printf '%-9s stopped  %s:%s  log %s\n' postgres "$HOST" "$POSTGRES_PORT" "$PG_LOG"
  fi
}

# ---------------------------------------------------------------------------------------------
# commands

env_cmd() {
  local incomplete=0
  echo "export KAFKA_BOOTSTRAP_SERVERS=$HOST:$KAFKA_PORT"
  echo "export INFLUX_URL=http://$HOST:$INFLUX_PORT"
  if [ -s "$INFLUX_STATE/token" ]; then
    echo "export INFLUX_TOKEN=$(cat "$INFLUX_STATE/token")"
  else
    say "env: no InfluxDB token yet ($INFLUX_STATE/token); run '$0 up' first"
    incomplete=1
  fi
  echo "export INFLUX_ORG=$INFLUX_ORG_NAME"
  echo "export INFLUX_BUCKET=$INFLUX_BUCKET_NAME"
  if [ -s "$PG_STATE/password" ]; then
    echo "export DATABASE_URL=postgresql://$POSTGRES_USER:$(cat "$PG_STATE/password")@$HOST:$POSTGRES_PORT/$POSTGRES_DB"
  else
    say "env: no PostgreSQL password yet ($PG_STATE/password); run '$0 up' first"
    incomplete=1
  fi
  # The API refuses to start outside local/test without a token signing key: the development
  # environment gets one of its own, made once and kept (mode 600) beside the services' state.
  if [ ! -s "$STATE_DIR/jwt-secret" ]; then
    mkdir -p "$STATE_DIR"
    (umask 077 && od -An -N32 -tx1 /dev/urandom | tr -d ' \n' > "$STATE_DIR/jwt-secret")
  fi
  echo "export JWT_SECRET=$(cat "$STATE_DIR/jwt-secret")"
  return "$incomplete"
}

logs_cmd() {
  local c f
  for c in "$@"; do
    case "$c" in
      kafka) f="$KAFKA_LOG" ;;
      influxdb) f="$INFLUX_LOG" ;;
      postgres) f="$PG_LOG" ;;
    esac
    echo "==> $c: $f"
    [ -f "$f" ] && tail -n "${LINES_TO_SHOW:-20}" "$f" || echo "(no log yet)"
  done
}

usage() { sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; }

# take_lock SECONDS: one `up`/`down` at a time (fd 9; servers are started with it closed)
take_lock() {
  exec 9>"$STATE_DIR/.services.lock"
  need_cmd flock || return 0
  if ! flock -w "$1" 9; then
    say "another '$0 up/down' still holds $STATE_DIR/.services.lock after ${1}s"
    exit 1
  fi
}

main() {
  local verb="${1:-}"
  [ $# -gt 0 ] && shift
  local components=("$@") c
  [ ${#components[@]} -gt 0 ] || components=("${ALL_COMPONENTS[@]}")
  for c in "${components[@]}"; do
    case "$c" in
      kafka|influxdb|postgres) ;;
      influx) ;;
      postgresql|pg) ;;
      *) say "unknown component '$c' (kafka, influxdb, postgres)"; exit 2 ;;
    esac
  done
  # normalise aliases
  local normalised=()
  for c in "${components[@]}"; do
    case "$c" in
      influx) normalised+=(influxdb) ;;
      postgresql|pg) normalised+=(postgres) ;;
      *) normalised+=("$c") ;;
    esac
  done
  components=("${normalised[@]}")

  case "$verb" in
    up|start)
      mkdir -p "$CACHE_DIR" "$STATE_DIR" "$KAFKA_STATE" "$INFLUX_STATE"
      take_lock 3600
      local started=$SECONDS
      for c in "${components[@]}"; do
        case "$c" in
          kafka) kafka_up ;;
          influxdb) influx_up ;;
          postgres) pg_up ;;
        esac
      done
      say "all up in $((SECONDS - started))s; '$0 env' prints the connection settings"
      ;;
    down|stop)
      mkdir -p "$STATE_DIR"
      take_lock 600
      for c in "${components[@]}"; do
        case "$c" in
          kafka) kafka_down ;;
          influxdb) influx_down ;;
          postgres) pg_down ;;
        esac
      done
      ;;
    status)
      local all_running=0
      for c in "${components[@]}"; do
        case "$c" in
          kafka) kafka_status; kafka_running || all_running=3 ;;
          influxdb) influx_status; influx_running || all_running=3 ;;
          postgres) pg_status; pg_running || all_running=3 ;;
        esac
      done
      return "$all_running"
      ;;
    env) env_cmd ;;
    logs) logs_cmd "${components[@]}" ;;
    -h|--help|help) usage ;;
    *) usage >&2; exit 2 ;;
  esac
}

main "$@"
