//! The near-cache: hot keys answered by tenantry itself, kept correct by
//! the backend's client tracking. Writes by anyone (this proxy, another
//! tenantry, Redis directly) are seen within `max_staleness`.

use std::time::{Duration, Instant};
use tenantry_tests::{http_get, RawClient, RedisServer, TestProxy};

const STALENESS: Duration = Duration::from_millis(100);

fn config(backend: &str, extra: &str) -> String {
    format!(
        "admin: 127.0.0.1:0\n{backend}\
         tenants:\n  app: {{ backend: b, namespace: \"app:\", near_cache: {{ max_bytes: 1MiB, max_staleness: 100ms }}{extra} }}\n  \
         demo: {{ backend: b, namespace: \"demo:\", near_cache: {{ max_bytes: 1MiB, max_staleness: 100ms }}, auth: {{ username: demo, password: demo-pw }} }}\n\
         default_tenant: app\n"
    )
}

fn standalone(redis: &RedisServer) -> String {
    format!("backends:\n  b: {{ kind: standalone, nodes: [\"{}\"] }}\n", redis.addr())
}

async fn get(c: &mut RawClient, key: &[u8]) -> Vec<u8> {
    c.cmd(&[b"GET", key]).await
}

/// `/tenants`'s near-cache figures of `tenant`: (entries, serving).
async fn near_cache(proxy: &TestProxy, tenant: &str) -> (u64, bool) {
    let (_, body) = http_get(proxy.admin_addr().unwrap(), "/tenants").await;
    let tenants: serde_json::Value = serde_json::from_str(&body).unwrap();
    let t = tenants.as_array().unwrap().iter().find(|t| t["tenant"] == tenant).expect("the tenant");
    (t["near_cache"]["entries"].as_u64().unwrap(), t["near_cache"]["serving"].as_bool().unwrap())
}

/// Reads `key` (as tenant `app`) until the sketch finds it hot and the cache holds it.
async fn warm(proxy: &TestProxy, c: &mut RawClient, key: &[u8]) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        for _ in 0..100 {
            get(c, key).await;
        }
        let (entries, serving) = near_cache(proxy, "app").await;
        if entries > 0 && serving {
            return;
        }
        assert!(Instant::now() < deadline, "the key never got into the near-cache");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Reads `key` until it answers `want`; how long that took.
