# Shell helpers shared by bench.sh and profile.sh (sourced, not run).
# Every process started here is recorded in STARTED and killed on exit.

log() { printf '%s %s: %s\n' "$(date -u +%H:%M:%S)" "${0##*/}" "$*" >&2; }

STARTED=()
cleanup() {
  local p
  for p in "${STARTED[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
}
trap cleanup EXIT

raise_fd_limit() {
  ulimit -n 200000 2>/dev/null || ulimit -n "$(ulimit -Hn)"
  log "open files limit $(ulimit -n)"
}

need_tools() {
  command -v redis-server >/dev/null || { echo "redis-server is missing: apt-get install -y redis-server" >&2; exit 1; }
  command -v curl >/dev/null || { echo "curl is missing: apt-get install -y curl" >&2; exit 1; }
}

# prepare raises the fd limit, checks the tools and builds sbload into $OUT
# and, unless OURS_CMD is set, bin/switchboard (setting OURS_CMD).
prepare() {
  raise_fd_limit
  need_tools
  (cd "$ROOT" && go build -o "$OUT/sbload" ./cmd/sbload)
  if [ -z "$OURS_CMD" ]; then
    (cd "$ROOT" && go build -tags nomsgpack -o bin/switchboard ./cmd/switchboard)
    OURS_CMD="$ROOT/bin/switchboard"
  fi
}

# free_port prints a loopback port nobody listens on.
free_port() {
  local p
  for _ in $(seq 200); do
    p=$((20000 + RANDOM % 12000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return; fi
  done
  echo "no free port" >&2; return 1
}

wait_http() { # url: poll until it answers 2xx, at most 30 s
  for _ in $(seq 300); do
    curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "not ready: $1" >&2; return 1
}

stop_pids() { # SIGTERM, then SIGKILL after 15 s
  local p
  for p in "$@"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "$@"; do
    for _ in $(seq 150); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
}

# start_redis LOGFILE: a private, persistence-free redis-server; sets
# REDIS_PORT and REDIS_PID.
start_redis() {
  REDIS_PORT=$(free_port)
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no --loglevel warning >"$1" 2>&1 &
  REDIS_PID=$!
  STARTED+=("$REDIS_PID")
  for _ in $(seq 100); do
    [ "$( (exec 3<>"/dev/tcp/127.0.0.1/$REDIS_PORT"; printf 'PING\r\n' >&3; head -c5 <&3) 2>/dev/null)" = "+PONG" ] && break
    sleep 0.1
  done
  log "redis on 127.0.0.1:$REDIS_PORT (pid $REDIS_PID)"
}

# start_server "CMD WORDS" "VAR=value WORDS" LOGFILE: one instance on a free
# port, on the private redis, waited for; sets SERVER_ADDR and SERVER_PID.
start_server() {
  local cmd=$1 extra=$2 logfile=$3 port
  port=$(free_port)
  # shellcheck disable=SC2086 # cmd and extra are word lists on purpose
  env ADDR="127.0.0.1:$port" REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0" JWT_SECRET="$SECRET" \
    RATE_LIMIT=100000 RATE_BURST=100000 LOG_LEVEL=warn $extra \
    $cmd 2>"$logfile" >/dev/null &
  SERVER_PID=$!
  STARTED+=("$SERVER_PID")
  SERVER_ADDR="127.0.0.1:$port"
  wait_http "http://$SERVER_ADDR/readyz"
}

# scenario_flags S1|S2|S3|S4|S5: the sbload flags of a scenario of issues 5 and 9;
# QUICK=1 scales it down for a smoke run.
scenario_flags() {
  local src="-source-ips 127.0.0.2-127.0.0.9"
  case "$1:${QUICK:-0}" in
    S1:0) echo "-users 2000 -devices 2 -rate 200 -duration 20s -drain 10s" ;;
    S1:1) echo "-users 200 -devices 2 -rate 200 -duration 5s -drain 5s" ;;
    S2:0) echo "-users 500 -devices 2 -rate 500,1000,1500,2000,2500,3000,4000,5000,6000,8000,10000,12000,15000,20000 -duration 5s -drain 5s -stop-on-fail" ;;
    S2:1) echo "-users 100 -devices 2 -rate 200,500,1000 -duration 2s -drain 3s -stop-on-fail" ;;
    S3:0) echo "-users 5000 -devices 2 -hold 15s -connect-concurrency 100 $src" ;;
    S3:1) echo "-users 500 -devices 2 -hold 5s -connect-concurrency 100 $src" ;;
    S4:0) echo "-users 5000 -devices 2 -connect-concurrency 1000 -connect-timeout 10s $src" ;;
    S4:1) echo "-users 500 -devices 2 -connect-concurrency 500 -connect-timeout 10s $src" ;;
    # S5 needs BROADCAST_REDIS (the servers' Redis URL); one server process.
    S5:0) echo "-users 9000 -devices 2 -hold 10s -connect-concurrency 200 -broadcasts 5 -broadcast-redis $BROADCAST_REDIS $src" ;;
    S5:1) echo "-users 1000 -devices 2 -hold 3s -connect-concurrency 200 -broadcasts 3 -broadcast-redis $BROADCAST_REDIS $src" ;;
    *) echo "unknown scenario $1" >&2; return 1 ;;
  esac
}
