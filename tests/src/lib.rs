//! Test kit: real `redis-server` processes on free loopback ports, tenantry
//! in-process on port 0, and a raw RESP client for byte-exact assertions.
//! Every process started here is killed when its handle drops.

use anyhow::{bail, Context};
use bytes::BytesMut;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tenantry_protocol::reply::reply_len;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub mod cluster;
pub mod process;
pub mod sentinel;
pub mod tls;

/// Held by tests that load the machine or measure time, so they do not run
/// at the same moment as each other (the suite runs tests in parallel, and
/// CI has two cores).
pub async fn heavy() -> tokio::sync::MutexGuard<'static, ()> {
    static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    LOCK.lock().await
}

/// A redis-server child process on a free loopback port.
pub struct RedisServer {
    port: u16,
    child: Option<Child>,
    dir: tempfile::TempDir,
    extra: Vec<String>,
    /// TLS only: the CA clients' certificates are checked against (and
    /// which the server's chains to), the server's certificate and key.
    tls: Option<(PathBuf, tls::CertFiles)>,
}

/// A loopback port nothing listens on (at the time of asking).
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind port 0");
    l.local_addr().expect("local addr").port()
}

impl RedisServer {
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Starts with extra `redis-server` arguments (e.g. `["--requirepass", "x"]`).
    pub fn start_with(extra: &[&str]) -> Self {
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        for _ in 0..5 {
            let dir = tempfile::tempdir().expect("tempdir");
            let mut server = RedisServer { port: free_port(), child: None, dir, extra: extra.clone(), tls: None };
            // Another process may take the port between our probe and redis binding it.
            if server.spawn().is_ok() {
                return server;
            }
        }
        panic!("could not start redis-server on a free port (is redis-server installed?)");
    }

    /// A server that speaks TLS only, with `pki`'s server certificate;
    /// `extra` as in `start_with` (e.g. `--tls-auth-clients yes`).
    pub fn start_tls(pki: &tls::Pki, extra: &[&str]) -> Self {
        Self::start_tls_cert(pki, pki.server("redis"), extra)
    }

    /// `start_tls` serving `cert` (an expired one, say).
    pub fn start_tls_cert(pki: &tls::Pki, cert: tls::CertFiles, extra: &[&str]) -> Self {
        let mut args: Vec<String> = vec!["--tls-auth-clients".into(), "no".into()];
        args.extend(extra.iter().map(|s| s.to_string()));
        for _ in 0..5 {
            let dir = tempfile::tempdir().expect("tempdir");
            let mut server = RedisServer {
                port: free_port(),
                child: None,
                dir,
                extra: args.clone(),
                tls: Some((pki.ca_file.clone(), cert.clone())),
            };
            if server.spawn().is_ok() {
                return server;
            }
        }
        panic!("could not start a TLS redis-server on a free port");
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let port = self.port.to_string();
        let ports: Vec<&str> = match &self.tls {
            None => vec!["--port", &port],
            Some(_) => vec!["--port", "0", "--tls-port", &port],
        };
        let tls_args: Vec<std::ffi::OsString> = match &self.tls {
            None => Vec::new(),
            Some((ca, cert)) => vec![
                "--tls-ca-cert-file".into(),
                ca.into(),
                "--tls-cert-file".into(),
                cert.cert.clone().into(),
                "--tls-key-file".into(),
                cert.key.clone().into(),
            ],
        };
        let child = Command::new("redis-server")
            .args(&ports)
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(&tls_args)
            .arg("--dir")
            .arg(self.dir.path())
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("spawn redis-server")?;
        self.child = Some(child);
        match &self.tls {
            None => wait_for_port(self.port, Duration::from_secs(5), self.child.as_mut().expect("set")),
            Some((ca, cert)) => wait_for_tls_port(self.port, ca, cert, self.child.as_mut().expect("set")),
        }
    }

