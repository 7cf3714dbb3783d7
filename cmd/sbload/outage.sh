#!/usr/bin/env bash
# What a Redis outage loses under load (issue 13, item 5): two Switchboard
# processes on one private Redis, sbload sending sendMessage at RATE/s from
# USERS users with a device on each process; OUTAGE_AT seconds in, Redis is
# killed (kill -9) for KILL_SECS and started again on its port, or stopped
# (SIGSTOP) for STOP_SECS and resumed (SIGCONT). sbload checks every delivery
# on every device: expected / received / missing / duplicated.
#
#   bash cmd/sbload/outage.sh                          # kill 10 s, stop 30 s
#   RATE=500 MODES=kill KILL_SECS=20 bash cmd/sbload/outage.sh
#   OURS_ENV="OUTBOX_MAX_MESSAGES=0" bash cmd/sbload/outage.sh   # outbox off
#
# Writes <mode>.{json,txt}, the servers' logs and /metrics after the run, and
# table.md (with each process's outbox counters) to $OUT.
#
# Environment: OUT, OURS_CMD (default bin/switchboard, built here), OURS_ENV
# (extra server environment), MODES (default "kill stop"), RATE (msg/s,
# default 200), USERS (default 1000), OUTAGE_AT (default 5), KILL_SECS
# (default 10), STOP_SECS (default 30), AFTER (seconds of load after the
# outage, default 15), DRAIN (default 40s).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=lib.sh
. "$ROOT/cmd/sbload/lib.sh"
OUT=${OUT:-/tmp/sboutage-$(date -u +%Y%m%dT%H%M%SZ)}
OURS_CMD=${OURS_CMD:-}
OURS_ENV=${OURS_ENV:-}
MODES=${MODES:-kill stop}
RATE=${RATE:-200}
USERS=${USERS:-1000}
OUTAGE_AT=${OUTAGE_AT:-5}
KILL_SECS=${KILL_SECS:-10}
STOP_SECS=${STOP_SECS:-30}
AFTER=${AFTER:-15}
DRAIN=${DRAIN:-40s}
SECRET="outage-$RANDOM-$RANDOM"
mkdir -p "$OUT"
prepare
start_redis "$OUT/redis.log"

# restart_redis: kill -9 and start again on the same port.
restart_redis() {
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no --loglevel warning >>"$OUT/redis.log" 2>&1 &
  REDIS_PID=$!
  STARTED+=("$REDIS_PID")
}

metric() { # sample file...: the sum of its values in the files, as an integer
  local s=$1; shift
  awk -v s="$s" '$1 == s {t += $2} END {printf "%d", t}' "$@"
}

echo "| outage | rate (msg/s) | sent | acks ok | deliveries expected | received | missing | duplicated | outbox held (p1 + p2) | outbox dropped: count / age | subscription losses | /readyz 503 seen |" >"$OUT/table.md"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|" >>"$OUT/table.md"
for mode in $MODES; do
  case $mode in
    kill) secs=$KILL_SECS ;;
    stop) secs=$STOP_SECS ;;
    *) echo "unknown mode $mode" >&2; exit 1 ;;
  esac
  redis-cli -p "$REDIS_PORT" FLUSHALL >/dev/null
  TARGETS=""; PIDS=""; ADDRS=()
  for i in 1 2; do
    start_server "$OURS_CMD" "NODE_ID=outage-$i $OURS_ENV" "$OUT/$mode-$i.log"
    TARGETS+="${TARGETS:+,}$SERVER_ADDR"; PIDS+="${PIDS:+,}$SERVER_PID"; ADDRS+=("$SERVER_ADDR")
  done
  duration=$((OUTAGE_AT + secs + AFTER))
  "$OUT/sbload" -secret "$SECRET" -targets "$TARGETS" -pids "$PIDS" \
    -label "$mode-${secs}s" -o "$OUT/$mode.json" -progress 5s -max-time 10m \
    -users "$USERS" -devices 2 -rate "$RATE" -duration "${duration}s" -drain "$DRAIN" >"$OUT/$mode.txt" &
  load=$!
  # Wait for sbload to connect every device (then it sends).
  for _ in $(seq 600); do
    n=0
    for a in "${ADDRS[@]}"; do n=$((n + $(curl -s "http://$a/metrics" | awk '$1 == "switchboard_sockets" {printf "%d", $2}'))); done
    [ "$n" -ge $((USERS * 2)) ] && break
    sleep 0.1
  done
  sleep "$OUTAGE_AT"
  log "$mode: Redis away for ${secs}s"
  if [ "$mode" = kill ]; then kill -KILL "$REDIS_PID"; wait "$REDIS_PID" 2>/dev/null || true; else kill -STOP "$REDIS_PID"; fi
  seen=no
  end=$(($(date +%s%N) + secs * 1000000000))
  while [ "$(date +%s%N)" -lt "$end" ]; do
    code=$(curl -s -m 1 -o /dev/null -w '%{http_code}' "http://${ADDRS[0]}/readyz" || true)
    [ "$code" = 503 ] && seen=yes
    sleep 0.1
  done
  if [ "$mode" = kill ]; then restart_redis; else kill -CONT "$REDIS_PID"; fi
  log "$mode: Redis back"
  wait "$load"
  for i in 0 1; do curl -s "http://${ADDRS[$i]}/metrics" >"$OUT/$mode-$((i + 1)).metrics"; done
  m=("$OUT/$mode-1.metrics" "$OUT/$mode-2.metrics")
  held=$(metric switchboard_adapter_outbox_held_total "${m[@]}")
  dcount=$(metric 'switchboard_adapter_outbox_dropped_total{reason="count"}' "${m[@]}")
  dage=$(metric 'switchboard_adapter_outbox_dropped_total{reason="age"}' "${m[@]}")
  lost=$(metric switchboard_adapter_subscription_lost_total "${m[@]}")
  stop_pids ${PIDS//,/ }
  jq -r --arg mode "$mode" --arg secs "$secs" --arg held "$held" --arg dc "$dcount" --arg da "$dage" --arg lost "$lost" --arg seen "$seen" '
    .steps[0] as $s |
    "| \(if $mode == "kill" then "kill -9" else "SIGSTOP" end) \($secs) s | \($s.rate) | \($s.sent) | \($s.acks_ok) | \($s.expected) | \($s.received) | \($s.missing) | \($s.duplicated) | \($held) | \($dc) / \($da) | \($lost) | \($seen) |"
  ' "$OUT/$mode.json" | tee -a "$OUT/table.md"
  sleep 2
done
log "results in $OUT"
