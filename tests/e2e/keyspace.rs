//! Keyspace iteration scoped to the tenant: SCAN and KEYS see only the
//! tenant's keys, under the client's names.

use std::collections::BTreeSet;
use tenantry_tests::{RedisServer, TestProxy};

async fn scan_all(c: &mut redis::aio::MultiplexedConnection, extra: &[&str]) -> Vec<String> {
    let mut cursor = "0".to_string();
    let mut out = Vec::new();
    loop {
        let mut cmd = redis::cmd("SCAN");
        cmd.arg(&cursor).arg(extra);
        let (next, keys): (String, Vec<String>) = cmd.query_async(c).await.unwrap();
        out.extend(keys);
        if next == "0" {
            return out;
        }
        cursor = next;
    }
}

#[tokio::test]
async fn scan_and_keys_see_only_the_tenants_keys() {
    let redis = RedisServer::start();
    let proxy = TestProxy::two_tenants(&redis).await;
    let mut app = proxy.client().await;
    let mut demo = proxy.client_as("demo", "demo-pw").await;
    for i in 0..50 {
        let _: () = redis::cmd("SET").arg(format!("user:{i}")).arg(i).query_async(&mut app).await.unwrap();
    }
    let _: () = redis::cmd("RPUSH").arg("list:1").arg("x").query_async(&mut app).await.unwrap();
    for i in 0..30 {
        let _: () = redis::cmd("SET").arg(format!("user:{i}")).arg(i).query_async(&mut demo).await.unwrap();
        let _: () = redis::cmd("SET").arg(format!("secret:{i}")).arg(i).query_async(&mut demo).await.unwrap();
    }

    // A full iteration without MATCH: every one of app's keys once, nothing else.
    let keys = scan_all(&mut app, &["COUNT", "7"]).await;
    let set: BTreeSet<&String> = keys.iter().collect();
    assert_eq!(set.len(), keys.len(), "a key came twice: {keys:?}");
    let mut want: BTreeSet<String> = (0..50).map(|i| format!("user:{i}")).collect();
    want.insert("list:1".into());
    assert_eq!(set.into_iter().cloned().collect::<BTreeSet<_>>(), want);

    // MATCH and TYPE work on the client's names.
    let mut ones = scan_all(&mut app, &["MATCH", "user:1*", "COUNT", "100"]).await;
    ones.sort();
    let mut want_ones: Vec<String> = (0..50).map(|i| format!("user:{i}")).filter(|k| k.starts_with("user:1")).collect();
    want_ones.sort();
    assert_eq!(ones, want_ones);
    assert_eq!(scan_all(&mut app, &["TYPE", "list"]).await, vec!["list:1"]);

    // KEYS, as demo: demo's 60 keys and none of app's.
    let mut keys: Vec<String> = redis::cmd("KEYS").arg("*").query_async(&mut demo).await.unwrap();
    keys.sort();
    assert_eq!(keys.len(), 60);
    assert!(keys.iter().all(|k| k.starts_with("user:") || k.starts_with("secret:")), "{keys:?}");
    let secrets: Vec<String> = redis::cmd("KEYS").arg("secret:*").query_async(&mut app).await.unwrap();
    assert!(secrets.is_empty(), "app sees demo's keys: {secrets:?}");
    // A pattern cannot climb out of the namespace.
    let escape: Vec<String> = redis::cmd("KEYS").arg("*demo:*").query_async(&mut app).await.unwrap();
    assert!(escape.is_empty(), "{escape:?}");
}

