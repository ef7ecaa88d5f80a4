#!/usr/bin/env python3
"""Side-by-side load benchmark: tenantry vs the same redis-server directly vs
twemproxy (nutcracker) on it, with redis-benchmark, in one run; then tenantry
over a local 3-master Redis Cluster vs tenantry over one node; then
tenantry with TLS on both sides vs the same redis-server over TLS directly.

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

from kit import free_port, make_certs, tls_listener

WORKLOADS = [  # (name, redis-benchmark test, pipeline, requests per run)
    ("SET P1", "set", 1, 100_000),
    ("GET P1", "get", 1, 100_000),
    ("SET P16", "set", 16, 800_000),
    ("GET P16", "get", 16, 800_000),
]


# One redis-benchmark run takes a few seconds; this is far beyond any.
RUN_TIMEOUT = 120


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


def bench(port, test, pipeline, requests, clients, size, extra=(), keys=100_000):
    try:
        out = subprocess.run(
            ["redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "-t", test, "-n", str(requests),
             "-c", str(clients), "-P", str(pipeline), "-d", str(size), "-r", str(keys), "--csv", *extra],
            capture_output=True, text=True, check=True, timeout=RUN_TIMEOUT,
        ).stdout
    except subprocess.TimeoutExpired:
        # redis-benchmark spins forever if its server goes away mid-run.
        sys.exit(f"redis-benchmark on port {port} ({test}, pipeline {pipeline}) took over {RUN_TIMEOUT} s")
    for row in csv.reader(io.StringIO(out)):
        if row and row[0].upper() == test.upper():
            return float(row[1])
    sys.exit(f"no result for {test} on port {port}: {out!r}")


def cpu_seconds(pid):
    """User + system CPU time a process has used so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def alternate(args, targets, what, watch=None, extra=(), workloads=None, keys=100_000):
    """Every workload on every target in turn, `args.rounds` times: ops/s per
    (workload, target), and the CPU microseconds per request of the processes
    `watch[target]` names ({label: pid}) per (workload, target, label)."""
    watch = watch or {}
    workloads = workloads or WORKLOADS
    results = {(w[0], t[0]): [] for w in workloads for t in targets}
    cpu = {}
    for rnd in range(args.rounds):
        for name, test, pipeline, requests in workloads:
            for target, port in targets:
                n = int(requests * args.scale)
                pids = watch.get(target, {})
                before = {label: cpu_seconds(pid) for label, pid in pids.items()}
                results[(name, target)].append(bench(port, test, pipeline, n, args.clients, args.size, extra, keys))
                for label, pid in pids.items():
                    cpu.setdefault((name, target, label), []).append((cpu_seconds(pid) - before[label]) * 1e6 / n)
        print(f"{what} {rnd + 1}/{args.rounds} done", file=sys.stderr)
    return results, cpu


def start_cluster(tmp, procs, masters=3):
    """A local Redis Cluster of `masters` masters on free ports; its seed addresses."""
    ports = []
    for i in range(masters):
        port, bus = free_port(), free_port()
        d = os.path.join(tmp, f"node{i}")
        os.makedirs(d)
        procs.append(subprocess.Popen(
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", d, "--cluster-enabled", "yes", "--cluster-port", str(bus),
             "--cluster-config-file", "nodes.conf"], stdout=subprocess.DEVNULL))
        wait_port(port, procs[-1], "cluster node")
        ports.append(port)
    subprocess.run(["redis-cli", "--cluster", "create", *[f"127.0.0.1:{p}" for p in ports], "--cluster-yes"],
                   check=True, capture_output=True)
    deadline = time.time() + 30
    while time.time() < deadline:
        infos = [subprocess.run(["redis-cli", "-p", str(p), "cluster", "info"], capture_output=True, text=True).stdout
                 for p in ports]
        if all("cluster_state:ok" in i for i in infos):
            return [f"127.0.0.1:{p}" for p in ports]
        time.sleep(0.1)
    sys.exit("the benchmark's cluster did not become healthy")


def start_tenantry(binary, tmp, name, port, backend, procs, tenant=""):
    cfg = os.path.join(tmp, f"{name}.yaml")
    with open(cfg, "w") as f:
        f.write(f"listen: 127.0.0.1:{port}\n"
                f"backends:\n  b: {backend}\n"
                f"tenants:\n  bench: {{ backend: b, namespace: \"bench:\"{tenant} }}\n"
                "default_tenant: bench\n")
    procs.append(subprocess.Popen([binary, "run", "--config", cfg], env={**os.environ, "TENANTRY_LOG": "warn"}))
    wait_port(port, procs[-1], name)