    /// `redis-cli` arguments that reach this server (TLS ones included).
    pub fn cli_args(&self) -> Vec<String> {
        let mut args = vec!["-p".to_string(), self.port.to_string()];
        // The server's certificate serves as a client's too (for `--tls-auth-clients yes`).
        if let Some((ca, cert)) = &self.tls {
            args.extend(["--tls", "--cacert"].map(String::from));
            args.push(ca.display().to_string());
            args.extend(["--cert".to_string(), cert.cert.display().to_string()]);
            args.extend(["--key".to_string(), cert.key.display().to_string()]);
        }
        args
    }

    /// Runs `redis-cli` against this server directly and returns its output.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli").args(self.cli_args()).args(args).output().expect("redis-cli runs");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// How many times the server ran `command` (`calls=` of its
    /// `cmdstat_<command>` line in INFO commandstats; 0 if never).
    pub fn calls(&self, command: &str) -> u64 {
        let info = self.cli(&["INFO", "commandstats"]);
        let prefix = format!("cmdstat_{command}:calls=");
        info.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .and_then(|rest| rest.split(',').next()?.parse().ok())
            .unwrap_or(0)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Kills the server (SIGKILL): clients see the connection drop.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes the process (SIGSTOP): connections stay open, nothing answers.
    pub fn freeze(&self) {
        self.signal("STOP");
    }

    /// Lets a frozen process run again (SIGCONT).
    pub fn thaw(&self) {
        self.signal("CONT");
    }

    fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().expect("running").id().to_string();
        let ok = Command::new("kill").args([&format!("-{sig}"), &pid]).status().is_ok_and(|s| s.success());
        assert!(ok, "kill -{sig} {pid} failed");
    }

    /// Starts the server again on the same port.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn().expect("restart redis-server on its port");
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.signal("CONT");
        }
        self.stop();
    }
}

fn wait_for_tls_port(port: u16, ca: &Path, cert: &tls::CertFiles, child: &mut Child) -> anyhow::Result<()> {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(5) {
        if let Ok(Some(status)) = child.try_wait() {
            bail!("redis-server exited: {status}");
        }
        let out = Command::new("redis-cli")
            .args(["-p", &port.to_string(), "--tls", "--insecure", "--cacert"])
            .arg(ca)
            .arg("--cert")
            .arg(&cert.cert)
            .arg("--key")
            .arg(&cert.key)
            .arg("PING")
            .output()?;
        if out.stdout.starts_with(b"PONG") {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(30));
    }
    bail!("TLS redis-server on port {port} did not answer PING")
}

pub(crate) fn wait_for_port(port: u16, limit: Duration, child: &mut Child) -> anyhow::Result<()> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Ok(Some(status)) = child.try_wait() {
            bail!("redis-server exited: {status}");
        }
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            use std::io::{Read, Write};
            s.set_read_timeout(Some(Duration::from_millis(500)))?;
            let mut buf = [0u8; 64];
            // A server with requirepass answers NOAUTH: it is up all the same.
            let n = if s.write_all(b"PING\r\n").is_ok() { s.read(&mut buf).unwrap_or(0) } else { 0 };
            if buf[..n].starts_with(b"+PONG") || buf[..n].starts_with(b"-NOAUTH") {
                return Ok(());
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    bail!("redis-server on port {port} did not answer PING within {limit:?}")
}

/// tenantry running in this test's tokio runtime, listening on a free port.
pub struct TestProxy {
    pub addr: SocketAddr,
    /// Every listener's address, in the config's order.
    pub addrs: Vec<SocketAddr>,
    proxy: Option<tenantry_proxy::Proxy>,
}

impl TestProxy {
    /// Starts tenantry from YAML; `listen` is forced to 127.0.0.1:0.
    pub async fn start(yaml: &str) -> Self {
        Self::start_listening(&format!("listen: 127.0.0.1:0\n{yaml}")).await
    }

