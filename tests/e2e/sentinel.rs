//! Sentinel backends against real `redis-sentinel` processes: traffic
//! follows a failover (SENTINEL FAILOVER, and a killed master) without a
//! restart, and a master that cannot be named fails its tenants' commands
//! with the reason while other tenants are served.

use crate::load::{snapshot, start_load};
use std::time::{Duration, Instant};
use tenantry_tests::sentinel::{SentinelProcess, SentinelSet, MASTER_NAME};
use tenantry_tests::{http_get, RedisServer, TestProxy};

fn config(set: &SentinelSet, extra_tenant: &str) -> String {
    format!(
        "admin: 127.0.0.1:0\n\
         backends:\n  ha: {{ kind: sentinel, master_name: {MASTER_NAME}, nodes: {}, topology_refresh: 1s }}\n\
         tenants:\n  app: {{ backend: ha, namespace: \"app:\"{extra_tenant} }}\n\
         default_tenant: app\n",
        set.nodes_yaml()
    )
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

/// Waits until a SET through tenantry lands on server `index` directly,
/// once that server is a master (a replica would have it by replication).
async fn writes_reach(proxy: &TestProxy, set: &SentinelSet, index: usize, within: Duration) {
    let mut c = proxy.raw().await;
    let deadline = Instant::now() + within;
    let mut round = 0;
    loop {
        round += 1;
        let value = format!("probe-{round}");
        if set.servers[index].cli(&["ROLE"]).starts_with("master")
            && c.cmd(&[b"SET", b"probe", value.as_bytes()]).await == b"+OK\r\n"
            && set.servers[index].cli(&["GET", "app:probe"]).trim() == value
        {
            return;
        }
        assert!(Instant::now() < deadline, "writes did not reach server {index} within {within:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn traffic_follows_failovers_without_a_restart() {
    let _heavy = tenantry_tests::heavy().await;
    let set = blocking(SentinelSet::start).await;
    let proxy = TestProxy::start(&config(&set, "")).await;
    writes_reach(&proxy, &set, 0, Duration::from_secs(5)).await;
    let (stop, tally, tasks) = start_load(&proxy, 8).await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    // 1. SENTINEL FAILOVER: the replica is promoted, the old master demoted.
    let before = snapshot(&tally);
    let asked = Instant::now();
    assert_eq!(set.sentinels[0].cli(&["SENTINEL", "FAILOVER", MASTER_NAME]).trim(), "OK");
    // tenantry moves at +switch-master; the sentinels demote the old master
    // some seconds later (until then it still takes writes from anyone).
    let deadline = Instant::now() + Duration::from_secs(20);
    while !set.servers[1].cli(&["ROLE"]).starts_with("master") {
        assert!(Instant::now() < deadline, "the replica was not promoted");
    }
    let promoted = asked.elapsed();
    writes_reach(&proxy, &set, 1, Duration::from_secs(20)).await;
    let switched = asked.elapsed();
    let set = blocking(move || {
        set.wait_for_master(1, Duration::from_secs(30));
        set
    })
    .await;
    let demoted = asked.elapsed();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = snapshot(&tally);
    let window = tally.error_window();
    eprintln!(
        "SENTINEL FAILOVER: replica promoted {promoted:?} after the request, tenantry's writes there after \
         {switched:?}, old master demoted after {demoted:?}; {} ok, {} errors over {window:?}; errors seen: {:?}",
        after.0 - before.0,
        after.1 - before.1,
        tally.error_texts.lock().unwrap()
    );
    assert!(after.0 > before.0 + 100, "the load kept running");
    assert!(set.servers[0].cli(&["ROLE"]).starts_with("slave"), "the old master is a replica now");

    // 2. The master is killed: the sentinels promote the replica.
    let before = snapshot(&tally);
    let errors_before = tally.errors.load(std::sync::atomic::Ordering::Relaxed);
    let mut set = set;
    let killed = Instant::now();
    set.servers[1].stop();
    let set = blocking(move || {
        set.wait_for_master(0, Duration::from_secs(30));
        set
    })
    .await;
    let promoted = killed.elapsed();
    writes_reach(&proxy, &set, 0, Duration::from_secs(10)).await;
    let switched = killed.elapsed();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let settled = snapshot(&tally);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let end = snapshot(&tally);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    eprintln!(
        "killed master: promoted after {promoted:?}, writes on the new master after {switched:?}; \
         {} ok, {} errors until settled; then {} ok, {} errors; errors seen: {:?}",
        settled.0 - before.0,
        settled.1 - errors_before,
        end.0 - settled.0,
        end.1 - settled.1,
        tally.error_texts.lock().unwrap()
    );
    assert_eq!(end.2, 0, "no reply may reach another request");
    assert_eq!(end.3, 0, "no request may hang");
    assert_eq!(end.1, settled.1, "no errors once the new master is known");
    assert!(end.0 > settled.0 + 100, "the load runs on after the failover");
    for e in tally.error_texts.lock().unwrap().iter() {
        assert!(e.starts_with("-ERR backend 'ha'"), "errors name the backend: {e}");
    }
    // Writes after the switch are on the new master, and only there.
    assert!(set.servers[0].cli(&["DBSIZE"]).trim().parse::<u64>().unwrap() > 0);
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_go_to_the_replica_the_sentinels_list() {
    let _heavy = tenantry_tests::heavy().await;
    let set = blocking(SentinelSet::start).await;
    let proxy = TestProxy::start(&config(&set, ", read_from_replicas: always")).await;
    let mut c = proxy.raw().await;
    assert_eq!(c.cmd(&[b"SET", b"k", b"v"]).await, b"+OK\r\n");
    assert_eq!(set.servers[0].cli(&["GET", "app:k"]).trim(), "v", "writes go to the master");
    // A value only the replica holds tells where a read was served.
    let deadline = Instant::now() + Duration::from_secs(10);
    while set.servers[1].cli(&["GET", "app:k"]).trim() != "v" {
        assert!(Instant::now() < deadline, "the replica did not get the write");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(set.servers[1].cli(&["CONFIG", "SET", "replica-read-only", "no"]).trim(), "OK");
    assert_eq!(set.servers[1].cli(&["SET", "app:k", "on-the-replica"]).trim(), "OK");
    // Until the sentinels list the replica as linked, reads are refused.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let reply = c.cmd(&[b"GET", b"k"]).await;
        if reply == b"$14\r\non-the-replica\r\n" {
            break;
        }
        let text = String::from_utf8_lossy(&reply);
        assert!(text.starts_with("-ERR no replica of master \"mymaster\" is up in backend 'ha'"), "{text}");
        assert!(Instant::now() < deadline, "no GET reached the replica");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for _ in 0..20 {
        assert_eq!(c.cmd(&[b"GET", b"k"]).await, b"$14\r\non-the-replica\r\n", "every read from the replica");
    }
    // Writes still go to the master.
    assert_eq!(c.cmd(&[b"SET", b"w", b"1"]).await, b"+OK\r\n");
    assert_eq!(set.servers[0].cli(&["GET", "app:w"]).trim(), "1");
    proxy.stop().await;
}

#[tokio::test]
async fn a_master_no_sentinel_names_fails_its_tenants_with_the_reason() {
    let plain = RedisServer::start();
    let watched = RedisServer::start();
    // A sentinel with a password that knows another master's name, and one
    // address where no sentinel listens.
    let sentinel = SentinelProcess::start("othermaster", &watched, 1, &["requirepass s3cret"]);
    let nowhere = tenantry_tests::free_port();
    let yaml = format!(
        "admin: 127.0.0.1:0\n\
         backends:\n  ha: {{ kind: sentinel, master_name: {MASTER_NAME}, nodes: [\"{}\", \"127.0.0.1:{nowhere}\"], \
         sentinel_auth: {{ password: s3cret }} }}\n  \
         plain: {{ kind: standalone, nodes: [\"{}\"] }}\n\
         tenants:\n  app: {{ backend: ha, namespace: \"app:\" }}\n  \
         other: {{ backend: plain, namespace: \"other:\", auth: {{ username: other, password: other-pw }} }}\n\
         default_tenant: app\n",
        sentinel.addr(),
        plain.addr()
    );
    let proxy = TestProxy::start(&yaml).await;
    let mut app = proxy.raw().await;
    let want = format!(
        "-ERR backend 'ha' ({MASTER_NAME}) is unavailable: no sentinel named master \"{MASTER_NAME}\" ({}: ERR No such master with that name; 127.0.0.1:{nowhere}: ",
        sentinel.addr()
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let reply = String::from_utf8_lossy(&app.cmd(&[b"SET", b"k", b"v"]).await).into_owned();
        if reply.starts_with(&want) {
            break;
        }
        assert!(reply.starts_with("-ERR backend 'ha'"), "{reply}");
        assert!(Instant::now() < deadline, "{reply} is not {want}...");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (code, body) = http_get(proxy.admin_addr().unwrap(), "/ready").await;
    assert_eq!(code, 503);
    assert!(body.contains("not ready: backends down: ha (no sentinel named master"), "{body}");
    assert!(body.trim_end().ends_with("; tenants affected: app"), "{body}");
    let (_, tenants) = http_get(proxy.admin_addr().unwrap(), "/tenants").await;
    let tenants: serde_json::Value = serde_json::from_str(&tenants).unwrap();
    let app = tenants.as_array().unwrap().iter().find(|t| t["tenant"] == "app").unwrap();
    assert_eq!(app["backend_up"], false);
    assert!(app["backend_problem"].as_str().unwrap().starts_with("no sentinel named master"), "{app}");
    let other = tenants.as_array().unwrap().iter().find(|t| t["tenant"] == "other").unwrap();
    assert_eq!(other["backend_up"], true);
    assert_eq!(other["backend_problem"], serde_json::Value::Null);
    // Another tenant's backend serves on.
    let mut other = proxy.login("other", "other-pw").await;
    assert_eq!(other.cmd(&[b"SET", b"k", b"v"]).await, b"+OK\r\n");
    assert_eq!(plain.cli(&["GET", "other:k"]).trim(), "v");
    proxy.stop().await;
}

#[tokio::test]
async fn sentinels_that_disagree_are_not_guessed_between() {
    // Two sentinels, each monitoring its own master under one name, both at
    // epoch 0: there is no telling which is right.
    let a = RedisServer::start();
    let b = RedisServer::start();
    let sa = SentinelProcess::start(MASTER_NAME, &a, 1, &[]);
    let sb = SentinelProcess::start(MASTER_NAME, &b, 1, &[]);
    let yaml = format!(
        "admin: 127.0.0.1:0\nbackends:\n  ha: {{ kind: sentinel, master_name: {MASTER_NAME}, nodes: [\"{}\", \"{}\"] }}\n\
         tenants:\n  app: {{ backend: ha, namespace: \"app:\" }}\ndefault_tenant: app\n",
        sa.addr(),
        sb.addr()
    );
    let proxy = TestProxy::start(&yaml).await;
    let mut app = proxy.raw().await;
    let want = format!(
        "-ERR backend 'ha' ({MASTER_NAME}) is unavailable: sentinels disagree on master \"{MASTER_NAME}\" at epoch 0: \
         {} says {}, {} says {}\r\n",
        sa.addr(),
        a.addr(),
        sb.addr(),
        b.addr()
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let reply = String::from_utf8_lossy(&app.cmd(&[b"GET", b"k"]).await).into_owned();
        if reply == want {
            break;
        }
        assert!(Instant::now() < deadline, "{reply:?} is not {want:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(http_get(proxy.admin_addr().unwrap(), "/ready").await.0, 503);
    assert_eq!(a.cli(&["DBSIZE"]).trim(), "0");
    assert_eq!(b.cli(&["DBSIZE"]).trim(), "0");
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quotas_telemetry_and_tracking_work_as_on_standalone() {
    let _heavy = tenantry_tests::heavy().await;
    let set = blocking(SentinelSet::start).await;
    let proxy = TestProxy::start(&config(&set, ", memory_quota: 64MiB")).await;
    writes_reach(&proxy, &set, 0, Duration::from_secs(5)).await;
    // Client-side caching: a write of a tracked key invalidates it.
    let mut tracker = proxy.raw().await;
    tracker.cmd(&[b"HELLO", b"3"]).await;
    assert_eq!(tracker.cmd(&[b"CLIENT", b"TRACKING", b"ON"]).await, b"+OK\r\n");
    assert_eq!(tracker.cmd(&[b"GET", b"tracked"]).await, b"_\r\n");
    let mut writer = proxy.raw().await;
    let value = vec![b'x'; 1000];
    assert_eq!(writer.cmd(&[b"SET", b"tracked", b"1"]).await, b"+OK\r\n");
    let push = tokio::time::timeout(Duration::from_secs(5), tracker.reply()).await.expect("an invalidation");
    assert_eq!(push, b">2\r\n$10\r\ninvalidate\r\n*1\r\n$7\r\ntracked\r\n");
    // Memory against the quota, measured on the master the sentinels name.
    for i in 0..2000 {
        let key = format!("k{i}");
        assert_eq!(writer.cmd(&[b"SET", key.as_bytes(), &value]).await, b"+OK\r\n");
    }
    for _ in 0..100 {
        assert_eq!(writer.cmd(&[b"GET", b"k1"]).await.len(), 1000 + 9);
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let text = proxy.metrics().await;
        let used = tenantry_tests::metric(&text, "tenantry_tenant_memory_used_bytes{tenant=\"app\"}");
        let hits = tenantry_tests::metric_sum(&text, "tenantry_keyspace_hits_total", "tenant=\"app\"");
        if used > 2_000_000.0 && hits >= 100.0 {
            break;
        }
        assert!(Instant::now() < deadline, "memory used {used}, hits {hits}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Sentinels that go away say nothing against the master in use.
    let mut set = set;
    for s in &mut set.sentinels {
        s.stop();
    }
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(writer.cmd(&[b"SET", b"after", b"1"]).await, b"+OK\r\n");
    assert_eq!(set.servers[0].cli(&["GET", "app:after"]).trim(), "1");
    proxy.stop().await;
}
