#!/usr/bin/env python3
"""Soak: tenantry under mixed traffic of several tenants for a while, with
a slow reader, a client that never reads, and a connection churner among
them. Every second it prints tenantry's RSS, open file descriptors, the
operations done and the latency percentiles of the ordinary clients; at
the end it fails (exit 1) if RSS grew past --max-growth-mib after warm-up
or file descriptors did not come back once the clients were gone.

    python3 benches/soak.py --tenantry target/release/tenantry --seconds 300
"""
import argparse, os, random, socket, subprocess, sys, tempfile, threading, time

from kit import free_port, rss_kib

TENANTS = ["a", "b", "c"]
BIG = 100_000


def fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def enc(*args):
    out = [f"*{len(args)}\r\n".encode()]
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


class Reader:
    """Reads whole RESP replies off a socket."""

    def __init__(self, sock):
        self.sock, self.buf = sock, b""

    def _line(self, at):
        while True:
            i = self.buf.find(b"\r\n", at)
            if i >= 0:
                return i
            self._more()

    def _more(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed")
        self.buf += chunk

    def _skip(self, at):
        end = self._line(at)
        kind, head = self.buf[at:at + 1], self.buf[at + 1:end]
        at = end + 2
        if kind == b"$":
            n = int(head)
            if n >= 0:
                while len(self.buf) < at + n + 2:
                    self._more()
                at += n + 2
        elif kind == b"*":
            for _ in range(max(int(head), 0)):
                at = self._skip(at)
        return at

    def reply(self):
        end = self._skip(0)
        r, self.buf = self.buf[:end], self.buf[end:]
        return r


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.lat, self.ops, self.errors = [], 0, 0

    def add(self, seconds, n):
        with self.lock:
            self.lat.append(seconds)
            self.ops += n

    def take(self):
        with self.lock:
            lat, ops, errors = self.lat, self.ops, self.errors
            self.lat, self.ops, self.errors = [], 0, 0
        return sorted(lat), ops, errors


def connect(port, tenant):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    r = Reader(s)
    s.sendall(enc("AUTH", tenant, tenant + "-pw"))
    assert r.reply() == b"+OK\r\n"
    return s, r


def ordinary(port, tenant, stop, stats, seed):
    rnd = random.Random(seed)
    s, r = connect(port, tenant)
    while not stop.is_set():
        depth = rnd.choice([1, 1, 1, 4, 16])
        cmds = []
        for _ in range(depth):
            k = f"k{rnd.randrange(2000)}"
            cmds.append(rnd.choice([
                enc("SET", k, "v" * rnd.choice([10, 100, 1000]), "EX", 60),
                enc("GET", k),
                enc("INCR", f"n{rnd.randrange(100)}"),
                enc("HSET", f"h{rnd.randrange(100)}", "f", "v"),
                enc("LPUSH", f"l{rnd.randrange(50)}", "x"),
                enc("LTRIM", f"l{rnd.randrange(50)}", 0, 99),
                enc("MGET", k, f"k{rnd.randrange(2000)}", f"k{rnd.randrange(2000)}"),
            ]))
        t0 = time.perf_counter()
        s.sendall(b"".join(cmds))
        for _ in cmds:
            reply = r.reply()
            if reply.startswith(b"-"):
                with stats.lock:
                    stats.errors += 1
        stats.add(time.perf_counter() - t0, depth)
    s.close()


def slow_reader(port, tenant, stop, rate, counts):
    """Pipelines GETs of a big value and reads at `rate` bytes/s (0: never)."""
    while not stop.is_set():
        try:
            s, r = connect(port, tenant)
            s.settimeout(2)
            s.sendall(enc("GET", "big") * 2000)
            while not stop.is_set():
                if rate == 0:
                    time.sleep(0.2)
                    s.send(b"")  # noticed once tenantry closes it
                    if s.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b"":
                        raise ConnectionError("closed")
                    continue
                got = s.recv(min(65536, max(rate // 10, 1)))
                if not got:
                    raise ConnectionError("closed")
                counts["slow_bytes"] += len(got)
                time.sleep(0.1)
        except (OSError, ConnectionError):
            counts["disconnected" if rate == 0 else "slow_disconnected"] += 1
            time.sleep(0.2)


def churner(port, stop, counts):
    while not stop.is_set():
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.sendall(b"PING\r\n")
            s.recv(7)
            s.close()
            counts["churned"] += 1
        except OSError:
            counts["churn_errors"] += 1


def admin_get(port, path):
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    return data.decode(errors="replace").split("\r\n\r\n", 1)[-1]


def pct(lat, p):
    return lat[min(len(lat) - 1, int(len(lat) * p))] * 1000 if lat else 0.0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tenantry", default="target/release/tenantry")
    ap.add_argument("--seconds", type=int, default=120)
    ap.add_argument("--clients", type=int, default=4, help="ordinary clients per tenant")
    ap.add_argument("--max-growth-mib", type=float, default=16.0)
    args = ap.parse_args()
    work = tempfile.mkdtemp()
    rport, tport, aport = free_port(), free_port(), free_port()
    redis = subprocess.Popen(["redis-server", "--port", str(rport), "--bind", "127.0.0.1", "--save", "",
                              "--appendonly", "no", "--dir", work, "--maxmemory", "256mb",
                              "--maxmemory-policy", "allkeys-lru"], stdout=subprocess.DEVNULL)
    tenants = "".join(f"  {t}: {{ backend: local, namespace: \"{t}:\", auth: {{ username: {t}, password: {t}-pw }} }}\n"
                      for t in TENANTS)
    config = os.path.join(work, "tenantry.yaml")
    with open(config, "w") as f:
        f.write(f"listen: 127.0.0.1:{tport}\nadmin: 127.0.0.1:{aport}\n"
                "limits: { output_soft: 2MiB, output_soft_seconds: 10, output_hard: 16MiB }\n"
                f"backends:\n  local: {{ kind: standalone, nodes: [\"127.0.0.1:{rport}\"] }}\ntenants:\n{tenants}")
    proxy = subprocess.Popen([args.tenantry, "run", "--config", config], env={**os.environ, "TENANTRY_LOG": "error"})
    try:
        deadline = time.time() + 10
        while True:
            try:
                for t in ("b", "c"):
                    s, r = connect(tport, t)
                    s.sendall(enc("SET", "big", b"x" * BIG))
                    assert r.reply() == b"+OK\r\n"
                    s.close()
                break
            except (OSError, AssertionError, ConnectionError):
                if time.time() > deadline:
                    sys.exit("tenantry did not come up")
                time.sleep(0.1)
        base_fds = fds(proxy.pid)
        stop, stats = threading.Event(), Stats()
        counts = {k: 0 for k in ["slow_bytes", "disconnected", "slow_disconnected", "churned", "churn_errors"]}
        threads = [threading.Thread(target=ordinary, args=(tport, t, stop, stats, i * 10 + j), daemon=True)
                   for i, t in enumerate(TENANTS) for j in range(args.clients)]
        threads += [threading.Thread(target=slow_reader, args=(tport, "b", stop, 1024 * 1024, counts), daemon=True),
                    threading.Thread(target=slow_reader, args=(tport, "c", stop, 0, counts), daemon=True),
                    threading.Thread(target=churner, args=(tport, stop, counts), daemon=True)]
        for t in threads:
            t.start()
        print(f"{'s':>4} {'RSS MiB':>8} {'fds':>5} {'ops/s':>7} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7} "
              f"{'errors':>6} {'churned':>7} {'never-reader dropped':>20} {'slow KiB/s':>10}")
        warm = max(1, args.seconds // 10)
        rss_warm, last_slow, p99s, rss_by_sec = None, 0, [], []
        for sec in range(1, args.seconds + 1):
            time.sleep(1)
            lat, ops, errors = stats.take()
            rss = rss_kib(proxy.pid) / 1024
            rss_by_sec.append(rss)
            if sec == warm:
                rss_warm = rss
            slow = counts["slow_bytes"]
            if sec > warm:
                p99s.append(pct(lat, 0.99))
            print(f"{sec:>4} {rss:>8.1f} {fds(proxy.pid):>5} {ops:>7} {pct(lat, 0.5):>7.2f} {pct(lat, 0.99):>7.2f} "
                  f"{pct(lat, 1.0):>7.1f} {errors:>6} {counts['churned']:>7} {counts['disconnected']:>20} "
                  f"{(slow - last_slow) / 1024:>10.0f}", flush=True)
            last_slow = slow
        rss_end = rss_kib(proxy.pid) / 1024
        metrics = admin_get(aport, "/metrics")
        stop.set()
        for t in threads:
            t.join(timeout=5)
        time.sleep(1)
        end_fds = fds(proxy.pid)
        # Growth is the peak of the last quarter over the peak of the
        # second: RSS swings with the never-reader's episodes, and a
        # leak shows as a rising peak, not as one sample above another.
        quarter = max(1, len(rss_by_sec) // 4)
        growth = max(rss_by_sec[-quarter:]) - max(rss_by_sec[quarter:2 * quarter] or rss_by_sec)
        limit_drops = {line.split("{")[1].split("}")[0]: line.rsplit(" ", 1)[1]
                       for line in metrics.splitlines()
                       if line.startswith("tenantry_client_output_limit_disconnects_total{")}
        p99s.sort()
        print(f"tenantry's output-limit disconnects: {limit_drops}")
        print(f"RSS {rss_warm:.1f} MiB after warm-up -> {rss_end:.1f} MiB at the end; peak of the last quarter over "
              f"the second's {growth:+.1f} MiB (limit {args.max_growth_mib}); fds {base_fds} before -> {end_fds} after the clients left; "
              f"median of per-second p99 {p99s[len(p99s) // 2] if p99s else 0:.2f} ms; slow reader disconnected "
              f"{counts['slow_disconnected']} times; churn errors {counts['churn_errors']}")
        ok = growth <= args.max_growth_mib and end_fds <= base_fds + 2
        print("PASS" if ok else "FAIL")
        sys.exit(0 if ok else 1)
    finally:
        proxy.kill()
        redis.kill()


if __name__ == "__main__":
    main()