    /// Starts tenantry from YAML that has its own `listen` (ports 0).
    pub async fn start_listening(yaml: &str) -> Self {
        let config = tenantry_config::parse(yaml, Path::new("test.yaml"), &|_| None)
            .unwrap_or_else(|e| panic!("test config is invalid:\n{e}"));
        let proxy = tenantry_proxy::Proxy::start(&config).await.expect("start proxy");
        let addr = proxy.addrs[0];
        let deadline = Instant::now() + Duration::from_secs(5);
        while !proxy.ready() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        TestProxy { addr, addrs: proxy.addrs.clone(), proxy: Some(proxy) }
    }

    /// Two tenants on one backend: `app` (default, namespace `app:`) and
    /// `demo` (`AUTH demo demo-pw`, namespace `demo:`).
    pub async fn two_tenants(redis: &RedisServer) -> Self {
        Self::start(&format!(
            "backends:\n  local: {{ kind: standalone, nodes: [\"{}\"] }}\n\
             tenants:\n  app: {{ backend: local, namespace: \"app:\" }}\n  \
             demo: {{ backend: local, namespace: \"demo:\", auth: {{ username: demo, password: demo-pw }} }}\n\
             default_tenant: app\n",
            redis.addr()
        ))
        .await
    }

    /// Starts tenantry from a config file it keeps following (reloads).
    pub async fn start_file(path: &Path) -> Self {
        let proxy = tenantry_proxy::Proxy::start_file(path).await.unwrap_or_else(|e| panic!("start: {e}"));
        let addr = proxy.addrs[0];
        TestProxy { addr, addrs: proxy.addrs.clone(), proxy: Some(proxy) }
    }

    /// See `Proxy::send_unrewritten`.
    pub async fn send_unrewritten(
        &self,
        tenant: &str,
        args: &[&[u8]],
    ) -> Result<bytes::Bytes, tenantry_proxy::error::Error> {
        self.proxy.as_ref().expect("running").send_unrewritten(tenant, args).await
    }

    /// The active config's version.
    pub fn config_version(&self) -> String {
        self.proxy.as_ref().expect("running").config_version()
    }

    /// Waits until the proxy runs the config with `version` (a reload applied).
    pub async fn wait_for_version(&self, version: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.config_version() != version {
            assert!(
                Instant::now() < deadline,
                "config version {version} not applied (still {})",
                self.config_version()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub fn url(&self) -> String {
        format!("redis://{}/", self.addr)
    }

    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.proxy.as_ref().and_then(|p| p.admin_addr)
    }

    pub async fn client(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.url()).expect("url").get_multiplexed_async_connection().await.expect("connect")
    }

    /// A `redis` crate connection authenticated as `user`.
    pub async fn client_as(&self, user: &str, password: &str) -> redis::aio::MultiplexedConnection {
        redis::Client::open(format!("redis://{user}:{password}@{}/", self.addr))
            .expect("url")
            .get_multiplexed_async_connection()
            .await
            .expect("connect and authenticate")
    }

    pub async fn raw(&self) -> RawClient {
        RawClient::connect(self.addr).await
    }

    /// A raw connection authenticated as `user`; panics unless AUTH says +OK.
    pub async fn login(&self, user: &str, password: &str) -> RawClient {
        let mut c = self.raw().await;
        assert_eq!(c.cmd(&[b"AUTH", user.as_bytes(), password.as_bytes()]).await, b"+OK\r\n");
        c
    }

    /// The admin server's `/metrics` text.
    pub async fn metrics(&self) -> String {
        http_get(self.admin_addr().expect("admin"), "/metrics").await.1
    }

    pub async fn stop(self) {
        self.stop_with(Duration::from_secs(1)).await
    }

    /// Drains as SIGTERM would, for up to `drain`.
    pub async fn stop_with(mut self, drain: Duration) {
        if let Some(p) = self.proxy.take() {
            p.shutdown(drain).await;
        }
    }
}

/// Sends raw bytes and reads whole RESP replies, for byte-exact assertions.
pub struct RawClient {
    stream: Box<dyn Conn>,
    buf: BytesMut,
}

/// A plain or TLS connection.
pub trait Conn: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Conn for T {}

impl RawClient {
    pub async fn connect(addr: impl tokio::net::ToSocketAddrs) -> Self {
        let stream = TcpStream::connect(addr).await.expect("connect");
        RawClient { stream: Box::new(stream), buf: BytesMut::new() }
    }

