//! One client never hurts another: a client that pipelines GETs of a big
//! value and never reads (or reads slowly) makes only itself wait. Run
//! against the real binary, so the process's own memory can be measured.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tenantry_tests::process::TenantryProcess;
use tenantry_tests::{metric, RedisServer};

const VALUE: usize = 100_000;
const GETS: usize = 10_000;

fn start(limits: &str) -> (RedisServer, TenantryProcess) {
    let redis = RedisServer::start();
    let yaml = format!(
        "limits: {{ {limits} }}\n\
         backends:\n  local: {{ kind: standalone, nodes: [\"{}\"] }}\n\
         tenants:\n  app: {{ backend: local, namespace: \"app:\" }}\n  \
         demo: {{ backend: local, namespace: \"demo:\", auth: {{ username: demo, password: demo-pw }} }}\n\
         default_tenant: app\n",
        redis.addr()
    );
    let proxy = TenantryProcess::start(Path::new(env!("CARGO_BIN_EXE_tenantry")), &yaml);
    let mut c = connect(proxy.port);
    let set = format!("*3\r\n$3\r\nSET\r\n$3\r\nbig\r\n${VALUE}\r\n{}\r\n", "x".repeat(VALUE));
    c.write_all(set.as_bytes()).unwrap();
    let mut ok = [0u8; 5];
    c.read_exact(&mut ok).unwrap();
    assert_eq!(&ok, b"+OK\r\n");
    (redis, proxy)
}

fn connect(port: u16) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// A client of each tenant sending PING every 5 ms, timing each answer.
struct Controls {
    started: Instant,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<Vec<Duration>>>,
}

impl Controls {
    fn start(port: u16) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = [None, Some(("demo", "demo-pw"))]
            .into_iter()
            .map(|login| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let mut s = connect(port);
                    let mut buf = [0u8; 7];
                    if let Some((user, pw)) = login {
                        s.write_all(format!("AUTH {user} {pw}\r\n").as_bytes()).unwrap();
                        s.read_exact(&mut buf[..5]).unwrap();
                        assert_eq!(&buf[..5], b"+OK\r\n");
                    }
                    let mut times = Vec::new();
                    while !stop.load(Ordering::Relaxed) {
                        let t0 = Instant::now();
                        s.write_all(b"PING\r\n").unwrap();
                        s.read_exact(&mut buf).unwrap();
                        assert_eq!(&buf, b"+PONG\r\n");
                        times.push(t0.elapsed());
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    times
                })
            })
            .collect();
        Controls { started: Instant::now(), stop, threads }
    }

    /// Each control client's p99 and worst latency. The controls run for
    /// at least `MIN_RUN`, however soon the slow client was dealt with, so
    /// there are always enough PINGs for a p99 to mean something.
    fn finish(self) -> Vec<(Duration, Duration, usize)> {
        const MIN_RUN: Duration = Duration::from_secs(2);
        if let Some(rest) = MIN_RUN.checked_sub(self.started.elapsed()) {
            std::thread::sleep(rest);
        }
        self.stop.store(true, Ordering::Relaxed);
        self.threads
            .into_iter()
            .map(|t| {
                let mut times = t.join().expect("control client");
                times.sort();
                (times[times.len() * 99 / 100], times[times.len() - 1], times.len())
            })
            .collect()
    }
}

fn assert_not_delayed(controls: Vec<(Duration, Duration, usize)>) {
    for (who, (p99, max, n)) in ["app", "demo"].iter().zip(controls) {
        eprintln!("control client of {who}: {n} PINGs, p99 {p99:?}, max {max:?}");
        assert!(n > 100, "{who}: only {n} PINGs");
        assert!(p99 < Duration::from_millis(100), "{who}'s p99 {p99:?}");
    }
}

/// Sends `GETS` pipelined GETs of the big value from a thread (the writes
/// block once tenantry stops reading; they fail once it disconnects).
fn pipeline_gets(slow: &TcpStream) -> JoinHandle<()> {
    let mut w = slow.try_clone().unwrap();
    std::thread::spawn(move || {
        let req = b"*2\r\n$3\r\nGET\r\n$3\r\nbig\r\n".repeat(GETS);
        let _ = w.write_all(&req);
    })
}

