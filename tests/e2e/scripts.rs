//! Scripts per tenant: SCRIPT EXISTS, SCRIPT FLUSH and EVALSHA over the
//! scripts a tenant loaded, though Redis's script cache is server-wide.

use std::time::{Duration, Instant};
use tenantry_tests::{encode, RawClient, RedisServer, TestProxy};

fn config(redis: &RedisServer) -> String {
    format!(
        "backends:\n  local: {{ kind: standalone, nodes: [\"{}\"] }}\ntenants:\n  \
         s: {{ backend: local, namespace: \"s:\", auth: {{ username: s, password: pw }}, scripts: true }}\n  \
         t: {{ backend: local, namespace: \"t:\", auth: {{ username: t, password: pw }}, scripts: true }}\n  \
         n: {{ backend: local, namespace: \"n:\", auth: {{ username: n, password: pw }} }}\n",
        redis.addr()
    )
}

const NOSCRIPT: &[u8] = b"-NOSCRIPT No matching script. Please use EVAL.\r\n";

async fn load(c: &mut RawClient, script: &[u8]) -> Vec<u8> {
    let reply = c.cmd(&[b"SCRIPT", b"LOAD", script]).await;
    assert!(reply.starts_with(b"$40\r\n"), "{}", String::from_utf8_lossy(&reply));
    reply[5..45].to_vec()
}

#[tokio::test]
async fn each_tenant_sees_and_flushes_only_the_scripts_it_loaded() {
    let redis = RedisServer::start();
    let proxy = TestProxy::start(&config(&redis)).await;
    let (mut s, mut t) = (proxy.login("s", "pw").await, proxy.login("t", "pw").await);
    let sha = load(&mut s, b"return 1").await;
    assert_eq!(sha, b"e0e1f9fabfc9d4800c877a703b823ac0578ff8db");
    assert_eq!(s.cmd(&[b"SCRIPT", b"EXISTS", &sha, b"nosuch"]).await, b"*2\r\n:1\r\n:0\r\n");
    assert_eq!(s.cmd(&[b"EVALSHA", &sha.to_ascii_uppercase(), b"0"]).await, b":1\r\n", "case is ignored");
    // The backend holds the script, but t never loaded it.
    assert_eq!(t.cmd(&[b"SCRIPT", b"EXISTS", &sha]).await, b"*1\r\n:0\r\n");
    assert_eq!(t.cmd(&[b"EVALSHA", &sha, b"0"]).await, NOSCRIPT);
    assert_eq!(t.cmd(&[b"EVALSHA", b"short", b"0"]).await, NOSCRIPT);
    // EVAL makes it t's too.
    assert_eq!(t.cmd(&[b"EVAL", b"return 1", b"0"]).await, b":1\r\n");
    assert_eq!(t.cmd(&[b"EVALSHA", &sha, b"0"]).await, b":1\r\n");

    // s flushes: its EVALSHA fails as after Redis's SCRIPT FLUSH, even
    // pipelined right behind it; t's scripts and the backend's cache stay.
    let mut req = encode(&[b"SCRIPT", b"FLUSH", b"ASYNC"]);
    req.extend(encode(&[b"EVALSHA", &sha, b"0"]));
    s.send(&req).await;
    assert_eq!(s.reply().await, b"+OK\r\n");
    assert_eq!(s.reply().await, NOSCRIPT);
    assert_eq!(s.cmd(&[b"SCRIPT", b"EXISTS", &sha]).await, b"*1\r\n:0\r\n");
    assert_eq!(t.cmd(&[b"EVALSHA", &sha, b"0"]).await, b":1\r\n");
    let mut direct = tenantry_tests::direct(&redis).await;
    let exists: Vec<i64> = redis::cmd("SCRIPT").arg("EXISTS").arg(&sha).query_async(&mut direct).await.unwrap();
    assert_eq!(exists, [1], "the server's cache is every tenant's: not flushed");
    assert!(s.cmd(&[b"SCRIPT", b"FLUSH", b"NOW"]).await.starts_with(b"-ERR SCRIPT FLUSH only support SYNC|ASYNC"));

    // A tenant without scripts is refused with the rule's name.
    let mut n = proxy.login("n", "pw").await;
    assert!(n.cmd(&[b"SCRIPT", b"EXISTS", &sha]).await.starts_with(b"-NOPERM tenant 'n' may not run scripts"));
    assert!(n.cmd(&[b"SCRIPT", b"FLUSH"]).await.starts_with(b"-NOPERM"));
}

