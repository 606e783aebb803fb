#!/usr/bin/env bash
# The local stack without Docker: a real Apache Kafka broker (KRaft, one node) from the
# jars Maven fetches, and FerretDB v1 (MongoDB wire protocol, SQLite backend) built from
# its Go module.
#
#   stack/stack.sh install   fetch the Kafka jars, build FerretDB (cached; fast when warm)
#   stack/stack.sh up        install, then start both servers and wait until a real client answers
#   stack/stack.sh down      stop what `up` started (TERM, then KILL after a grace period)
#   stack/stack.sh status    say what runs and whether it answers; exit 1 unless both are up
#                            (the SASL_SSL listener is reported, not counted)
#   stack/stack.sh stop-mongo|start-mongo   stop or start FerretDB alone (failure tests)
#   stack/stack.sh kill-kafka|kill-mongo     SIGKILL one server (fault injection: `make chaos`)
#   stack/stack.sh start-kafka               start Kafka alone and wait until it answers
#
# Kafka listens twice: PLAINTEXT on 127.0.0.1:$STOCKWATCH_STACK_KAFKA_PORT (9092) and SASL_SSL
# (SCRAM-SHA-512/256 or PLAIN, TLS from a CA the script makes) on $STOCKWATCH_STACK_SASL_PORT
# (9094); the client settings for the second are in $STOCKWATCH_STACK_DIR/kafka-sasl/client.env
# (stack/kafka/sasl.sh). Another instance beside the usual one: set STOCKWATCH_STACK_DIR and the
# four ports (KAFKA, SASL, CONTROLLER, MONGO).
#
# FerretDB runs with GOGC/GOMEMLIMIT from STOCKWATCH_STACK_FERRETDB_GOGC / _GOMEMLIMIT (see below);
# STOCKWATCH_STACK_FERRETDB_PPROF=127.0.0.1:6060 serves Go's pprof (e.g. `go tool pprof -top
# http://127.0.0.1:6060/debug/pprof/profile?seconds=30`).
#
# Data, logs and pid files live under $STOCKWATCH_STACK_DIR (default .stack/ in the repo,
# git-ignored); downloads and builds (Maven repository, Kafka jars, Go caches, the FerretDB
# binary) under $STOCKWATCH_CACHE_DIR (default .stack/cache), which several clones may share.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STACK_DIR=${STOCKWATCH_STACK_DIR:-$ROOT/.stack}
CACHE_DIR=${STOCKWATCH_CACHE_DIR:-$STACK_DIR/cache}
PYTHON=${STOCKWATCH_PYTHON:-$ROOT/.venv/bin/python}
KAFKA_PORT=${STOCKWATCH_STACK_KAFKA_PORT:-9092}
CONTROLLER_PORT=${STOCKWATCH_STACK_CONTROLLER_PORT:-9093}
SASL_PORT=${STOCKWATCH_STACK_SASL_PORT:-9094}
MONGO_PORT=${STOCKWATCH_STACK_MONGO_PORT:-27017}
KAFKA_HEAP=${STOCKWATCH_STACK_KAFKA_HEAP:-1g}
READY_TIMEOUT=${STOCKWATCH_STACK_READY_TIMEOUT:-120}
FERRET_PPROF=${STOCKWATCH_STACK_FERRETDB_PPROF:-} # e.g. 127.0.0.1:6060: serve Go's pprof (off by default)
# FerretDB's Go GC: no proportional collection, collect only when the heap reaches the limit. Its live
# heap is small but every document read allocates (JSON decode, projection, BSON encode): with the Go
# default (GOGC=100) reading 1M documents cost it 71-72 CPU-s, with these 43-45 (the price: its
# resident size grows to about the limit). STOCKWATCH_STACK_FERRETDB_GOGC=100 and
# STOCKWATCH_STACK_FERRETDB_GOMEMLIMIT=off give Go's defaults back.
FERRET_GOGC=${STOCKWATCH_STACK_FERRETDB_GOGC:-off}
FERRET_GOMEMLIMIT=${STOCKWATCH_STACK_FERRETDB_GOMEMLIMIT:-256MiB}