def cluster_bench(args, tmp, procs, rport):
    """tenantry over the cluster against tenantry over one node, alternating."""
    seeds = start_cluster(tmp, procs)
    one, many = free_port(), free_port()
    start_tenantry(args.tenantry, tmp, "tenantry-one-node", one,
                   f"{{ kind: standalone, nodes: [\"127.0.0.1:{rport}\"] }}", procs)
    nodes = ", ".join(f'"{s}"' for s in seeds)
    start_tenantry(args.tenantry, tmp, "tenantry-cluster", many, f"{{ kind: cluster, nodes: [{nodes}] }}", procs)
    time.sleep(1)  # the slot map
    targets = [("one node", one), ("cluster", many)]
    results, _ = alternate(args, targets, "cluster round")
    print(f"\ntenantry over a {len(seeds)}-master Redis Cluster vs tenantry over one redis-server, median ops/s\n")
    print("| workload | tenantry, one node | tenantry, cluster | cluster/one node |")
    print("|---|---:|---:|---:|")
    for name, *_ in WORKLOADS:
        med = {t: statistics.median(results[(name, t)]) for t, _ in targets}
        print(f"| {name} | {med['one node']:.0f} | {med['cluster']:.0f} | {med['cluster'] / med['one node']:.2f} |")


HOT_WORKLOADS = [("hot GET P1", "get", 1, 100_000), ("hot GET P16", "get", 16, 800_000)]
COALESCE_WORKLOADS = [("GET P1", "get", 1, 100_000), ("GET P16", "get", 16, 800_000)]


def ratios(results, workloads, targets, base):
    print(f"| workload | {' | '.join(t for t, _ in targets)} | "
          + " | ".join(f"{t}/{base}" for t, _ in targets if t != base) + " |")
    print("|---|" + "---:|" * (2 * len(targets) - 1))
    for name, *_ in workloads:
        med = {t: statistics.median(results[(name, t)]) for t, _ in targets}
        cells = " | ".join(f"{med[t]:.0f}" for t, _ in targets)
        rel = " | ".join(f"{med[t] / med[base]:.2f}" for t, _ in targets if t != base)
        print(f"| {name} | {cells} | {rel} |")


def hot_key_bench(args, tmp, procs, rport):
    """One key read by every client (a hot key): Redis directly, tenantry, and
    tenantry with the near-cache; then ordinary GETs with and without
    request coalescing."""
    plain, near, coalescing = free_port(), free_port(), free_port()
    backend = f"{{ kind: standalone, nodes: [\"127.0.0.1:{rport}\"] }}"
    start_tenantry(args.tenantry, tmp, "tenantry-plain", plain, backend, procs)
    start_tenantry(args.tenantry, tmp, "tenantry-near", near, backend, procs,
                   ", near_cache: { max_bytes: 64MiB, max_staleness: 100ms }")
    start_tenantry(args.tenantry, tmp, "tenantry-coalesce", coalescing, backend, procs, ", coalesce: true")
    # redis-benchmark's -r 1 makes every key `key:000000000000`.
    value = "x" * args.size
    for key in ("key:000000000000", "bench:key:000000000000"):
        subprocess.run(["redis-cli", "-p", str(rport), "SET", key, value], check=True, capture_output=True)
    # Enough reads for the hot-key sketch to find it, and the cache to fill.
    bench(near, "get", 1, 20_000, args.clients, args.size, keys=1)
    targets = [("redis", rport), ("tenantry", plain), ("near-cache", near)]
    results, _ = alternate(args, targets, "hot-key round", workloads=HOT_WORKLOADS, keys=1)
    print(f"\nOne hot key, {args.clients} clients, {args.size}-byte value, {args.rounds} rounds, median ops/s\n")
    ratios(results, HOT_WORKLOADS, targets, "redis")
    targets = [("redis", rport), ("tenantry", plain), ("coalesce", coalescing)]
    results, _ = alternate(args, targets, "coalescing round", workloads=COALESCE_WORKLOADS)
    print(f"\nOrdinary GETs (100,000 keys) with request coalescing on, {args.rounds} rounds, median ops/s\n")
    ratios(results, COALESCE_WORKLOADS, targets, "redis")
    wins = ", ".join(
        f"{name} {sum(c >= t for c, t in zip(results[(name, 'coalesce')], results[(name, 'tenantry')]))}"
        f"/{args.rounds}" for name, *_ in COALESCE_WORKLOADS)
    print(f"rounds in which coalescing on was at least as fast as off: {wins}")


