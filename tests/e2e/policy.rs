//! Per-tenant policy: rate limits, command rules, size and connection limits, TTLs.

use std::time::{Duration, Instant};
use tenantry_tests::{encode, RawClient, RedisServer, TestProxy};

async fn proxy_with(redis: &RedisServer, tenants: &str) -> TestProxy {
    TestProxy::start(&format!(
        "backends:\n  local: {{ kind: standalone, nodes: [\"{}\"] }}\ntenants:\n{tenants}",
        redis.addr()
    ))
    .await
}

/// Every tenant of these tests has the password `pw`.
async fn login(proxy: &TestProxy, user: &str) -> RawClient {
    proxy.login(user, "pw").await
}

/// Sends pipelines of 50 INCRs for `secs`, one every `pace` if given (else
/// as fast as replies come); returns (ok replies, rate-limit errors, other errors).
async fn hammer(mut c: RawClient, secs: f64, pace: Option<Duration>) -> (u64, u64, u64) {
    let start = Instant::now();
    let (mut ok, mut limited, mut other) = (0, 0, 0);
    let req: Vec<u8> = (0..50).flat_map(|_| encode(&[b"INCR", b"n"])).collect();
    let mut tick = pace.map(tokio::time::interval);
    while start.elapsed().as_secs_f64() < secs {
        if let Some(t) = tick.as_mut() {
            t.tick().await;
        }
        c.send(&req).await;
        for _ in 0..50 {
            let r = c.reply().await;
            if r.starts_with(b":") {
                ok += 1;
            } else if r.starts_with(b"-ERR rate limit exceeded") {
                limited += 1;
            } else {
                other += 1;
            }
        }
    }
    (ok, limited, other)
}

#[tokio::test]
async fn a_rate_limit_holds_within_10_percent_and_other_tenants_are_unaffected() {
    let redis = RedisServer::start();
    let proxy = proxy_with(
        &redis,
        "  a: { backend: local, namespace: \"a:\", auth: { username: a, password: pw }, rate_limit: { ops_per_sec: 400, burst: 40 } }\n  \
           b: { backend: local, namespace: \"b:\", auth: { username: b, password: pw } }\n",
    )
    .await;
    let _heavy = tenantry_tests::heavy().await;
    let (b_before, _, _) = hammer(login(&proxy, "b").await, 1.0, None).await;

    // a asks for 2,000 ops/s, five times its limit; b goes as fast as it can.
    let a = tokio::spawn(hammer(login(&proxy, "a").await, 5.0, Some(Duration::from_millis(25))));
    let b = tokio::spawn(hammer(login(&proxy, "b").await, 5.0, None));
    let (a_ok, a_limited, a_other) = a.await.unwrap();
    let (b_ok, b_limited, b_other) = b.await.unwrap();
    let (b_after, _, _) = hammer(login(&proxy, "b").await, 1.0, None).await;
    let b_alone = (b_before + b_after) / 2;

    let expected = 400.0 * 5.0 + 40.0;
    let ratio = a_ok as f64 / expected;
    assert!((0.9..=1.1).contains(&ratio), "tenant a got {a_ok} ops in 5 s, expected about {expected}");
    assert!(a_limited > 0 && a_other == 0, "a: {a_limited} limited, {a_other} other errors");
    assert_eq!((b_limited, b_other), (0, 0), "tenant b was limited");
    // b is not held back by a's limit: its rate stays near what it had alone.
    let b_rate = b_ok as f64 / 5.0;
    assert!(
        b_rate >= 0.6 * b_alone as f64,
        "b: {b_rate:.0} ops/s with a limited, {b_alone} ops/s alone (mean of before and after)"
    );
}

