//! A Redis Cluster backend, against a real local cluster (3 masters, 3
//! replicas): clients see one plain Redis.

use redis::AsyncCommands;
use std::collections::BTreeSet;
use tenantry_protocol::cluster::key_slot;
use tenantry_protocol::Namespace;
use tenantry_tests::cluster::{cli, RedisCluster};
use tenantry_tests::TestProxy;

pub(crate) fn config(cluster: &RedisCluster, extra_tenant: &str) -> String {
    let seeds: Vec<String> = cluster.seeds().iter().take(2).map(|s| format!("\"{s}\"")).collect();
    format!(
        "admin: 127.0.0.1:0\n\
         backends:\n  c: {{ kind: cluster, nodes: [{}], topology_refresh: 1s }}\n\
         tenants:\n  app: {{ backend: c, namespace: \"app:\"{extra_tenant} }}\n  \
         demo: {{ backend: c, namespace: \"demo:\", auth: {{ username: demo, password: demo-pw }}, scripts: true }}\n\
         default_tenant: app\n",
        seeds.join(", ")
    )
}

#[tokio::test]
async fn a_cluster_looks_like_one_redis() {
    let _heavy = tenantry_tests::heavy().await;
    let cluster = RedisCluster::start(3, 1);
    let proxy = TestProxy::start(&config(&cluster, "")).await;
    let mut app = proxy.client().await;
    let mut demo = proxy.client_as("demo", "demo-pw").await;
    let app_ns = Namespace::new("app:").unwrap();

    // Routing: every key lands on the master of its namespaced key's slot.
    for i in 0..200 {
        let _: () = app.set(format!("k{i}"), format!("app-{i}")).await.unwrap();
        let _: () = demo.set(format!("k{i}"), format!("demo-{i}")).await.unwrap();
    }
    let mut masters_used = BTreeSet::new();
    for i in (0..200).step_by(7) {
        let key = format!("k{i}");
        let node = cluster.master_of_slot(key_slot(&app_ns, key.as_bytes()));
        masters_used.insert(node);
        let stored = cli(cluster.nodes[node].port(), &["GET", &format!("app:{key}")]);
        assert_eq!(stored.trim(), format!("app-{i}"));
        let v: String = app.get(&key).await.unwrap();
        assert_eq!(v, format!("app-{i}"));
        let v: String = demo.get(&key).await.unwrap();
        assert_eq!(v, format!("demo-{i}"));
    }
    assert_eq!(masters_used.len(), 3, "keys spread over all three masters");
    // WAIT covers every master the client wrote to: each has its replica.
    let mut w = proxy.raw().await;
    for i in 0..30 {
        assert_eq!(w.cmd(&[b"SET", format!("w{i}").as_bytes(), b"1"]).await, b"+OK\r\n");
    }
    assert_eq!(w.cmd(&[b"WAIT", b"1", b"5000"]).await, b":1\r\n");

    // Multi-key commands across slots are split and merged in request order.
    let keys: Vec<String> = (0..30).map(|i| format!("m{i}")).collect();
    let mut mset = redis::cmd("MSET");
    for k in &keys {
        mset.arg(k).arg(format!("v-{k}"));
    }
    let _: () = mset.query_async(&mut app).await.unwrap();
    let mut asked = keys.clone();
    asked.insert(5, "missing".into());
    let got: Vec<Option<String>> = app.mget(&asked).await.unwrap();
    let want: Vec<Option<String>> = asked.iter().map(|k| (k != "missing").then(|| format!("v-{k}"))).collect();
    assert_eq!(got, want);
    let n: i64 = redis::cmd("EXISTS").arg(&asked).query_async(&mut app).await.unwrap();
    assert_eq!(n, 30);
    let n: i64 = redis::cmd("TOUCH").arg(&asked).query_async(&mut app).await.unwrap();
    assert_eq!(n, 30);
    let n: i64 = app.del(&keys[..10]).await.unwrap();
    assert_eq!(n, 10);
    let n: i64 = redis::cmd("UNLINK").arg(&keys[5..15]).query_async(&mut app).await.unwrap();
    assert_eq!(n, 5);

    // Commands that cannot be split get Redis Cluster's CROSSSLOT; hash tags
    // keep keys together after namespacing.
    let mut raw = proxy.raw().await;
    let crossslot = b"-CROSSSLOT Keys in request don't hash to the same slot\r\n".to_vec();
    assert_eq!(raw.cmd(&[b"MSETNX", b"a", b"1", b"b", b"2"]).await, crossslot);
    assert_eq!(raw.cmd(&[b"SUNION", b"a", b"b"]).await, crossslot);
    assert_eq!(raw.cmd(&[b"MSETNX", b"{t}a", b"1", b"{t}b", b"2"]).await, b":1\r\n");
    assert_eq!(raw.cmd(&[b"RENAME", b"{t}a", b"{t}c"]).await, b"+OK\r\n");
    assert_eq!(raw.cmd(&[b"MGET", b"{t}c", b"{t}b"]).await, b"*2\r\n$1\r\n1\r\n$1\r\n2\r\n");

    // Transactions need one slot: a second slot dooms it, as in Redis Cluster.
    assert_eq!(raw.cmd(&[b"MULTI"]).await, b"+OK\r\n");
    assert_eq!(raw.cmd(&[b"SET", b"{t}x", b"1"]).await, b"+QUEUED\r\n");
    assert_eq!(raw.cmd(&[b"SET", b"{u}x", b"1"]).await, crossslot);
    assert!(raw.cmd(&[b"EXEC"]).await.starts_with(b"-EXECABORT"));
    assert_eq!(raw.cmd(&[b"MULTI"]).await, b"+OK\r\n");
    assert_eq!(raw.cmd(&[b"INCR", b"{t}n"]).await, b"+QUEUED\r\n");
    assert_eq!(raw.cmd(&[b"INCR", b"{t}n"]).await, b"+QUEUED\r\n");
    assert_eq!(raw.cmd(&[b"EXEC"]).await, b"*2\r\n:1\r\n:2\r\n");
    // WATCH on the transaction's slot still guards it.
    assert_eq!(raw.cmd(&[b"WATCH", b"{t}n"]).await, b"+OK\r\n");
    let _: () = app.set("{t}n", 10).await.unwrap();
    assert_eq!(raw.cmd(&[b"MULTI"]).await, b"+OK\r\n");
    assert_eq!(raw.cmd(&[b"INCR", b"{t}n"]).await, b"+QUEUED\r\n");
    assert_eq!(raw.cmd(&[b"EXEC"]).await, b"*-1\r\n");

    // Scripts: keys in one slot run, keys in two are refused.
    let mut d = proxy.login("demo", "demo-pw").await;
    let script = b"return redis.call('get', KEYS[1])";
    assert_eq!(d.cmd(&[b"EVAL", script, b"1", b"k3"]).await, b"$6\r\ndemo-3\r\n");
    assert_eq!(d.cmd(&[b"EVAL", script, b"2", b"k3", b"k4"]).await, crossslot);
    // SCRIPT LOAD reaches every master, so EVALSHA works for keys on any.
    let sha = d.cmd(&[b"SCRIPT", b"LOAD", script]).await;
    let sha = &sha[sha.len() - 42..sha.len() - 2];
    for i in 0..12 {
        let k = format!("k{i}");
        let want = format!("demo-{i}");
        let got = d.cmd(&[b"EVALSHA", sha, b"1", k.as_bytes()]).await;
        assert_eq!(got, format!("${}\r\n{want}\r\n", want.len()).into_bytes());
    }
    assert_eq!(d.cmd(&[b"SCRIPT", b"EXISTS", sha, b"0000"]).await, b"*2\r\n:1\r\n:0\r\n");
    // Functions are loaded on every master, so FCALL works on any key.
    let lib =
        b"#!lua name=tlib\nredis.register_function('tget', function(keys, args) return redis.call('get', keys[1]) end)";
    assert_eq!(d.cmd(&[b"FUNCTION", b"LOAD", lib]).await, b"$4\r\ntlib\r\n");
    for i in 0..12 {
        let k = format!("k{i}");
        let want = format!("demo-{i}");
        let got = d.cmd(&[b"FCALL", b"tget", b"1", k.as_bytes()]).await;
        assert_eq!(got, format!("${}\r\n{want}\r\n", want.len()).into_bytes());
    }
    assert!(d.cmd(&[b"FUNCTION", b"LIST"]).await.starts_with(b"*1\r\n"));
    assert_eq!(d.cmd(&[b"FUNCTION", b"DELETE", b"tlib"]).await, b"+OK\r\n");
    for (m, _) in cluster.masters() {
        assert_eq!(cli(cluster.nodes[m].port(), &["FUNCTION", "LIST"]).trim(), "", "deleted on every master");
    }

    // SCAN, KEYS, DBSIZE and FLUSHDB cover every master, for the tenant only.
    let mut seen = BTreeSet::new();
    let mut cursor = 0u64;
    loop {
        let (next, page): (u64, Vec<String>) =
            redis::cmd("SCAN").arg(cursor).arg("COUNT").arg(50).query_async(&mut demo).await.unwrap();
        seen.extend(page);
        cursor = next;
        if cursor == 0 {
            break;
        }
    }
    let all: BTreeSet<String> = (0..200).map(|i| format!("k{i}")).collect();
    assert_eq!(seen, all);
    // A cursor that is not a number, or names no master, is Redis's error.
    assert_eq!(raw.cmd(&[b"SCAN", b"abc"]).await, b"-ERR invalid cursor\r\n");
    assert_eq!(raw.cmd(&[b"SCAN", b"4095"]).await, b"-ERR invalid cursor\r\n");
    // Invalidations would come from every key's own master: refused, clearly.
    let refused = raw.cmd(&[b"CLIENT", b"TRACKING", b"ON"]).await;
    assert!(refused.starts_with(b"-ERR CLIENT TRACKING is not supported on backend 'c'"), "{refused:?}");
    let keys: Vec<String> = demo.keys("k1*").await.unwrap();
    assert_eq!(keys.len(), (0..200).filter(|i| i.to_string().starts_with('1')).count());
    let n: i64 = redis::cmd("DBSIZE").query_async(&mut demo).await.unwrap();
    assert_eq!(n, 200);
    let _: () = redis::cmd("FLUSHDB").query_async(&mut demo).await.unwrap();
    let n: i64 = redis::cmd("DBSIZE").query_async(&mut demo).await.unwrap();
    assert_eq!(n, 0);
    let v: String = app.get("k3").await.unwrap();
    assert_eq!(v, "app-3", "FLUSHDB of one tenant leaves the other's keys");

    // Pub/Sub: a message published through any node reaches the subscriber.
    let mut sub = proxy.raw().await;
    sub.cmd(&[b"SUBSCRIBE", b"news"]).await;
    let mut p = proxy.raw().await;
    assert_eq!(p.cmd(&[b"PUBLISH", b"news", b"hello"]).await, b":1\r\n");
    assert_eq!(sub.reply().await, b"*3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$5\r\nhello\r\n");

    // Sharded channels: each subscriber is served by its channel's slot's
    // master, wherever that is.
    let mut tags = Vec::new();
    let mut seen_masters = BTreeSet::new();
    for i in 0..100 {
        let tag = format!("{{s{i}}}ch");
        let master = cluster.master_of_slot(key_slot(&app_ns, tag.as_bytes()));
        if seen_masters.insert(master) {
            tags.push(tag);
        }
    }
    assert_eq!(tags.len(), 3);
    let mut subs = Vec::new();
    for tag in &tags {
        let mut s = proxy.raw().await;
        let want = format!("*3\r\n$10\r\nssubscribe\r\n${}\r\n{tag}\r\n:1\r\n", tag.len());
        assert_eq!(s.cmd(&[b"SSUBSCRIBE", tag.as_bytes()]).await, want.into_bytes());
        subs.push(s);
    }
    for (tag, s) in tags.iter().zip(&mut subs) {
        assert_eq!(p.cmd(&[b"SPUBLISH", tag.as_bytes(), b"hi"]).await, b":1\r\n");
        let want = format!("*3\r\n$8\r\nsmessage\r\n${}\r\n{tag}\r\n$2\r\nhi\r\n", tag.len());
        assert_eq!(s.reply().await, want.into_bytes());
    }
    let mut s = proxy.raw().await;
    assert_eq!(s.cmd(&[b"SSUBSCRIBE", tags[0].as_bytes(), tags[1].as_bytes()]).await, crossslot);
    // One client's sharded subscriptions are served by one master.
    let other = subs[0].cmd(&[b"SSUBSCRIBE", tags[1].as_bytes()]).await;
    assert!(other.starts_with(b"-ERR this connection's subscriptions are served by"), "{other:?}");
    // SHARDNUMSUB asks each channel's master, answering in the order asked.
    let mut ask: Vec<&[u8]> = vec![b"PUBSUB", b"SHARDNUMSUB", tags[2].as_bytes(), b"{none}x", tags[0].as_bytes()];
    let mut want = String::from("*6\r\n");
    for (ch, n) in [(tags[2].as_str(), 1), ("{none}x", 0), (tags[0].as_str(), 1)] {
        want.push_str(&format!("${}\r\n{ch}\r\n:{n}\r\n", ch.len()));
    }
    assert_eq!(p.cmd(&ask).await, want.into_bytes());
    ask.truncate(2);
    assert_eq!(p.cmd(&ask).await, b"*0\r\n");
    proxy.stop().await;
}

