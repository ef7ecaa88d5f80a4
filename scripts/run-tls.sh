#!/usr/bin/env bash
# `make run-tls`: a throwaway redis-server on 127.0.0.1:$1 that speaks TLS
# only, and tenantry in the foreground with config $2: TLS to redis, TLS on
# 127.0.0.1:6379, mutual TLS on 127.0.0.1:6380. Ctrl-C stops both.
set -euo pipefail
port=$1 config=$2 certs=target/run-tls
abs=$(pwd)/$certs  # redis-server --daemonize changes directory
scripts/tls-certs.sh "$certs"
dir=$(mktemp -d)
redis-server --port 0 --tls-port "$port" --bind 127.0.0.1 --save '' --appendonly no --dir "$dir" \
  --tls-cert-file "$abs/redis.crt" --tls-key-file "$abs/redis.key" --tls-ca-cert-file "$abs/ca.crt" \
  --tls-auth-clients no --daemonize yes --pidfile "$dir/redis.pid" --logfile "$dir/redis.log"
cleanup() {
  [ -f "$dir/redis.pid" ] && kill "$(cat "$dir/redis.pid")" 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT
for _ in $(seq 50); do
  redis-cli -p "$port" --tls --cacert "$certs/ca.crt" ping >/dev/null 2>&1 && break
  sleep 0.1
done
cat >&2 <<MSG
redis-server (TLS only) on 127.0.0.1:$port; tenantry on 127.0.0.1:6379 (TLS) and 6380 (mutual TLS). Try:
  redis-cli --tls --cacert $certs/ca.crt -p 6379
  redis-cli --tls --cacert $certs/ca.crt --cert $certs/client.crt --key $certs/client.key -p 6380   # tenant demo, by certificate
MSG
target/release/tenantry run --config "$config"
