//! Per-tenant telemetry: hits and misses as the client saw them, evictions
//! and expirations attributed to the tenant whose key it was, once per fleet.

use std::time::{Duration, Instant};
use tenantry_tests::{direct, encode, http_get, metric, metric_sum, RawClient, RedisServer, TestProxy};

fn two_tenants(redis: &RedisServer) -> String {
    format!(
        "admin: 127.0.0.1:0\nbackends:\n  local: {{ kind: standalone, nodes: [\"{}\"] }}\n\
         tenants:\n  a: {{ backend: local, namespace: \"a:\", auth: {{ username: a, password: pw }} }}\n  \
         b: {{ backend: local, namespace: \"b:\", auth: {{ username: b, password: pw }} }}\n",
        redis.addr()
    )
}

/// Every tenant of these tests has the password `pw`.
async fn login(proxy: &TestProxy, user: &str) -> RawClient {
    proxy.login(user, "pw").await
}

/// Writes `n` 1 KiB keys `prefix0..` in pipelines.
async fn fill(c: &mut RawClient, prefix: &str, n: usize) {
    let value = vec![b'v'; 1024];
    for chunk in (0..n).collect::<Vec<_>>().chunks(500) {
        let req: Vec<u8> =
            chunk.iter().flat_map(|i| encode(&[b"SET", format!("{prefix}{i}").as_bytes(), &value])).collect();
        c.send(&req).await;
        for _ in chunk {
            let r = c.reply().await;
            assert!(r == b"+OK\r\n" || r.starts_with(b"-OOM"), "{:?}", String::from_utf8_lossy(&r));
        }
    }
}

/// How many of `prefix0..prefix{n}` still exist.
async fn surviving(c: &mut RawClient, prefix: &str, n: usize) -> usize {
    let keys: Vec<Vec<u8>> = (0..n).map(|i| format!("{prefix}{i}").into_bytes()).collect();
    let mut args: Vec<&[u8]> = vec![b"EXISTS"];
    args.extend(keys.iter().map(|k| k.as_slice()));
    let r = c.cmd(&args).await;
    String::from_utf8_lossy(&r[1..r.len() - 2]).parse().unwrap()
}

#[tokio::test]
async fn hits_and_misses_equal_what_the_client_saw() {
    let redis = RedisServer::start();
    let proxy = TestProxy::start(&two_tenants(&redis)).await;
    let mut a = login(&proxy, "a").await;
    for i in 0..10 {
        assert_eq!(a.cmd(&[b"SET", format!("user:{i}").as_bytes(), b"x"]).await, b"+OK\r\n");
    }
    let (mut hits, mut misses) = (0, 0);
    for i in 0..30 {
        let r = a.cmd(&[b"GET", format!("user:{i}").as_bytes()]).await;
        if r == b"$-1\r\n" {
            misses += 1
        } else {
            hits += 1
        }
    }
    // MGET counts per key: 2 hits, 1 miss; EXISTS 1 hit, 1 miss; an empty HGETALL a miss.
    a.cmd(&[b"MGET", b"user:1", b"user:2", b"user:99"]).await;
    a.cmd(&[b"EXISTS", b"user:3", b"user:98"]).await;
    a.cmd(&[b"HGETALL", b"user:nohash"]).await;
    let (hits, misses) = (hits + 3, misses + 3);
    let text = proxy.metrics().await;
    assert_eq!(metric(&text, "tenantry_keyspace_hits_total{tenant=\"a\",keyspace=\"user\"}"), hits as f64, "{text}");
    assert_eq!(metric(&text, "tenantry_keyspace_misses_total{tenant=\"a\",keyspace=\"user\"}"), misses as f64);
    assert_eq!(metric(&text, "tenantry_commands_total{tenant=\"a\",command=\"get\"}"), 30.0);
    assert_eq!(metric_sum(&text, "tenantry_keyspace_hits_total", "tenant=\"b\""), 0.0);
    // A refusal and a backend error are counted by kind.
    a.cmd(&[b"BGSAVE"]).await;
    a.cmd(&[b"LPUSH", b"user:1", b"x"]).await;
    let text = proxy.metrics().await;
    assert_eq!(metric(&text, "tenantry_command_errors_total{tenant=\"a\",kind=\"refused\"}"), 1.0);
    assert_eq!(metric(&text, "tenantry_command_errors_total{tenant=\"a\",kind=\"WRONGTYPE\"}"), 1.0);
    assert!(metric(&text, "tenantry_command_duration_seconds_count{tenant=\"a\"}") >= 40.0, "{text}");
    let (_, tenants) = http_get(proxy.admin_addr().unwrap(), "/tenants").await;
    assert!(tenants.contains(&format!("\"hits\": {hits}")) && tenants.contains("\"namespace\": \"a:\""), "{tenants}");
}

