# Sourced by benches/callgrind.sh and scripts/code-order.sh: free ports, a
# scratch directory, a redis-server on REDIS_PORT, and a cleanup on exit
# that stops it and the proxy (PROXY_PID, once set).
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
