#!/usr/bin/env bash
# Profiles Switchboard under a scenario of issue 5 through its pprof debug
# listener (DEBUG_ADDR, off by default), and splits the top entries into our
# code (github.com/switchboard-rt/switchboard) and the rest.
#
#   bash cmd/sbload/profile.sh S1      # CPU while sending, heap after
#   bash cmd/sbload/profile.sh S3      # heap with 10,000 idle connections
#
# Environment: OUT (results dir), OURS_CMD (default: bin/switchboard, built
# here), OURS_ENV (extra VAR=value words, e.g. "GOGC=200"), QUICK=1. As in
# bench.sh, recovery is off (RECOVERY_WINDOW=0) unless OURS_ENV turns it on.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=lib.sh
. "$ROOT/cmd/sbload/lib.sh"

SCEN=${1:-S1}
OUT=${OUT:-/tmp/sbprofile-$SCEN-$(date -u +%Y%m%dT%H%M%SZ)}
OURS_CMD=${OURS_CMD:-}
OURS_ENV="RECOVERY_WINDOW=0 ${OURS_ENV:-}"
SECRET="profile-$RANDOM-$RANDOM"
mkdir -p "$OUT"
prepare
BIN=${OURS_CMD%% *}

start_redis "$OUT/redis.log"
DEBUG_PORT=$(free_port)
start_server "$OURS_CMD" "$OURS_ENV DEBUG_ADDR=127.0.0.1:$DEBUG_PORT" "$OUT/server-1.log"
T1=$SERVER_ADDR P1=$SERVER_PID
start_server "$OURS_CMD" "$OURS_ENV" "$OUT/server-2.log"
T2=$SERVER_ADDR P2=$SERVER_PID
log "$SCEN: profiling $T1 (pid $P1, pprof on 127.0.0.1:$DEBUG_PORT), peer instance $T2"

# shellcheck disable=SC2046 # the flags are words
"$OUT/sbload" -secret "$SECRET" -targets "$T1,$T2" -pids "$P1,$P2" -label "$SCEN-profile" \
  -o "$OUT/report.json" -progress 1s $(scenario_flags "$SCEN") >"$OUT/report.txt" 2>"$OUT/progress.log" &
LOAD=$!
STARTED+=("$LOAD")
wait_phase() { # phase word in sbload's progress line, at most 5 min
  for _ in $(seq 600); do grep -q " $1 " "$OUT/progress.log" 2>/dev/null && return 0; sleep 0.5; done
  echo "sbload never reached phase $1" >&2; return 1
}
pprof="http://127.0.0.1:$DEBUG_PORT/debug/pprof"
case "$SCEN" in
  S3) wait_phase hold; sleep 5 ;;
  *)  wait_phase send; curl -fsS -o "$OUT/cpu.prof" "$pprof/profile?seconds=10" ;;
esac
curl -fsS -o "$OUT/heap.prof" "$pprof/heap?gc=1"
curl -fsS -o "$OUT/goroutines.txt" "$pprof/goroutine?debug=1" || true
wait "$LOAD"
cat "$OUT/report.txt"

split() { # profile sample_index
  echo "== $1 ($2): top entries in our code (cumulative)"
  go tool pprof -sample_index="$2" -top -cum -nodecount=2000 "$BIN" "$OUT/$1" 2>/dev/null |
    grep 'switchboard-rt/switchboard' | head -15
  echo "== $1 ($2): top entries elsewhere (flat)"
  go tool pprof -sample_index="$2" -top -nodecount=40 "$BIN" "$OUT/$1" 2>/dev/null |
    sed -n '/flat%/,$p' | grep -v 'switchboard-rt/switchboard' | head -16
}
[ -f "$OUT/cpu.prof" ] && split cpu.prof samples | tee "$OUT/cpu-top.txt"
split heap.prof inuse_space | tee "$OUT/heap-top.txt"
log "profiles in $OUT (go tool pprof $BIN $OUT/cpu.prof)"