#[tokio::test]
async fn evictions_are_attributed_to_the_tenant_whose_key_it_was_once_per_fleet() {
    let _heavy = tenantry_tests::heavy().await;
    let redis = RedisServer::start_with(&["--maxmemory", "4mb", "--maxmemory-policy", "allkeys-lru"]);
    // Two sidecars in front of the same backend. Not measuring memory: the
    // figures it keeps on the node are keys allkeys-lru may evict too, and
    // this test counts every eviction.
    let yaml = format!("{}quotas: {{ measure_all: false }}\n", two_tenants(&redis));
    let one = TestProxy::start(&yaml).await;
    let two = TestProxy::start(&yaml).await;
    // Wait until one of them reports the node's events.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let reporters = metric_sum(&one.metrics().await, "tenantry_event_reporter", "")
            + metric_sum(&two.metrics().await, "tenantry_event_reporter", "");
        if reporters == 1.0 {
            break;
        }
        assert!(Instant::now() < deadline, "{reporters} reporters");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await; // the subscriber is connected

    let mut b = login(&two, "b").await;
    fill(&mut b, "keep:", 300).await;
    let mut a = login(&one, "a").await;
    fill(&mut a, "flood:", 8000).await;

    let a_lost = 8000 - surviving(&mut a, "flood:", 8000).await;
    let b_lost = 300 - surviving(&mut b, "keep:", 300).await;
    assert!(a_lost > 1000, "the flood evicted only {a_lost} keys");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (t1, t2) = (one.metrics().await, two.metrics().await);
        let count = |tenant: &str| {
            metric_sum(&t1, "tenantry_evictions_total", &format!("tenant=\"{tenant}\""))
                + metric_sum(&t2, "tenantry_evictions_total", &format!("tenant=\"{tenant}\""))
        };
        let (a_seen, b_seen) = (count("a"), count("b"));
        if a_seen == a_lost as f64 && b_seen == b_lost as f64 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "evictions in metrics a={a_seen} b={b_seen}; keys that disappeared a={a_lost} b={b_lost}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let backend_total: i64 = {
        let mut d = direct(&redis).await;
        let info: String = redis::cmd("INFO").arg("stats").query_async(&mut d).await.unwrap();
        info.lines().find_map(|l| l.strip_prefix("evicted_keys:")).unwrap().trim().parse().unwrap()
    };
    // Every eviction of a tenant's key was counted once; the backend's own
    // figure may also include tenantry's lease key, which allkeys-lru can evict.
    let extra = backend_total as usize - (a_lost + b_lost);
    assert!(extra <= 2, "backend evicted {backend_total}, tenants lost {}", a_lost + b_lost);
}