/// Samples the process's RSS every 20 ms until `done`; returns the peak in KiB.
fn sample_rss(proxy: &TenantryProcess, done: impl Fn() -> bool, limit: Duration) -> u64 {
    let deadline = Instant::now() + limit;
    let mut peak = 0;
    while !done() {
        assert!(Instant::now() < deadline, "not done within {limit:?}");
        peak = peak.max(proxy.rss_kib());
        std::thread::sleep(Duration::from_millis(20));
    }
    peak.max(proxy.rss_kib())
}

fn disconnects(proxy: &TenantryProcess, limit: &str) -> f64 {
    let text = proxy.metrics();
    metric(&text, &format!("tenantry_client_output_limit_disconnects_total{{tenant=\"app\",limit=\"{limit}\"}}"))
}

/// Reads what the server still sends; true once it has closed the connection.
fn closed(s: &mut TcpStream) -> bool {
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return true,
            Ok(_) => {}
        }
    }
}

#[test]
fn a_client_that_never_reads_is_disconnected_at_the_hard_limit_and_delays_no_one() {
    let (_redis, proxy) = start("output_soft: 256KiB, output_soft_seconds: 60, output_hard: 512KiB");
    let base = proxy.rss_kib();
    let controls = Controls::start(proxy.port);
    std::thread::sleep(Duration::from_millis(300));
    let mut slow = connect(proxy.port);
    let writer = pipeline_gets(&slow);
    let t0 = Instant::now();
    let peak = sample_rss(&proxy, || disconnects(&proxy, "hard") == 1.0, Duration::from_secs(20));
    eprintln!("disconnected at the hard limit after {:?}; RSS growth peak {} KiB", t0.elapsed(), peak - base);
    std::thread::sleep(Duration::from_millis(500));
    assert_not_delayed(controls.finish());
    assert!(peak - base < 512 + 16 * 1024, "RSS grew by {} KiB", peak - base);
    assert!(closed(&mut slow));
    writer.join().unwrap();
    assert_eq!(disconnects(&proxy, "soft"), 0.0);
}

#[test]
fn a_client_that_never_reads_is_disconnected_after_output_soft_seconds() {
    let (_redis, proxy) = start("output_soft: 1MiB, output_soft_seconds: 2, output_hard: 64MiB");
    let base = proxy.rss_kib();
    let controls = Controls::start(proxy.port);
    let mut slow = connect(proxy.port);
    let writer = pipeline_gets(&slow);
    let t0 = Instant::now();
    let peak = sample_rss(&proxy, || disconnects(&proxy, "soft") == 1.0, Duration::from_secs(20));
    let took = t0.elapsed();
    eprintln!("disconnected past the soft limit after {took:?}; RSS growth peak {} KiB", peak - base);
    assert!(took >= Duration::from_secs(2), "{took:?}");
    assert_not_delayed(controls.finish());
    assert!(peak - base < 64 * 1024 + 16 * 1024, "RSS grew by {} KiB", peak - base);
    assert!(closed(&mut slow));
    writer.join().unwrap();
}

#[test]
fn a_client_that_reads_slowly_is_served_slowly_and_delays_no_one() {
    let (_redis, proxy) = start("output_soft: 2MiB, output_soft_seconds: 5, output_hard: 16MiB");
    let controls = Controls::start(proxy.port);
    let mut slow = connect(proxy.port);
    let _writer = pipeline_gets(&slow);
    // 1 MiB/s for 6 s, checking every reply whole and in place.
    let reply_len = format!("${VALUE}\r\n").len() + VALUE + 2;
    let (mut got, mut buf) = (Vec::new(), vec![0u8; 64 * 1024]);
    let replies = AtomicU64::new(0);
    let t0 = Instant::now();
    const RATE: f64 = 1024.0 * 1024.0;
    let mut read = 0usize;
    while t0.elapsed() < Duration::from_secs(6) {
        let n = slow.read(&mut buf).expect("the slow reader keeps its connection");
        assert!(n > 0, "closed after {} replies", replies.load(Ordering::Relaxed));
        read += n;
        got.extend_from_slice(&buf[..n]);
        while got.len() >= reply_len {
            let reply: Vec<u8> = got.drain(..reply_len).collect();
            assert!(reply.starts_with(format!("${VALUE}\r\n").as_bytes()) && reply.ends_with(b"x\r\n"));
            replies.fetch_add(1, Ordering::Relaxed);
        }
        // Paced by bytes: 1 MiB/s whatever size each read returns.
        let due = t0 + Duration::from_secs_f64(read as f64 / RATE);
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
    }
    let served = replies.load(Ordering::Relaxed);
    eprintln!("slow reader: {served} replies in {:?}", t0.elapsed());
    // About 60 at 1 MiB/s; fewer on a loaded machine, where the reader itself lags.
    assert!(served >= 40, "{served} replies");
    assert_not_delayed(controls.finish());
    assert_eq!(disconnects(&proxy, "soft") + disconnects(&proxy, "hard"), 0.0);
}

