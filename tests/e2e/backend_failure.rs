use std::time::{Duration, Instant};
use tenantry_tests::{http_get, RedisServer, TestProxy};

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
        assert!(text.starts_with("-ERR backend 'local' (127.0.0.1:"), "{text}");
        assert!(start.elapsed() < Duration::from_secs(1), "took {:?}", start.elapsed());
    }

    redis.restart();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let reply = c.cmd(&[b"SET", b"k", b"again"]).await;
        if reply == b"+OK\r\n" {
            break;
        }
        assert!(Instant::now() < deadline, "no recovery: {:?}", String::from_utf8_lossy(&reply));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(c.cmd(&[b"GET", b"k"]).await, b"$5\r\nagain\r\n");
}

#[tokio::test]
async fn a_stalled_backend_times_out_instead_of_hanging() {
    let _heavy = tenantry_tests::heavy().await;
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
    assert!(reply.starts_with(b"-ERR backend 'local'"), "{:?}", String::from_utf8_lossy(&reply));
    assert!(start.elapsed() >= Duration::from_millis(300), "gave up early, after {:?}", start.elapsed());
    assert!(start.elapsed() < Duration::from_millis(1500), "took {:?}", start.elapsed());
    redis.thaw();
    // Once the backend answers again, so does tenantry (on a new connection).
    let deadline = Instant::now() + Duration::from_secs(5);
    while c.cmd(&[b"PING"]).await != b"+PONG\r\n" {
        assert!(Instant::now() < deadline, "no recovery after the stall");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn admin_reports_live_and_ready_as_the_backend_comes_and_goes() {
    let mut redis = RedisServer::start();
    let proxy = TestProxy::start(&format!(
        "admin: 127.0.0.1:0\nbackends:\n  local: {{ kind: standalone, nodes: [\"{}\"] }}\n\
         tenants:\n  app: {{ backend: local, namespace: \"app:\" }}\ndefault_tenant: app\n",
        redis.addr()
    ))
    .await;
    let admin = proxy.admin_addr().expect("admin configured");
    assert_eq!(http_get(admin, "/live").await.0, 200);
    assert_eq!(http_get(admin, "/ready").await.0, 200);
    redis.stop();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (status, body) = http_get(admin, "/ready").await;
        if status == 503 {
            assert!(body.contains("backends down: local"), "{body}");
            break;
        }
        assert!(Instant::now() < deadline, "still ready with the backend dead");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(http_get(admin, "/live").await.0, 200);
}

#[tokio::test]
async fn backend_auth_with_an_acl_user_and_with_requirepass() {
    let redis = RedisServer::start_with(&["--requirepass", "admin-pw"]);
    let mut admin = tenantry_tests::RawClient::connect(redis.addr()).await;
    assert_eq!(admin.cmd(&[b"AUTH", b"admin-pw"]).await, b"+OK\r\n");
    let acl = [&b"ACL"[..], b"SETUSER", b"proxy", b"on", b">proxy-pw", b"~*", b"+@all"];
    assert_eq!(admin.cmd(&acl).await, b"+OK\r\n");

    for (user, pw) in [("username: proxy, ", "proxy-pw"), ("", "admin-pw")] {
        let proxy = TestProxy::start(&format!(
            "backends:\n  local: {{ kind: standalone, nodes: [\"{}\"], {user}password: {pw} }}\n\
             tenants:\n  app: {{ backend: local, namespace: \"app:\" }}\ndefault_tenant: app\n",
            redis.addr()
        ))
        .await;
        let mut c = proxy.raw().await;
        assert_eq!(c.cmd(&[b"SET", b"k", pw.as_bytes()]).await, b"+OK\r\n", "{user}");
    }

    let proxy = TestProxy::start(&format!(
        "backends:\n  local: {{ kind: standalone, nodes: [\"{}\"], password: wrong }}\n\
         tenants:\n  app: {{ backend: local, namespace: \"app:\" }}\ndefault_tenant: app\n",
        redis.addr()
    ))
    .await;
    let reply = proxy.raw().await.cmd(&[b"GET", b"k"]).await;
    let text = String::from_utf8_lossy(&reply);
    assert!(text.starts_with("-ERR backend 'local'") && text.contains("WRONGPASS"), "{text}");
}
