//! A tenantry process killed (SIGKILL) in the middle of a tenant's move,
//! and started again: the move goes on from where it was, and no write a
//! client had acknowledged is lost, whatever the moment of the kill.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tenantry_tests::process::TenantryProcess;
use tenantry_tests::RedisServer;

const KEYS: usize = 20_000;

fn yaml(old: &RedisServer, new: &RedisServer) -> String {
    format!(
        "backends:\n  old: {{ kind: standalone, nodes: [\"{}\"] }}\n  new: {{ kind: standalone, nodes: [\"{}\"] }}\n\
         tenants:\n  a: {{ backend: old, namespace: \"a:\", migrate: {{ to: new, keys_per_sec: 4000 }} }}\n\
         default_tenant: a\n",
        old.addr(),
        new.addr()
    )
}

fn start(old: &RedisServer, new: &RedisServer) -> TenantryProcess {
    TenantryProcess::start(Path::new(env!("CARGO_BIN_EXE_tenantry")), &yaml(old, new))
}

/// The migration as `/tenants` shows it.
fn migration(p: &TenantryProcess) -> serde_json::Value {
    let (_, body) = p.http("GET", "/tenants");
    let tenants: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    tenants
        .as_array()
        .and_then(|a| a.iter().find(|t| t["tenant"] == "a"))
        .map_or(serde_json::Value::Null, |t| t["migration"].clone())
}

fn wait_for(p: &TenantryProcess, limit: Duration, what: &str, done: impl Fn(&serde_json::Value) -> bool) {
    let deadline = Instant::now() + limit;
    loop {
        let m = migration(p);
        if done(&m) {
            return;
        }
        assert!(Instant::now() < deadline, "{what} within {limit:?}; last seen: {m}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Writes `w:<i>` = `i` through whichever process listens on `port`, one at
/// a time, keeping each `i` whose `+OK` it read; reconnects when the
/// process goes.
fn writer(port: Arc<AtomicU16>, stop: Arc<AtomicBool>, acked: Arc<Mutex<Vec<u64>>>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut i = 0u64;
        let mut conn: Option<TcpStream> = None;
        while !stop.load(Ordering::Relaxed) {
            let c = match conn.as_mut() {
                Some(c) => c,
                None => match TcpStream::connect(("127.0.0.1", port.load(Ordering::Relaxed))) {
                    Ok(c) => {
                        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                        conn.insert(c)
                    }
                    Err(_) => {
                        std::thread::sleep(Duration::from_millis(10));
                        continue;
                    }
                },
            };
            i += 1;
            let (k, v) = (format!("w:{i}"), i.to_string());
            let req = format!("*3\r\n$3\r\nSET\r\n${}\r\n{k}\r\n${}\r\n{v}\r\n", k.len(), v.len());
            let mut reply = [0u8; 5];
            if c.write_all(req.as_bytes()).is_ok() && c.read_exact(&mut reply).is_ok() {
                assert_eq!(&reply, b"+OK\r\n", "w:{i}");
                acked.lock().unwrap().push(i);
            } else {
                conn = None;
            }
        }
    })
}

/// Of the acknowledged `w:<i>` = `i`, those not so on `redis` (pipelined GETs).
fn missing_on(redis: &RedisServer, acked: &[u64]) -> Vec<u64> {
    let mut c = TcpStream::connect(("127.0.0.1", redis.port())).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut missing = Vec::new();
    for chunk in acked.chunks(1000) {
        let mut req = String::new();
        for i in chunk {
            let k = format!("a:w:{i}");
            req.push_str(&format!("*2\r\n$3\r\nGET\r\n${}\r\n{k}\r\n", k.len()));
        }
        c.write_all(req.as_bytes()).unwrap();
        let mut r = std::io::BufReader::new(&c);
        for i in chunk {
            let mut line = String::new();
            std::io::BufRead::read_line(&mut r, &mut line).unwrap();
            let len: i64 = line[1..].trim().parse().unwrap();
            let value = if len >= 0 {
                let mut body = vec![0u8; len as usize + 2];
                r.read_exact(&mut body).unwrap();
                String::from_utf8_lossy(&body[..len as usize]).into_owned()
            } else {
                String::new()
            };
            if value != i.to_string() {
                missing.push(*i);
            }
        }
    }
    missing
}

fn count(redis: &RedisServer, pattern: &str) -> u64 {
    redis.cli(&["EVAL", "return #redis.call('keys', ARGV[1])", "0", pattern]).trim().parse().unwrap()
}

#[test]
fn a_process_killed_in_each_phase_loses_no_acknowledged_write() {
    let (old, new) = (RedisServer::start(), RedisServer::start());
    for chunk in (0..KEYS).collect::<Vec<_>>().chunks(2000) {
        let mut args: Vec<String> = vec!["MSET".into()];
        for i in chunk {
            args.push(format!("a:k:{i}"));
            args.push(format!("v{i}"));
        }
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        assert_eq!(old.cli(&refs).trim(), "OK");
    }
    let mut proxy = start(&old, &new);
    let port = Arc::new(AtomicU16::new(proxy.port));
    let (stop, acked) = (Arc::new(AtomicBool::new(false)), Arc::new(Mutex::new(Vec::new())));
    let w = writer(port.clone(), stop.clone(), acked.clone());
    let mut killed_in = Vec::new();
    // Mid-copy, then in whatever phase follows the copy.
    for (what, phase_seen) in [
        (
            "copying",
            Box::new(|m: &serde_json::Value| m["progress"]["keys_copied"].as_u64() > Some(3000))
                as Box<dyn Fn(&serde_json::Value) -> bool>,
        ),
        (
            "after the copy",
            Box::new(|m: &serde_json::Value| {
                matches!(m["progress"]["phase"].as_str(), Some("verify" | "switch" | "cut" | "done"))
            }),
        ),
    ] {
        wait_for(&proxy, Duration::from_secs(60), what, phase_seen);
        let phase = migration(&proxy)["progress"]["phase"].as_str().unwrap_or("?").to_string();
        proxy.signal("KILL");
        proxy.wait_exit(Duration::from_secs(5)).expect("killed");
        killed_in.push(phase);
        proxy = start(&old, &new);
        port.store(proxy.port, Ordering::Relaxed);
    }
    wait_for(&proxy, Duration::from_secs(120), "the move done", |m| m["progress"]["phase"] == "done");
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::Relaxed);
    w.join().expect("the writer saw a wrong reply");
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() > 100, "the writer wrote through the kills: {}", acked.len());
    eprintln!("killed in phases {killed_in:?}; {} writes acknowledged", acked.len());
    // Every acknowledged write is on the new backend.
    let missing = missing_on(&new, &acked);
    assert!(
        missing.is_empty(),
        "{} acknowledged writes missing on the new backend, first: {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    assert_eq!(count(&new, "a:k:*"), KEYS as u64);
    assert_eq!(count(&old, "a:*"), 0);
}