KAFKA_LIBS=$CACHE_DIR/kafka-libs
KAFKA_HOME=$STACK_DIR/kafka
FERRET_BIN=$CACHE_DIR/bin/ferretdb
FERRET_HOME=$STACK_DIR/ferretdb
SASL_DIR=$STACK_DIR/kafka-sasl

# shellcheck source=stack/kafka/sasl.sh
source "$ROOT/stack/kafka/sasl.sh"

log() { printf '[stack] %s\n' "$*" >&2; }
die() { printf '[stack] error: %s\n' "$*" >&2; exit 1; }

need() {
  command -v "$1" >/dev/null 2>&1 || die "$1 is not on PATH: $2"
}

java_major() {
  java -version 2>&1 | awk -F'"' '/version/ {split($2, v, "."); print (v[1] == "1" ? v[2] : v[1]); exit}'
}

install_kafka() {
  local stamp=$KAFKA_LIBS/.pom.sha256 want
  want=$(sha256sum "$ROOT/stack/kafka/pom.xml" | cut -d' ' -f1)
  if [[ -f $stamp && $(cat "$stamp") == "$want" ]]; then
    return 0
  fi
  need mvn "install Maven (Debian: apt-get install maven) to fetch the Kafka jars"
  log "fetching the Kafka broker jars with Maven into $KAFKA_LIBS"
  rm -rf "$KAFKA_LIBS"
  mvn -q -B -f "$ROOT/stack/kafka/pom.xml" -Dmaven.repo.local="$CACHE_DIR/m2" dependency:copy-dependencies \
    -DoutputDirectory="$KAFKA_LIBS" -DincludeScope=runtime \
    || die "Maven could not fetch the Kafka jars (see the output above)"
  echo "$want" >"$stamp"
}

install_ferretdb() {
  local stamp=$FERRET_BIN.sha256 want
  want=$(cat "$ROOT/stack/ferretdb/go.mod" "$ROOT/stack/ferretdb/go.sum" "$ROOT/stack/ferretdb/main.go" | sha256sum | cut -d' ' -f1)
  if [[ -x $FERRET_BIN && -f $stamp && $(cat "$stamp") == "$want" ]]; then
    return 0
  fi
  need go "install Go (1.24 or newer) to build FerretDB"
  log "building FerretDB from its Go module (the first build takes a few minutes)"
  mkdir -p "$(dirname "$FERRET_BIN")"
  (cd "$ROOT/stack/ferretdb" && CGO_ENABLED=0 GOFLAGS="-mod=mod -modcacherw" \
    GOMODCACHE="$CACHE_DIR/gomod" GOCACHE="$CACHE_DIR/go-build" go build -trimpath -o "$FERRET_BIN.tmp" .) \
    || die "the FerretDB build failed (see the output above)"
  mv "$FERRET_BIN.tmp" "$FERRET_BIN"
  echo "$want" >"$stamp"
}

cmd_install() {
  need java "install a Java 17+ runtime (Debian: apt-get install openjdk-17-jre-headless)"
  local major
  major=$(java_major)
  [[ ${major:-0} -ge 17 ]] || die "Kafka 4 needs Java 17 or newer; java is version ${major:-unknown}"
  mkdir -p "$STACK_DIR" "$CACHE_DIR"
  install_kafka
  install_ferretdb
}

