#!/usr/bin/env python3
"""A tenant's move to another backend, measured (issue #36's figures).

    benches/migrate.py BINARY [KEYS] [VALUE_BYTES]

Starts two redis-servers (old and new) on free ports and tenantry (BINARY)
in front of them with one tenant on the old one; fills it through tenantry
with redis-benchmark (KEYS random SETs, default 200000, of VALUE_BYTES,
default 100); then starts a steady load
(redis-benchmark, 20 clients, SET and GET over the same keys), measures
the latency 5 more clients see, rewrites the config with `migrate`, polls
/tenants until the move is done (measuring again while it copies), and
prints keys/s and MB/s of the copy, p50/p99 before and during, and the
cut-over pause (the longest a request was held, from /tenants).
"""
import csv
import io
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from kit import free_port  # noqa: E402

BIN = sys.argv[1]
KEYS = int(sys.argv[2]) if len(sys.argv) > 2 else 200_000
VALUE = int(sys.argv[3]) if len(sys.argv) > 3 else 100


def redis(work, name):
    port = free_port()
    d = os.path.join(work, name)
    os.makedirs(d)
    p = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                          "--appendonly", "no", "--dir", d], stdout=subprocess.DEVNULL)
    for _ in range(100):
        if subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True).stdout.strip() == b"PONG":
            return p, port
        time.sleep(0.05)
    sys.exit(f"redis-server on {port} did not start")


def config(proxy, admin, old, new, migrate):
    return (f"listen: 127.0.0.1:{proxy}\nadmin: 127.0.0.1:{admin}\n"
            f"backends:\n  old: {{ kind: standalone, nodes: [\"127.0.0.1:{old}\"] }}\n"
            f"  new: {{ kind: standalone, nodes: [\"127.0.0.1:{new}\"] }}\n"
            f"tenants:\n  a: {{ backend: old, namespace: \"a:\"{migrate} }}\ndefault_tenant: a\n")


def latency(port, n, clients=20):
    """p50 and p99 (ms) of SET and GET, from redis-benchmark --csv."""
    out = subprocess.run(["redis-benchmark", "-p", str(port), "-t", "set,get", "-n", str(n), "-c", str(clients),
                          "-d", str(VALUE), "-r", str(KEYS), "--csv"], capture_output=True, text=True).stdout
    rows = list(csv.DictReader(io.StringIO(out)))
    return {r["test"]: (float(r["p50_latency_ms"]), float(r["p99_latency_ms"])) for r in rows}


def migration(admin):
    with urllib.request.urlopen(f"http://127.0.0.1:{admin}/tenants", timeout=5) as r:
        return next(t for t in json.load(r) if t["tenant"] == "a")["migration"]


def main():
    work = tempfile.mkdtemp(prefix="tenantry-migrate-")
    (old_p, old), (new_p, new) = redis(work, "old"), redis(work, "new")
    proxy, admin = free_port(), free_port()
    path = os.path.join(work, "tenantry.yaml")
    with open(path, "w") as f:
        f.write(config(proxy, admin, old, new, ""))
    tenantry = subprocess.Popen([BIN, "run", "--config", path], stdout=subprocess.DEVNULL,
                                stderr=open(os.path.join(work, "tenantry.log"), "w"))
    try:
        for _ in range(200):
            if subprocess.run(["redis-cli", "-p", str(proxy), "ping"], capture_output=True).stdout.strip() == b"PONG":
                break
            time.sleep(0.05)
        subprocess.run(["redis-benchmark", "-p", str(proxy), "-t", "set", "-n", str(KEYS), "-r", str(KEYS),
                        "-d", str(VALUE), "-c", "50", "-P", "16", "-q"], capture_output=True, check=True)
        keys = int(subprocess.run(["redis-cli", "-p", str(old), "dbsize"], capture_output=True).stdout)
        load = subprocess.Popen(["redis-benchmark", "-p", str(proxy), "-t", "set,get", "-n", "100000000", "-c", "20",
                                 "-d", str(VALUE), "-r", str(KEYS), "-q", "-l"], stdout=subprocess.DEVNULL)
        time.sleep(1)
        # Measured by 5 more clients, beside the load, before and during the move.
        before = latency(proxy, 20_000, clients=5)
        with open(path + ".tmp", "w") as f:
            f.write(config(proxy, admin, old, new, ", migrate: { to: new, keys_per_sec: 1000000 }"))
        os.rename(path + ".tmp", path)
        began = time.monotonic()
        copied_at = None
        during = None
        while True:
            m = migration(admin)
            phase = m and m["progress"]["phase"]
            if phase in ("verify", "switch", "cut", "done") and copied_at is None:
                copied_at = time.monotonic() - began
                p = m["progress"]
            if during is None and phase == "copy":
                during = latency(proxy, 20_000, clients=5)
            if phase == "done":
                break
            if time.monotonic() - began > 600:
                sys.exit(f"the move did not finish in 600 s: {m}")
            time.sleep(0.05)
        load.kill()
        done = migration(admin)["progress"]
        secs = copied_at or (time.monotonic() - began)
        print(f"moved a tenant of {keys} keys of {VALUE} bytes (more written during the move), old -> new standalone,"
              " under a steady SET/GET load of 20 clients; latency seen by 5 more clients")
        print(f"copy: {p['keys_copied']} keys, {p['bytes_copied'] / 1e6:.1f} MB in {secs:.2f} s = "
              f"{p['keys_copied'] / secs:.0f} keys/s, {p['bytes_copied'] / 1e6 / secs:.1f} MB/s")
        for t in before:
            d = (during or {}).get(t, (float("nan"), float("nan")))
            print(f"{t}: p50/p99 {before[t][0]:.3f}/{before[t][1]:.3f} ms before, {d[0]:.3f}/{d[1]:.3f} ms during")
        print(f"cut-over: {done['held']} requests held, p99 {done['hold_p99_ms']} ms, longest {done['hold_max_ms']} ms")
    finally:
        tenantry.kill()
        old_p.kill()
        new_p.kill()


if __name__ == "__main__":
    main()