#[tokio::test]
async fn flushdb_and_dbsize_touch_only_the_tenants_keys() {
    let redis = RedisServer::start();
    let proxy = TestProxy::two_tenants(&redis).await;
    let mut app = proxy.raw().await;
    let mut demo = proxy.raw().await;
    assert_eq!(demo.cmd(&[b"AUTH", b"demo", b"demo-pw"]).await, b"+OK\r\n");
    let mut req = Vec::new();
    for i in 0..3000 {
        req.extend(tenantry_tests::encode(&[b"SET", format!("k{i}").as_bytes(), b"v"]));
    }
    app.send(&req).await;
    let demo_req: Vec<u8> =
        (0..1000).flat_map(|i| tenantry_tests::encode(&[b"SET", format!("k{i}").as_bytes(), b"v"])).collect();
    demo.send(&demo_req).await;
    for _ in 0..3000 {
        assert_eq!(app.reply().await, b"+OK\r\n");
    }
    for _ in 0..1000 {
        assert_eq!(demo.reply().await, b"+OK\r\n");
    }
    assert_eq!(app.cmd(&[b"DBSIZE"]).await, b":3000\r\n");
    assert_eq!(demo.cmd(&[b"DBSIZE"]).await, b":1000\r\n");

    // Pipelined after FLUSHDB, a SET lands in the emptied keyspace.
    let mut req = tenantry_tests::encode(&[b"FLUSHDB"]);
    req.extend(tenantry_tests::encode(&[b"SET", b"after", b"1"]));
    req.extend(tenantry_tests::encode(&[b"DBSIZE"]));
    app.send(&req).await;
    assert_eq!(app.reply().await, b"+OK\r\n");
    assert_eq!(app.reply().await, b"+OK\r\n");
    assert_eq!(app.reply().await, b":1\r\n");
    // The other tenant lost nothing.
    assert_eq!(demo.cmd(&[b"DBSIZE"]).await, b":1000\r\n");
    assert_eq!(demo.cmd(&[b"GET", b"k1"]).await, b"$1\r\nv\r\n");

    assert_eq!(demo.cmd(&[b"FLUSHALL", b"ASYNC"]).await, b"+OK\r\n");
    assert_eq!(demo.cmd(&[b"DBSIZE"]).await, b":0\r\n");
    assert_eq!(app.cmd(&[b"GET", b"after"]).await, b"$1\r\n1\r\n");
    assert_eq!(app.cmd(&[b"FLUSHDB", b"LATER"]).await, b"-ERR syntax error\r\n");
}

/// Inside MULTI, FLUSHDB and DBSIZE run in the transaction, on the tenant's
/// keys only, as in Redis: their replies take their places in EXEC's.
#[tokio::test]
async fn flushdb_and_dbsize_run_inside_multi() {
    let redis = RedisServer::start();
    let proxy = TestProxy::two_tenants(&redis).await;
    let mut app = proxy.raw().await;
    let mut demo = proxy.raw().await;
    assert_eq!(demo.cmd(&[b"AUTH", b"demo", b"demo-pw"]).await, b"+OK\r\n");
    let req: Vec<u8> =
        (0..2500).flat_map(|i| tenantry_tests::encode(&[b"SET", format!("k{i}").as_bytes(), b"v"])).collect();
    app.send(&req).await;
    demo.send(&req).await;
    for _ in 0..2500 {
        assert_eq!(app.reply().await, b"+OK\r\n");
        assert_eq!(demo.reply().await, b"+OK\r\n");
    }
    let script: [&[&[u8]]; 8] = [
        &[b"MULTI"],
        &[b"DBSIZE"],
        &[b"SET", b"fresh", b"1"],
        &[b"DBSIZE"],
        &[b"FLUSHDB", b"SYNC"],
        &[b"DBSIZE"],
        &[b"SET", b"after", b"2"],
        &[b"EXEC"],
    ];
    let mut got = Vec::new();
    for cmd in script {
        got.push(app.cmd(cmd).await);
    }
    let queued: Vec<&[u8]> = vec![b"+QUEUED\r\n"; 6];
    assert_eq!(got[0], b"+OK\r\n");
    assert_eq!(got[1..7].iter().map(|r| r.as_slice()).collect::<Vec<_>>(), queued);
    assert_eq!(got[7], b"*6\r\n:2500\r\n+OK\r\n:2501\r\n+OK\r\n:0\r\n+OK\r\n".to_vec());
    assert_eq!(app.cmd(&[b"DBSIZE"]).await, b":1\r\n");
    assert_eq!(app.cmd(&[b"GET", b"after"]).await, b"$1\r\n2\r\n");
    // The other tenant's keys were neither counted nor flushed.
    assert_eq!(demo.cmd(&[b"DBSIZE"]).await, b":2500\r\n");

    // A bad FLUSHDB dooms the transaction, as a bad command does in Redis;
    // RANDOMKEY cannot be queued, and says why.
    assert_eq!(app.cmd(&[b"MULTI"]).await, b"+OK\r\n");
    assert_eq!(app.cmd(&[b"FLUSHDB", b"LATER"]).await, b"-ERR syntax error\r\n");
    assert_eq!(app.cmd(&[b"EXEC"]).await, b"-EXECABORT Transaction discarded because of previous errors.\r\n");
    assert_eq!(app.cmd(&[b"MULTI"]).await, b"+OK\r\n");
    let refused = String::from_utf8(app.cmd(&[b"RANDOMKEY"]).await).unwrap();
    assert!(refused.starts_with("-ERR RANDOMKEY inside MULTI is not supported through tenantry"), "{refused}");
    assert_eq!(app.cmd(&[b"DISCARD"]).await, b"+OK\r\n");
    assert_eq!(app.cmd(&[b"GET", b"after"]).await, b"$1\r\n2\r\n");
    proxy.stop().await;
}