#[tokio::test]
async fn expirations_are_attributed_by_keyspace() {
    let redis = RedisServer::start();
    let proxy = TestProxy::start(&two_tenants(&redis)).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric_sum(&proxy.metrics().await, "tenantry_event_reporter", "") != 1.0 {
        assert!(Instant::now() < deadline, "no reporter");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut b = login(&proxy, "b").await;
    for i in 0..20 {
        assert_eq!(b.cmd(&[b"SET", format!("sess:{i}").as_bytes(), b"v", b"PX", b"50"]).await, b"+OK\r\n");
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Touching them expires any the backend has not expired on its own yet.
    for i in 0..20 {
        assert_eq!(b.cmd(&[b"GET", format!("sess:{i}").as_bytes()]).await, b"$-1\r\n");
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = proxy.metrics().await;
        let n = metric(&text, "tenantry_expirations_total{tenant=\"b\",keyspace=\"sess\"}");
        if n == 20.0 {
            assert_eq!(metric_sum(&text, "tenantry_expirations_total", "tenant=\"a\""), 0.0);
            break;
        }
        assert!(Instant::now() < deadline, "{n} expirations counted for b");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn hot_keys_and_big_values_are_reported_per_tenant() {
    let redis = RedisServer::start();
    let proxy =
        TestProxy::start(&format!("{}telemetry: {{ hot_keys: 5, big_value_bytes: 100 }}\n", two_tenants(&redis))).await;
    let mut a = login(&proxy, "a").await;
    let mut req = Vec::new();
    for i in 0..2000 {
        // cart:hot gets half the traffic, the rest is spread over 500 keys.
        let key = if i % 2 == 0 { "cart:hot".to_string() } else { format!("cart:{}", i % 500) };
        req.extend(encode(&[b"GET", key.as_bytes()]));
    }
    a.send(&req).await;
    for _ in 0..2000 {
        a.reply().await;
    }
    assert_eq!(a.cmd(&[b"SET", b"blob:1", &[b'x'; 101]]).await, b"+OK\r\n");
    assert_eq!(a.cmd(&[b"SET", b"blob:2", &[b'x'; 100]]).await, b"+OK\r\n");

    let admin = proxy.admin_addr().unwrap();
    let (status, body) = http_get(admin, "/hotkeys?tenant=a").await;
    assert_eq!(status, 200);
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["hot_keys"][0]["key"], "cart:hot", "{body}");
    // About 1,000 (hot keys are sampled one command in 8, weighted by 8).
    assert!(json["hot_keys"][0]["count"].as_u64().unwrap() >= 600, "{body}");
    assert_eq!(http_get(admin, "/hotkeys?tenant=nobody").await.0, 404);

    let text = proxy.metrics().await;
    assert!(metric(&text, "tenantry_hot_key_commands{tenant=\"a\",rank=\"1\",key=\"cart:hot\"}") >= 600.0, "{text}");
    assert_eq!(metric(&text, "tenantry_big_values_total{tenant=\"a\",keyspace=\"blob\"}"), 1.0);
}

/// The admin status page, rendered by a real browser (headless Chromium):
/// its script fetches the JSON endpoints and fills the tables.
#[tokio::test]
async fn the_status_page_shows_tenants_and_backends_in_a_browser() {
    let redis = RedisServer::start();
    let proxy = TestProxy::start(&two_tenants(&redis)).await;
    let mut a = login(&proxy, "a").await;
    assert_eq!(a.cmd(&[b"SET", b"page:1", b"x"]).await, b"+OK\r\n");
    for _ in 0..199 {
        assert_eq!(a.cmd(&[b"GET", b"page:1"]).await, b"$1\r\nx\r\n");
    }
    assert_eq!(a.cmd(&[b"GET", b"page:2"]).await, b"$-1\r\n");
    // Let the node watcher read INFO once.
    tokio::time::sleep(Duration::from_millis(2500)).await;

    let url = format!("http://{}/", proxy.admin_addr().unwrap());
    let profile = tempfile::tempdir().unwrap();
    let out = tokio::process::Command::new("chromium")
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run"])
        .args(["--disable-background-networking", "--disable-component-update", "--disable-sync"])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(["--virtual-time-budget=5000", "--dump-dom", &url])
        .kill_on_drop(true)
        .output()
        .await
        .expect("chromium (Debian's package; `make test` installs it)");
    let dom = String::from_utf8_lossy(&out.stdout);
    assert!(dom.contains(&format!("config {}", proxy.config_version())), "{dom}");
    // Tenant a: 199 hits, 1 miss, its hot key; tenant b is listed too.
    assert!(dom.contains("<td>a</td><td>local</td><td>a:</td><td>1</td><td>99.5%</td><td>199</td><td>1</td>"), "{dom}");
    assert!(dom.contains("page:1 (") && dom.contains("<td>b</td>"), "{dom}");
    assert!(dom.contains(" / no quota</td>"), "{dom}");
    assert!(dom.contains(&format!("<td>{}</td><td>local</td><td>yes</td>", redis.addr())), "{dom}");
}

/// Every metric the Grafana dashboard queries is one tenantry exports.
#[tokio::test]
async fn the_grafana_dashboard_queries_metrics_that_exist() {
    let redis = RedisServer::start_with(&["--maxmemory", "100mb"]);
    // b has a quota: the quota gauge exists only for tenants with one.
    let tenants = two_tenants(&redis).replace("namespace: \"b:\",", "namespace: \"b:\", memory_quota: 10MiB,");
    let proxy = TestProxy::start(&format!("{tenants}telemetry: {{ big_value_bytes: 1 }}\n")).await;
    let mut a = login(&proxy, "a").await;
    a.cmd(&[b"SET", b"x:1", b"vv"]).await;
    // Enough commands for the sampled hot-key sketch to see x:1.
    for _ in 0..200 {
        a.cmd(&[b"GET", b"x:1"]).await;
    }
    a.cmd(&[b"BGSAVE"]).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut text = String::new();
    // Backend figures, and the tenants' memory once measured (it has no sample before).
    while metric_sum(&text, "tenantry_backend_used_memory_bytes", "") == 0.0
        || !text.contains("tenantry_tenant_memory_used_bytes{")
    {
        assert!(Instant::now() < deadline, "no backend figures or tenant memory");
        tokio::time::sleep(Duration::from_millis(100)).await;
        text = proxy.metrics().await;
    }
    let names = tenantry_tests::dashboard_metrics();
    assert!(names.len() >= 12, "{names:?}");
    // Cluster metrics exist only with a cluster backend (`cluster_changes`
    // checks those), near-cache ones only with a near-cache (`near_cache`).
    for name in names.iter().filter(|n| !n.starts_with("tenantry_cluster_") && !n.starts_with("tenantry_near_cache_")) {
        let exported = name.strip_suffix("_bucket").unwrap_or(name);
        assert!(
            text.lines().any(|l| l.starts_with(exported)),
            "the dashboard queries {name}, which is not exported:\n{text}"
        );
    }
}

/// (request head, body) of each request a collector received.
type Received = std::sync::Arc<std::sync::Mutex<Vec<(String, Vec<u8>)>>>;

/// A minimal OTLP/HTTP collector on its own thread: records each request.
struct Collector {
    addr: std::net::SocketAddr,
    requests: Received,
}

impl Collector {
    fn start() -> Self {
        use std::io::{BufRead, BufReader, Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Received::default();
        let seen = requests.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let mut reader = BufReader::new(stream);
                let (mut head, mut length) = (String::new(), 0usize);
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                    head.push_str(&line);
                }
                let mut body = vec![0; length];
                let _ = reader.read_exact(&mut body);
                seen.lock().unwrap().push((head, body));
                let _ =
                    reader.get_mut().write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
            }
        });
        Collector { addr, requests }
    }
}

