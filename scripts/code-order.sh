#!/bin/bash
# Writes the link order of tenantry's functions (crates/tenantry/code-order.txt):
# the functions a start and ordinary traffic run, hottest first, so that they
# sit together in the binary's text instead of spread over all of it. The
# kernel maps a file's pages 64 KiB around each fault, so spread-out code
# keeps most of the text resident; packed, it keeps what runs.
#
#   cargo build --release --bin tenantry && scripts/code-order.sh target/release/tenantry
#
# Make it from that build, the one `make run`, `make bench` and the
# Dockerfile make: the linker's names carry a hash of each crate's features,
# and `cargo build -p tenantry` resolves them otherwise (half the names would
# not match).
#
# Runs BINARY under callgrind (from its start, names kept mangled as the
# linker sees them) in front of a redis-server on free ports, sends a mix
# of commands at pipeline 1 and 16 (and some over TLS), INFO, CONFIG, CLIENT and the admin
# endpoints, then ranks the functions of the binary by the instructions
# they ran.
set -euo pipefail
BIN=$1
OUT=${OUT:-crates/tenantry/code-order.txt}
. "$(dirname "$0")/../benches/under-valgrind.sh"
TLS_PORT=$(free_port)
scripts/tls-certs.sh "$WORK/certs" 2> /dev/null
cat > "$WORK/tenantry.yaml" <<YAML
listen:
  - addr: 127.0.0.1:$PROXY_PORT
  - addr: 127.0.0.1:$TLS_PORT
    tls: { cert_file: $WORK/certs/tenantry.crt, key_file: $WORK/certs/tenantry.key }
admin: 127.0.0.1:$ADMIN_PORT
backends:
  local:
    kind: standalone
    nodes: ["127.0.0.1:$REDIS_PORT"]
tenants:
  default:
    backend: local
    namespace: "default:"
    rate_limit: { ops_per_sec: 1000000 }
default_tenant: default
YAML
valgrind --tool=callgrind --demangle=no --callgrind-out-file="$WORK/callgrind.out" \
    "$BIN" run --config "$WORK/tenantry.yaml" > "$WORK/tenantry.log" 2>&1 &
PROXY_PID=$!
wait_for_proxy
for p in 1 16; do
    redis-benchmark -p "$PROXY_PORT" -n 2000 -c 10 -P $p -d 100 -r 1000 -q \
        -t set,get,incr,lpush,rpush,lpop,rpop,sadd,hset,spop,zadd,lrange_100,mset > /dev/null
done
redis-benchmark -p "$TLS_PORT" --tls --cacert "$WORK/certs/ca.crt" -n 1000 -c 10 -d 100 -q -t set,get > /dev/null
for cmd in "INFO" "INFO memory" "CONFIG GET maxmemory*" "CLIENT LIST" "CLIENT SETNAME x" "DBSIZE" "SCAN 0" "KEYS key:*"; do
    redis-cli -p "$PROXY_PORT" $cmd > /dev/null
done
for path in metrics tenants ready live; do
    curl -s "http://127.0.0.1:$ADMIN_PORT/$path" > /dev/null || true
done
sleep 2
kill "$PROXY_PID"
wait "$PROXY_PID" 2> /dev/null || true
PROXY_PID=
python3 - "$WORK" "$(readlink -f "$BIN")" "$OUT" <<'PY'
import collections, glob, re, sys
work, binary, out = sys.argv[1:]
cost = collections.Counter()
for path in glob.glob(f"{work}/callgrind.out*"):
    names, objs = {}, {}
    obj = fn = None
    skip = False
    for line in open(path, errors="replace"):
        m = re.match(r"(ob|fn|fl|fi|fe|cfn|cob|cfi|cfl)=\((\d+)\)(?: (.*))?", line.rstrip("\n"))
        if m:
            kind, ident, name = m.group(1), m.group(2), m.group(3)
            table = objs if kind in ("ob", "cob") else names if kind in ("fn", "cfn") else None
            if table is not None and name is not None:
                table[ident] = name
            if kind == "ob":
                obj = objs[ident]
            elif kind == "fn":
                # Recursion shows as name'2, name'3: the same function.
                fn = re.sub(r"'\d+$", "", names[ident])
                cost.setdefault((obj, fn), 0)
            continue
        if line.startswith("calls="):
            skip = True  # the next cost line is the call's, not this function's
            continue
        if line[:1].isdigit() or line[:1] in "+-*":
            if skip:
                skip = False
                continue
            parts = line.split()
            if len(parts) >= 2 and fn is not None:
                cost[(obj, fn)] += int(parts[1])
# Addresses without a symbol ("0x31d850") and "(below main)" are no names.
ranked = [fn for (obj, fn), n in sorted(cost.items(), key=lambda kv: -kv[1])
          if obj == binary and re.match(r"[A-Za-z_.$]", fn)]
with open(out, "w") as f:
    for fn in dict.fromkeys(ranked):
        f.write(fn + "\n")
print(f"{out}: {len(ranked)} functions")
PY
