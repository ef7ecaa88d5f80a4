//! Keyspace notifications through tenantry against Redis's own: the same
//! event stream, names stripped, for the tenant's keys and the classes its
//! `notify-keyspace-events` names, and never another tenant's.

use std::time::Duration;
use tenantry_tests::{RawClient, RedisServer, TestProxy};

/// What an application does to its keys: one event or more of each class.
const WORK: &[&[&str]] = &[
    &["SET", "k", "v"],
    &["APPEND", "k", "x"],
    &["INCR", "n"],
    &["LPUSH", "l", "a", "b"],
    &["RPOP", "l"],
    &["SADD", "s", "a"],
    &["HSET", "h", "f", "v"],
    &["ZADD", "z", "1", "a"],
    &["XADD", "x", "*", "f", "v"],
    &["EXPIRE", "k", "100"],
    &["PERSIST", "k"],
    &["RENAME", "k", "k2"],
    &["DEL", "k2", "n"],
    // Read last: the stream ends with its events.
    &["SET", "end", "1"],
];

async fn run(c: &mut RawClient, commands: &[&[&str]]) {
    for cmd in commands {
        let args: Vec<&[u8]> = cmd.iter().map(|a| a.as_bytes()).collect();
        let reply = c.cmd(&args).await;
        assert!(!reply.starts_with(b"-"), "{cmd:?}: {}", String::from_utf8_lossy(&reply));
    }
}

/// A subscriber to every keyspace and keyevent channel, in `proto`.
async fn subscribe(mut c: RawClient, resp3: bool) -> RawClient {
    if resp3 {
        assert!(c.cmd(&[b"HELLO", b"3"]).await.starts_with(b"%"));
    }
    c.send(&tenantry_tests::encode(&[b"PSUBSCRIBE", b"__keyspace@0__:*", b"__keyevent@0__:*"])).await;
    for _ in 0..2 {
        let confirm = String::from_utf8(c.reply().await).unwrap();
        assert!(confirm.contains("psubscribe"), "{confirm}");
    }
    c
}

/// Frames until the events of the key `end` (or until the stream is quiet).
async fn events(c: &mut RawClient) -> Vec<String> {
    let mut out = Vec::new();
    let mut ends = 0;
    while let Ok(frame) = tokio::time::timeout(Duration::from_millis(500), c.reply()).await {
        let frame = String::from_utf8(frame).unwrap();
        ends += usize::from(frame.contains("__:end\r\n") || frame.ends_with("\r\nend\r\n"));
        out.push(frame);
        if ends == 2 {
            break;
        }
    }
    out
}

/// `TestProxy::two_tenants`, each tenant allowed every keyspace event class.
async fn allowed(redis: &RedisServer) -> TestProxy {
    TestProxy::start(&format!(
        "backends:\n  local: {{ kind: standalone, nodes: [\"{}\"] }}\n\
         tenants:\n  app: {{ backend: local, namespace: \"app:\", keyspace_events: KEA }}\n  \
         demo: {{ backend: local, namespace: \"demo:\", keyspace_events: KEA, auth: {{ username: demo, password: demo-pw }} }}\n\
         default_tenant: app\n",
        redis.addr()
    ))
    .await
}

async fn config_set(c: &mut RawClient, flags: &str) {
    assert_eq!(c.cmd(&[b"CONFIG", b"SET", b"notify-keyspace-events", flags.as_bytes()]).await, b"+OK\r\n");
}

#[tokio::test]
async fn the_event_stream_is_redis_own_with_names_stripped() {
    for flags in ["KEA", "K$", "Eglx"] {
        for resp3 in [false, true] {
            let direct_redis = RedisServer::start();
            let mut direct = RawClient::connect(direct_redis.addr()).await;
            config_set(&mut direct, flags).await;
            let mut theirs = subscribe(RawClient::connect(direct_redis.addr()).await, resp3).await;
            run(&mut direct, WORK).await;
            let want = events(&mut theirs).await;
            assert!(!want.is_empty(), "Redis sent nothing for {flags}");

            let redis = RedisServer::start();
            let proxy = allowed(&redis).await;
            let mut c = proxy.raw().await;
            config_set(&mut c, flags).await;
            let direct_get = direct.cmd(&[b"CONFIG", b"GET", b"notify-keyspace-events"]).await;
            assert_eq!(c.cmd(&[b"CONFIG", b"GET", b"notify-keyspace-events"]).await, direct_get, "{flags}");
            let mut ours = subscribe(proxy.raw().await, resp3).await;
            run(&mut c, WORK).await;
            assert_eq!(events(&mut ours).await, want, "flags {flags}, resp3 {resp3}");
            println!("flags {flags}, resp3 {resp3}: {} events, as from Redis", want.len());
        }
    }
}