fn get_calls(cluster: &RedisCluster, node: usize) -> u64 {
    cluster.nodes[node].calls("get")
}

#[tokio::test]
async fn read_only_commands_go_to_replicas_when_the_tenant_asks() {
    let _heavy = tenantry_tests::heavy().await;
    let cluster = RedisCluster::start(3, 1);
    // app reads from replicas always; demo never (the default).
    let yaml = config(&cluster, ", read_from_replicas: always").replace(
        "default_tenant:",
        "  p: { backend: c, namespace: \"p:\", auth: { username: p, password: pw }, read_from_replicas: prefer }\ndefault_tenant:",
    );
    let proxy = TestProxy::start(&yaml).await;
    let mut app = proxy.client().await;
    let mut demo = proxy.client_as("demo", "demo-pw").await;
    for i in 0..50 {
        let _: () = app.set(format!("r{i}"), i).await.unwrap();
    }
    for (master, _) in cluster.masters() {
        cli(cluster.nodes[master].port(), &["WAIT", "1", "1000"]);
    }
    // Replica connections come up a moment after the masters'.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    for i in 0..50 {
        while let Err(e) = redis::cmd("GET").arg(format!("r{i}")).query_async::<Option<i64>>(&mut app).await {
            assert!(std::time::Instant::now() < deadline, "replicas never served a read: {e}");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
    let masters = cluster.masters();
    let on_masters = |c: &RedisCluster| masters.iter().map(|(m, _)| get_calls(c, *m)).sum::<u64>();
    let on_replicas = |c: &RedisCluster| masters.iter().flat_map(|(_, r)| r).map(|r| get_calls(c, *r)).sum::<u64>();
    let masters = masters.clone();
    // The GETs `$reads` adds on (masters, replicas) must be `$want`. Tried up
    // to 5 times: tenantry's lease scripts (quota measuring, node events)
    // call GET on each master every 2 s, and one may land in the window.
    macro_rules! reads_on {
        ($want:expr, $what:expr, $reads:block) => {{
            let mut seen = (u64::MAX, u64::MAX);
            for _ in 0..5 {
                let (m0, r0) = (on_masters(&cluster), on_replicas(&cluster));
                $reads
                seen = (on_masters(&cluster) - m0, on_replicas(&cluster) - r0);
                if seen == $want {
                    break;
                }
            }
            assert_eq!(seen, $want, $what);
        }};
    }
    reads_on!((0, 50), "app's reads are served by replicas", {
        for i in 0..50 {
            let v: i64 = app.get(format!("r{i}")).await.unwrap();
            assert_eq!(v, i);
        }
    });
    reads_on!((20, 0), "demo reads from masters", {
        for i in 0..20 {
            let v: Option<i64> = demo.get(format!("r{i}")).await.unwrap();
            assert_eq!(v, None);
        }
    });
    // Writes always go to masters.
    let _: () = app.set("w", 1).await.unwrap();
    // Inside MULTI, a read runs with the transaction, on the master.
    reads_on!((1, 0), "a read inside MULTI runs on the master", {
        let (ok, v): (String, i64) = redis::pipe()
            .atomic()
            .cmd("SET")
            .arg("tx")
            .arg(7)
            .cmd("GET")
            .arg("tx")
            .query_async(&mut app)
            .await
            .unwrap();
        assert_eq!((ok.as_str(), v), ("OK", 7));
    });

    // `prefer` reads from replicas while they are up...
    let mut prefer = proxy.client_as("p", "pw").await;
    reads_on!((0, 10), "prefer reads from replicas", {
        for i in 0..10 {
            let v: Option<i64> = prefer.get(format!("r{i}")).await.unwrap();
            assert_eq!(v, None, "p has its own namespace");
        }
    });
    // ...and from masters when they are gone, where `always` says why it cannot.
    let mut cluster = cluster;
    for (_, replicas) in &masters {
        for &r in replicas {
            cluster.nodes[r].stop();
        }
    }
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let mut on = 0;
    for _ in 0..5 {
        let m4 = on_masters(&cluster);
        for i in 0..10 {
            let v: Option<i64> = prefer.get(format!("r{i}")).await.unwrap();
            assert_eq!(v, None);
        }
        on = on_masters(&cluster) - m4;
        if on == 10 {
            break;
        }
    }
    assert_eq!(on, 10, "prefer falls back to masters");
    let e = redis::cmd("GET").arg("r1").query_async::<Option<i64>>(&mut app).await.unwrap_err();
    assert!(e.to_string().contains("no replica of slot"), "{e}");
    proxy.stop().await;
}
