#!/usr/bin/env python3
"""Runs units of Redis's own test suite (tests/ and runtest of a Redis source
tree, same version as the redis-server installed) in external-server mode,
against a redis-server directly and through tenantry, and prints per unit
how many tests passed each way and which passed directly but not through
tenantry.

    python3 tools/redis-test-suite.py --redis-src ~/src/redis --tenantry target/debug/tenantry

Tests tagged as needing DEBUG, replication, CONFIG SET of server-wide
settings, SAVE and the like are skipped both ways (tenantry refuses those
commands on purpose). With --durable, an unexpected error reply (a refused
command) fails its own test only.
"""
import argparse
import os
import re
import socket
import subprocess
import sys
import tempfile
import time

SKIP_TAGS = [
    "needs:debug", "needs:repl", "needs:config-maxmemory", "needs:config-resetstat", "needs:reset",
    "needs:save", "needs:pfdebug", "needs:local-process", "needs:latency",
]
UNITS = [
    "type/incr", "type/string", "type/hash", "type/set", "type/zset", "type/list", "type/list-2", "type/list-3",
    "type/stream", "type/stream-cgroups", "keyspace", "expire", "multi", "pubsub", "pubsubshard", "scan", "sort",
    "bitops", "bitfield", "hyperloglog", "geo", "dump", "scripting", "functions", "tracking", "info-command",
    "protocol", "querybuf", "acl", "auth", "other", "introspection", "introspection-2", "keyspace-events",
    "lazyfree", "limits", "tls", "oom-score-adj", "shutdown", "networking", "client-eviction", "replybufsize",
]
LINE = re.compile(r"^\[(ok|err|exception|skip|ignore)\]: (.*?)(?: \(\d+ ms\))?$")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=10):
    end = time.time() + timeout
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on {port}")


def run_unit(src, port, unit):
    """Test names by outcome for one unit."""
    tags = " ".join("-" + t for t in SKIP_TAGS)
    # --durable: an unexpected error reply fails its test, not the rest of the unit.
    cmd = ["./runtest", "--host", "127.0.0.1", "--port", str(port), "--singledb", "--clients", "1", "--durable",
           "--single", f"unit/{unit}", "--tags", tags, "--timeout", "120"]
    try:
        out = subprocess.run(cmd, cwd=src, capture_output=True, text=True, timeout=600).stdout
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
    results = {"ok": [], "err": [], "exception": []}
    for raw in out.splitlines():
        m = LINE.match(re.sub(r"\x1b\[[0-9;]*m", "", raw))
        if m and m.group(1) in results:
            results[m.group(1)].append(m.group(2))
    if "exception" in out and not results["exception"]:
        results["exception"].append("(unit stopped by an exception)")
    return results


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--redis-src", required=True, help="a Redis source tree (its tests/ and runtest)")
    ap.add_argument("--tenantry", default="target/debug/tenantry")
    ap.add_argument("--units", nargs="*", default=UNITS)
    args = ap.parse_args()
    src = os.path.abspath(args.redis_src)
    procs = []
    with tempfile.TemporaryDirectory() as tmp:
        try:
            direct_port, backend_port, proxy_port = free_port(), free_port(), free_port()
            for port in (direct_port, backend_port):
                procs.append(subprocess.Popen(
                    ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", tmp],
                    stdout=subprocess.DEVNULL))
                wait_port(port)
            config = os.path.join(tmp, "tenantry.yaml")
            with open(config, "w") as f:
                f.write(f"listen: 127.0.0.1:{proxy_port}\nbackends:\n  b: {{ kind: standalone, nodes: "
                        f"[\"127.0.0.1:{backend_port}\"] }}\ntenants:\n  t: {{ backend: b, namespace: \"t:\", "
                        f"scripts: true }}\ndefault_tenant: t\n")
            procs.append(subprocess.Popen([os.path.abspath(args.tenantry), "run", "--config", config],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            wait_port(proxy_port)
            total = [0, 0]
            print("| unit | passed directly | passed through tenantry | passed directly only |")
            print("|---|---:|---:|---|")
            for unit in args.units:
                if not os.path.exists(os.path.join(src, "tests", "unit", unit + ".tcl")):
                    continue
                d = run_unit(src, direct_port, unit)
                t = run_unit(src, proxy_port, unit)
                lost = [n for n in d["ok"] if n not in t["ok"]]
                stop = f" (stopped: {t['exception'][0][:60]})" if t["exception"] and not d["exception"] else ""
                total[0] += len(d["ok"])
                total[1] += len(t["ok"])
                shown = "; ".join(lost[:4]) + (f"; ... {len(lost) - 4} more" if len(lost) > 4 else "")
                print(f"| {unit} | {len(d['ok'])} | {len(t['ok'])} | {shown}{stop} |", flush=True)
            print(f"| **all** | {total[0]} | {total[1]} | |")
        finally:
            for p in procs:
                p.terminate()
                p.wait()


if __name__ == "__main__":
    sys.exit(main())
