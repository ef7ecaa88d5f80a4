//! The second wall: a tenant whose commands run as a backend user limited to
//! its namespace is held there by Redis's ACL even where tenantry's
//! rewriting cannot see (a bug, or a Lua script building key names).

use std::time::{Duration, Instant};
use tenantry_tests::{RawClient, RedisServer, TestProxy};

async fn provisioned() -> (RedisServer, TestProxy) {
    let redis = RedisServer::start_with(&["--requirepass", "admin-pw"]);
    let proxy = TestProxy::start(&format!(
        "backends:\n  shared: {{ kind: standalone, nodes: [\"{}\"], password: admin-pw, provision_acl: true }}\n\
         tenants:\n  \
           app: {{ backend: shared, namespace: \"app:\", backend_auth: {{ username: tenant-app, password: app-secret }} }}\n  \
           pay: {{ backend: shared, namespace: \"pay:\", auth: {{ username: pay, password: pw }}, backend_auth: {{ username: tenant-pay, password: pay-secret }} }}\n  \
           old: {{ backend: shared, namespace: \"old:\", auth: {{ username: old, password: pw }} }}\n\
         default_tenant: app\n",
        redis.addr()
    ))
    .await;
    (redis, proxy)
}

/// Waits until the tenant's first command succeeds: its backend user is
/// created a moment after start, and its connections retry until then.
async fn ready(c: &mut RawClient) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = c.cmd(&[b"SET", b"ready", b"1"]).await;
        if r == b"+OK\r\n" {
            return;
        }
        assert!(Instant::now() < deadline, "tenant never served: {:?}", String::from_utf8_lossy(&r));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn tenantry_creates_each_tenants_user_limited_to_its_namespace() {
    let (redis, proxy) = provisioned().await;
    let mut app = proxy.raw().await;
    ready(&mut app).await;
    let user = redis.cli(&["-a", "admin-pw", "--no-auth-warning", "ACL", "GETUSER", "tenant-app"]);
    assert!(user.contains("~app:*") && user.contains("&app:*"), "{user}");
    let list = redis.cli(&["-a", "admin-pw", "--no-auth-warning", "ACL", "LIST"]);
    assert!(list.contains("user tenant-pay on") && !list.contains("tenant-old"), "{list}");
    // The tenant's connections are logged in as its user.
    let clients = redis.cli(&["-a", "admin-pw", "--no-auth-warning", "CLIENT", "LIST"]);
    assert!(clients.lines().any(|l| l.contains("user=tenant-app")), "{clients}");
    // The tenant works as before.
    assert_eq!(app.cmd(&[b"SET", b"k", b"v"]).await, b"+OK\r\n");
    assert_eq!(app.cmd(&[b"GET", b"k"]).await, b"$1\r\nv\r\n");
    assert_eq!(redis.cli(&["-a", "admin-pw", "--no-auth-warning", "GET", "app:k"]).trim_end(), "v");
}

#[tokio::test]
async fn a_command_that_bypasses_the_rewriter_is_refused_by_the_backend() {
    let (redis, proxy) = provisioned().await;
    let mut pay = proxy.login("pay", "pw").await;
    ready(&mut pay).await;
    assert_eq!(pay.cmd(&[b"SET", b"balance", b"100"]).await, b"+OK\r\n");
    let mut app = proxy.raw().await;
    ready(&mut app).await;
    // On purpose: tenant app's connection, tenant pay's key, not rewritten.
    let read = proxy.send_unrewritten("app", &[b"GET", b"pay:balance"]).await.expect("a reply");
    assert!(read.starts_with(b"-NOPERM"), "{:?}", String::from_utf8_lossy(&read));
    let write = proxy.send_unrewritten("app", &[b"SET", b"pay:balance", b"0"]).await.expect("a reply");
    assert!(write.starts_with(b"-NOPERM"), "{:?}", String::from_utf8_lossy(&write));
    let publish = proxy.send_unrewritten("app", &[b"PUBLISH", b"pay:events", b"x"]).await.expect("a reply");
    assert!(publish.starts_with(b"-NOPERM"), "{:?}", String::from_utf8_lossy(&publish));
    // Its own namespace it may reach.
    let own = proxy.send_unrewritten("app", &[b"GET", b"app:ready"]).await.expect("a reply");
    assert_eq!(&own[..], b"$1\r\n1\r\n");
    assert_eq!(redis.cli(&["-a", "admin-pw", "--no-auth-warning", "GET", "pay:balance"]).trim_end(), "100");
}

