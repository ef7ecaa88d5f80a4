#!/usr/bin/env python3
"""Side-by-side load benchmark: tenantry vs the same redis-server directly vs
twemproxy (nutcracker) on it, with redis-benchmark, in one run.

Runs alternate (direct, tenantry, twemproxy, direct, ...) so drift in machine
load hits all three alike; for each workload it prints the median ops/s of
each target and its ratio to direct Redis. Quote the ratios, not the absolute
numbers: machines are noisy.
"""
import argparse
import csv
import io
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

WORKLOADS = [  # (name, redis-benchmark test, pipeline, requests per run)
    ("SET P1", "set", 1, 100_000),
    ("GET P1", "get", 1, 100_000),
    ("SET P16", "set", 16, 800_000),
    ("GET P16", "get", 16, 800_000),
]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, what, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            sys.exit(f"{what} exited early with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
                s.sendall(b"*1\r\n$4\r\nPING\r\n")
                if s.recv(64).startswith(b"+PONG"):
                    return
        except OSError:
            pass
        time.sleep(0.05)
    sys.exit(f"{what} on port {port} did not answer PING")


def bench(port, test, pipeline, requests, clients, size):
    out = subprocess.run(
        ["redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "-t", test, "-n", str(requests),
         "-c", str(clients), "-P", str(pipeline), "-d", str(size), "-r", "100000", "--csv"],
        capture_output=True, text=True, check=True,
    ).stdout
    for row in csv.reader(io.StringIO(out)):
        if row and row[0].upper() == test.upper():
            return float(row[1])
    sys.exit(f"no result for {test} on port {port}: {out!r}")


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--tenantry", default="target/release/tenantry")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--size", type=int, default=100)
    ap.add_argument("--scale", type=float, default=1.0, help="multiply requests per run")
    args = ap.parse_args()
    nutcracker = shutil.which("nutcracker") or "/usr/sbin/nutcracker"

    tmp = tempfile.mkdtemp(prefix="tenantry-bench-")
    procs = []
    try:
        rport, tport, nport = free_port(), free_port(), free_port()
        procs.append(subprocess.Popen(
            ["redis-server", "--port", str(rport), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", tmp], stdout=subprocess.DEVNULL))
        wait_port(rport, procs[-1], "redis-server")

        cfg = os.path.join(tmp, "tenantry.yaml")
        with open(cfg, "w") as f:
            f.write(f"listen: 127.0.0.1:{tport}\n"
                    f"backends:\n  local: {{ kind: standalone, nodes: [\"127.0.0.1:{rport}\"] }}\n"
                    "tenants:\n  bench: { backend: local, namespace: \"bench:\" }\n"
                    "default_tenant: bench\n")
        procs.append(subprocess.Popen([args.tenantry, "run", "--config", cfg],
                                      env={**os.environ, "TENANTRY_LOG": "warn"}))
        wait_port(tport, procs[-1], "tenantry")

        ncfg = os.path.join(tmp, "nutcracker.yml")
        with open(ncfg, "w") as f:
            f.write(f"bench:\n  listen: 127.0.0.1:{nport}\n  hash: fnv1a_64\n  distribution: ketama\n"
                    f"  redis: true\n  auto_eject_hosts: false\n  servers:\n    - 127.0.0.1:{rport}:1\n")
        procs.append(subprocess.Popen([nutcracker, "-c", ncfg, "-o", os.path.join(tmp, "nutcracker.log")]))
        wait_port(nport, procs[-1], "nutcracker")

        targets = [("redis", rport), ("tenantry", tport), ("twemproxy", nport)]
        results = {(w[0], t[0]): [] for w in WORKLOADS for t in targets}
        for rnd in range(args.rounds):
            for name, test, pipeline, requests in WORKLOADS:
                for target, port in targets:
                    n = int(requests * args.scale)
                    results[(name, target)].append(bench(port, test, pipeline, n, args.clients, args.size))
            print(f"round {rnd + 1}/{args.rounds} done", file=sys.stderr)

        print(f"\n{args.clients} clients, {args.size}-byte values, {args.rounds} alternating rounds, median ops/s\n")
        print(f"| workload | redis | tenantry | twemproxy | tenantry/redis | twemproxy/redis |")
        print(f"|---|---:|---:|---:|---:|---:|")
        ok = True
        for name, *_ in WORKLOADS:
            med = {t: statistics.median(results[(name, t)]) for t, _ in targets}
            tr, nr = med["tenantry"] / med["redis"], med["twemproxy"] / med["redis"]
            ok &= tr >= nr
            print(f"| {name} | {med['redis']:.0f} | {med['tenantry']:.0f} | {med['twemproxy']:.0f} | {tr:.2f} | {nr:.2f} |")
        print("\ntenantry >= twemproxy on every workload" if ok else "\ntenantry is below twemproxy on some workload")
    finally:
        # Proxies first, then Redis, so no proxy sees its backend vanish.
        for p in reversed(procs):
            p.terminate()
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