    pub fn from_stream(stream: TcpStream) -> Self {
        RawClient { stream: Box::new(stream), buf: BytesMut::new() }
    }

    /// A TLS connection to `addr` checking the server's certificate for
    /// `localhost` against `ca`, presenting `client`'s certificate if given;
    /// `Err` with rustls's reason if the handshake fails.
    pub async fn connect_tls(addr: SocketAddr, ca: &Path, client: Option<&tls::CertFiles>) -> Result<Self, String> {
        let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(tls::client_config(ca, client)));
        let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
        let mut stream = connector.connect(name, tcp).await.map_err(|e| e.to_string())?;
        // TLS 1.3 reports a refused client certificate only on the first
        // read after the handshake: a PING finds out.
        stream.write_all(&encode(&[b"PING"])).await.map_err(|e| e.to_string())?;
        stream.flush().await.map_err(|e| e.to_string())?;
        let mut c = RawClient { stream: Box::new(stream), buf: BytesMut::new() };
        let n = tokio::time::timeout(Duration::from_secs(5), c.stream.read_buf(&mut c.buf))
            .await
            .map_err(|_| "no answer to PING".to_string())?
            .map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("closed by the server".into());
        }
        let pong = c.reply().await;
        if pong != b"+PONG\r\n" {
            return Err(format!("PING answered {:?}", String::from_utf8_lossy(&pong)));
        }
        Ok(c)
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write");
        self.stream.flush().await.expect("flush");
    }

    /// Sends a command as a RESP array.
    pub async fn cmd(&mut self, args: &[&[u8]]) -> Vec<u8> {
        self.send(&encode(args)).await;
        self.reply().await
    }

    /// Reads one complete reply (any RESP2/RESP3 type); panics after 10 s.
    pub async fn reply(&mut self) -> Vec<u8> {
        tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                if let Some(n) = reply_len(&self.buf).expect("valid RESP") {
                    return self.buf.split_to(n).to_vec();
                }
                if self.stream.read_buf(&mut self.buf).await.expect("read") == 0 {
                    panic!("connection closed; unread: {:?}", String::from_utf8_lossy(&self.buf));
                }
            }
        })
        .await
        .expect("reply within 10 s")
    }

    /// True if the server closes the connection (after any pending bytes).
    pub async fn closed(&mut self) -> bool {
        let mut b = [0u8; 1];
        matches!(tokio::time::timeout(Duration::from_secs(5), self.stream.read(&mut b)).await, Ok(Ok(0)) | Ok(Err(_)))
    }
}

/// RESP array of bulk strings.
pub fn encode(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// A direct connection to a redis-server, bypassing tenantry.
pub async fn direct(redis: &RedisServer) -> redis::aio::MultiplexedConnection {
    redis::Client::open(redis.url()).expect("url").get_multiplexed_async_connection().await.expect("connect direct")
}

/// `GET path` on an HTTP/1.1 server: (status, body).
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes()).await.expect("send");
    let mut resp = String::new();
    s.read_to_string(&mut resp).await.expect("read");
    let status = resp.get(9..12).and_then(|c| c.parse().ok()).expect("an HTTP status line");
    let body = resp.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (status, body)
}

/// The value of one sample in Prometheus text, e.g.
/// `metric(&text, "tenantry_evictions_total{tenant=\"a\",keyspace=\"k\"}")`; 0 if absent.
pub fn metric(text: &str, sample: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(sample).and_then(|rest| rest.strip_prefix(' ')))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
}

