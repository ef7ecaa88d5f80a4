//! A cluster that changes under load: a live slot migration (ASK, then
//! MOVED) and failovers (CLUSTER FAILOVER on a replica, a killed master).
//! Every request gets a reply, and never another request's.

use super::cluster::config;
use crate::load::{snapshot, start_load};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tenantry_protocol::cluster::key_slot;
use tenantry_protocol::Namespace;
use tenantry_tests::cluster::{cli, RedisCluster};
use tenantry_tests::TestProxy;

async fn run_cli(port: u16, args: &[&str]) -> String {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        cli(port, &refs)
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_live_slot_migration_is_invisible_to_clients() {
    let _heavy = tenantry_tests::heavy().await;
    let cluster = tokio::task::spawn_blocking(|| RedisCluster::start(3, 1)).await.unwrap();
    // A long refresh period: the proxy learns of the move from ASK and MOVED only.
    let yaml = config(&cluster, "").replace("topology_refresh: 1s", "topology_refresh: 1h");
    let proxy = TestProxy::start(&yaml).await;
    let mut c = proxy.raw().await;
    let keys: Vec<String> = (0..40).map(|i| format!("{{mig}}k{i}")).collect();
    for k in &keys {
        assert_eq!(c.cmd(&[b"SET", k.as_bytes(), format!("v-{k}").as_bytes()]).await, b"+OK\r\n");
    }
    let slot = key_slot(&Namespace::new("app:").unwrap(), b"{mig}");
    let source = cluster.master_of_slot(slot);
    let target = cluster.masters().iter().map(|(m, _)| *m).find(|&m| m != source).unwrap();
    let (sp, tp) = (cluster.nodes[source].port(), cluster.nodes[target].port());
    let source_id = run_cli(sp, &["CLUSTER", "MYID"]).await.trim().to_string();
    let target_id = run_cli(tp, &["CLUSTER", "MYID"]).await.trim().to_string();
    let s = slot.to_string();
    assert_eq!(run_cli(tp, &["CLUSTER", "SETSLOT", &s, "IMPORTING", &source_id]).await.trim(), "OK");
    assert_eq!(run_cli(sp, &["CLUSTER", "SETSLOT", &s, "MIGRATING", &target_id]).await.trim(), "OK");

    // Half the keys move; the source answers ASK for them, and tenantry
    // follows it (its map still names the source).
    for k in &keys[..20] {
        let wire = format!("app:{k}");
        let out = run_cli(sp, &["MIGRATE", "127.0.0.1", &tp.to_string(), &wire, "0", "5000"]).await;
        assert_eq!(out.trim(), "OK", "MIGRATE {wire}");
    }
    for k in &keys {
        let want = format!("v-{k}");
        let got = c.cmd(&[b"GET", k.as_bytes()]).await;
        assert_eq!(got, format!("${}\r\n{want}\r\n", want.len()).into_bytes(), "GET {k} mid-migration");
    }
    // A write to a moved key goes to the target after ASKING.
    assert_eq!(c.cmd(&[b"SET", keys[0].as_bytes(), b"new"]).await, b"+OK\r\n");
    assert_eq!(run_cli(tp, &["-c", "GET", &format!("app:{}", keys[0])]).await.trim(), "new");
    // A pipeline mixing migrated and unmigrated keys comes back whole, in order.
    let mut pipeline = Vec::new();
    for k in &keys[1..] {
        pipeline.extend(tenantry_tests::encode(&[b"GET", k.as_bytes()]));
    }
    c.send(&pipeline).await;
    for k in &keys[1..] {
        let want = format!("v-{k}");
        assert_eq!(c.reply().await, format!("${}\r\n{want}\r\n", want.len()).into_bytes());
    }

    // The rest moves and the slot is handed over: the source answers MOVED.
    for k in &keys[20..] {
        let wire = format!("app:{k}");
        run_cli(sp, &["MIGRATE", "127.0.0.1", &tp.to_string(), &wire, "0", "5000"]).await;
    }
    for (i, _) in cluster.masters() {
        run_cli(cluster.nodes[i].port(), &["CLUSTER", "SETSLOT", &s, "NODE", &target_id]).await;
    }
    // The first command after the hand-over is a transaction, sent where
    // the slot was: MOVED, EXECABORT, so it runs again on the new master.
    let k0 = keys[0].as_bytes();
    assert_eq!(c.cmd(&[b"MULTI"]).await, b"+OK\r\n");
    assert_eq!(c.cmd(&[b"SET", k0, b"tx"]).await, b"+QUEUED\r\n");
    assert_eq!(c.cmd(&[b"GET", k0]).await, b"+QUEUED\r\n");
    assert_eq!(c.cmd(&[b"EXEC"]).await, b"*2\r\n+OK\r\n$2\r\ntx\r\n");
    for k in &keys[1..] {
        let want = format!("v-{k}");
        let got = c.cmd(&[b"GET", k.as_bytes()]).await;
        assert_eq!(got, format!("${}\r\n{want}\r\n", want.len()).into_bytes(), "GET {k} after the move");
    }
    // MGET over the moved slot and others, split and merged.
    let got = c.cmd(&[b"MGET", keys[1].as_bytes(), b"elsewhere", keys[2].as_bytes()]).await;
    let (a, b) = (format!("v-{}", keys[1]), format!("v-{}", keys[2]));
    assert_eq!(got, format!("*3\r\n${}\r\n{a}\r\n$-1\r\n${}\r\n{b}\r\n", a.len(), b.len()).into_bytes());
    // The redirections the clients never saw are in the metrics.
    let text = proxy.metrics().await;
    let event = |e: &str| {
        tenantry_tests::metric(&text, &format!("tenantry_cluster_events_total{{backend=\"c\",event=\"{e}\"}}"))
    };
    assert!(event("ask") >= 20.0, "{text}");
    assert!(event("moved") >= 1.0, "{text}");
    assert_eq!(tenantry_tests::metric(&text, "tenantry_cluster_masters{backend=\"c\"}"), 3.0);
    for name in tenantry_tests::dashboard_metrics().iter().filter(|n| n.starts_with("tenantry_cluster_")) {
        assert!(text.lines().any(|l| l.starts_with(name.as_str())), "the dashboard queries {name}: not exported");
    }
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failovers_under_load_cost_a_bounded_burst_of_errors() {
    let _heavy = tenantry_tests::heavy().await;
    let mut cluster = tokio::task::spawn_blocking(|| RedisCluster::start(3, 1)).await.unwrap();
    let proxy = TestProxy::start(&config(&cluster, "")).await;
    let (stop, tally, tasks) = start_load(&proxy, 8).await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    // 1. A manual failover: the replica takes over with the master's consent.
    let masters = cluster.masters();
    let (old_master, replicas) = masters[0].clone();
    let replica = replicas[0];
    let before = snapshot(&tally);
    assert_eq!(run_cli(cluster.nodes[replica].port(), &["CLUSTER", "FAILOVER"]).await.trim(), "OK");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !run_cli(cluster.nodes[replica].port(), &["ROLE"]).await.starts_with("master") {
        assert!(Instant::now() < deadline, "manual failover did not complete");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = snapshot(&tally);
    eprintln!(
        "CLUSTER FAILOVER ({} -> {}): {} ok, {} errors, {} misdelivered, {} hung",
        cluster.nodes[old_master].addr(),
        cluster.nodes[replica].addr(),
        after.0 - before.0,
        after.1 - before.1,
        after.2,
        after.3
    );
    assert!(after.0 > before.0 + 100, "the load kept running");

    // 2. A killed master: its replica is promoted after the node timeout.
    let masters = cluster.masters();
    let (victim, replicas) = masters.iter().find(|(_, r)| !r.is_empty()).cloned().expect("a master with a replica");
    let heir = replicas[0];
    let before = snapshot(&tally);
    let killed_at = Instant::now();
    cluster.nodes[victim].stop();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !run_cli(cluster.nodes[heir].port(), &["ROLE"]).await.starts_with("master") {
        assert!(Instant::now() < deadline, "the replica was not promoted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let promoted = killed_at.elapsed();
    // Errors stop once tenantry has the new map: measure a clean window after.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let settled = snapshot(&tally);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let end = snapshot(&tally);
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    eprintln!(
        "killed master {}: replica promoted after {promoted:?}; {} ok, {} errors until settled; then {} ok, {} errors",
        cluster.nodes[victim].addr(),
        settled.0 - before.0,
        settled.1 - before.1,
        end.0 - settled.0,
        end.1 - settled.1
    );
    assert_eq!(end.2, 0, "no reply may reach another request");
    assert_eq!(end.3, 0, "no request may hang");
    assert!(settled.1 > before.1, "requests to the dead master fail fast rather than hang");
    assert_eq!(end.1, settled.1, "no errors once the new master is known");
    assert!(end.0 > settled.0 + 100, "the load runs on after the failover");
    proxy.stop().await;
}
