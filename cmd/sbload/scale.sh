#!/usr/bin/env bash
# Issue 10's measurement: what one process costs as processes are added,
# with the classic and the sharded Redis adapter.
#
#   bash cmd/sbload/scale.sh                  # 2, 4, 8 processes; both adapters; both series; twice
#   SIZES="2 4" REPEAT=1 bash cmd/sbload/scale.sh
#
# For each size n, adapter and series, a fresh private redis-server and n
# fresh bin/switchboard processes (REDIS_ADAPTER=classic or sharded) on it;
# cmd/sbload connects USERS_PER_PROC users per process (one device each,
# user u on process u mod n) and sends sendMessage from random users to
# random other users (so 1/n of the messages stay within a process) for
# DURATION. Each message is two deliveries: to the recipient's room and to
# the sender's own room (its other devices). Two series:
#
#   total        a fixed total rate, TOTAL_RATE messages/s, whatever n;
#   per-process  RATE_PER_PROC messages/s per process (n times that in all):
#                adding processes to carry more users.
#
# Per run it records, per process: the adapter's messages received (from
# /metrics, switchboard_adapter_messages_received_total, all kinds) and CPU
# seconds while sending (sbload's /proc reading); Redis's output bytes
# (INFO stats total_net_output_bytes; the messages Redis sent are the
# received counts summed over the processes), Redis's CPU seconds, and
# deliveries missing or duplicated. Sizes and adapters
# alternate in order between repeats. Results: $OUT/runs.tsv, the sbload
# reports, and $OUT/table.md.
#
# Environment: OUT, SIZES ("2 4 8"), ADAPTERS ("classic sharded"), SERIES
# ("total per-process"), REPEAT (2), USERS_PER_PROC (250), TOTAL_RATE (400),
# RATE_PER_PROC (50), DURATION (20s).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=lib.sh
. "$ROOT/cmd/sbload/lib.sh"
OUT=${OUT:-/tmp/sbscale-$(date -u +%Y%m%dT%H%M%SZ)}
OURS_CMD=${OURS_CMD:-}
SIZES=${SIZES:-2 4 8}
ADAPTERS=${ADAPTERS:-classic sharded}
SERIES=${SERIES:-total per-process}
REPEAT=${REPEAT:-2}
USERS_PER_PROC=${USERS_PER_PROC:-250}
TOTAL_RATE=${TOTAL_RATE:-400}
RATE_PER_PROC=${RATE_PER_PROC:-50}
DURATION=${DURATION:-20s}
SECRET="scale-$RANDOM-$RANDOM-$RANDOM"
mkdir -p "$OUT"
prepare
command -v redis-cli >/dev/null || { echo "redis-cli is missing: apt-get install -y redis-tools" >&2; exit 1; }
{
  date -u
  uname -a
  grep -m1 'model name' /proc/cpuinfo
  nproc
  go version
  git -C "$ROOT" rev-parse --short HEAD
  echo "load average before: $(cat /proc/loadavg)"
} >"$OUT/machine.txt"

# received_total ADDR: the adapter's messages received, all kinds.
received_total() {
  curl -fsS "http://$1/metrics" | awk '/^switchboard_adapter_messages_received_total/ {s += $2} END {printf "%d", s}'
}
redis_stat() { # FIELD: from INFO stats
  redis-cli -p "$REDIS_PORT" info stats | tr -d '\r' | awk -F: -v f="$1" '$1 == f {print $2}'
}

printf 'series\tadapter\tprocesses\trepeat\trate\tmessages\treceived_per_proc\tcpu_send_per_proc_s\tredis_out_bytes\tredis_cpu_s\tmissing\tduplicated\n' >"$OUT/runs.tsv"