/// The sum of every sample of a metric whose labels contain `filter`.
pub fn metric_sum(text: &str, name: &str, filter: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with('{') && l.contains(filter))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Deterministic invocations of commands from Redis's table, for tests that
/// walk the whole table: each has the command's name (and subcommand), as
/// many arguments as its arity allows, and numkeys arguments that fit.
pub struct Invocations {
    seed: u64,
}

impl Invocations {
    pub fn new(seed: u64) -> Self {
        Invocations { seed }
    }

    /// A number below `n` (an LCG: the same seed gives the same walk).
    pub fn below(&mut self, n: usize) -> usize {
        self.seed = self.seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((self.seed >> 33) as usize) % n.max(1)
    }

    /// One invocation of `spec`; each argument is one of `words` (a third of
    /// the time) or `filler(i)`.
    pub fn next(
        &mut self,
        spec: &tenantry_protocol::command::CommandSpec,
        words: &[&[u8]],
        filler: impl Fn(usize) -> Vec<u8>,
    ) -> Vec<Vec<u8>> {
        use tenantry_protocol::command::{BeginSearch, FindKeys};
        let min = spec.arity.unsigned_abs() as usize;
        let argc = if spec.arity > 0 { min } else { min + self.below(6) };
        let mut args: Vec<Vec<u8>> = (0..argc)
            .map(|i| if self.below(3) == 0 { words[self.below(words.len())].to_vec() } else { filler(i) })
            .collect();
        let mut name = spec.name.split('|');
        args[0] = name.next().unwrap_or_default().as_bytes().to_vec();
        if let Some(sub) = name.next() {
            args[1] = sub.as_bytes().to_vec();
        }
        for ks in spec.key_specs {
            if let (BeginSearch::Index(i), FindKeys::Keynum { keynumidx, firstkey, .. }) = (ks.begin, ks.find) {
                let idx = i as usize + keynumidx as usize;
                let room = argc.saturating_sub(i as usize + firstkey as usize);
                if idx < argc {
                    args[idx] = (1 + self.below(room.max(1))).min(room).to_string().into_bytes();
                }
            }
        }
        args
    }
}

/// Runs `script` (one command per line, space-separated arguments) against a
/// fresh redis-server directly and through tenantry on another, after
/// `HELLO <proto>` if given, and asserts every reply is byte-identical.
pub async fn assert_same_replies_as_redis(script: &[&str], hello: Option<&[u8]>) {
    async fn run(c: &mut RawClient, script: &[&str]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for line in script {
            let args: Vec<&[u8]> = line.split(' ').map(str::as_bytes).collect();
            out.push(c.cmd(&args).await);
        }
        out
    }
    let direct_redis = RedisServer::start();
    let proxied_redis = RedisServer::start();
    let proxy = TestProxy::two_tenants(&proxied_redis).await;
    let mut direct = RawClient::connect(direct_redis.addr()).await;
    let mut proxied = proxy.raw().await;
    if let Some(proto) = hello {
        direct.cmd(&[b"HELLO", proto]).await;
        proxied.cmd(&[b"HELLO", proto]).await;
    }
    let want = run(&mut direct, script).await;
    let got = run(&mut proxied, script).await;
    for ((line, w), g) in script.iter().zip(&want).zip(&got) {
        assert_eq!(String::from_utf8_lossy(g), String::from_utf8_lossy(w), "{line} (hello {hello:?})");
    }
}

/// Every `tenantry_*` metric name the Grafana dashboard queries.
pub fn dashboard_metrics() -> Vec<String> {
    let dashboard = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/kubernetes/overlays/shared/grafana/tenantry.json"
    ))
    .unwrap();
    let json: serde_json::Value = serde_json::from_str(&dashboard).unwrap();
    let mut names = Vec::new();
    for panel in json["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            for (i, _) in expr.match_indices("tenantry_") {
                let name: String = expr[i..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
                names.push(name);
            }
        }
    }
    names
}