#[tokio::test]
async fn tenants_never_see_each_others_events() {
    let redis = RedisServer::start();
    let proxy = allowed(&redis).await;
    let mut app = proxy.raw().await;
    let mut demo = proxy.login("demo", "demo-pw").await;
    // Redis's default is no events, per tenant too.
    assert_eq!(
        demo.cmd(&[b"CONFIG", b"GET", b"notify-keyspace-events"]).await,
        b"*2\r\n$22\r\nnotify-keyspace-events\r\n$0\r\n\r\n"
    );
    config_set(&mut app, "KEA").await;
    config_set(&mut demo, "KEA").await;
    let mut app_events = subscribe(proxy.raw().await, false).await;
    let mut demo_sub = proxy.login("demo", "demo-pw").await;
    demo_sub.send(&tenantry_tests::encode(&[b"PSUBSCRIBE", b"__keyspace@*__:*", b"__keyevent@*__:*"])).await;
    demo_sub.reply().await;
    demo_sub.reply().await;

    run(&mut app, &[&["SET", "secret", "v"], &["DEL", "secret"], &["SET", "end", "1"]]).await;
    let seen = events(&mut app_events).await;
    assert_eq!(seen.len(), 6, "app sees its own events: {seen:?}");
    assert!(seen.iter().all(|f| !f.contains("app:")), "names are stripped: {seen:?}");
    let leaked = tokio::time::timeout(Duration::from_millis(500), demo_sub.reply()).await;
    assert!(leaked.is_err(), "demo got app's event: {:?}", leaked.map(|f| String::from_utf8_lossy(&f).into_owned()));

    run(&mut demo, &[&["SET", "mine", "v"]]).await;
    let frame = String::from_utf8(demo_sub.reply().await).unwrap();
    assert!(frame.contains("__keyspace@0__:mine\r\n") || frame.contains("\r\nmine\r\n"), "{frame}");
    let leaked = tokio::time::timeout(Duration::from_millis(500), app_events.reply()).await;
    assert!(leaked.is_err(), "app got demo's event: {:?}", leaked.map(|f| String::from_utf8_lossy(&f).into_owned()));

    // Flags Redis refuses are refused.
    let bad = demo.cmd(&[b"CONFIG", b"SET", b"notify-keyspace-events", b"KQ"]).await;
    assert!(bad.starts_with(b"-ERR CONFIG SET failed (possibly related to argument 'notify-keyspace-events')"));
}

/// A tenant's flags hold for all of its proxies, as Redis's setting holds
/// for every connection: set through one sidecar, they reach subscribers
/// of another.
#[tokio::test]
async fn flags_set_through_one_proxy_hold_on_another() {
    let redis = RedisServer::start();
    let one = allowed(&redis).await;
    let other = allowed(&redis).await;
    // Subscribed on `other` before the flags are set there.
    let mut early = subscribe(other.raw().await, false).await;
    let mut app = one.raw().await;
    config_set(&mut app, "K$").await;
    let mut reader = other.raw().await;
    assert_eq!(
        reader.cmd(&[b"CONFIG", b"GET", b"notify-keyspace-events"]).await,
        b"*2\r\n$22\r\nnotify-keyspace-events\r\n$2\r\n$K\r\n"
    );
    // A subscriber that comes now gets the events at once...
    let mut late = subscribe(other.raw().await, true).await;
    run(&mut app, &[&["SET", "end", "1"]]).await;
    let seen = events(&mut late).await;
    assert_eq!(
        seen,
        vec![">4\r\n$8\r\npmessage\r\n$16\r\n__keyspace@0__:*\r\n$18\r\n__keyspace@0__:end\r\n$3\r\nset\r\n"]
    );
    // ...and the one subscribed before, within the 2 s a proxy trusts its copy.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let frame = loop {
        run(&mut app, &[&["SET", "end", "1"]]).await;
        if let Ok(frame) = tokio::time::timeout(Duration::from_millis(200), early.reply()).await {
            break String::from_utf8(frame).unwrap();
        }
        assert!(tokio::time::Instant::now() < deadline, "the flags never reached the other proxy");
    };
    assert_eq!(frame, "*4\r\n$8\r\npmessage\r\n$16\r\n__keyspace@0__:*\r\n$18\r\n__keyspace@0__:end\r\n$3\r\nset\r\n");
    // Only the classes set: no keyevent channel.
    assert!(events(&mut early).await.iter().all(|f| f.contains("__keyspace@0__:end")));
    one.stop().await;
    other.stop().await;
}