#[tokio::test]
async fn scripts_are_on_for_a_tenant_with_its_own_user_and_cannot_leave_its_namespace() {
    let (redis, proxy) = provisioned().await;
    let mut app = proxy.raw().await;
    ready(&mut app).await;
    // A declared key: rewritten and allowed.
    let ok = app.cmd(&[b"EVAL", b"return redis.call('SET', KEYS[1], 'mine')", b"1", b"k"]).await;
    assert_eq!(ok, b"+OK\r\n");
    assert_eq!(redis.cli(&["-a", "admin-pw", "--no-auth-warning", "GET", "app:k"]).trim_end(), "mine");
    // A key name the script builds itself, in another tenant's namespace.
    let out = app.cmd(&[b"EVAL", b"return redis.call('SET', 'pay:' .. 'balance', 'stolen')", b"0"]).await;
    let text = String::from_utf8_lossy(&out);
    // (Redis 7.0 says so as "-ERR The user executing the script can't
    // access at least one of the keys"; later versions as -NOPERM.)
    let refused = ["NOPERM", "No permissions", "can't access"].iter().any(|m| text.contains(m));
    assert!(text.starts_with('-') && refused, "{text}");
    assert!(redis.cli(&["-a", "admin-pw", "--no-auth-warning", "EXISTS", "pay:balance"]).trim_end() == "0");
    // A tenant on the shared connection keeps scripts off by default.
    let mut old = proxy.login("old", "pw").await;
    let refused = old.cmd(&[b"EVAL", b"return 1", b"0"]).await;
    assert!(refused.starts_with(b"-NOPERM"), "{:?}", String::from_utf8_lossy(&refused));
}

