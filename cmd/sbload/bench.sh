#!/usr/bin/env bash
# Side-by-side benchmark of Switchboard and the Node peer (issue 5).
#
#   bash cmd/sbload/bench.sh            # S1-S4, both servers, alternating
#   bash cmd/sbload/bench.sh -quick     # the same, scaled down (smoke run)
#   bash cmd/sbload/bench.sh S3 S4      # some scenarios only
#
# It starts a private redis-server and, for every scenario and server, two
# fresh instances of the server command sharing it; runs cmd/sbload against
# them and writes <scenario>-<server>.{json,txt} and table.md to $OUT.
#
# Environment: OUT (results dir), OURS_CMD (default: bin/switchboard, built
# here), PEER_CMD (default: node /tmp/peer/server.js; /tmp/peer is copied from
# ../shared/peer and `npm ci`-ed when missing), OURS_ENV / PEER_ENV (extra
# VAR=value words for that server, e.g. OURS_ENV="GOGC=200"), SERVERS (default
# "ours peer").
#
# Scenarios (issue 5):
#   S1  2,000 users x 2 devices, sendMessage at 200/s for 20 s
#   S2  500 users x 2 devices, rate stepped up until p99 >= 50 ms
#   S3  10,000 idle websocket connections, memory per connection
#   S4  10,000 connects as fast as possible, stalled connects counted
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
OUT=${OUT:-/tmp/sbbench-$(date -u +%Y%m%dT%H%M%SZ)}
OURS_CMD=${OURS_CMD:-}
PEER_CMD=${PEER_CMD:-node /tmp/peer/server.js}
OURS_ENV=${OURS_ENV:-}
PEER_ENV=${PEER_ENV:-}
SERVERS=${SERVERS:-ours peer}
SECRET="bench-$RANDOM-$RANDOM-$RANDOM"
QUICK=0
SCENARIOS=()
for a in "$@"; do
  case "$a" in
    -quick) QUICK=1 ;;
    S1|S2|S3|S4) SCENARIOS+=("$a") ;;
    *) echo "usage: $0 [-quick] [S1 S2 S3 S4]" >&2; exit 2 ;;
  esac