#[tokio::test]
async fn sampled_command_spans_are_exported_over_otlp() {
    let collector = Collector::start();
    std::env::set_var("TENANTRY_LOG", "warn");
    let otlp = tenantry_proxy::Otlp { endpoint: format!("http://{}/v1/traces", collector.addr), sample_ratio: 1.0 };
    let guard = tenantry_proxy::init_tracing(false, Some(otlp)).expect("the only test that sets up tracing");
    let redis = RedisServer::start();
    let proxy = TestProxy::start(&two_tenants(&redis)).await;
    let mut a = login(&proxy, "a").await;
    assert_eq!(a.cmd(&[b"SET", b"traced:1", b"v"]).await, b"+OK\r\n");
    assert_eq!(a.cmd(&[b"GET", b"traced:1"]).await, b"$1\r\nv\r\n");
    // Export now rather than at the next batch interval (flush blocks: off this thread).
    let guard = tokio::task::spawn_blocking(move || {
        guard.flush();
        guard
    })
    .await
    .unwrap();
    let requests = collector.requests.lock().unwrap().clone();
    let exports: Vec<_> = requests.iter().filter(|(h, _)| h.starts_with("POST /v1/traces")).collect();
    assert!(!exports.is_empty(), "an OTLP export");
    for (head, _) in &exports {
        assert!(head.to_ascii_lowercase().contains("content-type: application/x-protobuf"), "{head}");
    }
    // Other tests' proxies run in this process too: their spans may fill an
    // earlier export, so look through all of them.
    let has = |needle: &[u8]| exports.iter().any(|(_, body)| body.windows(needle.len()).any(|w| w == needle));
    for needle in [&b"tenantry"[..], b"command", b"tenant", b"traced", b"get", b"set"] {
        assert!(has(needle), "no {:?} in the exported spans", String::from_utf8_lossy(needle));
    }
    drop(guard);
}

