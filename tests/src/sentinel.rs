//! A real Redis Sentinel deployment: a master, its replica and three
//! `redis-sentinel` processes (Debian's package) monitoring them, each on a
//! free loopback port. Every process is killed when the handle drops.

use crate::RedisServer;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The name the sentinels monitor the master by.
pub const MASTER_NAME: &str = "mymaster";

/// How long the sentinels wait before they hold a silent master down.
pub const DOWN_AFTER_MS: u64 = 1000;

/// One `redis-sentinel` process.
pub struct SentinelProcess {
    port: u16,
    child: Option<Child>,
    _dir: tempfile::TempDir,
}

impl SentinelProcess {
    /// A sentinel monitoring `master` as `name` with `quorum`; `extra`
    /// lines go into its config file (`requirepass ...`).
    pub fn start(name: &str, master: &RedisServer, quorum: usize, extra: &[&str]) -> Self {
        for _ in 0..5 {
            let dir = tempfile::tempdir().expect("tempdir");
            let port = crate::free_port();
            let conf: PathBuf = dir.path().join("sentinel.conf");
            let mut text = format!(
                "port {port}\nbind 127.0.0.1\ndir {dir}\nsentinel monitor {name} 127.0.0.1 {mport} {quorum}\n\
                 sentinel down-after-milliseconds {name} {DOWN_AFTER_MS}\nsentinel failover-timeout {name} 10000\n\
                 sentinel parallel-syncs {name} 1\n",
                dir = dir.path().display(),
                mport = master.port(),
            );
            for line in extra {
                text.push_str(line);
                text.push('\n');
            }
            std::fs::write(&conf, text).expect("write sentinel.conf");
            let mut child = Command::new("redis-sentinel")
                .arg(&conf)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn redis-sentinel (is the redis-sentinel package installed?)");
            if crate::wait_for_port(port, Duration::from_secs(5), &mut child).is_ok() {
                return SentinelProcess { port, child: Some(child), _dir: dir };
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("could not start redis-sentinel on a free port");
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Runs `redis-cli` against this sentinel.
    pub fn cli(&self, args: &[&str]) -> String {
        let out =
            Command::new("redis-cli").args(["-p", &self.port.to_string()]).args(args).output().expect("redis-cli runs");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A field of `SENTINEL MASTER <name>` as this sentinel reports it.
    pub fn master_field(&self, name: &str, field: &str) -> Option<String> {
        let out = self.cli(&["SENTINEL", "MASTER", name]);
        let lines: Vec<&str> = out.lines().collect();
        lines.iter().position(|l| *l == field).and_then(|i| lines.get(i + 1)).map(|v| v.to_string())
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for SentinelProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A master, one replica and three sentinels (quorum 2).
pub struct SentinelSet {
    /// `servers[0]` starts as the master, `servers[1]` as its replica.
    pub servers: Vec<RedisServer>,
    pub sentinels: Vec<SentinelProcess>,
}

impl SentinelSet {
    /// Starts the servers and sentinels and waits until every sentinel
    /// knows the replica and the other two (so a failover can be agreed).
    pub fn start() -> Self {
        let master = RedisServer::start();
        let port = master.port().to_string();
        let replica = RedisServer::start_with(&["--replicaof", "127.0.0.1", &port]);
        let sentinels: Vec<SentinelProcess> =
            (0..3).map(|_| SentinelProcess::start(MASTER_NAME, &master, 2, &[])).collect();
        let set = SentinelSet { servers: vec![master, replica], sentinels };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = set.sentinels.iter().all(|s| {
                s.master_field(MASTER_NAME, "num-other-sentinels").as_deref() == Some("2")
                    && s.master_field(MASTER_NAME, "num-slaves").as_deref() == Some("1")
            }) && set.servers[1].cli(&["INFO", "replication"]).contains("master_link_status:up");
            if ready {
                return set;
            }
            assert!(Instant::now() < deadline, "the sentinels did not find each other and the replica within 30 s");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The `nodes:` of a tenantry sentinel backend: the sentinels' addresses.
    pub fn nodes_yaml(&self) -> String {
        let addrs: Vec<String> = self.sentinels.iter().map(|s| format!("\"{}\"", s.addr())).collect();
        format!("[{}]", addrs.join(", "))
    }

    /// The server whose `ROLE` says master, if exactly one does.
    pub fn master(&self) -> Option<usize> {
        let masters: Vec<usize> = (0..self.servers.len())
            .filter(|&i| self.servers[i].is_running() && self.servers[i].cli(&["ROLE"]).starts_with("master"))
            .collect();
        match masters.as_slice() {
            [one] => Some(*one),
            _ => None,
        }
    }

    /// Waits until every running sentinel names server `index` as the
    /// master, and that server says it is one.
    pub fn wait_for_master(&self, index: usize, within: Duration) {
        let want = self.servers[index].port().to_string();
        let deadline = Instant::now() + within;
        loop {
            let named = self.sentinels.iter().all(|s| {
                let out = s.cli(&["SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER_NAME]);
                out.lines().nth(1) == Some(want.as_str())
            });
            if named && self.master() == Some(index) {
                return;
            }
            assert!(Instant::now() < deadline, "server {index} did not become the master within {within:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