#[tokio::test]
async fn proxies_of_a_tenant_share_its_scripts() {
    let redis = RedisServer::start();
    let (one, two) = (TestProxy::start(&config(&redis)).await, TestProxy::start(&config(&redis)).await);
    let (mut a, mut b) = (one.login("s", "pw").await, two.login("s", "pw").await);
    let sha = load(&mut a, b"return 2").await;
    // Recorded on the backend: the other proxy's first EVALSHA asks it.
    let deadline = Instant::now() + Duration::from_secs(5);
    while b.cmd(&[b"EVALSHA", &sha, b"0"]).await != b":2\r\n" {
        assert!(Instant::now() < deadline, "the other proxy never saw the script");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A flush through one proxy reaches the other within its 2 s trust.
    assert_eq!(a.cmd(&[b"SCRIPT", b"FLUSH"]).await, b"+OK\r\n");
    let flushed = Instant::now();
    while b.cmd(&[b"EVALSHA", &sha, b"0"]).await != NOSCRIPT {
        assert!(flushed.elapsed() < Duration::from_secs(4), "the flush was not seen");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The redis crate's `Script` runs EVALSHA and falls back to EVAL on
/// NOSCRIPT, as most clients' script helpers do: it works through a flush.
#[tokio::test]
async fn a_clients_script_helper_survives_a_flush() {
    let redis = RedisServer::start();
    let proxy = TestProxy::start(&config(&redis)).await;
    let mut c = proxy.client_as("s", "pw").await;
    let script = redis::Script::new("return redis.call('INCR', KEYS[1])");
    for expected in 1..=3 {
        let n: i64 = script.key("counter").invoke_async(&mut c).await.unwrap();
        assert_eq!(n, expected);
        let _: () = redis::cmd("SCRIPT").arg("FLUSH").query_async(&mut c).await.unwrap();
    }
    let mut direct = tenantry_tests::direct(&redis).await;
    let n: i64 = redis::cmd("GET").arg("s:counter").query_async(&mut direct).await.unwrap();
    assert_eq!(n, 3);
}

fn library(name: &str, function: &str) -> Vec<u8> {
    format!("#!lua name={name}\nredis.register_function('{function}', function(keys) return redis.call('GET', keys[1]) end)")
        .into_bytes()
}

/// FUNCTION DUMP / RESTORE: the tenant's own libraries, round trip, with
/// Redis's answers to a restore that cannot be done.
#[tokio::test]
async fn function_dump_and_restore_carry_only_the_tenants_libraries() {
    let redis = RedisServer::start();
    let proxy = TestProxy::start(&config(&redis)).await;
    let (mut s, mut t) = (proxy.login("s", "pw").await, proxy.login("t", "pw").await);
    assert_eq!(s.cmd(&[b"FUNCTION", b"LOAD", &library("slib", "sf")]).await, b"$4\r\nslib\r\n");
    assert_eq!(t.cmd(&[b"FUNCTION", b"LOAD", &library("tlib", "tf")]).await, b"$4\r\ntlib\r\n");
    assert_eq!(s.cmd(&[b"SET", b"k", b"v"]).await, b"+OK\r\n");

    let dump = s.cmd(&[b"FUNCTION", b"DUMP"]).await;
    let payload = {
        let text = &dump[dump.iter().position(|&b| b == b'\n').unwrap() + 1..dump.len() - 2];
        text.to_vec()
    };
    assert!(!String::from_utf8_lossy(&payload).contains("tlib"), "another tenant's library in the dump");
    assert_eq!(s.cmd(&[b"FUNCTION", b"FLUSH"]).await, b"+OK\r\n");
    assert!(s.cmd(&[b"FCALL", b"sf", b"1", b"k"]).await.starts_with(b"-ERR Function not found"));
    assert_eq!(s.cmd(&[b"FUNCTION", b"RESTORE", &payload]).await, b"+OK\r\n");
    assert_eq!(s.cmd(&[b"FCALL", b"sf", b"1", b"k"]).await, b"$1\r\nv\r\n");
    assert_eq!(t.cmd(&[b"FCALL", b"tf", b"1", b"k"]).await, b"$-1\r\n", "t's library untouched, its own key");
    assert_eq!(s.cmd(&[b"FUNCTION", b"RESTORE", &payload, b"REPLACE"]).await, b"+OK\r\n");
    assert_eq!(s.cmd(&[b"FUNCTION", b"RESTORE", &payload, b"FLUSH"]).await, b"+OK\r\n");

    // What Redis answers, directly, to the same mistakes.
    let mut direct = RawClient::connect(redis.addr()).await;
    let own = direct.cmd(&[b"FUNCTION", b"DUMP"]).await;
    let own = own[own.iter().position(|&b| b == b'\n').unwrap() + 1..own.len() - 2].to_vec();
    let exists = direct.cmd(&[b"FUNCTION", b"RESTORE", &own]).await;
    assert!(exists.starts_with(b"-ERR Library "), "{}", String::from_utf8_lossy(&exists));
    let ours = s.cmd(&[b"FUNCTION", b"RESTORE", &payload]).await;
    assert_eq!(ours, b"-ERR Library slib already exists\r\n");
    // Redis's words: `Library <name> already exists`, for one of the two.
    let exists = String::from_utf8(exists).unwrap();
    assert!(["slib", "tlib"].iter().any(|l| exists == format!("-ERR Library {l} already exists\r\n")), "{exists}");
    for args in [&[&b"FUNCTION"[..], b"RESTORE", b"garbage"][..], &[b"FUNCTION", b"RESTORE", &payload, b"SOMETIMES"]] {
        assert_eq!(s.cmd(args).await, direct.cmd(args).await, "{:?}", String::from_utf8_lossy(args[2]));
    }
    // Another tenant cannot take s's library names with s's dump.
    assert_eq!(t.cmd(&[b"FUNCTION", b"RESTORE", &payload, b"REPLACE"]).await, b"-ERR Library slib already exists\r\n");
    // Redis's own payload is not one of tenantry's.
    assert_eq!(s.cmd(&[b"FUNCTION", b"RESTORE", &own]).await, b"-ERR DUMP payload version or checksum are wrong\r\n");
}