/// A tenant spread over several nodes has no one transaction to flush in.
#[tokio::test]
async fn flushdb_inside_multi_is_refused_on_a_ring() {
    let nodes: Vec<RedisServer> = (0..2).map(|_| RedisServer::start()).collect();
    let proxy = TestProxy::start(&format!(
        "backends:\n  r: {{ kind: ring, nodes: [\"{}\", \"{}\"] }}\n\
         tenants:\n  app: {{ backend: r, namespace: \"app:\" }}\ndefault_tenant: app\n",
        nodes[0].addr(),
        nodes[1].addr()
    ))
    .await;
    let mut app = proxy.raw().await;
    assert_eq!(app.cmd(&[b"SET", b"k", b"v"]).await, b"+OK\r\n");
    assert_eq!(app.cmd(&[b"MULTI"]).await, b"+OK\r\n");
    for cmd in [&b"FLUSHDB"[..], b"DBSIZE"] {
        let refused = String::from_utf8(app.cmd(&[cmd]).await).unwrap();
        let want = format!(
            "-ERR {} inside MULTI is not supported on backend 'r': the tenant's keys live on several nodes, \
             and a transaction runs on one\r\n",
            String::from_utf8_lossy(cmd)
        );
        assert_eq!(refused, want);
    }
    assert_eq!(app.cmd(&[b"EXEC"]).await, b"-EXECABORT Transaction discarded because of previous errors.\r\n");
    assert_eq!(app.cmd(&[b"GET", b"k"]).await, b"$1\r\nv\r\n");
    proxy.stop().await;
}

#[tokio::test]
async fn randomkey_picks_among_the_tenants_keys_only() {
    let redis = RedisServer::start();
    let proxy = TestProxy::two_tenants(&redis).await;
    let mut app = proxy.raw().await;
    let mut demo = proxy.raw().await;
    assert_eq!(demo.cmd(&[b"AUTH", b"demo", b"demo-pw"]).await, b"+OK\r\n");
    assert_eq!(demo.cmd(&[b"RANDOMKEY"]).await, b"$-1\r\n");
    for i in 0..20 {
        assert_eq!(app.cmd(&[b"SET", format!("a{i}").as_bytes(), b"v"]).await, b"+OK\r\n");
    }
    assert_eq!(demo.cmd(&[b"SET", b"only", b"v"]).await, b"+OK\r\n");
    let mut seen = BTreeSet::new();
    for _ in 0..50 {
        let r = String::from_utf8(app.cmd(&[b"RANDOMKEY"]).await).unwrap();
        let key = r.lines().nth(1).unwrap().to_string();
        assert!(key.starts_with('a') && key[1..].parse::<u32>().unwrap() < 20, "{r}");
        seen.insert(key);
    }
    assert!(seen.len() > 1, "always the same key: {seen:?}");
    assert_eq!(demo.cmd(&[b"RANDOMKEY"]).await, b"$4\r\nonly\r\n");
}

/// DBSIZE, RANDOMKEY and INFO keyspace run on other connections than the
/// client's batches: pipelined right after writes, they still see them.
#[tokio::test]
async fn keyspace_commands_see_the_writes_pipelined_before_them() {
    let redis = RedisServer::start();
    let proxy = TestProxy::two_tenants(&redis).await;
    let mut c = proxy.raw().await;
    for round in 1..=20 {
        let mut req = tenantry_tests::encode(&[b"SET", format!("r{round}").as_bytes(), b"v"]);
        req.extend(tenantry_tests::encode(&[b"DBSIZE"]));
        req.extend(tenantry_tests::encode(&[b"INFO", b"keyspace"]));
        c.send(&req).await;
        assert_eq!(c.reply().await, b"+OK\r\n");
        assert_eq!(c.reply().await, format!(":{round}\r\n").into_bytes(), "round {round}");
        let info = String::from_utf8(c.reply().await).unwrap();
        assert!(info.contains(&format!("db0:keys={round},")), "round {round}: {info}");
    }
    let mut req = tenantry_tests::encode(&[b"FLUSHDB"]);
    req.extend(tenantry_tests::encode(&[b"SET", b"only", b"v"]));
    req.extend(tenantry_tests::encode(&[b"RANDOMKEY"]));
    c.send(&req).await;
    assert_eq!(c.reply().await, b"+OK\r\n");
    assert_eq!(c.reply().await, b"+OK\r\n");
    assert_eq!(c.reply().await, b"$4\r\nonly\r\n");
}