/// Reads one reply whole (a bulk string or a simple reply) and returns its payload length.
fn read_bulk(s: &mut TcpStream, buf: &mut Vec<u8>) -> usize {
    let mut chunk = vec![0u8; 1 << 20];
    loop {
        if let Some(end) = buf.windows(2).position(|w| w == b"\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            if let Some(len) = head.strip_prefix('$') {
                let len: usize = len.parse().unwrap();
                if buf.len() >= end + 2 + len + 2 {
                    buf.drain(..end + 2 + len + 2);
                    return len;
                }
            } else {
                buf.drain(..end + 2);
                return 0;
            }
        }
        let n = s.read(&mut chunk).expect("the reading client keeps its connection");
        assert!(n > 0, "closed with {} bytes unread", buf.len());
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Redis sets no output limit for normal clients: one that reads as fast as
/// it can gets a reply bigger than the hard limit, and a pipeline of big
/// replies whose in-flight budget was judged from small ones, with the
/// default limits (8 MiB soft, 64 MiB hard).
#[test]
fn a_client_that_reads_is_never_cut_for_the_size_of_its_replies() {
    let (_redis, proxy) = start("max_clients: 100");
    let base = proxy.rss_kib();
    let mut c = connect(proxy.port);
    c.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut buf = Vec::new();
    let send = |c: &mut TcpStream, args: &[&[u8]]| {
        let mut out = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            out.extend_from_slice(a);
            out.extend_from_slice(b"\r\n");
        }
        c.write_all(&out).unwrap();
    };
    // A 70 MiB value, written the way the user did.
    send(&mut c, &[b"SET", b"huge", b"x"]);
    send(&mut c, &[b"SETRANGE", b"huge", b"73400320", b"y"]);
    send(&mut c, &[b"GET", b"huge"]);
    assert_eq!(read_bulk(&mut c, &mut buf), 0);
    assert_eq!(read_bulk(&mut c, &mut buf), 0);
    assert_eq!(read_bulk(&mut c, &mut buf), 73_400_321);
    // Small replies first, then a hundred 1 MiB values in one pipeline.
    send(&mut c, &[b"SET", b"mib", &vec![b'm'; 1 << 20]]);
    assert_eq!(read_bulk(&mut c, &mut buf), 0);
    for _ in 0..20 {
        send(&mut c, &[b"PING"]);
    }
    for _ in 0..20 {
        assert_eq!(read_bulk(&mut c, &mut buf), 0);
    }
    for _ in 0..100 {
        send(&mut c, &[b"GET", b"mib"]);
    }
    for i in 0..100 {
        assert_eq!(read_bulk(&mut c, &mut buf), 1 << 20, "reply {i}");
    }
    let grew = proxy.rss_kib().saturating_sub(base);
    eprintln!("RSS growth after the big replies: {grew} KiB");
    // At most the 70 MiB reply, or the hundred replies in flight at once
    // (the README's bound: the soft limit plus the replies in flight).
    assert!(grew < 256 * 1024, "RSS grew by {grew} KiB");
    assert_eq!(disconnects(&proxy, "soft") + disconnects(&proxy, "hard"), 0.0);
}
