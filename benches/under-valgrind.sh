# Sourced by benches/callgrind.sh and scripts/code-order.sh: free ports, a
# scratch directory, a redis-server on REDIS_PORT, and a cleanup on exit
# that stops it and the proxy (PROXY_PID, once set); wait_for_proxy.
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
REDIS_PORT=$(free_port)
PROXY_PORT=$(free_port)
ADMIN_PORT=$(free_port)
WORK=$(mktemp -d)
cleanup() {
    if [ -n "${PROXY_PID:-}" ]; then kill "$PROXY_PID" 2> /dev/null || true; fi
    if [ -f "$WORK/redis.pid" ]; then kill "$(cat "$WORK/redis.pid")" 2> /dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT
redis-server --port "$REDIS_PORT" --save "" --appendonly no --daemonize yes \
    --pidfile "$WORK/redis.pid" --logfile "$WORK/redis.log"
# Waits (up to 60 s: valgrind starts slowly) for the proxy to answer PING;
# if it never does, says why and stops the script.
wait_for_proxy() {
    for _ in $(seq 1 300); do
        redis-cli -p "$PROXY_PORT" ping > /dev/null 2>&1 && return 0
        kill -0 "$PROXY_PID" 2> /dev/null || break
        sleep 0.2
    done
    echo "tenantry never answered on 127.0.0.1:$PROXY_PORT (or exited); its log:" >&2
    tail -20 "$WORK/tenantry.log" >&2
    exit 1
}