def wait_tls_port(port, proc, what, ca, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            sys.exit(f"{what} exited early with {proc.returncode}")
        out = subprocess.run(["redis-cli", "-p", str(port), "--tls", "--cacert", ca, "ping"],
                             capture_output=True, text=True).stdout
        if out.startswith("PONG"):
            return
        time.sleep(0.05)
    sys.exit(f"{what} on TLS port {port} did not answer PING")


def tls_bench(args, tmp, procs):
    """tenantry with TLS on both sides against the same redis-server over TLS directly."""
    certs = make_certs(tmp)
    ca = os.path.join(certs, "ca.crt")
    rport, tport = free_port(), free_port()
    procs.append(subprocess.Popen(
        ["redis-server", "--port", "0", "--tls-port", str(rport), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", tmp, "--tls-cert-file", os.path.join(certs, "redis.crt"),
         "--tls-key-file", os.path.join(certs, "redis.key"), "--tls-ca-cert-file", ca,
         "--tls-auth-clients", "no"], stdout=subprocess.DEVNULL))
    wait_tls_port(rport, procs[-1], "TLS redis-server", ca)
    cfg = os.path.join(tmp, "tenantry-tls.yaml")
    with open(cfg, "w") as f:
        f.write(tls_listener(tport, certs) +
                f"backends:\n  b: {{ kind: standalone, nodes: [\"127.0.0.1:{rport}\"], tls: {{ ca_file: {ca} }} }}\n"
                "tenants:\n  bench: { backend: b, namespace: \"bench:\" }\ndefault_tenant: bench\n")
    procs.append(subprocess.Popen([args.tenantry, "run", "--config", cfg], env={**os.environ, "TENANTRY_LOG": "warn"}))
    wait_tls_port(tport, procs[-1], "tenantry (TLS)", ca)
    targets = [("redis", rport), ("tenantry", tport)]
    results, _ = alternate(args, targets, "TLS round", extra=("--tls", "--cacert", ca))
    print("\nTLS on both sides: tenantry (TLS to clients and to Redis) vs redis-server over TLS directly, "
          "median ops/s\n")
    print("| workload | redis, TLS | tenantry, TLS both sides | tenantry/redis |")
    print("|---|---:|---:|---:|")
    for name, *_ in WORKLOADS:
        med = {t: statistics.median(results[(name, t)]) for t, _ in targets}
        print(f"| {name} | {med['redis']:.0f} | {med['tenantry']:.0f} | {med['tenantry'] / med['redis']:.2f} |")


def stop_all_but_redis(procs):
    """Stops every process after the first (the redis-server the next section uses)."""
    for p in procs[1:]:
        p.terminate()
        p.wait(timeout=10)
    del procs[1:]


# (redis-benchmark test, pipeline, requests counted, the issue's target)
COSTS = [("get", 1, 20_000, 5_000), ("get", 16, 160_000, 2_500), ("set", 1, 20_000, 5_000),
         ("mset", 1, 10_000, 10_000)]


def cost_per_request(args):
    """User-space instructions per request under callgrind (benches/callgrind.sh,
    benches/cost.yaml), and heap allocations per request (tests/alloc):
    steadier than ops/s, the same run to run on one machine."""
    here = os.path.dirname(os.path.abspath(__file__))
    print("\nCost per request (benches/callgrind.sh with benches/cost.yaml: namespace, rate limit, "
          "keyspace metrics, hot keys, 1% of commands traced)\n")
    print("| workload | instructions per request | target |")
    print("|---|---:|---:|")
    for test, pipeline, n, target in COSTS:
        out = subprocess.run([os.path.join(here, "callgrind.sh"), args.tenantry, str(n), str(pipeline), test],
                             capture_output=True, text=True)
        line = next((l for l in out.stdout.splitlines() if "per request" in l), "")
        per = line.split("=")[-1].split()[0] if "=" in line else f"failed: {out.stderr.strip()[-200:]}"
        label = f"MSET x10 P{pipeline}" if test == "mset" else f"{test.upper()} P{pipeline}"
        print(f"| {label} | {per} | {target:,} |", flush=True)
    out = subprocess.run(["cargo", "test", "-q", "-p", "tenantry-tests", "--test", "alloc", "--",
                          "--nocapture"], capture_output=True, text=True, cwd=os.path.dirname(here))
    print("\nHeap allocations per request (cargo test -p tenantry-tests --test alloc)\n")
    lines = [l for l in out.stdout.splitlines() if "allocations per request" in l]
    for l in lines or [f"failed: {out.stderr.strip()[-300:]}"]:
        print(f"  {l}")


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--tenantry", default="target/release/tenantry")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--size", type=int, default=100)
    ap.add_argument("--scale", type=float, default=1.0, help="multiply requests per run")
    ap.add_argument("--no-cluster", action="store_true", help="skip the cluster workload")
    ap.add_argument("--no-tls", action="store_true", help="skip the TLS workload")
    ap.add_argument("--no-hot", action="store_true", help="skip the hot-key and coalescing workloads")
    ap.add_argument("--hot-only", action="store_true", help="run only the hot-key and coalescing workloads")
    ap.add_argument("--no-cost", action="store_true",
                    help="skip the cost per request (callgrind instructions, allocations)")
    ap.add_argument("--only", action="append", metavar="WORKLOAD",
                    help='run only this workload (e.g. "GET P1"); may be repeated')
    args = ap.parse_args()
    if args.only:
        unknown = set(args.only) - {w[0] for w in WORKLOADS}
        if unknown:
            sys.exit(f"unknown workload(s) {sorted(unknown)}: choose from {[w[0] for w in WORKLOADS]}")
        WORKLOADS[:] = [w for w in WORKLOADS if w[0] in args.only]
    nutcracker = shutil.which("nutcracker") or "/usr/sbin/nutcracker"

    tmp = tempfile.mkdtemp(prefix="tenantry-bench-")
    procs = []
    try:
        rport, tport, nport = free_port(), free_port(), free_port()
        procs.append(subprocess.Popen(
            ["redis-server", "--port", str(rport), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", tmp], stdout=subprocess.DEVNULL))
        wait_port(rport, procs[-1], "redis-server")
        if args.hot_only:
            hot_key_bench(args, tmp, procs, rport)
            return

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
        rpid, tpid, npid = (p.pid for p in procs[:3])
        watch = {"redis": {"redis": rpid}, "tenantry": {"proxy": tpid, "redis": rpid},
                 "twemproxy": {"proxy": npid, "redis": rpid}}
        results, cpu = alternate(args, targets, "round", watch)

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
        # Each round ran both proxies back to back: how often each came out ahead.
        wins = ", ".join(
            f"{name} {sum(t > n for t, n in zip(results[(name, 'tenantry')], results[(name, 'twemproxy')]))}"
            f"/{args.rounds}" for name, *_ in WORKLOADS)
        print(f"rounds in which tenantry beat twemproxy: {wins}")
        # Steadier than ops/s on a shared machine: what each request cost.
        print("\nCPU microseconds per request (user + system, median over the rounds; "
              f"{os.sysconf('SC_CLK_TCK')} Hz accounting)\n")
        print("| workload | Redis, direct | tenantry | Redis behind tenantry | twemproxy | Redis behind twemproxy |")
        print("|---|---:|---:|---:|---:|---:|")
        for name, *_ in WORKLOADS:
            c = {k: statistics.median(cpu[(name, *k)]) for k in
                 [("redis", "redis"), ("tenantry", "proxy"), ("tenantry", "redis"), ("twemproxy", "proxy"),
                  ("twemproxy", "redis")]}
            print(f"| {name} | {c[('redis', 'redis')]:.2f} | {c[('tenantry', 'proxy')]:.2f} | "
                  f"{c[('tenantry', 'redis')]:.2f} | {c[('twemproxy', 'proxy')]:.2f} | {c[('twemproxy', 'redis')]:.2f} |")
        # Stop the first tenantry and twemproxy: fewer processes share the cores.
        stop_all_but_redis(procs)
        if not args.no_hot:
            hot_key_bench(args, tmp, procs, rport)
            stop_all_but_redis(procs)
        if not args.no_cluster:
            cluster_bench(args, tmp, procs, rport)
        if not args.no_tls:
            tls_bench(args, tmp, procs)
        if not args.no_cost:
            cost_per_request(args)
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
