#!/usr/bin/env bash
# `make run-cluster`: a throwaway Redis Cluster of 3 masters and 3 replicas on
# 127.0.0.1:7000-7005 and tenantry in the foreground with config $1.
# Ctrl-C stops all of it.
set -euo pipefail
config=$1
ports=(7000 7001 7002 7003 7004 7005)
dir=$(mktemp -d)
cleanup() {
  for p in "${ports[@]}"; do
    [ -f "$dir/$p/redis.pid" ] && kill "$(cat "$dir/$p/redis.pid")" 2>/dev/null || true
  done
  rm -rf "$dir"
}
trap cleanup EXIT
for p in "${ports[@]}"; do
  mkdir -p "$dir/$p"
  redis-server --port "$p" --bind 127.0.0.1 --save '' --appendonly no --dir "$dir/$p" \
    --cluster-enabled yes --cluster-config-file nodes.conf --cluster-node-timeout 2000 \
    --daemonize yes --pidfile "$dir/$p/redis.pid" --logfile "$dir/$p/redis.log"
done
for p in "${ports[@]}"; do
  for _ in $(seq 50); do redis-cli -p "$p" ping >/dev/null 2>&1 && break; sleep 0.1; done
done
redis-cli --cluster create $(printf '127.0.0.1:%s ' "${ports[@]}") --cluster-replicas 1 --cluster-yes >"$dir/create.log"
for _ in $(seq 100); do
  redis-cli -p 7000 cluster info | grep -q 'cluster_state:ok' && break
  sleep 0.1
done
echo "Redis Cluster on 127.0.0.1:7000-7005; tenantry on 127.0.0.1:6379 — try: redis-cli -p 6379" >&2
${TENANTRY:-target/release/tenantry} run --config "$config"