#[tokio::test]
async fn a_reload_keeps_each_users_commands_in_step_with_the_tenants_policy() {
    let redis = RedisServer::start_with(&["--requirepass", "admin-pw"]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tenants.yaml");
    let config = |commands: &str| {
        format!(
            "listen: 127.0.0.1:0\n\
             backends:\n  shared: {{ kind: standalone, nodes: [\"{}\"], password: admin-pw, provision_acl: true }}\n\
             tenants:\n  app: {{ backend: shared, namespace: \"app:\", backend_auth: {{ username: tenant-app, password: s }}{commands} }}\n\
             default_tenant: app\n",
            redis.addr()
        )
    };
    let write = |text: String| {
        std::fs::write(path.with_extension("tmp"), &text).unwrap();
        std::fs::rename(path.with_extension("tmp"), &path).unwrap();
        tenantry_proxy::version_of(text.as_bytes())
    };
    write(config(""));
    let proxy = TestProxy::start_file(&path).await;
    let mut app = proxy.raw().await;
    ready(&mut app).await;
    let user = || redis.cli(&["-a", "admin-pw", "--no-auth-warning", "ACL", "GETUSER", "tenant-app"]);
    assert!(user().contains("+@all") && !user().contains("-keys"), "{}", user());
    let version = write(config(", commands: { deny: [KEYS] }"));
    proxy.wait_for_version(&version).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !user().contains("-keys") {
        assert!(Instant::now() < deadline, "the user was not updated: {}", user());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The backend refuses it too, past tenantry's own refusal.
    let keys = proxy.send_unrewritten("app", &[b"KEYS", b"app:*"]).await.expect("a reply");
    assert!(keys.starts_with(b"-NOPERM"), "{:?}", String::from_utf8_lossy(&keys));
    ready(&mut app).await;
}

/// `make run`'s config, on a redis-server of the test's.
#[tokio::test]
async fn the_example_config_gives_every_tenant_scripts_behind_its_own_user() {
    let redis = RedisServer::start();
    let example = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../config/example.yaml")).unwrap();
    let yaml = example
        .replace("127.0.0.1:6390", &redis.addr())
        .replace("listen: 127.0.0.1:6379", "listen: 127.0.0.1:0")
        .replace("admin: 127.0.0.1:9121", "admin: 127.0.0.1:0");
    let proxy = TestProxy::start_listening(&yaml).await;
    let mut default = proxy.raw().await;
    ready(&mut default).await;
    let ok = default.cmd(&[b"EVAL", b"return redis.call('SET', KEYS[1], 'v')", b"1", b"k"]).await;
    assert_eq!(ok, b"+OK\r\n");
    assert_eq!(redis.cli(&["GET", "default:k"]).trim_end(), "v");
    // A script that builds the demo tenant's key name itself: Redis refuses it.
    let out = default.cmd(&[b"EVAL", b"return redis.call('SET', 'demo:v1:' .. 'k', 'stolen')", b"0"]).await;
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with('-') && ["NOPERM", "No permissions", "can't access"].iter().any(|m| text.contains(m)));
    assert_eq!(redis.cli(&["EXISTS", "demo:v1:k"]).trim_end(), "0");
    let mut demo = proxy.login("demo", "demo-password").await;
    ready(&mut demo).await;
    let ok = demo
        .cmd(&[b"FUNCTION", b"LOAD", b"#!lua name=demo\nredis.register_function('one', function() return 1 end)"])
        .await;
    assert_eq!(ok, b"$4\r\ndemo\r\n");
    assert_eq!(demo.cmd(&[b"FCALL", b"one", b"0"]).await, b":1\r\n");
}

/// A backend whose own user may not ACL SETUSER: the tenant is served
/// without its user, scripts off, until its user can be made.
#[tokio::test]
async fn a_tenant_whose_user_cannot_be_made_is_served_with_scripts_off_until_it_can() {
    let redis = RedisServer::start();
    let narrow = ["ACL", "SETUSER", "proxy", "on", ">proxy-pw", "~*", "&*", "+@all", "-acl|setuser"];
    assert_eq!(redis.cli(&narrow).trim_end(), "OK");
    let proxy = TestProxy::start(&format!(
        "backends:\n  shared: {{ kind: standalone, nodes: [\"{}\"], username: proxy, password: proxy-pw, provision_acl: true }}\n\
         tenants:\n  app: {{ backend: shared, namespace: \"app:\", backend_auth: {{ username: tenant-app, password: s }} }}\n\
         default_tenant: app\n",
        redis.addr()
    ))
    .await;
    let mut app = proxy.raw().await;
    ready(&mut app).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = app.cmd(&[b"EVAL", b"return 1", b"0"]).await;
        if r.starts_with(b"-NOPERM tenant 'app' may not run scripts") {
            break;
        }
        assert!(Instant::now() < deadline, "scripts never turned off: {}", String::from_utf8_lossy(&r));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(app.cmd(&[b"GET", b"ready"]).await, b"$1\r\n1\r\n");
    assert_eq!(redis.cli(&["ACL", "GETUSER", "tenant-app"]).trim(), "");
    // The operator lets tenantry make users: the tenant gets its user and scripts.
    assert_eq!(redis.cli(&["ACL", "SETUSER", "proxy", "+acl|setuser"]).trim_end(), "OK");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = app.cmd(&[b"EVAL", b"return redis.call('GET', KEYS[1])", b"1", b"ready"]).await;
        if r == b"$1\r\n1\r\n" {
            break;
        }
        assert!(Instant::now() < deadline, "scripts never came back: {}", String::from_utf8_lossy(&r));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