/// The server publishes what its tenants may enable, whatever they set;
/// a tenant cannot go beyond its classes, and a reload that takes classes
/// away narrows the server again.
#[tokio::test]
async fn the_server_publishes_what_tenants_may_enable_and_a_tenant_never_changes_it() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tenants.yaml");
    let yaml = |app: &str| {
        format!(
            "listen: 127.0.0.1:0\nbackends:\n  local: {{ kind: standalone, nodes: [\"{}\"] }}\n\
             tenants:\n  app: {{ backend: local, namespace: \"app:\"{app} }}\n  \
             demo: {{ backend: local, namespace: \"demo:\", auth: {{ username: demo, password: demo-pw }} }}\n\
             default_tenant: app\n",
            redis.addr()
        )
    };
    std::fs::write(&path, yaml(", keyspace_events: K$")).unwrap();
    let proxy = TestProxy::start_file(&path).await;
    let redis = &redis;
    // (The proxy runs on this test's thread: waits must be async.)
    let wait_for = |want: &'static str| async move {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let now = redis.cli(&["CONFIG", "GET", "notify-keyspace-events"]);
            if now.lines().nth(1) == Some(want) {
                return;
            }
            assert!(std::time::Instant::now() < deadline, "server's setting {now:?}, want {want}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    // tenantry's own Exe, and app's K$.
    wait_for("$xeKE").await;
    let mut app = proxy.raw().await;
    config_set(&mut app, "K$").await;
    config_set(&mut app, "").await;
    let beyond = app.cmd(&[b"CONFIG", b"SET", b"notify-keyspace-events", b"KEA"]).await;
    assert!(
        String::from_utf8_lossy(&beyond).contains("tenant 'app' may enable only the keyspace event classes '$K'"),
        "{}",
        String::from_utf8_lossy(&beyond)
    );
    let mut demo = proxy.login("demo", "demo-pw").await;
    let refused = demo.cmd(&[b"CONFIG", b"SET", b"notify-keyspace-events", b"Kg"]).await;
    assert!(refused.starts_with(b"-ERR CONFIG SET failed"), "{}", String::from_utf8_lossy(&refused));
    config_set(&mut demo, "").await;
    wait_for("$xeKE").await;
    // The class is taken away: the server is narrowed to tenantry's own.
    std::fs::write(&path, yaml("")).unwrap();
    wait_for("xeE").await;
}

/// Two backends that name one server (another connection setting, another
/// user, a migration's target): it publishes the union of both backends'
/// tenants' classes, not one then the other.
#[tokio::test]
async fn a_server_named_by_two_backends_publishes_both_backends_classes() {
    let redis = RedisServer::start();
    let _proxy = TestProxy::start(&format!(
        "backends:\n  one: {{ kind: standalone, nodes: [\"{0}\"] }}\n  \
         two: {{ kind: standalone, nodes: [\"{0}\"], connections: 2 }}\n\
         tenants:\n  a: {{ backend: one, namespace: \"a:\", keyspace_events: K$ }}\n  \
         b: {{ backend: two, namespace: \"b:\", keyspace_events: Eg }}\n\
         default_tenant: a\n",
        redis.addr()
    ))
    .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut seen = Vec::new();
    while std::time::Instant::now() < deadline {
        seen.push(redis.cli(&["CONFIG", "GET", "notify-keyspace-events"]).lines().nth(1).unwrap_or("").to_string());
        tokio::time::sleep(Duration::from_millis(100)).await;
        // Settled, and stays so for 3 s (30 reads): no flapping between the two.
        if seen.len() >= 30 && seen[seen.len() - 30..].iter().all(|s| s == "g$xeKE") {
            return;
        }
    }
    panic!("the server's setting never settled on both backends' classes: {seen:?}");
}
