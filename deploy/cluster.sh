#!/usr/bin/env bash
# The docker-compose cluster without Docker: a private redis-server, three
# switchboard processes (sb1..sb3) sharing it, and HAProxy running
# deploy/haproxy.cfg (sticky) or deploy/haproxy-roundrobin.cfg unchanged, with
# loopback addresses in its environment instead of the compose service names.
# Runs in the foreground; Ctrl-C (or SIGTERM) stops everything it started.
#
#   bash deploy/cluster.sh                        # then open http://127.0.0.1:8080
#   LB_MODE=roundrobin bash deploy/cluster.sh     # the balancer without stickiness
#
# Environment (all optional): LB_MODE (sticky or roundrobin), LB_PORT (8080), SB_PORTS ("7001 7002 7003"),
# REDIS_PORT (6390), SWITCHBOARD_BIN (bin/switchboard, built if missing),
# JWT_SECRET and API_KEY (random per run when unset), LOG_DIR (tmp/cluster: one log file per process).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
LB_MODE=${LB_MODE:-sticky}
LB_PORT=${LB_PORT:-8080}
REDIS_PORT=${REDIS_PORT:-6390}
read -r -a sb_ports <<<"${SB_PORTS:-7001 7002 7003}"
SWITCHBOARD_BIN=${SWITCHBOARD_BIN:-$root/bin/switchboard}
LOG_DIR=${LOG_DIR:-$root/tmp/cluster}
# No public default secrets: unset, each is random for this run (the demo
# page gets its tokens from POST /api/dev/token; the API key is written to
# $LOG_DIR/api-key, readable by this user only, for POST /api/events).
JWT_SECRET=${JWT_SECRET:-$(head -c 32 /dev/urandom | base64)}
api_key_generated=
if [ -z "${API_KEY:-}" ]; then
  API_KEY=$(head -c 24 /dev/urandom | base64 | tr '+/' '-_')
  api_key_generated=1
fi

die() { echo "cluster.sh: $*" >&2; exit 1; }
[ "${#sb_ports[@]}" -eq 3 ] || die "SB_PORTS must name three ports (deploy/haproxy.cfg has three servers)"
case "$LB_MODE" in
  sticky) lb_cfg=$root/deploy/haproxy.cfg ;;
  roundrobin) lb_cfg=$root/deploy/haproxy-roundrobin.cfg ;;
  *) die "LB_MODE must be sticky or roundrobin, not \"$LB_MODE\"" ;;
esac
for tool in redis-server haproxy; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool is missing: apt-get install -y $tool"
done
if [ ! -x "$SWITCHBOARD_BIN" ]; then
  echo "cluster.sh: building $SWITCHBOARD_BIN"
  (cd "$root" && go build -tags nomsgpack -o "$SWITCHBOARD_BIN" ./cmd/switchboard)
fi
mkdir -p "$LOG_DIR"
if [ -n "$api_key_generated" ]; then
  (umask 077 && printf '%s\n' "$API_KEY" >"$LOG_DIR/api-key")
  echo "cluster.sh: API_KEY unset: a random one for this run is in $LOG_DIR/api-key"
fi
redis_dir=$(mktemp -d)

pids=()
cleanup() {
  trap - EXIT INT TERM
  # The balancer first, then the replicas (SIGTERM: they drain), then Redis.
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do kill -TERM "${pids[i]}" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$redis_dir"
}
trap cleanup EXIT
trap 'exit 0' INT TERM

# wait_port PORT PID: until PORT accepts connections, failing if PID dies.
wait_port() {
  for _ in $(seq 1 200); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    kill -0 "$2" 2>/dev/null || die "process $2 (port $1) exited; see $LOG_DIR"
    sleep 0.05
  done
  die "port $1 did not open"
}

redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
  --dir "$redis_dir" >"$LOG_DIR/redis.log" 2>&1 &
pids+=($!)
wait_port "$REDIS_PORT" "$!"

lb_env=(LB_BIND="127.0.0.1:$LB_PORT")
for i in 1 2 3; do
  port=${sb_ports[i - 1]}
  # ADVERTISE_ADDR defaults to ADDR here: the others relay to 127.0.0.1:$port.
  NODE_ID="sb$i" ADDR="127.0.0.1:$port" REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0" \
    JWT_SECRET="$JWT_SECRET" API_KEY="$API_KEY" DEV_TOKENS=1 \
    "$SWITCHBOARD_BIN" 2>"$LOG_DIR/sb$i.log" &
  pids+=($!)
  wait_port "$port" "$!"
  echo "cluster.sh: sb$i pid $! on 127.0.0.1:$port (log $LOG_DIR/sb$i.log)"
  lb_env+=(SB${i}_ADDR="127.0.0.1:$port")
done

# HAProxy's access log goes to this script's stdout: each line shows the
# server chosen and, in braces, the X-Switchboard-Node that answered.
env "${lb_env[@]}" haproxy -db -f "$lb_cfg" &
lb_pid=$!
pids+=("$lb_pid")
wait_port "$LB_PORT" "$lb_pid"
echo "cluster.sh: cluster ready on http://127.0.0.1:$LB_PORT, $LB_MODE balancer (Ctrl-C stops it; kill -TERM a replica's pid to watch its clients move)"

wait "$lb_pid" || true
die "haproxy exited"