/// Where CONFIG is refused (managed Redis), tenantry cannot turn keyspace
/// events on: /ready says so (and stays ready: proxying still works).
#[tokio::test]
async fn ready_warns_when_keyspace_events_cannot_be_enabled() {
    let redis = RedisServer::start_with(&["--rename-command", "CONFIG", ""]);
    let proxy = TestProxy::start(&two_tenants(&redis)).await;
    let admin = proxy.admin_addr().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = http_get(admin, "/ready").await;
        if body.contains("warning:") {
            assert_eq!(status, 200);
            assert!(body.contains("not attributed") && body.contains("notify-keyspace-events"), "{body}");
            break;
        }
        assert!(Instant::now() < deadline, "no warning: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A tenant without a memory quota is measured all the same: its gauge is
/// absent until the first measurement, then within 10% of what Redis says
/// its keys take; another tenant's keys do not count.
#[tokio::test]
async fn every_tenant_has_its_memory_measured_quota_or_not() {
    let redis = RedisServer::start();
    let mut d = direct(&redis).await;
    let mut pipe = redis::pipe();
    for i in 0..2000 {
        pipe.set(format!("a:k{i}"), "v".repeat(200)).ignore();
        pipe.set(format!("b:k{i}"), "w".repeat(20)).ignore();
    }
    let () = pipe.query_async(&mut d).await.unwrap();
    let yaml = format!("{}quotas: {{ refresh: 1s }}\n", two_tenants(&redis));
    let proxy = TestProxy::start(&yaml).await;
    let text = proxy.metrics().await;
    assert!(!text.contains("tenantry_tenant_memory_used_bytes{tenant=\"a\"}"), "a sample before any measurement");
    let (_, tenants) = http_get(proxy.admin_addr().unwrap(), "/tenants").await;
    assert!(tenants.contains("\"used_bytes\": null"), "{tenants}");

    let mut truth = 0u64;
    for i in 0..2000 {
        let n: u64 = redis::cmd("MEMORY").arg("USAGE").arg(format!("a:k{i}")).query_async(&mut d).await.unwrap();
        truth += n;
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    let used = loop {
        let text = proxy.metrics().await;
        let used = metric(&text, "tenantry_tenant_memory_used_bytes{tenant=\"a\"}");
        if used > 0.0 {
            break used;
        }
        assert!(Instant::now() < deadline, "tenant a was never measured");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let error = (used - truth as f64).abs() / truth as f64;
    eprintln!("tenant a: measured {used} bytes, MEMORY USAGE sum {truth} ({:.1}% off)", error * 100.0);
    assert!(error < 0.10, "measured {used}, Redis says {truth}");
    let text = proxy.metrics().await;
    assert!(!text.contains("tenantry_tenant_memory_quota_bytes{tenant=\"a\"}"), "no quota, no quota gauge");
    proxy.stop().await;
}

/// `quotas: { measure_all: false }` measures only tenants with a quota.
#[tokio::test]
async fn measuring_tenants_without_a_quota_can_be_turned_off() {
    let redis = RedisServer::start();
    redis.cli(&["SET", "a:k", "v"]);
    let yaml = format!("{}quotas: {{ measure_all: false }}\n", two_tenants(&redis));
    let proxy = TestProxy::start(&yaml).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let text = proxy.metrics().await;
    assert!(!text.contains("tenantry_tenant_memory_used_bytes{"), "{text}");
    assert!(!redis.cli(&["KEYS", "tenantry:*"]).contains("tenantry:quota:"), "nothing measured, nothing kept");
    proxy.stop().await;
}
