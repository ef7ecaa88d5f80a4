#!/bin/bash
# User-space instructions tenantry spends per request, under callgrind:
# steadier than ops/s on a shared machine, so a change's cost shows run to run.
#
#   benches/callgrind.sh BINARY [REQUESTS] [PIPELINE] [TEST]
#   COALESCE=true benches/callgrind.sh ...   # the tenant coalesces its reads
#
# Starts a redis-server on a free port, tenantry (BINARY) in front of it with
# benches/cost.yaml under valgrind with instrumentation off, warms up with
# 2,000 requests, counts REQUESTS (default 20000; 50 clients, 100-byte values)
# of redis-benchmark's TEST (default get; set, mset: MSET of 10 keys, ...) at
# PIPELINE (default 1), and prints the instructions per request.
set -euo pipefail
BIN=$1
N=${2:-20000}
P=${3:-1}
TEST=${4:-get}
COALESCE=${COALESCE:-false}
. "$(dirname "$0")/under-valgrind.sh"
sed -e "s/@PROXY_PORT@/$PROXY_PORT/" -e "s/@ADMIN_PORT@/$ADMIN_PORT/" -e "s/@REDIS_PORT@/$REDIS_PORT/" \
    -e "s/@COALESCE@/$COALESCE/" "$(dirname "$0")/cost.yaml" > "$WORK/tenantry.yaml"
TENANTRY_OTLP_ENDPOINT="http://127.0.0.1:$(free_port)/v1/traces" \
    valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$WORK/callgrind.out" \
    "$BIN" run --config "$WORK/tenantry.yaml" > "$WORK/tenantry.log" 2>&1 &
PROXY_PID=$!
wait_for_proxy
bench() { redis-benchmark -p "$PROXY_PORT" -t "$TEST" -n "$1" -c 50 -P "$P" -d 100 -r 1000 -q > /dev/null; }
bench 2000
callgrind_control -i on "$PROXY_PID" > /dev/null
bench "$N"
callgrind_control -i off "$PROXY_PID" > /dev/null
# Stopping it writes what was counted.
kill "$PROXY_PID"
wait "$PROXY_PID" 2> /dev/null || true
PROXY_PID=
total=0
if [ -n "${KEEP:-}" ]; then cp "$WORK"/callgrind.out* "$KEEP"/; fi
for f in "$WORK"/callgrind.out*; do
    n=$(callgrind_annotate "$f" 2> /dev/null | awk '/PROGRAM TOTALS/ && !seen {gsub(",", "", $1); print $1; seen = 1}')
    total=$((total + ${n:-0}))
done
echo "$TEST pipeline $P: $total instructions / $N requests = $((total / N)) per request"
