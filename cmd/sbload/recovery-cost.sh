#!/usr/bin/env bash
# What connection state recovery costs per delivery (issue 11): the S1 load
# (2,000 users x 2 devices, sendMessage at 200/s for 20 s, two processes on
# one private Redis) against Switchboard with RECOVERY_WINDOW=0 and with
# RECOVERY_WINDOW=2m (the default), alternating, ROUNDS times (default 3).
#
#   bash cmd/sbload/recovery-cost.sh            # results and table.md in $OUT
#   ROUNDS=5 RATE=1000 bash cmd/sbload/recovery-cost.sh
#
# For each run: server CPU and Redis CPU per 1000 deliveries (from sbload,
# which reads /proc), end-to-end p50/p99 on the same process and across, and
# what recovery keeps in Redis once the load is over: the rooms' lists
# (MEMORY USAGE of every list and trim mark, per 1000 deliveries and per
# stored message) and the sessions (the 4,000 sockets' sessions, kept when
# sbload closed them). Redis is emptied (FLUSHALL) before each run.
#
# Environment: OUT, OURS_CMD (default bin/switchboard, built here), ROUNDS,
# RATE (msg/s, default 200), USERS (default 2000), DURATION (default 20s).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=lib.sh
. "$ROOT/cmd/sbload/lib.sh"
OUT=${OUT:-/tmp/sbrecovery-$(date -u +%Y%m%dT%H%M%SZ)}
OURS_CMD=${OURS_CMD:-}
ROUNDS=${ROUNDS:-3}
RATE=${RATE:-200}
USERS=${USERS:-2000}
DURATION=${DURATION:-20s}
SECRET="recovery-cost-$RANDOM-$RANDOM"
KEY={switchboard-recovery}
mkdir -p "$OUT"
prepare
start_redis "$OUT/redis.log"
rc() { redis-cli -p "$REDIS_PORT" "$@"; }

# usage PATTERN: total MEMORY USAGE (bytes) and count of the keys matching.
# (One redis-cli reads all the commands: the key names have no spaces.)
usage() {
  rc --scan --pattern "$1" | sed 's/^/MEMORY USAGE /; s/$/ SAMPLES 0/' | rc |
    awk '{s+=$1; n++} END {printf "%d %d\n", s, n}'
}

# stored: entries in the rooms' lists.
stored() {
  rc --scan --pattern "$KEY#*#s#*" | sed 's/^/LLEN /' | rc | awk '{s+=$1} END {print s+0}'
}

echo "| round | recovery | server CPU s / 1000 deliveries | Redis CPU s / 1000 deliveries | p50 / p99 same process (ms) | p50 / p99 cross process (ms) | deliveries | missing + duplicated | stored messages | lists: bytes / 1000 deliveries | lists: bytes / message | sessions kept | bytes / session |" >"$OUT/table.md"
echo "|---|---|---:|---:|---|---|---:|---:|---:|---:|---:|---:|---:|" >>"$OUT/table.md"
modes=(0 2m)
for round in $(seq "$ROUNDS"); do
  for window in "${modes[@]}"; do
    rc FLUSHALL >/dev/null
    TARGETS=""; PIDS=""
    for i in 1 2; do
      start_server "$OURS_CMD" "NODE_ID=rc-$i RECOVERY_WINDOW=$window" "$OUT/r$round-$window-$i.log"
      TARGETS+="${TARGETS:+,}$SERVER_ADDR"; PIDS+="${PIDS:+,}$SERVER_PID"
    done
    label="r$round-window-$window"
    "$OUT/sbload" -secret "$SECRET" -targets "$TARGETS" -pids "$PIDS" -aux-pids "$REDIS_PID" \
      -label "$label" -o "$OUT/$label.json" -progress 5s -max-time 5m \
      -users "$USERS" -devices 2 -rate "$RATE" -duration "$DURATION" -drain 10s >"$OUT/$label.txt"
    # sbload has closed its sockets: their sessions are kept now.
    read -r sbytes skeys <<<"$(usage "$KEY#*#s#*")"
    read -r tbytes _ <<<"$(usage "$KEY#*#t*")"
    read -r sessbytes sesskeys <<<"$(usage "$KEY#*#session#*")"
    n=$(stored)
    stop_pids ${PIDS//,/ }
    jq -r --arg round "$round" --arg window "$window" --argjson sb "$((sbytes + tbytes))" --argjson n "$n" \
      --argjson sessb "$sessbytes" --argjson sessk "$sesskeys" '
      .steps[0] as $s |
      ($s.received / 1000) as $k |
      "| \($round) | \(if $window == "0" then "off" else "on (" + $window + ")" end) | \($s.server_cpu_s_per_1000_deliveries | .*1000 | round / 1000) | \($s.aux_cpu_s / $k | .*1000 | round / 1000) | \($s.latency_same_process.p50_ms) / \($s.latency_same_process.p99_ms) | \($s.latency_cross_process.p50_ms) / \($s.latency_cross_process.p99_ms) | \($s.received) | \($s.missing + $s.duplicated) | \($n) | \(if $n > 0 then ($sb / $k | round) else 0 end) | \(if $n > 0 then ($sb / $n | round) else 0 end) | \($sessk) | \(if $sessk > 0 then ($sessb / $sessk | round) else 0 end) |"
    ' "$OUT/$label.json" | tee -a "$OUT/table.md"
    sleep 2 # let TIME_WAIT and the kernel settle between runs
  done
  modes=("${modes[1]}" "${modes[0]}")
done
log "results in $OUT"
cat "$OUT/table.md"