run_one() { # SERIES ADAPTER N REPEAT
  local series=$1 adapter=$2 n=$3 rep=$4 rate addrs=() pids=() before=() i name
  if [ "$series" = total ]; then rate=$TOTAL_RATE; else rate=$((RATE_PER_PROC * n)); fi
  name="$series-$adapter-$n-r$rep"
  log "run $name: $n processes, $rate msg/s"
  start_redis "$OUT/$name-redis.log"
  for i in $(seq "$n"); do
    start_server "$OURS_CMD" "REDIS_ADAPTER=$adapter NODE_ID=p$i" "$OUT/$name-p$i.log"
    addrs+=("$SERVER_ADDR")
    pids+=("$SERVER_PID")
  done
  for i in "${!addrs[@]}"; do before[i]=$(received_total "${addrs[i]}"); done
  local out0
  out0=$(redis_stat total_net_output_bytes)
  "$OUT/sbload" -secret "$SECRET" -targets "$(IFS=,; echo "${addrs[*]}")" -pids "$(IFS=,; echo "${pids[*]}")" \
    -aux-pids "$REDIS_PID" -users $((USERS_PER_PROC * n)) -devices 1 -rate "$rate" -duration "$DURATION" -drain 10s \
    -format json -o "$OUT/$name.json" >/dev/null 2>"$OUT/$name-sbload.log"
  local out1 recv=0
  out1=$(redis_stat total_net_output_bytes)
  for i in "${!addrs[@]}"; do recv=$((recv + $(received_total "${addrs[i]}") - before[i])); done
  stop_pids "${pids[@]}"
  stop_pids "$REDIS_PID"
  node -e '
    const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
    const [series, adapter, n, rep, rate, recv, outBytes] = process.argv.slice(2);
    const servers = r.processes.filter((p) => p.target);
    const cpu = servers.reduce((s, p) => s + p.cpu_s_send, 0) / servers.length;
    const d = r.steps.reduce((a, s) => ({ sent: a.sent + s.sent, missing: a.missing + s.missing, dup: a.dup + s.duplicated, aux: a.aux + s.aux_cpu_s }), { sent: 0, missing: 0, dup: 0, aux: 0 });
    console.log([series, adapter, n, rep, rate, d.sent, Math.round(recv / n), cpu.toFixed(2), outBytes, d.aux.toFixed(2), d.missing, d.dup].join("\t"));
  ' "$OUT/$name.json" "$series" "$adapter" "$n" "$rep" "$rate" "$recv" $((out1 - out0)) >>"$OUT/runs.tsv"
  tail -n 1 "$OUT/runs.tsv" >&2
}

for rep in $(seq "$REPEAT"); do
  for series in $SERIES; do
    for n in $SIZES; do
      [ "$series" = per-process ] && [ $((RATE_PER_PROC * n)) -eq "$TOTAL_RATE" ] && [[ " $SERIES " == *" total "* ]] && continue # the same run
      order=$ADAPTERS
      if [ $(((rep + n) % 2)) -eq 1 ]; then order=$(echo "$ADAPTERS" | awk '{for (i = NF; i > 0; i--) printf "%s ", $i}'); fi
      for adapter in $order; do run_one "$series" "$adapter" "$n" "$rep"; done
    done
  done
done
echo "load average after: $(cat /proc/loadavg)" >>"$OUT/machine.txt"

# table.md: the mean of the repeats, each cell "mean (min-max)".
node -e '
  const rows = require("fs").readFileSync(process.argv[1], "utf8").trim().split("\n").slice(1).map((l) => l.split("\t"));
  const key = (r) => [r[0], r[1], r[2]].join(" ");
  const groups = new Map();
  for (const r of rows) { if (!groups.has(key(r))) groups.set(key(r), []); groups.get(key(r)).push(r); }
  const cell = (g, i, digits) => {
    const v = g.map((r) => Number(r[i]));
    const mean = v.reduce((a, b) => a + b, 0) / v.length;
    const f = (x) => x.toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: digits });
    return v.length > 1 ? `${f(mean)} (${f(Math.min(...v))}–${f(Math.max(...v))})` : f(mean);
  };
  console.log("| series | adapter | processes | msg/s | received per process | CPU s per process (sending) | Redis output MB | Redis CPU s | missing + duplicated |");
  console.log("|---|---|---:|---:|---:|---:|---:|---:|---:|");
  for (const [, g] of [...groups].sort(([a], [b]) => a.localeCompare(b, "en", { numeric: true }))) {
    const [series, adapter, n, , rate] = g[0];
    const faults = g.reduce((s, r) => s + Number(r[10]) + Number(r[11]), 0);
    console.log(`| ${series} | ${adapter} | ${n} | ${rate} | ${cell(g, 6, 0)} | ${cell(g, 7, 2)} | ${cell(g.map((r) => { const c = [...r]; c[8] = Number(r[8]) / 1e6; return c; }), 8, 1)} | ${cell(g, 9, 2)} | ${faults} |`);
  }
' "$OUT/runs.tsv" >"$OUT/table.md"
cat "$OUT/table.md"
log "results in $OUT"