#[tokio::test]
async fn a_delayed_rate_limit_waits_instead_of_failing_up_to_its_bound() {
    let redis = RedisServer::start();
    let proxy = proxy_with(
        &redis,
        "  d: { backend: local, namespace: \"d:\", auth: { username: d, password: pw }, \
           rate_limit: { ops_per_sec: 100, burst: 1, on_exceed: delay, max_delay: 50ms } }\n",
    )
    .await;
    let _heavy = tenantry_tests::heavy().await;
    let mut c = login(&proxy, "d").await;
    // One at a time: each waits about 10 ms for its turn, well within 50 ms.
    let start = Instant::now();
    for i in 1..=50 {
        assert_eq!(c.cmd(&[b"INCR", b"n"]).await, format!(":{i}\r\n").into_bytes());
    }
    let took = start.elapsed();
    assert!(took >= Duration::from_millis(400), "50 ops at 100/s took only {took:?}");
    // A pipeline of 50: the first few wait, the rest would wait past 50 ms and are refused.
    let req: Vec<u8> = (0..50).flat_map(|_| encode(&[b"INCR", b"n"])).collect();
    c.send(&req).await;
    let mut refused = 0;
    for _ in 0..50 {
        let r = c.reply().await;
        if r.starts_with(b"-ERR rate limit exceeded for tenant 'd' (100 ops/s, burst 1)") {
            refused += 1;
        } else {
            assert!(r.starts_with(b":"), "{:?}", String::from_utf8_lossy(&r));
        }
    }
    assert!(refused > 30, "only {refused} of 50 refused");
}

#[tokio::test]
async fn command_rules_and_size_limits_give_their_own_errors() {
    let redis = RedisServer::start();
    let proxy = proxy_with(
        &redis,
        "  r: { backend: local, namespace: \"r:\", auth: { username: r, password: pw },\n      \
           commands: { deny: [SORT, \"@hyperloglog\"] }, limits: { max_key_bytes: 8, max_value_bytes: 16 } }\n  \
           ro: { backend: local, namespace: \"ro:\", auth: { username: ro, password: pw }, commands: { allow: [\"@read\"] } }\n",
    )
    .await;
    let mut c = login(&proxy, "r").await;
    assert_eq!(
        c.cmd(&[b"SORT", b"l"]).await,
        b"-NOPERM tenant 'r' may not run 'sort': denied by commands.deny SORT\r\n"
    );
    assert_eq!(
        c.cmd(&[b"PFADD", b"h", b"x"]).await,
        b"-NOPERM tenant 'r' may not run 'pfadd': denied by commands.deny @hyperloglog\r\n"
    );
    assert_eq!(
        c.cmd(&[b"GET", b"123456789"]).await,
        b"-ERR key too large for tenant 'r': 9 bytes, limits.max_key_bytes is 8\r\n"
    );
    assert_eq!(
        c.cmd(&[b"SET", b"k", &[b'x'; 17]]).await,
        b"-ERR value too large for tenant 'r': 17 bytes, limits.max_value_bytes is 16\r\n"
    );
    assert_eq!(c.cmd(&[b"SET", b"k", &[b'x'; 16]]).await, b"+OK\r\n");

    let mut ro = login(&proxy, "ro").await;
    assert_eq!(ro.cmd(&[b"GET", b"k"]).await, b"$-1\r\n");
    assert_eq!(
        ro.cmd(&[b"SET", b"k", b"v"]).await,
        b"-NOPERM tenant 'ro' may not run 'set': not in commands.allow\r\n"
    );
}

