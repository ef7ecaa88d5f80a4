//! INFO through tenantry against the same redis-server's own: every
//! section and field Redis writes, in its order; the tenant's own figures;
//! and real clients that read it (the redis crate, redis-py).

use std::time::{Duration, Instant};
use tenantry_tests::{RawClient, RedisServer, TestProxy};

/// Sections whose lines list things (commands, errors, databases): their
/// lines are the tenant's own, so only their form is compared.
const LISTING: &[(&str, &str)] = &[
    ("Commandstats", "cmdstat_"),
    ("Errorstats", "errorstat_"),
    ("Latencystats", "latency_percentiles_usec_"),
    ("Keyspace", "db"),
];

/// (section title, field names) in order.
fn layout(text: &str) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for line in text.lines().map(str::trim_end).filter(|l| !l.is_empty()) {
        match line.strip_prefix("# ") {
            Some(title) => out.push((title.to_string(), Vec::new())),
            None => out.last_mut().expect("a section first").1.push(line.split(':').next().unwrap().to_string()),
        }
    }
    out
}

/// The text of a bulk (RESP2) or verbatim (RESP3) string reply.
fn text(reply: Vec<u8>) -> String {
    let s = String::from_utf8(reply).unwrap();
    let (head, body) = s.split_once("\r\n").unwrap_or_else(|| panic!("{s}"));
    assert!(head.starts_with('$') || head.starts_with('='), "{s}");
    body.strip_prefix("txt:").unwrap_or(body).to_string()
}

fn field(info: &str, name: &str) -> String {
    info.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(':')))
        .unwrap_or_else(|| panic!("no {name} in {info}"))
        .trim_end()
        .to_string()
}

fn number(info: &str, name: &str) -> u64 {
    field(info, name).parse().unwrap_or_else(|e| panic!("{name}: {e}"))
}

async fn info(c: &mut RawClient, sections: &[&str]) -> String {
    let mut args: Vec<&[u8]> = vec![b"INFO"];
    args.extend(sections.iter().map(|s| s.as_bytes()));
    text(c.cmd(&args).await)
}

#[tokio::test]
async fn every_section_has_redis_fields_in_redis_order() {
    let redis = RedisServer::start();
    let proxy = TestProxy::two_tenants(&redis).await;
    let mut direct = RawClient::connect(redis.addr()).await;
    let mut c = proxy.raw().await;
    // Some traffic, so that the listing sections have lines on both sides.
    for conn in [&mut direct, &mut c] {
        conn.cmd(&[b"SET", b"k", b"v"]).await;
        conn.cmd(&[b"GET", b"k"]).await;
        conn.cmd(&[b"LPUSH", b"k", b"x"]).await;
    }
    let sections = [
        "",
        "default",
        "all",
        "everything",
        "server",
        "clients",
        "memory",
        "persistence",
        "stats",
        "replication",
        "cpu",
        "modules",
        "commandstats",
        "errorstats",
        "latencystats",
        "cluster",
        "keyspace",
    ];
    for resp3 in [false, true] {
        if resp3 {
            c.cmd(&[b"HELLO", b"3"]).await;
        }
        for section in sections {
            let args: Vec<&str> = if section.is_empty() { vec![] } else { vec![section] };
            let (theirs, ours) = (layout(&info(&mut direct, &args).await), layout(&info(&mut c, &args).await));
            let titles = |l: &[(String, Vec<String>)]| l.iter().map(|(t, _)| t.clone()).collect::<Vec<_>>();
            assert_eq!(titles(&ours), titles(&theirs), "INFO {section}: sections");
            for ((title, fields), (_, redis_fields)) in ours.iter().zip(&theirs) {
                match LISTING.iter().find(|(t, _)| t == title) {
                    Some((_, prefix)) => {
                        assert!(fields.iter().all(|f| f.starts_with(prefix)), "INFO {section}, {title}: {fields:?}")
                    }
                    None => assert_eq!(fields, redis_fields, "INFO {section} (resp3 {resp3}), section {title}"),
                }
            }
        }
    }
    // The listing sections' lines have Redis's form.
    let stats = info(&mut c, &["commandstats", "errorstats"]).await;
    assert!(stats.contains("cmdstat_get:calls=1,usec=0,usec_per_call=0.00,rejected_calls=0,failed_calls=0"), "{stats}");
    assert!(stats.contains("errorstat_WRONGTYPE:count=1"), "{stats}");
}

