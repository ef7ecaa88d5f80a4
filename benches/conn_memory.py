#!/usr/bin/env python3
"""Memory per client connection: tenantry beside Redis itself, on one machine.

Opens N connections (default 10,000) to a fresh redis-server and to
tenantry in front of another, and reads each process's RSS from /proc:
at rest, with the connections open and idle, and after each connection sent
one GET of a 100-byte value (and read its reply). With --tls, also a
tenantry whose listener speaks TLS (certificates from scripts/tls-certs.sh).

    python3 benches/conn_memory.py --tenantry target/release/tenantry [--connections 10000] [--tls]
"""
import argparse, os, resource, socket, ssl, subprocess, sys, tempfile, time

from kit import free_port, make_certs, rss_kib, tls_listener


def wait_ping(port, limit=10):
    deadline = time.time() + limit
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                if s.recv(7) == b"+PONG\r\n":
                    return
        except OSError:
            pass
        time.sleep(0.05)
    sys.exit(f"nothing answers PING on {port}")


def settle(pid):
    """RSS once it stops moving (allocators return memory lazily)."""
    last = rss_kib(pid)
    for _ in range(20):
        time.sleep(0.25)
        now = rss_kib(pid)
        if abs(now - last) < 64:
            return now
        last = now
    return last


def measure(name, port, pid, n, tls=None):
    base = settle(pid)
    conns = []
    for _ in range(n):
        c = socket.create_connection(("127.0.0.1", port))
        conns.append(tls.wrap_socket(c, server_hostname="localhost") if tls else c)
    # A PING round trip on the last one: every accept has been served.
    conns[-1].sendall(b"PING\r\n")
    conns[-1].recv(7)
    idle = settle(pid)
    get = b"*2\r\n$3\r\nGET\r\n$1\r\nv\r\n"
    want = len(b"$100\r\n") + 100 + 2
    for c in conns:
        c.sendall(get)
    for c in conns:
        got = b""
        while len(got) < want:
            got += c.recv(want - len(got))
    after_get = settle(pid)
    for c in conns:
        c.close()
    print(f"{name:12} at rest {base / 1024:6.1f} MiB | per idle connection {(idle - base) / n:5.2f} KiB"
          f" | per connection after one GET {(after_get - base) / n:5.2f} KiB")
    return base, (idle - base) / n, (after_get - base) / n


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tenantry", default="target/release/tenantry")
    ap.add_argument("--connections", type=int, default=10_000)
    ap.add_argument("--tls", action="store_true", help="also measure a TLS listener")
    args = ap.parse_args()
    n = args.connections
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < n + 100:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, n + 1000), hard))
    work = tempfile.mkdtemp()
    procs = []
    try:
        ports = {}
        for name in ("direct", "behind"):
            port = free_port()
            procs.append(subprocess.Popen(
                ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                 "--maxclients", str(n + 100), "--dir", work], stdout=subprocess.DEVNULL))
            ports[name] = port
        for p in ports.values():
            wait_ping(p)
        for p in ports.values():
            with socket.create_connection(("127.0.0.1", p)) as s:
                s.sendall(b"*3\r\n$3\r\nSET\r\n$7\r\napp:v:v\r\n$100\r\n" + b"x" * 100 + b"\r\n")
                s.sendall(b"*3\r\n$3\r\nSET\r\n$1\r\nv\r\n$100\r\n" + b"x" * 100 + b"\r\n")
                got = b""
                while got.count(b"+OK\r\n") < 2:
                    got += s.recv(64)
        tport = free_port()
        config = os.path.join(work, "tenantry.yaml")
        with open(config, "w") as f:
            f.write(f"listen: 127.0.0.1:{tport}\nlimits: {{ max_clients: {n + 100} }}\n"
                    f"backends:\n  local: {{ kind: standalone, nodes: [\"127.0.0.1:{ports['behind']}\"] }}\n"
                    "tenants:\n  app: { backend: local, namespace: \"app:v:\" }\ndefault_tenant: app\n")
        tenantry = subprocess.Popen([args.tenantry, "run", "--config", config],
                                    env={**os.environ, "TENANTRY_LOG": "warn"})
        procs.append(tenantry)
        wait_ping(tport)
        print(f"{n} connections each; RSS from /proc/PID/status")
        measure("redis", ports["direct"], procs[0].pid, n)
        measure("tenantry", tport, tenantry.pid, n)
        if args.tls:
            certs = make_certs(work)
            sport = free_port()
            tls_config = os.path.join(work, "tenantry-tls.yaml")
            with open(tls_config, "w") as f:
                f.write(tls_listener(sport, certs) + f"limits: {{ max_clients: {n + 100} }}\n"
                        f"backends:\n  local: {{ kind: standalone, nodes: [\"127.0.0.1:{ports['behind']}\"] }}\n"
                        "tenants:\n  app: { backend: local, namespace: \"app:v:\" }\ndefault_tenant: app\n")
            tls_proc = subprocess.Popen([args.tenantry, "run", "--config", tls_config],
                                        env={**os.environ, "TENANTRY_LOG": "warn"})
            procs.append(tls_proc)
            time.sleep(1)
            context = ssl.create_default_context(cafile=os.path.join(certs, "ca.crt"))
            measure("tenantry/TLS", sport, tls_proc.pid, n, context)
    finally:
        for p in procs:
            p.kill()
            p.wait()


if __name__ == "__main__":
    main()