#[tokio::test]
async fn connections_per_tenant_are_capped() {
    let redis = RedisServer::start();
    let proxy = proxy_with(
        &redis,
        "  c: { backend: local, namespace: \"c:\", auth: { username: c, password: pw }, limits: { max_connections: 2 } }\n",
    )
    .await;
    let first = login(&proxy, "c").await;
    let _second = login(&proxy, "c").await;
    let mut third = proxy.raw().await;
    assert_eq!(
        third.cmd(&[b"AUTH", b"c", b"pw"]).await,
        b"-ERR too many connections for tenant 'c': limits.max_connections is 2\r\n"
    );
    drop(first);
    let deadline = Instant::now() + Duration::from_secs(5);
    while third.cmd(&[b"AUTH", b"c", b"pw"]).await != b"+OK\r\n" {
        assert!(Instant::now() < deadline, "the closed connection's place was not given back");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn ttls_are_clamped_jittered_within_bounds_and_defaulted() {
    let redis = RedisServer::start();
    let proxy = proxy_with(
        &redis,
        "  t: { backend: local, namespace: \"t:\", auth: { username: t, password: pw },\n      \
           ttl: { default: 50s, max: 100s, jitter: 20%, keyspaces: { session: { default: 10s, jitter: 0% } } } }\n",
    )
    .await;
    let mut c = login(&proxy, "t").await;
    let mut req = Vec::new();
    for i in 0..200 {
        req.extend(encode(&[b"SET", format!("long{i}").as_bytes(), b"v", b"EX", b"1000"]));
        req.extend(encode(&[b"SET", format!("plain{i}").as_bytes(), b"v"]));
        req.extend(encode(&[b"HSET", format!("hash{i}").as_bytes(), b"f", b"v"]));
    }
    c.send(&req).await;
    for _ in 0..200 {
        assert_eq!(c.reply().await, b"+OK\r\n");
        assert_eq!(c.reply().await, b"+OK\r\n");
        assert_eq!(c.reply().await, b":1\r\n", "the hidden PEXPIRE's reply must not show");
    }
    let pttl = |r: Vec<u8>| -> i64 { String::from_utf8_lossy(&r[1..r.len() - 2]).parse().unwrap() };
    let mut check = async |prefix: &str, lo: i64, hi: i64| {
        let mut seen = std::collections::BTreeSet::new();
        for i in 0..200 {
            let t = pttl(c.cmd(&[b"PTTL", format!("{prefix}{i}").as_bytes()]).await);
            assert!((lo..=hi).contains(&t), "{prefix}{i}: pttl {t} outside {lo}..={hi}");
            seen.insert(t / 100);
        }
        assert!(seen.len() > 50, "{prefix}: TTLs not spread ({} distinct)", seen.len());
    };
    // Clamped to 100 s, then shortened by up to 20 %.
    check("long", 79_000, 100_000).await;
    // The 50 s default, shortened by up to 20 %.
    check("plain", 39_000, 50_000).await;
    check("hash", 39_000, 50_000).await;
    // Keyspace `session`: its own default, no jitter.
    assert_eq!(c.cmd(&[b"SET", b"session:1", b"v"]).await, b"+OK\r\n");
    let t = pttl(c.cmd(&[b"PTTL", b"session:1"]).await);
    assert!((9_000..=10_000).contains(&t), "session:1 pttl {t}");
    // An explicit short TTL is kept (only jittered), and a write to a key
    // that already has a TTL does not replace it with the default.
    assert_eq!(c.cmd(&[b"SETEX", b"short", b"10", b"v"]).await, b"+OK\r\n");
    let t = pttl(c.cmd(&[b"PTTL", b"short"]).await);
    assert!((7_900..=10_000).contains(&t), "short pttl {t}");
    assert_eq!(c.cmd(&[b"HSET", b"hash0", b"g", b"w"]).await, b":1\r\n");
    let t = pttl(c.cmd(&[b"PTTL", b"hash0"]).await);
    assert!(t <= 50_000, "hash0 pttl {t}");
    // A blocking command's written key gets the default too; its reply is the command's own.
    assert_eq!(c.cmd(&[b"DEL", b"src"]).await, b":0\r\n");
    assert_eq!(c.cmd(&[b"RPUSH", b"src", b"x"]).await, b":1\r\n");
    assert_eq!(c.cmd(&[b"BLMOVE", b"src", b"moved", b"LEFT", b"RIGHT", b"0"]).await, b"$1\r\nx\r\n");
    let t = pttl(c.cmd(&[b"PTTL", b"moved"]).await);
    assert!((39_000..=50_000).contains(&t), "moved pttl {t}");
    assert_eq!(c.cmd(&[b"PING"]).await, b"+PONG\r\n", "the hidden PEXPIRE's reply was not delivered");
}

#[tokio::test]
async fn per_connection_shares_and_byte_rates_are_enforced() {
    let redis = RedisServer::start();
    let proxy = proxy_with(
        &redis,
        "  f: { backend: local, namespace: \"f:\", auth: { username: f, password: pw },\n      \
           rate_limit: { per_connection_ops_per_sec: 5, bytes_per_sec: 1000, bytes_burst: 1000 } }\n",
    )
    .await;
    // Each connection has its own 5 ops (its burst): a second connection is not starved by the first.
    let mut one = login(&proxy, "f").await;
    let mut two = login(&proxy, "f").await;
    let limited = |r: &[u8]| r.starts_with(b"-ERR rate limit exceeded for tenant 'f'");
    for _ in 0..5 {
        assert_eq!(one.cmd(&[b"PING"]).await, b"+PONG\r\n");
    }
    assert!(limited(&one.cmd(&[b"PING"]).await));
    assert_eq!(two.cmd(&[b"PING"]).await, b"+PONG\r\n");
    // Bytes: 1,000 per second for the tenant; a 900-byte SET passes, the next does not.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(two.cmd(&[b"SET", b"k", &[b'x'; 890]]).await, b"+OK\r\n");
    let r = two.cmd(&[b"SET", b"k", &[b'x'; 890]]).await;
    assert!(limited(&r), "{:?}", String::from_utf8_lossy(&r));
}

#[tokio::test]
async fn a_reload_that_keeps_a_limit_keeps_its_state() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tenants.yaml");
    let text = |extra: &str| {
        format!(
            "listen: 127.0.0.1:0\nbackends:\n  local: {{ kind: standalone, nodes: [\"{}\"] }}\n\
             tenants:\n  l: {{ backend: local, namespace: \"l:\", rate_limit: {{ ops_per_sec: 1, burst: 3 }} }}\n{extra}\
             default_tenant: l\n",
            redis.addr()
        )
    };
    std::fs::write(&path, text("")).unwrap();
    let proxy = TestProxy::start_file(&path).await;
    let mut c = proxy.raw().await;
    for _ in 0..3 {
        assert_eq!(c.cmd(&[b"PING"]).await, b"+PONG\r\n");
    }
    assert!(c.cmd(&[b"PING"]).await.starts_with(b"-ERR rate limit exceeded"));
    // Another tenant is added: `l`'s limiter is the same one, still empty.
    let next = text("  other: { backend: local, namespace: \"o:\" }\n");
    std::fs::write(&path, &next).unwrap();
    proxy.wait_for_version(&tenantry_proxy::version_of(next.as_bytes())).await;
    // A fresh limiter would pass all three (burst 3); the kept one has at
    // most the token or two that came back while the reload happened.
    let mut limited = 0;
    for _ in 0..3 {
        limited += usize::from(c.cmd(&[b"PING"]).await.starts_with(b"-ERR rate limit exceeded"));
    }
    assert!(limited >= 1, "the limiter was reset by a reload that did not change it");
}

#[tokio::test]
async fn settings_that_cannot_change_live_are_reported_not_applied() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tenants.yaml");
    let text = |listen: &str| {
        format!(
            "listen: {listen}\nadmin: 127.0.0.1:0\nbackends:\n  local: {{ kind: standalone, nodes: [\"{}\"] }}\n\
             tenants:\n  a: {{ backend: local, namespace: \"a:\" }}\ndefault_tenant: a\n",
            redis.addr()
        )
    };
    std::fs::write(&path, text("127.0.0.1:0")).unwrap();
    let proxy = TestProxy::start_file(&path).await;
    let moved = text("127.0.0.1:1");
    std::fs::write(&path, &moved).unwrap();
    proxy.wait_for_version(&tenantry_proxy::version_of(moved.as_bytes())).await;
    let (_, body) = tenantry_tests::http_get(proxy.admin_addr().unwrap(), "/config").await;
    assert!(body.contains("listen: running on") && body.contains("127.0.0.1:1"), "{body}");
    // Still serving where it was.
    assert_eq!(proxy.raw().await.cmd(&[b"PING"]).await, b"+PONG\r\n");
}