async fn until(c: &mut RawClient, key: &[u8], want: &[u8]) -> Duration {
    let start = Instant::now();
    loop {
        if get(c, key).await == want {
            let took = start.elapsed();
            eprintln!("{} seen after {took:?}", String::from_utf8_lossy(want).trim_end());
            return took;
        }
        assert!(start.elapsed() < Duration::from_secs(5), "{key:?} never became {want:?}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[tokio::test]
async fn hot_keys_are_served_by_tenantry_and_writes_from_anywhere_are_seen_in_time() {
    let _heavy = tenantry_tests::heavy().await;
    let redis = RedisServer::start();
    let proxy = TestProxy::start(&config(&standalone(&redis), "")).await;
    // Another tenantry in front of the same Redis, without a near-cache.
    let other = TestProxy::start(
        &config(&standalone(&redis), "")
            .replace("near_cache: { max_bytes: 1MiB, max_staleness: 100ms }", "scripts: false"),
    )
    .await;
    redis.cli(&["SET", "app:hot", "v1"]);
    let mut c = RawClient::connect(proxy.addr).await;
    warm(&proxy, &mut c, b"hot").await;

    redis.cli(&["CONFIG", "RESETSTAT"]);
    for _ in 0..500 {
        assert_eq!(get(&mut c, b"hot").await, b"$2\r\nv1\r\n");
    }
    let backend_gets = redis.calls("get");
    eprintln!("500 GETs of a hot key: {backend_gets} on Redis");
    assert!(backend_gets <= 5, "500 GETs of a hot key reached Redis as {backend_gets}");

    // Written on Redis directly.
    redis.cli(&["SET", "app:hot", "v2"]);
    let took = until(&mut c, b"hot", b"$2\r\nv2\r\n").await;
    assert!(took <= STALENESS, "a direct write showed after {took:?}");
    // Through another tenantry.
    let mut o = RawClient::connect(other.addr).await;
    assert_eq!(o.cmd(&[b"SET", b"hot", b"v3"]).await, b"+OK\r\n");
    let took = until(&mut c, b"hot", b"$2\r\nv3\r\n").await;
    assert!(took <= STALENESS, "a write through another tenantry showed after {took:?}");
    // Through this one: the writer reads its own write at once.
    warm(&proxy, &mut c, b"hot").await;
    let mut w = RawClient::connect(proxy.addr).await;
    assert_eq!(w.cmd(&[b"SET", b"hot", b"v4"]).await, b"+OK\r\n");
    assert_eq!(get(&mut w, b"hot").await, b"$2\r\nv4\r\n");
    let took = until(&mut c, b"hot", b"$2\r\nv4\r\n").await;
    assert!(took <= STALENESS, "a write through this tenantry showed after {took:?}");

    let metrics = proxy.metrics().await;
    // By keyspace: the key `hot` is its own keyspace.
    let hits = tenantry_tests::metric(&metrics, "tenantry_near_cache_hits_total{tenant=\"app\",keyspace=\"hot\"}");
    assert!(hits >= 495.0, "near-cache hits {hits}:\n{metrics}");
    assert!(metrics.contains("tenantry_near_cache_invalidations_total{tenant=\"app\"} "));
    for name in tenantry_tests::dashboard_metrics().iter().filter(|n| n.starts_with("tenantry_near_cache_")) {
        assert!(metrics.lines().any(|l| l.starts_with(name.as_str())), "the dashboard queries {name}, not exported");
    }
    other.stop().await;
    proxy.stop().await;
}

/// The id of the near-cache's tracking connection on the backend.
fn tracker_id(redis: &RedisServer) -> Option<String> {
    let list = redis.cli(&["CLIENT", "LIST"]);
    list.lines()
        .find(|l| l.contains("name=tenantry-near-cache"))
        .and_then(|l| l.split(' ').find_map(|f| f.strip_prefix("id=")).map(str::to_string))
}

#[tokio::test]
async fn a_broken_tracking_connection_empties_the_cache() {
    let redis = RedisServer::start();
    let proxy = TestProxy::start(&config(&standalone(&redis), "")).await;
    redis.cli(&["SET", "app:k", "old"]);
    let mut c = RawClient::connect(proxy.addr).await;
    warm(&proxy, &mut c, b"k").await;
    // Two trackers (app and demo): kill both, then write where no tracker hears it.
    while let Some(id) = tracker_id(&redis) {
        redis.cli(&["CLIENT", "KILL", "ID", &id]);
    }
    redis.cli(&["SET", "app:k", "new"]);
    let took = until(&mut c, b"k", b"$3\r\nnew\r\n").await;
    assert!(took <= STALENESS, "served stale for {took:?} after its tracker broke");
    assert_eq!(near_cache(&proxy, "app").await.0, 0, "emptied");
    // It comes back: the key is cached again, and writes are seen again.
    warm(&proxy, &mut c, b"k").await;
    redis.cli(&["SET", "app:k", "newer"]);
    let took = until(&mut c, b"k", b"$5\r\nnewer\r\n").await;
    assert!(took <= STALENESS);
    proxy.stop().await;
}

#[tokio::test]
async fn two_tenants_with_the_same_key_name_never_share_an_entry() {
    let redis = RedisServer::start();
    let proxy = TestProxy::start(&config(&standalone(&redis), "")).await;
    redis.cli(&["SET", "app:k", "app-value"]);
    redis.cli(&["SET", "demo:k", "demo-value"]);
    let mut app = RawClient::connect(proxy.addr).await;
    let mut demo = proxy.login("demo", "demo-pw").await;
    warm(&proxy, &mut app, b"k").await;
    for _ in 0..300 {
        assert_eq!(get(&mut demo, b"k").await, b"$10\r\ndemo-value\r\n");
        assert_eq!(get(&mut app, b"k").await, b"$9\r\napp-value\r\n");
    }
    // demo's write changes nothing for app.
    assert_eq!(demo.cmd(&[b"SET", b"k", b"changed"]).await, b"+OK\r\n");
    assert_eq!(get(&mut demo, b"k").await, b"$7\r\nchanged\r\n");
    tokio::time::sleep(STALENESS).await;
    assert_eq!(get(&mut app, b"k").await, b"$9\r\napp-value\r\n");
    proxy.stop().await;
}

#[tokio::test]
async fn on_a_cluster_writes_on_the_keys_master_are_seen_in_time() {
    use tenantry_protocol::cluster::key_slot;
    use tenantry_protocol::Namespace;
    let _heavy = tenantry_tests::heavy().await;
    let cluster = tenantry_tests::cluster::RedisCluster::start(3, 0);
    let seeds: Vec<String> = cluster.seeds().iter().map(|s| format!("\"{s}\"")).collect();
    let backend = format!("backends:\n  b: {{ kind: cluster, nodes: [{}] }}\n", seeds.join(", "));
    let proxy = TestProxy::start(&config(&backend, "")).await;
    let mut c = RawClient::connect(proxy.addr).await;
    assert_eq!(c.cmd(&[b"SET", b"hot", b"v1"]).await, b"+OK\r\n");
    warm(&proxy, &mut c, b"hot").await;
    let master = &cluster.nodes[cluster.master_of_slot(key_slot(&Namespace::new("app:").unwrap(), b"hot"))];
    master.cli(&["CONFIG", "RESETSTAT"]);
    for _ in 0..300 {
        assert_eq!(get(&mut c, b"hot").await, b"$2\r\nv1\r\n");
    }
    let gets = master.calls("get");
    assert!(gets <= 5, "300 GETs of a hot key reached its master as {gets}");
    master.cli(&["SET", "app:hot", "v2"]);
    let took = until(&mut c, b"hot", b"$2\r\nv2\r\n").await;
    assert!(took <= STALENESS, "a write on the master showed after {took:?}");
    proxy.stop().await;
}
