"""What the bench scripts share: free loopback ports and /proc readings."""
import socket


def free_port():
    """A loopback port nothing listens on (at the time of asking)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kib(pid):
    """Resident memory of a process, in KiB (VmRSS)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def make_certs(work):
    """A throwaway CA and certificates under `work`/tls (scripts/tls-certs.sh); that directory."""
    import os
    import subprocess
    certs = os.path.join(work, "tls")
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "scripts", "tls-certs.sh")
    subprocess.run([script, certs], check=True, capture_output=True)
    return certs


def tls_listener(port, certs):
    """tenantry's `listen` for a TLS listener on 127.0.0.1:`port` with make_certs' certificate."""
    return (f"listen:\n  - {{ addr: 127.0.0.1:{port}, tls: {{ cert_file: {certs}/tenantry.crt, "
            f"key_file: {certs}/tenantry.key }} }}\n")