#[tokio::test]
async fn a_tenant_pipeline_limit_applies_backpressure_not_errors() {
    let _heavy = tenantry_tests::heavy().await;
    let redis = RedisServer::start();
    let proxy = proxy_with(
        &redis,
        "  p: { backend: local, namespace: \"p:\", auth: { username: p, password: pw }, limits: { max_pipeline: 4 } }\n",
    )
    .await;
    let mut c = login(&proxy, "p").await;
    let req: Vec<u8> = (0..1000).flat_map(|_| encode(&[b"INCR", b"n"])).collect();
    c.send(&req).await;
    for i in 1..=1000 {
        assert_eq!(c.reply().await, format!(":{i}\r\n").into_bytes());
    }
}

#[tokio::test]
async fn scripts_run_only_for_tenants_that_allow_them_with_their_keys_namespaced() {
    let redis = RedisServer::start();
    let proxy = proxy_with(
        &redis,
        "  s: { backend: local, namespace: \"s:\", auth: { username: s, password: pw }, scripts: true }\n  \
           n: { backend: local, namespace: \"n:\", auth: { username: n, password: pw } }\n",
    )
    .await;
    let script = b"redis.call('SET', KEYS[1], ARGV[1]); return redis.call('GET', KEYS[1])";
    let mut s = login(&proxy, "s").await;
    assert_eq!(s.cmd(&[b"EVAL", script, b"1", b"k", b"v"]).await, b"$1\r\nv\r\n");
    assert_eq!(s.cmd(&[b"GET", b"k"]).await, b"$1\r\nv\r\n");
    let sha = s.cmd(&[b"SCRIPT", b"LOAD", b"return KEYS[1]"]).await;
    let sha = &sha[5..sha.len() - 2];
    assert_eq!(s.cmd(&[b"SCRIPT", b"EXISTS", sha]).await, b"*1\r\n:1\r\n");
    // The script sees the namespaced key name: KEYS were rewritten.
    assert_eq!(s.cmd(&[b"EVALSHA", sha, b"1", b"x"]).await, b"$3\r\ns:x\r\n");
    // SCRIPT FLUSH empties the tenant's own scripts only: tests/e2e/scripts.rs.
    let mut direct_conn = tenantry_tests::direct(&redis).await;
    let v: String = redis::cmd("GET").arg("s:k").query_async(&mut direct_conn).await.unwrap();
    assert_eq!(v, "v");

    let mut n = login(&proxy, "n").await;
    let refused = n.cmd(&[b"EVAL", b"return 1", b"0"]).await;
    assert!(refused.starts_with(b"-NOPERM tenant 'n' may not run scripts"), "{}", String::from_utf8_lossy(&refused));
}

