use std::time::{Duration, Instant};
use tenantry_tests::{RedisServer, TestProxy};

#[tokio::test]
async fn a_killed_backend_gives_fast_errors_then_recovers() {
    let mut redis = RedisServer::start();
    let proxy = TestProxy::two_tenants(&redis).await;
    let mut c = proxy.raw().await;
    assert_eq!(c.cmd(&[b"SET", b"k", b"v"]).await, b"+OK\r\n");

    redis.stop();
    // Every request gets an error naming the backend, quickly; none hangs.
    for _ in 0..20 {
        let start = Instant::now();
        let reply = c.cmd(&[b"GET", b"k"]).await;
        let text = String::from_utf8_lossy(&reply);
        assert!(
            text.starts_with("-ERR backend 'local' (127.0.0.1:"),
            "{text}"
        );
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "took {:?}",
            start.elapsed()
        );
    }

    redis.restart();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let reply = c.cmd(&[b"SET", b"k", b"again"]).await;
        if reply == b"+OK\r\n" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no recovery: {:?}",
            String::from_utf8_lossy(&reply)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(c.cmd(&[b"GET", b"k"]).await, b"$5\r\nagain\r\n");
}

#[tokio::test]
async fn a_stalled_backend_times_out_instead_of_hanging() {
    let redis = RedisServer::start();
    let proxy = TestProxy::start(&format!(
        "backends:\n  local: {{ kind: standalone, nodes: [\"{}\"], request_timeout: 300ms }}\n\
         tenants:\n  app: {{ backend: local, namespace: \"app:\" }}\ndefault_tenant: app\n",
        redis.addr()
    ))
    .await;
    let mut c = proxy.raw().await;
    assert_eq!(c.cmd(&[b"PING"]).await, b"+PONG\r\n");
    redis.freeze();
    let start = Instant::now();
    let reply = c.cmd(&[b"GET", b"k"]).await;
    assert!(
        reply.starts_with(b"-ERR backend 'local'"),
        "{:?}",
        String::from_utf8_lossy(&reply)
    );
    assert!(
        start.elapsed() < Duration::from_millis(1500),
        "took {:?}",
        start.elapsed()
    );
    redis.thaw();
    // Once the backend answers again, so does tenantry (on a new connection).
    let deadline = Instant::now() + Duration::from_secs(5);
    while c.cmd(&[b"PING"]).await != b"+PONG\r\n" {
        assert!(Instant::now() < deadline, "no recovery after the stall");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
