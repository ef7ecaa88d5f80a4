//! Memory quotas on a Redis Cluster backend: each master measures and
//! evicts its share of a tenant's keys, and the proxy adds the masters'
//! figures up against the tenant's one quota.

use super::quota::{hits, login, settled_usage, write, write_mixed, TRUE_USAGE};
use std::time::{Duration, Instant};
use tenantry_tests::cluster::RedisCluster;
use tenantry_tests::{heavy, metric_sum, TestProxy};

/// A tenant's true use: MEMORY USAGE summed over its keys on every master.
async fn true_usage(cluster: &RedisCluster, pattern: &str) -> (u64, u64) {
    let mut total = (0, 0);
    for (m, _) in cluster.masters() {
        let mut c = tenantry_tests::direct(&cluster.nodes[m]).await;
        let (bytes, keys): (u64, u64) =
            redis::cmd("EVAL").arg(TRUE_USAGE).arg(0).arg(pattern).query_async(&mut c).await.unwrap();
        total = (total.0 + bytes, total.1 + keys);
    }
    total
}

fn config(cluster: &RedisCluster, a: &str, b: &str) -> String {
    let seeds: Vec<String> = cluster.seeds().iter().map(|s| format!("\"{s}\"")).collect();
    format!(
        "admin: 127.0.0.1:0\nbackends:\n  shared: {{ kind: cluster, nodes: [{}] }}\n\
         tenants:\n  a: {{ backend: shared, namespace: \"a:\", auth: {{ username: a, password: pw }}{a} }}\n  \
         b: {{ backend: shared, namespace: \"b:\", auth: {{ username: b, password: pw }}{b} }}\n",
        seeds.join(", ")
    )
}