#[tokio::test]
async fn functions_are_scoped_to_the_tenant_that_loaded_them() {
    let redis = RedisServer::start();
    let proxy = proxy_with(
        &redis,
        "  a: { backend: local, namespace: \"a:\", auth: { username: a, password: pw }, scripts: true }\n  \
           b: { backend: local, namespace: \"b:\", auth: { username: b, password: pw }, scripts: true }\n  \
           n: { backend: local, namespace: \"n:\", auth: { username: n, password: pw } }\n",
    )
    .await;
    let lib =
        b"#!lua name=alib\nredis.register_function('aget', function(keys, args) return redis.call('GET', keys[1]) end)";
    let mut a = login(&proxy, "a").await;
    let mut b = login(&proxy, "b").await;
    // Loaded and called in one pipeline: the call waits for the load.
    let mut req = encode(&[b"FUNCTION", b"LOAD", lib]);
    req.extend(encode(&[b"SET", b"k", b"va"]));
    req.extend(encode(&[b"FCALL", b"aget", b"1", b"k"]));
    a.send(&req).await;
    assert_eq!(a.reply().await, b"$4\r\nalib\r\n");
    assert_eq!(a.reply().await, b"+OK\r\n");
    assert_eq!(a.reply().await, b"$2\r\nva\r\n", "FCALL's keys are namespaced");
    // b may call it (names are server-wide), on b's own keys.
    assert_eq!(b.cmd(&[b"SET", b"k", b"vb"]).await, b"+OK\r\n");
    assert_eq!(b.cmd(&[b"FCALL", b"aget", b"1", b"k"]).await, b"$2\r\nvb\r\n");
    // b cannot replace, delete, flush or list a's library.
    assert_eq!(b.cmd(&[b"FUNCTION", b"LOAD", b"REPLACE", lib]).await, b"-ERR Library 'alib' already exists\r\n");
    assert_eq!(b.cmd(&[b"FUNCTION", b"LIST"]).await, b"*0\r\n");
    assert_eq!(b.cmd(&[b"FUNCTION", b"DELETE", b"alib"]).await, b"-ERR Library not found\r\n");
    assert_eq!(b.cmd(&[b"FUNCTION", b"FLUSH"]).await, b"+OK\r\n");
    assert_eq!(a.cmd(&[b"FCALL", b"aget", b"1", b"k"]).await, b"$2\r\nva\r\n");
    // a lists its own, with Redis's filters.
    let list = a.cmd(&[b"FUNCTION", b"LIST"]).await;
    assert!(list.starts_with(b"*1\r\n") && list.windows(4).any(|w| w == b"alib"), "{}", String::from_utf8_lossy(&list));
    assert_eq!(a.cmd(&[b"FUNCTION", b"LIST", b"LIBRARYNAME", b"x*"]).await, b"*0\r\n");
    let with_code = a.cmd(&[b"FUNCTION", b"LIST", b"LIBRARYNAME", b"a*", b"WITHCODE"]).await;
    assert!(with_code.windows(9).any(|w| w == b"#!lua nam"), "{}", String::from_utf8_lossy(&with_code));
    assert!(a.cmd(&[b"FUNCTION", b"LIST", b"BOGUS"]).await.starts_with(b"-ERR"));
    assert_eq!(a.cmd(&[b"FUNCTION", b"LOAD", b"REPLACE", lib]).await, b"$4\r\nalib\r\n");
    // DUMP and RESTORE carry the tenant's own libraries: tests/e2e/scripts.rs.
    for sub in [&b"KILL"[..], b"STATS"] {
        let r = a.cmd(&[b"FUNCTION", sub]).await;
        assert!(r.ends_with(b"it acts on every tenant's functions\r\n"), "{}", String::from_utf8_lossy(&r));
    }
    assert_eq!(a.cmd(&[b"FUNCTION", b"DELETE", b"alib"]).await, b"+OK\r\n");
    assert!(a.cmd(&[b"FCALL", b"aget", b"1", b"k"]).await.starts_with(b"-ERR Function not found"));
    // Tenants without scripts get neither.
    let mut n = login(&proxy, "n").await;
    assert!(n.cmd(&[b"FUNCTION", b"LOAD", lib]).await.starts_with(b"-NOPERM tenant 'n' may not use functions"));
    assert!(n.cmd(&[b"FCALL", b"aget", b"0"]).await.starts_with(b"-NOPERM tenant 'n' may not run scripts"));
}
