#!/usr/bin/env bash
# Side-by-side benchmark of Switchboard and the Node peer (issue 5).
#
#   bash cmd/sbload/bench.sh            # S1-S5, both servers, alternating
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
# Like for like: both servers run without connection state recovery. The
# peer's default is RECOVERY_WINDOW=0 (with recovery it would swap its
# pub/sub adapter for the streams one, see its README); ours defaults to 2m,
# so ours gets RECOVERY_WINDOW=0 here (OURS_ENV may set it back).
# recovery-cost.sh measures what recovery costs, on and off in one run.
#
# Scenarios (issue 5):
#   S1  2,000 users x 2 devices, sendMessage at 200/s for 20 s
#   S2  500 users x 2 devices, rate stepped up until p99 >= 50 ms
#   S3  10,000 idle websocket connections, memory per connection
#   S4  10,000 connects as fast as possible, stalled connects counted
#   S5  18,000 idle websockets on ONE process, then 5 namespace-wide
#       broadcasts (published to Redis as @socket.io/redis-emitter does):
#       time until the last device has each, and memory per connection
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=lib.sh
. "$ROOT/cmd/sbload/lib.sh"
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
    S1|S2|S3|S4|S5) SCENARIOS+=("$a") ;;
    *) echo "usage: $0 [-quick] [S1 S2 S3 S4 S5]" >&2; exit 2 ;;
  esac
done
[ ${#SCENARIOS[@]} -gt 0 ] || SCENARIOS=(S1 S2 S3 S4 S5)
mkdir -p "$OUT"

# 10,000 sockets on the client side plus the servers'.
prepare
if [ "$PEER_CMD" = "node /tmp/peer/server.js" ] && [[ " $SERVERS " == *" peer "* ]] && [ ! -d /tmp/peer/node_modules/socket.io ]; then
  rm -rf /tmp/peer && cp -r "$ROOT/../shared/peer" /tmp/peer && chmod -R u+w /tmp/peer
  (cd /tmp/peer && npm ci --no-audit --no-fund --loglevel=error)
fi

# cpu_ticks prints the machine's total and steal CPU ticks from /proc/stat:
# on a virtual machine, time the hypervisor gave to other guests makes both
# servers slower alike, and is worth knowing when comparing runs.
cpu_ticks() { awk '/^cpu / {t=0; for (i=2; i<=NF; i++) t+=$i; print t, $9}' /proc/stat; }
read -r TICKS0 STEAL0 <<<"$(cpu_ticks)"

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

start_redis "$OUT/redis.log"
BROADCAST_REDIS="redis://127.0.0.1:$REDIS_PORT/0"

# start_pair NAME SCENARIO: two fresh instances (one for S5, which measures
# one process); sets TARGETS and PIDS.
start_pair() {
  local name=$1 scen=$2 cmd extra i n=2
  if [ "$name" = ours ]; then cmd=$OURS_CMD; extra="RECOVERY_WINDOW=0 $OURS_ENV"; else cmd=$PEER_CMD; extra=$PEER_ENV; fi
  [ "$scen" = S5 ] && n=1
  TARGETS=""; PIDS=""
  for i in $(seq "$n"); do
    start_server "$cmd" "NODE_ID=$name-$i $extra" "$OUT/$scen-$name-$i.log"
    TARGETS+="${TARGETS:+,}$SERVER_ADDR"
    PIDS+="${PIDS:+,}$SERVER_PID"
  done
}

# Alternate which server goes first from one scenario to the next.
order=($SERVERS)
for scen in "${SCENARIOS[@]}"; do
  for name in "${order[@]}"; do
    start_pair "$name" "$scen"
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

read -r TICKS1 STEAL1 <<<"$(cpu_ticks)"
{
  echo "uptime after: $(uptime)"
  awk -v t=$((TICKS1 - TICKS0)) -v s=$((STEAL1 - STEAL0)) 'BEGIN {printf "cpu steal during the run: %.1f%% of cpu time\n", t ? 100 * s / t : 0}'
} | tee -a "$OUT/machine.txt" >&2
"$OUT/sbload" table "$OUT" | tee "$OUT/table.md"
log "results in $OUT"