alive() { # alive PIDFILE
  [[ -f $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null
}

probe() { # probe kafka|kafka-sasl|mongo TIMEOUT
  [[ -x $PYTHON ]] || die "no Python venv at $PYTHON: run 'make venv' first"
  "$PYTHON" "$ROOT/stack/probe.py" "$1" --timeout "$2" \
    --kafka "127.0.0.1:$KAFKA_PORT" --mongo "mongodb://127.0.0.1:$MONGO_PORT" --sasl-env "$SASL_DIR/client.env"
}

port_busy() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

start_kafka() {
  local pidfile=$KAFKA_HOME/kafka.pid
  if alive "$pidfile"; then
    log "Kafka already running (pid $(cat "$pidfile"))"
    return 0
  fi
  port_busy "$KAFKA_PORT" && die "port $KAFKA_PORT is taken by another process; stop it or set STOCKWATCH_STACK_KAFKA_PORT"
  port_busy "$SASL_PORT" && die "port $SASL_PORT is taken by another process; stop it or set STOCKWATCH_STACK_SASL_PORT"
  make_sasl_material
  mkdir -p "$KAFKA_HOME/data"
  local props=$KAFKA_HOME/server.properties
  (umask 077 && : >"$props")
  cat >"$props" <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$CONTROLLER_PORT,SASL_SSL://127.0.0.1:$SASL_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,SASL_SSL://127.0.0.1:$SASL_PORT
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_SSL:SASL_SSL
inter.broker.listener.name=PLAINTEXT
log.dirs=$KAFKA_HOME/data
num.partitions=1
auto.create.topics.enable=true
offsets.topic.replication.factor=1
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=10
group.initial.rebalance.delay.ms=0
message.max.bytes=2097152
EOF
  sasl_properties >>"$props"
  local cp="$KAFKA_LIBS/*"
  if [[ ! -f $KAFKA_HOME/data/meta.properties ]]; then
    local cluster_id
    # Kafka's own random ids never start with '-': the tool's parser would read one as a flag
    cluster_id=-
    while [[ $cluster_id == -* ]]; do
      cluster_id=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')
    done
    log "formatting Kafka storage (cluster id $cluster_id) with the SCRAM user stockwatch"
    scram_format_args
    java -cp "$cp" -Dlog4j2.configurationFile="$ROOT/stack/kafka/log4j2.properties" \
      -Dkafka.log.file="$KAFKA_HOME/format.log" \
      kafka.tools.StorageTool format --cluster-id="$cluster_id" -c "$props" --ignore-formatted "${SCRAM_ARGS[@]}" \
      >"$KAFKA_HOME/format.out" 2>&1 \
      || { cat "$KAFKA_HOME/format.out" >&2; die "Kafka storage format failed"; }
    scram_stamp_value >"$KAFKA_HOME/scram-users.sha256"
  fi
  log "starting Kafka on 127.0.0.1:$KAFKA_PORT"
  setsid nohup java -Xms256m -Xmx"$KAFKA_HEAP" -XX:+UseG1GC -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$ROOT/stack/kafka/log4j2.properties" \
    -Dkafka.log.file="$KAFKA_HOME/server.log" \
    -cp "$cp" kafka.Kafka "$props" >"$KAFKA_HOME/stdout.log" 2>&1 </dev/null &
  echo $! >"$pidfile"
}

start_mongo() {
  local pidfile=$FERRET_HOME/ferretdb.pid
  if alive "$pidfile"; then
    log "FerretDB already running (pid $(cat "$pidfile"))"
    return 0
  fi
  port_busy "$MONGO_PORT" && die "port $MONGO_PORT is taken by another process; stop it or set STOCKWATCH_STACK_MONGO_PORT"
  mkdir -p "$FERRET_HOME/data"
  log "starting FerretDB on 127.0.0.1:$MONGO_PORT (GOGC=$FERRET_GOGC GOMEMLIMIT=$FERRET_GOMEMLIMIT)"
  local extra=()
  [[ -n $FERRET_PPROF ]] && extra+=(-pprof "$FERRET_PPROF")
  GOGC=$FERRET_GOGC GOMEMLIMIT=$FERRET_GOMEMLIMIT setsid nohup "$FERRET_BIN" -listen "127.0.0.1:$MONGO_PORT" -data-dir "$FERRET_HOME/data" -log-level error "${extra[@]}" \
    >"$FERRET_HOME/ferretdb.log" 2>&1 </dev/null &
  echo $! >"$pidfile"
}

stop_one() { # stop_one NAME PIDFILE
  local name=$1 pidfile=$2 pid
  if ! alive "$pidfile"; then
    rm -f "$pidfile"
    return 0
  fi
  pid=$(cat "$pidfile")
  log "stopping $name (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 150); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.2
  done
  if kill -0 "$pid" 2>/dev/null; then
    log "$name did not stop in 30 s; killing it"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile"
}

kill_one() { # kill_one NAME PIDFILE: SIGKILL, no grace (a crash, for `make chaos`)
  local name=$1 pidfile=$2 pid
  alive "$pidfile" || die "$name is not running (no live pid in $pidfile)"
  pid=$(cat "$pidfile")
  log "killing $name (pid $pid) with SIGKILL"
  kill -KILL "$pid"
  for _ in $(seq 1 100); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  rm -f "$pidfile"
}

wait_ready() { # wait_ready NAME LOG
  if ! probe "$1" "$READY_TIMEOUT"; then
    log "$1 did not answer within ${READY_TIMEOUT}s; last lines of $2:"
    tail -n 30 "$2" >&2 || true
    exit 1
  fi
}

cmd_up() {
  local t0=$SECONDS
  cmd_install
  start_kafka
  start_mongo
  wait_ready mongo "$FERRET_HOME/ferretdb.log"
  wait_ready kafka "$KAFKA_HOME/server.log"
  # A broker started by an older stack.sh has no SASL_SSL listener: say so, restart nothing.
  if grep -q '^listeners=.*SASL_SSL' "$KAFKA_HOME/server.properties" 2>/dev/null; then
    ensure_scram_users
    wait_ready kafka-sasl "$KAFKA_HOME/server.log"
  else
    log "warning: the running Kafka has no SASL_SSL listener (started by an older stack.sh);" \
      "'bash stack/stack.sh down' then 'up' adds it"
  fi
  log "stack up in $((SECONDS - t0))s: Kafka 127.0.0.1:$KAFKA_PORT (SASL_SSL 127.0.0.1:$SASL_PORT," \
    "settings in $SASL_DIR/client.env), MongoDB protocol mongodb://127.0.0.1:$MONGO_PORT"
}

cmd_down() {
  stop_one FerretDB "$FERRET_HOME/ferretdb.pid"
  stop_one Kafka "$KAFKA_HOME/kafka.pid"
}

cmd_status() {
  local rc=0
  for svc in kafka mongo; do
    if probe "$svc" 3 >/dev/null 2>&1; then
      log "$svc: up"
    else
      log "$svc: down"
      rc=1
    fi
  done
  # Reported, not counted: a broker from an older stack.sh lacks the listener but still serves.
  if probe kafka-sasl 3 >/dev/null 2>&1; then
    log "kafka SASL_SSL listener (127.0.0.1:$SASL_PORT): up"
  else
    log "kafka SASL_SSL listener (127.0.0.1:$SASL_PORT): down"
  fi
  return $rc
}

case ${1:-} in
  install) cmd_install ;;
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  stop-mongo) stop_one FerretDB "$FERRET_HOME/ferretdb.pid" ;;
  start-mongo) start_mongo; wait_ready mongo "$FERRET_HOME/ferretdb.log" ;;
  kill-kafka) kill_one Kafka "$KAFKA_HOME/kafka.pid" ;;
  kill-mongo) kill_one FerretDB "$FERRET_HOME/ferretdb.pid" ;;
  start-kafka) start_kafka; wait_ready kafka "$KAFKA_HOME/server.log" ;;
  *) die "usage: stack.sh install|up|down|status|stop-mongo|start-mongo|kill-kafka|kill-mongo|start-kafka" ;;
esac