done
[ ${#SCENARIOS[@]} -gt 0 ] || SCENARIOS=(S1 S2 S3 S4)
mkdir -p "$OUT"

log() { printf '%s bench: %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

# --- limits: 10,000 sockets on the client side plus the servers' ----------
ulimit -n 200000 2>/dev/null || ulimit -n "$(ulimit -Hn)"
log "open files limit $(ulimit -n)"

# --- tools ------------------------------------------------------------------
command -v redis-server >/dev/null || { echo "redis-server is missing: apt-get install -y redis-server" >&2; exit 1; }
command -v curl >/dev/null || { echo "curl is missing: apt-get install -y curl" >&2; exit 1; }
(cd "$ROOT" && go build -o "$OUT/sbload" ./cmd/sbload)
if [ -z "$OURS_CMD" ]; then
  (cd "$ROOT" && go build -o bin/switchboard ./cmd/switchboard)
  OURS_CMD="$ROOT/bin/switchboard"
fi
if [ "$PEER_CMD" = "node /tmp/peer/server.js" ] && [[ " $SERVERS " == *" peer "* ]] && [ ! -d /tmp/peer/node_modules/socket.io ]; then
  rm -rf /tmp/peer && cp -r "$ROOT/../shared/peer" /tmp/peer && chmod -R u+w /tmp/peer
  (cd /tmp/peer && npm ci --no-audit --no-fund --loglevel=error)
fi

{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "nproc: $(nproc)"
  echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
  echo "memory: $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
  echo "uptime: $(uptime)"
  echo "go: $(go version)"
  echo "node: $(node --version 2>/dev/null || echo none)"
  echo "ours: $OURS_CMD $OURS_ENV"
  echo "peer: $PEER_CMD $PEER_ENV"
} | tee "$OUT/machine.txt" >&2

# --- processes ---------------------------------------------------------------
STARTED=()
cleanup() {
  for p in "${STARTED[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
}
trap cleanup EXIT

free_port() {
  local p
  for _ in $(seq 200); do
    p=$((20000 + RANDOM % 20000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return; fi
  done
  echo "no free port" >&2; return 1
}

wait_http() { # url
  for _ in $(seq 300); do
    curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "not ready: $1" >&2; return 1
}

stop_pids() {
  local p
  for p in "$@"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "$@"; do
    for _ in $(seq 150); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
}

REDIS_PORT=$(free_port)
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no --loglevel warning >"$OUT/redis.log" 2>&1 &
REDIS_PID=$!
STARTED+=("$REDIS_PID")
for _ in $(seq 100); do
  [ "$( (exec 3<>"/dev/tcp/127.0.0.1/$REDIS_PORT"; printf 'PING\r\n' >&3; head -c5 <&3) 2>/dev/null)" = "+PONG" ] && break
  sleep 0.1
done
log "redis on 127.0.0.1:$REDIS_PORT (pid $REDIS_PID)"

# start_servers NAME SCENARIO: two instances; sets TARGETS and PIDS.
start_servers() {
  local name=$1 scen=$2 cmd extra i port pid
  if [ "$name" = ours ]; then cmd=$OURS_CMD; extra=$OURS_ENV; else cmd=$PEER_CMD; extra=$PEER_ENV; fi
  TARGETS=""; PIDS=""
  for i in 1 2; do
    port=$(free_port)
    # shellcheck disable=SC2086 # cmd and extra are word lists on purpose
    env ADDR="127.0.0.1:$port" REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0" JWT_SECRET="$SECRET" \
      NODE_ID="$name-$i" RATE_LIMIT=100000 RATE_BURST=100000 LOG_LEVEL=warn $extra \
      $cmd 2>"$OUT/$scen-$name-$i.log" >/dev/null &
    pid=$!
    STARTED+=("$pid")
    wait_http "http://127.0.0.1:$port/readyz"
    TARGETS+="${TARGETS:+,}127.0.0.1:$port"
    PIDS+="${PIDS:+,}$pid"
  done
}

scenario_flags() { # scenario -> sbload flags
  local q=$QUICK
  case "$1" in
    S1) if [ $q = 1 ]; then echo "-users 200 -devices 2 -rate 200 -duration 5s -drain 5s"
        else echo "-users 2000 -devices 2 -rate 200 -duration 20s -drain 10s"; fi ;;
    S2) if [ $q = 1 ]; then echo "-users 100 -devices 2 -rate 200,500,1000 -duration 2s -drain 3s -stop-on-fail"
        else echo "-users 500 -devices 2 -rate 500,1000,1500,2000,3000,4000,5000,6000,8000,10000,12000,15000,20000 -duration 5s -drain 5s -stop-on-fail"; fi ;;
    S3) if [ $q = 1 ]; then echo "-users 500 -devices 2 -hold 5s -connect-concurrency 100 -source-ips 127.0.0.2-127.0.0.9"
        else echo "-users 5000 -devices 2 -hold 15s -connect-concurrency 100 -source-ips 127.0.0.2-127.0.0.9"; fi ;;
    S4) if [ $q = 1 ]; then echo "-users 500 -devices 2 -connect-concurrency 500 -connect-timeout 10s -source-ips 127.0.0.2-127.0.0.9"
        else echo "-users 5000 -devices 2 -connect-concurrency 1000 -connect-timeout 10s -source-ips 127.0.0.2-127.0.0.9"; fi ;;
  esac
}

# Alternate which server goes first from one scenario to the next.
order=($SERVERS)
for scen in "${SCENARIOS[@]}"; do
  for name in "${order[@]}"; do
    start_servers "$name" "$scen"
    log "$scen $name: targets $TARGETS pids $PIDS"
    # shellcheck disable=SC2046 # the flags are words
    "$OUT/sbload" -secret "$SECRET" -targets "$TARGETS" -pids "$PIDS" -aux-pids "$REDIS_PID" \
      -label "$scen-$name" -o "$OUT/$scen-$name.json" -progress 2s -max-time 10m \
      $(scenario_flags "$scen") | tee "$OUT/$scen-$name.txt"
    stop_pids ${PIDS//,/ }
    sleep 2 # let TIME_WAIT and the kernel settle between runs
  done
  if [ ${#order[@]} -eq 2 ]; then order=("${order[1]}" "${order[0]}"); fi
done

echo "uptime after: $(uptime)" | tee -a "$OUT/machine.txt" >&2
"$OUT/sbload" table "$OUT" | tee "$OUT/table.md"
log "results in $OUT"