#[tokio::test]
async fn tenant_figures_follow_the_tenants_own_traffic() {
    let redis = RedisServer::start_with(&["--maxmemory", "100mb"]);
    let proxy = TestProxy::start(&format!(
        "backends:\n  local: {{ kind: standalone, nodes: [\"{}\"] }}\n\
         tenants:\n  app: {{ backend: local, namespace: \"app:\" }}\n  \
         demo: {{ backend: local, namespace: \"demo:\", memory_quota: 8MiB, eviction: allkeys-lru, \
         auth: {{ username: demo, password: demo-pw }} }}\n\
         default_tenant: app\n",
        redis.addr()
    ))
    .await;
    let mut app = proxy.raw().await;
    let mut demo = proxy.login("demo", "demo-pw").await;
    let (app0, demo0) = (info(&mut app, &[]).await, info(&mut demo, &[]).await);

    let value = vec![b'v'; 1000];
    for i in 0..100 {
        let key = format!("k{i}");
        assert_eq!(app.cmd(&[b"SET", key.as_bytes(), &value, b"EX", b"1000"]).await, b"+OK\r\n");
    }
    for i in 0..200 {
        app.cmd(&[b"GET", format!("k{i}").as_bytes()]).await;
    }
    assert!(app.cmd(&[b"HGET", b"k0", b"f"]).await.starts_with(b"-WRONGTYPE"));

    let (app1, demo1) = (info(&mut app, &[]).await, info(&mut demo, &[]).await);
    assert_eq!(number(&app1, "keyspace_hits") - number(&app0, "keyspace_hits"), 100);
    assert_eq!(number(&app1, "keyspace_misses") - number(&app0, "keyspace_misses"), 100);
    // 301 commands and the first INFO.
    assert_eq!(number(&app1, "total_commands_processed") - number(&app0, "total_commands_processed"), 302);
    assert_eq!(number(&app1, "total_error_replies"), 1);
    assert!(number(&app1, "total_net_input_bytes") > 100_000, "{app1}");
    for name in ["keyspace_hits", "keyspace_misses", "total_error_replies", "total_net_input_bytes"] {
        assert_eq!(field(&demo1, name), field(&demo0, name), "{name} moved for the other tenant");
    }
    assert_eq!(number(&demo1, "total_commands_processed") - number(&demo0, "total_commands_processed"), 1);
    assert_eq!(number(&app1, "connected_clients"), 1);
    // Memory: the backend's maxmemory and policy for a tenant without a quota, the quota for one with.
    assert_eq!((number(&app1, "maxmemory"), field(&app1, "maxmemory_policy")), (104_857_600, "noeviction".into()));
    assert_eq!((number(&demo1, "maxmemory"), field(&demo1, "maxmemory_policy")), (8_388_608, "allkeys-lru".into()));
    assert_eq!(field(&demo1, "maxmemory_human"), "8.00M");

    // The measuring pass gives the keyspace line and the memory of bare INFO.
    let deadline = Instant::now() + Duration::from_secs(15);
    let app2 = loop {
        let text = info(&mut app, &[]).await;
        if text.contains("db0:keys=100,") {
            break text;
        }
        assert!(Instant::now() < deadline, "no measured keyspace: {text}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        field(&app2, "db0"),
        format!("keys=100,expires=100,avg_ttl={}", field(&app2, "db0").rsplit('=').next().unwrap())
    );
    let avg_ttl: u64 = field(&app2, "db0").rsplit('=').next().unwrap().parse().unwrap();
    assert!((990_000..=1_000_000).contains(&avg_ttl), "{app2}");
    let used = number(&app2, "used_memory");
    assert!((100_000..=140_000).contains(&used), "app's 100 keys of 1 kB use {used} bytes");
    assert!(!info(&mut demo, &[]).await.contains("db0:"), "demo has no keys");
    // INFO keyspace, named, counts key by key.
    assert_eq!(field(&info(&mut app, &["keyspace"]).await, "db0").split(",avg").next(), Some("keys=100,expires=100"));
}

#[tokio::test]
async fn the_redis_crate_reads_info_as_from_redis() {
    let redis = RedisServer::start();
    let proxy = TestProxy::two_tenants(&redis).await;
    let mut c = proxy.client().await;
    let info: redis::InfoDict = redis::cmd("INFO").query_async(&mut c).await.unwrap();
    assert_eq!(info.get::<i64>("arch_bits"), Some(64));
    assert!(info.get::<String>("redis_version").is_some_and(|v| v.starts_with("7.")));
    assert_eq!(info.get::<i64>("tcp_port"), Some(proxy.addr.port() as i64));
    assert_eq!(info.get::<String>("maxmemory_policy").as_deref(), Some("noeviction"));
}

/// redis-py's `info()`, `info("memory")` and `config_get`, and the version
/// and eviction-policy check job queues make at start (BullMQ, RQ, Celery
/// warn when maxmemory-policy is not noeviction).
#[tokio::test]
async fn redis_py_reads_info_and_config() {
    let redis = RedisServer::start();
    let proxy = TestProxy::two_tenants(&redis).await;
    let script = r#"
import sys, redis
r = redis.Redis(host="127.0.0.1", port=int(sys.argv[1]))
info = r.info()
assert info["arch_bits"] == 64, info
assert info["redis_mode"] == "standalone", info
assert info["connected_clients"] >= 1, info
major, minor = (int(x) for x in info["redis_version"].split(".")[:2])
assert (major, minor) >= (5, 0), info["redis_version"]
memory = r.info("memory")
assert "used_memory" in memory and "maxmemory" in memory, memory
policy = memory["maxmemory_policy"]
assert policy == r.config_get("maxmemory-policy")["maxmemory-policy"], (policy, r.config_get("maxmemory-policy"))
r.set("job:1", "x")
assert r.info("keyspace")["db0"]["keys"] == 1, r.info("keyspace")
assert r.info("commandstats")["cmdstat_set"]["calls"] == 1, r.info("commandstats")
print("ok", info["redis_version"], policy)
"#;
    let port = proxy.addr.port().to_string();
    // Off the runtime's thread: the proxy under test runs on it.
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("python3").arg("-c").arg(script).arg(port).output()
    })
    .await
    .unwrap()
    .expect("python3 runs (make deps installs redis-py)");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && stdout.starts_with("ok 7."), "redis-py: {stdout}{stderr}");
}