#[tokio::test]
async fn a_noisy_tenant_evicts_only_its_own_keys_on_a_cluster() {
    let _heavy = heavy().await;
    const B_KEYS: usize = 4000;
    const A_FLOOD: usize = 60_000;
    const VALUE: usize = 1000;
    const A_QUOTA: f64 = 6.0 * 1024.0 * 1024.0;
    let maxmemory = ["--maxmemory", "12mb", "--maxmemory-policy", "allkeys-lru"];

    // Without quotas: each node's one policy evicts whoever's keys; the
    // nodes' evictions are attributed to the tenants whose keys they were.
    let plain = {
        let cluster = RedisCluster::start_with(3, 0, &maxmemory);
        let proxy = TestProxy::start(&config(&cluster, "", "")).await;
        let deadline = Instant::now() + Duration::from_secs(10);
        while metric_sum(&proxy.metrics().await, "tenantry_event_reporter", "") < 3.0 {
            assert!(Instant::now() < deadline, "every master gets an event reporter");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await; // subscribed
        let (mut a, mut b) = (login(&proxy, "a").await, login(&proxy, "b").await);
        write(&mut b, "work:", 0..B_KEYS, VALUE).await;
        let before = hits(&mut b, "work:", B_KEYS).await;
        write(&mut a, "flood:", 0..A_FLOOD, VALUE).await;
        let deadline = Instant::now() + Duration::from_secs(10);
        let after = loop {
            // Recounted each time: the nodes may still be evicting.
            let after = hits(&mut b, "work:", B_KEYS).await;
            let a_lost = A_FLOOD - hits(&mut a, "flood:", A_FLOOD).await;
            let text = proxy.metrics().await;
            let seen = |t: &str| metric_sum(&text, "tenantry_evictions_total", &format!("tenant=\"{t}\""));
            if (seen("a"), seen("b")) == (a_lost as f64, (B_KEYS - after) as f64) {
                break after;
            }
            assert!(
                Instant::now() < deadline,
                "evictions in metrics a={} b={}; keys lost a={a_lost} b={}",
                seen("a"),
                seen("b"),
                B_KEYS - after
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        (before, after)
    };

    let cluster = RedisCluster::start_with(3, 0, &maxmemory);
    let proxy = TestProxy::start(&config(
        &cluster,
        ", memory_quota: 6MiB, eviction: allkeys-lru",
        ", memory_quota: 8MiB, eviction: allkeys-lru",
    ))
    .await;
    let (mut a, mut b) = (login(&proxy, "a").await, login(&proxy, "b").await);
    assert_eq!(write(&mut b, "work:", 0..B_KEYS, VALUE).await, (B_KEYS, 0));
    let before = hits(&mut b, "work:", B_KEYS).await;
    let (a_written, a_refused) = write(&mut a, "flood:", 0..A_FLOOD, VALUE).await;
    let after = hits(&mut b, "work:", B_KEYS).await;
    settled_usage(&proxy, "a").await;
    let (a_bytes, a_left) = true_usage(&cluster, "a:flood:*").await;
    let text = proxy.metrics().await;
    let evicted = metric_sum(&text, "tenantry_evictions_total", "tenant=\"a\",keyspace=\"flood\",reason=\"quota\"")
        + metric_sum(&text, "tenantry_evictions_total", "tenant=\"a\",keyspace=\"other\",reason=\"quota\"");
    let b_evicted = metric_sum(&text, "tenantry_evictions_total", "tenant=\"b\"");
    let mut backend_evicted = 0u64;
    for (m, _) in cluster.masters() {
        let info = tenantry_tests::cluster::cli(cluster.nodes[m].port(), &["INFO", "stats"]);
        backend_evicted +=
            info.lines().find_map(|l| l.strip_prefix("evicted_keys:")).unwrap().trim().parse::<u64>().unwrap();
    }
    println!("noisy neighbour on a 3-master cluster (12 MB maxmemory each): B {B_KEYS} keys, then A {A_FLOOD} writes");
    println!("  plain shared cluster: B hits {} before, {} after", plain.0, plain.1);
    println!("  tenantry quotas:      B hits {before} before, {after} after; backend evictions {backend_evicted}");
    println!(
        "  A: {a_written} written, {a_refused} refused; {a_left} left using {a_bytes} bytes ({:.1}% of its quota); \
         {evicted} evicted by quota",
        a_bytes as f64 / A_QUOTA * 100.0
    );
    assert!(plain.1 < plain.0, "without quotas B should lose keys: {plain:?}");
    assert_eq!((before, after), (B_KEYS, B_KEYS), "B lost keys");
    assert_eq!(b_evicted, 0.0);
    assert_eq!(backend_evicted, 0, "the nodes' own policy evicted");
    assert!(a_bytes as f64 <= A_QUOTA * 1.10, "A uses {a_bytes} bytes");
    assert!(a_bytes as f64 >= A_QUOTA * 0.80, "A was evicted far below its quota: {a_bytes} bytes");
    assert_eq!(evicted as u64, a_written as u64 - a_left, "A's quota evictions vs A's keys that disappeared");
    assert!(a_refused < A_FLOOD / 10, "eviction should keep up with most of the flood: {a_refused} refused");
}

#[tokio::test]
async fn usage_on_a_cluster_is_measured_within_a_few_percent_of_the_true_sum() {
    let cluster = RedisCluster::start(3, 0);
    let proxy = TestProxy::start(&config(&cluster, ", memory_quota: 512MiB", "")).await;
    let mut a = login(&proxy, "a").await;
    write_mixed(&mut a, 3000).await;
    let estimate = settled_usage(&proxy, "a").await;
    let (truth, keys) = true_usage(&cluster, "a:*").await;
    let error = (estimate - truth as f64) / truth as f64;
    println!(
        "tenant a on a 3-master cluster: {keys} keys, true MEMORY USAGE sum {truth} bytes, \
         tenantry's estimate {estimate} ({:+.1}%)",
        error * 100.0
    );
    assert_eq!(keys, 3000);
    assert!(error.abs() <= 0.10, "estimate {estimate} vs true {truth}");
}
