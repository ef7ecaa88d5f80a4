//! Clients that try to cost tenantry more than their share: trickled
//! requests (slowloris), connection floods, huge declared lengths.

use std::time::{Duration, Instant};
use tenantry_tests::{RawClient, RedisServer, TestProxy};
use tokio::io::AsyncWriteExt;

async fn proxy_with(limits: &str, redis: &RedisServer) -> TestProxy {
    TestProxy::start(&format!(
        "limits: {{ {limits} }}\n\
         backends:\n  local: {{ kind: standalone, nodes: [\"{}\"] }}\n\
         tenants:\n  app: {{ backend: local, namespace: \"app:\" }}\ndefault_tenant: app\n",
        redis.addr()
    ))
    .await
}

#[tokio::test]
async fn a_request_trickled_in_is_closed_after_the_request_read_timeout() {
    let redis = RedisServer::start();
    let proxy = proxy_with("request_read_timeout: 1s", &redis).await;
    let mut other = proxy.raw().await;
    let mut slow = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    let frame = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$20\r\naaaaaaaaaaaaaaaaaaaa\r\n";
    // A byte every 100 ms for 0.8 s (writing on past the close would reset
    // the connection before its error could be read).
    let t0 = Instant::now();
    for &b in &frame[..8] {
        slow.write_all(&[b]).await.unwrap();
        // Others are served meanwhile.
        assert_eq!(other.cmd(&[b"PING"]).await, b"+PONG\r\n");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut c = RawClient::from_stream(slow);
    assert_eq!(
        c.reply().await,
        b"-ERR Protocol error: request not received whole within 1s (limits.request_read_timeout)\r\n"
    );
    let took = t0.elapsed();
    assert!(took >= Duration::from_millis(950) && took < Duration::from_secs(3), "{took:?}");
    assert!(c.closed().await);
    // A request that comes in pieces, but whole within the timeout, is served.
    let mut pieces = proxy.raw().await;
    for part in [&b"*2\r\n$3\r\nGET"[..], b"\r\n$1\r\n", b"k\r\n"] {
        pieces.send(part).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(pieces.reply().await, b"$-1\r\n");
}

#[tokio::test]
async fn a_connection_flood_past_max_clients_is_refused_at_once_with_redis_error() {
    let redis = RedisServer::start();
    let proxy = proxy_with("max_clients: 5", &redis).await;
    let mut served = Vec::new();
    for _ in 0..5 {
        let mut c = proxy.raw().await;
        assert_eq!(c.cmd(&[b"PING"]).await, b"+PONG\r\n");
        served.push(c);
    }
    let t0 = Instant::now();
    for _ in 0..200 {
        let mut c = proxy.raw().await;
        assert_eq!(c.reply().await, b"-ERR max number of clients reached\r\n");
        assert!(c.closed().await);
    }
    eprintln!("200 refusals in {:?}", t0.elapsed());
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
    for c in &mut served {
        assert_eq!(c.cmd(&[b"SET", b"k", b"v"]).await, b"+OK\r\n");
    }
    // A place given back is taken by the next client.
    drop(served.pop());
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut c = proxy.raw().await;
        c.send(b"PING\r\n").await;
        let reply = c.reply().await;
        if reply == b"+PONG\r\n" {
            break;
        }
        assert_eq!(reply, b"-ERR max number of clients reached\r\n");
        assert!(Instant::now() < deadline, "the freed place was not given to a new client");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn huge_declared_lengths_are_refused_with_redis_errors() {
    let redis = RedisServer::start();
    let proxy = TestProxy::two_tenants(&redis).await;
    for (frame, error) in [
        (&b"*2147483647\r\n"[..], &b"-ERR Protocol error: invalid multibulk length\r\n"[..]),
        (b"*1\r\n$4294967296\r\n", b"-ERR Protocol error: invalid bulk length\r\n"),
        (b"*1\r\n$2147483648\r\n", b"-ERR Protocol error: invalid bulk length\r\n"),
        (b"*-5\r\n*1\r\n$-1\r\n", b"-ERR Protocol error: invalid bulk length\r\n"),
    ] {
        let mut c = proxy.raw().await;
        c.send(frame).await;
        assert_eq!(c.reply().await, error, "{}", String::from_utf8_lossy(frame));
        assert!(c.closed().await);
    }
    // The largest length Redis allows is taken, and waits for its bytes.
    let mut c = proxy.raw().await;
    c.send(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$536870912\r\n").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut other = proxy.raw().await;
    assert_eq!(other.cmd(&[b"PING"]).await, b"+PONG\r\n");
}
