//! Draining the real binary: SIGTERM or `POST /drain`, `/ready` at 503 all
//! through, a blocked command waited for, a second SIGTERM exits at once.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};
use tenantry_tests::process::TenantryProcess;
use tenantry_tests::RedisServer;

fn start(redis: &RedisServer) -> TenantryProcess {
    let yaml = format!(
        "backends:\n  local: {{ kind: standalone, nodes: [\"{}\"] }}\n\
         tenants:\n  app: {{ backend: local, namespace: \"app:\" }}\ndefault_tenant: app\n",
        redis.addr()
    );
    TenantryProcess::start(Path::new(env!("CARGO_BIN_EXE_tenantry")), &yaml)
}

fn connect(port: u16) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s
}

#[test]
fn sigterm_closes_idle_clients_and_exits_at_once() {
    let redis = RedisServer::start();
    let mut proxy = start(&redis);
    let mut idle = connect(proxy.port);
    idle.write_all(b"PING\r\n").unwrap();
    let mut buf = [0u8; 7];
    idle.read_exact(&mut buf).unwrap();
    let t0 = Instant::now();
    proxy.signal("TERM");
    let status = proxy.wait_exit(Duration::from_secs(3)).expect("exits");
    assert!(status.success(), "{status}");
    assert!(t0.elapsed() < Duration::from_secs(2), "took {:?}", t0.elapsed());
    assert_eq!(idle.read(&mut buf).unwrap_or(0), 0, "the idle client was closed");
}

#[test]
fn post_drain_answers_a_blocked_command_waits_for_an_owed_reply_through_the_next_sigterm_and_a_second_one_exits() {
    let redis = RedisServer::start();
    let mut proxy = start(&redis);
    assert_eq!(proxy.http("GET", "/ready").0, 200);
    let mut blocked = connect(proxy.port);
    blocked.write_all(b"*3\r\n$5\r\nBLPOP\r\n$1\r\nq\r\n$1\r\n0\r\n").unwrap();
    std::thread::sleep(Duration::from_millis(200));
    // A reply owed by a frozen backend keeps the drain open (up to --drain).
    let mut owed = connect(proxy.port);
    owed.write_all(b"PING\r\n").unwrap();
    owed.read_exact(&mut [0u8; 7]).unwrap();
    redis.freeze();
    owed.write_all(b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n").unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let (code, body) = proxy.http("POST", "/drain");
    assert_eq!((code, body.as_str()), (202, "draining\n"));
    // The blocked BLPOP is given up with its timeout's answer, then closed.
    let mut reply = [0u8; 5];
    blocked.read_exact(&mut reply).unwrap();
    assert_eq!(&reply, b"*-1\r\n");
    assert_eq!(blocked.read(&mut reply).unwrap_or(0), 0);
    // /ready says 503 all the while.
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_millis(500) {
        let (code, body) = proxy.http("GET", "/ready");
        assert_eq!(code, 503, "{body}");
        assert!(body.contains("draining"), "{body}");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(proxy.wait_exit(Duration::from_millis(10)).is_none(), "still draining");
    // A new client is not accepted any more.
    let refused = TcpStream::connect(("127.0.0.1", proxy.port));
    assert!(refused.is_err() || refused.unwrap().read(&mut [0u8; 1]).unwrap_or(0) == 0);
    // The SIGTERM that follows a preStop hook's POST /drain: still draining.
    proxy.signal("TERM");
    assert!(proxy.wait_exit(Duration::from_millis(300)).is_none(), "the drain goes on");
    // A second signal: out at once.
    let t1 = Instant::now();
    proxy.signal("TERM");
    let status = proxy.wait_exit(Duration::from_secs(2)).expect("exits at once");
    assert!(status.success(), "{status}");
    assert!(t1.elapsed() < Duration::from_secs(1), "took {:?}", t1.elapsed());
    redis.thaw();
}
