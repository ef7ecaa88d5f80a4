//! tenantry as its own process (the real binary), for tests that measure
//! what the process costs: its resident memory, its file descriptors.

use crate::free_port;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `tenantry run` child process on free ports; killed on drop.
pub struct TenantryProcess {
    pub port: u16,
    pub admin_port: u16,
    child: Child,
    _dir: tempfile::TempDir,
}

impl TenantryProcess {
    /// Starts `bin` with `yaml` (without `listen` and `admin`, which are
    /// given free ports) and waits until it answers PING.
    pub fn start(bin: &Path, yaml: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let (port, admin_port) = (free_port(), free_port());
        let config = dir.path().join("tenantry.yaml");
        std::fs::write(&config, format!("listen: 127.0.0.1:{port}\nadmin: 127.0.0.1:{admin_port}\n{yaml}"))
            .expect("write config");
        let child = Command::new(bin)
            .args(["run", "--config"])
            .arg(&config)
            .env("TENANTRY_LOG", std::env::var("TENANTRY_LOG").unwrap_or_else(|_| "warn".into()))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn tenantry");
        let mut p = TenantryProcess { port, admin_port, child, _dir: dir };
        p.wait_for_ping();
        p
    }

    fn wait_for_ping(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("tenantry exited: {status}");
            }
            if let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) {
                let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
                let mut buf = [0u8; 7];
                if s.write_all(b"PING\r\n").is_ok() && s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n" {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("tenantry on port {} did not answer PING", self.port);
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident memory, in KiB (VmRSS).
    pub fn rss_kib(&self) -> u64 {
        proc_status_kib(self.pid(), "VmRSS")
    }

    /// Open file descriptors.
    pub fn fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid())).map_or(0, |d| d.count())
    }

    /// The admin server's `/metrics` text.
    /// Sends `sig` (`TERM`, `INT`, ...) to the process.
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill").args([&format!("-{sig}"), &self.child.id().to_string()]).status();
        assert!(ok.is_ok_and(|s| s.success()), "kill -{sig} failed");
    }

    /// Waits up to `limit` for the process to exit; its status, if it did.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }

    /// One HTTP request to the admin port: its status code and body.
    pub fn http(&self, method: &str, path: &str) -> (u16, String) {
        let mut s = TcpStream::connect(("127.0.0.1", self.admin_port)).expect("connect admin");
        write!(s, "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            .expect("send");
        let mut resp = String::new();
        s.read_to_string(&mut resp).expect("read");
        let code = resp.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
        (code, resp.split("\r\n\r\n").nth(1).unwrap_or("").to_string())
    }

    pub fn metrics(&self) -> String {
        let mut s = TcpStream::connect(("127.0.0.1", self.admin_port)).expect("connect admin");
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").expect("send");
        let mut resp = String::new();
        s.read_to_string(&mut resp).expect("read");
        resp.split("\r\n\r\n").nth(1).unwrap_or("").to_string()
    }
}

impl Drop for TenantryProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `kB` field of `/proc/PID/status`.
pub fn proc_status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}
