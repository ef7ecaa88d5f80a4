#!/usr/bin/env bash
# `make run`: a throwaway redis-server on 127.0.0.1:$1 and tenantry in the
# foreground with config $2. Ctrl-C stops both.
set -euo pipefail
port=$1 config=$2
dir=$(mktemp -d)
redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --dir "$dir" \
  --daemonize yes --pidfile "$dir/redis.pid" --logfile "$dir/redis.log"
cleanup() {
  [ -f "$dir/redis.pid" ] && kill "$(cat "$dir/redis.pid")" 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT
for _ in $(seq 50); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
echo "redis-server on 127.0.0.1:$port; tenantry on 127.0.0.1:6379 — try: redis-cli -p 6379" >&2
${TENANTRY:-target/release/tenantry} run --config "$config"
