//! Blocking commands: each on a backend connection of its own, so they never
//! stall other clients; replies name the client's keys; a client that goes
//! away while blocked releases what it held.

use std::time::{Duration, Instant};
use tenantry_tests::{direct, encode, RawClient, RedisServer, TestProxy};

async fn blocked_clients(redis: &RedisServer) -> i64 {
    let mut d = direct(redis).await;
    let info: String = redis::cmd("INFO").arg("clients").query_async(&mut d).await.unwrap();
    info.lines().find_map(|l| l.strip_prefix("blocked_clients:")).unwrap().trim().parse().unwrap()
}

async fn wait_blocked(redis: &RedisServer, n: i64) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while blocked_clients(redis).await != n {
        assert!(Instant::now() < deadline, "expected {n} blocked clients");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn blocking_pops_wait_without_stalling_others_and_name_the_clients_keys() {
    let redis = RedisServer::start();
    let proxy = TestProxy::two_tenants(&redis).await;
    let mut waiter = proxy.raw().await;
    // BLPOP with timeout 0, then a GET pipelined behind it: the GET waits its turn.
    let mut req = encode(&[b"BLPOP", b"q1", b"q2", b"0"]);
    req.extend(encode(&[b"GET", b"after"]));
    waiter.send(&req).await;
    wait_blocked(&redis, 1).await;

    // Meanwhile another client of the same tenant is served at once.
    let mut other = proxy.raw().await;
    let start = Instant::now();
    assert_eq!(other.cmd(&[b"SET", b"after", b"yes"]).await, b"+OK\r\n");
    assert!(start.elapsed() < Duration::from_millis(500));
    // Tenant demo pushing to its own "q2" does not wake app's BLPOP.
    let mut demo = proxy.raw().await;
    assert_eq!(demo.cmd(&[b"AUTH", b"demo", b"demo-pw"]).await, b"+OK\r\n");
    assert_eq!(demo.cmd(&[b"RPUSH", b"q2", b"not-yours"]).await, b":1\r\n");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(blocked_clients(&redis).await, 1);

    assert_eq!(other.cmd(&[b"RPUSH", b"q2", b"job"]).await, b":1\r\n");
    assert_eq!(waiter.reply().await, b"*2\r\n$2\r\nq2\r\n$3\r\njob\r\n");
    assert_eq!(waiter.reply().await, b"$3\r\nyes\r\n");

    // BZPOPMIN ([key, member, score]) and XREAD BLOCK ([[key, entries]]) are stripped too.
    assert_eq!(other.cmd(&[b"ZADD", b"z", b"1", b"m"]).await, b":1\r\n");
    assert_eq!(waiter.cmd(&[b"BZPOPMIN", b"z", b"1"]).await, b"*3\r\n$1\r\nz\r\n$1\r\nm\r\n$1\r\n1\r\n");
    waiter.send(&encode(&[b"XREAD", b"BLOCK", b"0", b"STREAMS", b"s", b"$"])).await;
    wait_blocked(&redis, 1).await;
    assert!(other.cmd(&[b"XADD", b"s", b"5-1", b"f", b"v"]).await.starts_with(b"$3\r\n5-1"));
    assert_eq!(waiter.reply().await, b"*1\r\n*2\r\n$1\r\ns\r\n*1\r\n*2\r\n$3\r\n5-1\r\n*2\r\n$1\r\nf\r\n$1\r\nv\r\n");
    // A timeout answers null, as Redis does.
    assert_eq!(waiter.cmd(&[b"BLPOP", b"empty", b"0.1"]).await, b"*-1\r\n");
    assert_eq!(waiter.cmd(&[b"BLMOVE", b"empty", b"dst", b"LEFT", b"RIGHT", b"0.1"]).await, b"*-1\r\n");
}

#[tokio::test]
async fn a_client_that_leaves_while_blocked_releases_its_backend_connection() {
    let redis = RedisServer::start();
    let proxy = TestProxy::two_tenants(&redis).await;
    let mut waiter = RawClient::connect(proxy.addr).await;
    waiter.send(&encode(&[b"BLPOP", b"never", b"0"])).await;
    wait_blocked(&redis, 1).await;
    drop(waiter);
    wait_blocked(&redis, 0).await;
}

/// WAIT counts replicas that have the client's writes, without stalling
/// anyone else meanwhile.
#[tokio::test]
async fn wait_counts_replicas_that_have_the_clients_writes() {
    let primary = RedisServer::start();
    let port = primary.port().to_string();
    let replica = RedisServer::start_with(&["--replicaof", "127.0.0.1", &port]);
    let proxy = TestProxy::two_tenants(&primary).await;
    let mut c = proxy.raw().await;
    // The replica syncs first.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        assert_eq!(c.cmd(&[b"SET", b"k", b"v"]).await, b"+OK\r\n");
        if c.cmd(&[b"WAIT", b"1", b"200"]).await == b":1\r\n" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "replica never synced");
    }
    // Pipelined: WAIT answers after the writes before it, and counts them replicated.
    let mut req = encode(&[b"SET", b"a", b"1"]);
    req.extend(encode(&[b"WAIT", b"1", b"5000"]));
    req.extend(encode(&[b"GET", b"a"]));
    c.send(&req).await;
    assert_eq!(c.reply().await, b"+OK\r\n");
    assert_eq!(c.reply().await, b":1\r\n");
    assert_eq!(c.reply().await, b"$1\r\n1\r\n");
    let mut direct = tenantry_tests::direct(&replica).await;
    let v: String = redis::cmd("GET").arg("app:a").query_async(&mut direct).await.unwrap();
    assert_eq!(v, "1");
    // Asking for more replicas than there are waits out its timeout; others go on.
    let started = std::time::Instant::now();
    c.send(&encode(&[b"WAIT", b"2", b"500"])).await;
    let mut other = proxy.raw().await;
    assert_eq!(other.cmd(&[b"PING"]).await, b"+PONG\r\n");
    assert!(started.elapsed() < Duration::from_millis(300), "another client waited");
    assert_eq!(c.reply().await, b":1\r\n");
    assert!(started.elapsed() >= Duration::from_millis(450));
}
