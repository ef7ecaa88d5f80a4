//! Live reconfiguration through the config file, as operators use it.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tenantry_proxy::version_of;
use tenantry_tests::{direct, encode, http_get, RawClient, RedisServer, TestProxy};

fn config(redis: &RedisServer, namespace: &str, extra: &str) -> String {
    format!(
        "listen: 127.0.0.1:0\nadmin: 127.0.0.1:0\n\
         backends:\n  local: {{ kind: standalone, nodes: [\"{}\"] }}\n\
         tenants:\n  app: {{ backend: local, namespace: \"{namespace}\" }}\n{extra}\
         default_tenant: app\ncleanup: {{ keys_per_sec: 4000, batch: 200 }}\n",
        redis.addr()
    )
}

/// Writes a file the way an editor's "save" does: new content, then rename.
fn write_atomic(path: &Path, text: &str) -> String {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
    version_of(text.as_bytes())
}

#[tokio::test]
async fn a_pipelining_client_sees_no_error_through_50_reloads() {
    let _heavy = tenantry_tests::heavy().await;
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tenants.yaml");
    write_atomic(&path, &config(&redis, "app:", ""));
    let proxy = TestProxy::start_file(&path).await;

    let stop = Arc::new(AtomicBool::new(false));
    let client = {
        let (stop, addr) = (stop.clone(), proxy.addr);
        tokio::spawn(async move {
            let mut c = RawClient::connect(addr).await;
            let (mut counter, mut rounds) = (0u64, 0u64);
            while !stop.load(Ordering::Relaxed) {
                let mut req = Vec::new();
                for i in 0..100 {
                    req.extend(encode(&[b"INCR", b"counter"]));
                    req.extend(encode(&[b"SET", b"k", format!("{rounds}-{i}").as_bytes()]));
                    req.extend(encode(&[b"GET", b"k"]));
                }
                c.send(&req).await;
                for i in 0..100 {
                    counter += 1;
                    assert_eq!(c.reply().await, format!(":{counter}\r\n").into_bytes(), "round {rounds}");
                    assert_eq!(c.reply().await, b"+OK\r\n");
                    let v = format!("{rounds}-{i}");
                    assert_eq!(c.reply().await, format!("${}\r\n{v}\r\n", v.len()).into_bytes());
                }
                rounds += 1;
            }
            rounds
        })
    };
    for i in 0..50 {
        // Tenants come and go, another tenant's limits change: `app` keeps serving.
        let extra =
            format!("  t{i}: {{ backend: local, namespace: \"t{i}:\", rate_limit: {{ ops_per_sec: {} }} }}\n", 100 + i);
        let version = write_atomic(&path, &config(&redis, "app:", &extra));
        proxy.wait_for_version(&version).await;
    }
    stop.store(true, Ordering::Relaxed);
    let rounds = client.await.expect("client saw an error or a misordered reply");
    assert!(rounds >= 10, "only {rounds} pipelines went through");
}

#[tokio::test]
async fn an_invalid_file_leaves_the_old_config_serving() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tenants.yaml");
    let good = write_atomic(&path, &config(&redis, "app:", ""));
    let proxy = TestProxy::start_file(&path).await;
    let mut c = proxy.raw().await;
    assert_eq!(c.cmd(&[b"SET", b"k", b"v"]).await, b"+OK\r\n");

    write_atomic(&path, &config(&redis, "app:", "  bad: { backend: nowhere, namespace: \"b:\" }\n"));
    let admin = proxy.admin_addr().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, body) = http_get(admin, "/config").await;
        if body.contains("no backend named") {
            assert!(body.contains("tenants.bad.backend"), "{body}");
            break;
        }
        assert!(Instant::now() < deadline, "invalid file not noticed: {body}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(proxy.config_version(), good);
    assert_eq!(c.cmd(&[b"GET", b"k"]).await, b"$1\r\nv\r\n");
    let (_, metrics) = http_get(admin, "/metrics").await;
    assert!(metrics.contains("tenantry_config_reloads_total{result=\"error\"} 1"), "{metrics}");
}

/// A ConfigMap volume: `tenants.yaml -> ..data/tenants.yaml`, `..data -> ..<timestamp>`;
/// an update swaps `..data` atomically.
#[tokio::test]
async fn configmap_symlink_swaps_are_picked_up_twice_and_old_generations_deleted() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let swap = |generation: u32, text: &str| {
        let data = dir.path().join(format!("..2026_{generation}"));
        std::fs::create_dir(&data).unwrap();
        std::fs::write(data.join("tenants.yaml"), text).unwrap();
        let tmp = dir.path().join("..data_tmp");
        std::os::unix::fs::symlink(format!("..2026_{generation}"), &tmp).unwrap();
        std::fs::rename(&tmp, dir.path().join("..data")).unwrap();
        version_of(text.as_bytes())
    };
    swap(1, &config(&redis, "app:v1:", ""));
    let path = dir.path().join("tenants.yaml");
    std::os::unix::fs::symlink("..data/tenants.yaml", &path).unwrap();
    let proxy = TestProxy::start_file(&path).await;
    let mut c = proxy.raw().await;
    let mut req = Vec::new();
    for i in 0..2000 {
        req.extend(encode(&[b"SET", format!("key{i}").as_bytes(), b"v1"]));
    }
    c.send(&req).await;
    for _ in 0..2000 {
        assert_eq!(c.reply().await, b"+OK\r\n");
    }

    for (generation, ns) in [(2, "app:v2:"), (3, "app:v3:")] {
        let version = swap(generation, &config(&redis, ns, ""));
        proxy.wait_for_version(&version).await;
        // A new generation: the cache is empty at once.
        assert_eq!(c.cmd(&[b"GET", b"key1"]).await, b"$-1\r\n");
        assert_eq!(c.cmd(&[b"SET", b"key1", ns.as_bytes()]).await, b"+OK\r\n");
    }

    // The old generations are deleted in the background, and it shows.
    let admin = proxy.admin_addr().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, body) = http_get(admin, "/config").await;
        if body.matches("\"done\": true").count() == 2 {
            assert!(body.contains("\"namespace\": \"app:v1:\"") && body.contains("\"deleted\": 2000"), "{body}");
            break;
        }
        assert!(Instant::now() < deadline, "cleanup did not finish: {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut backend = direct(&redis).await;
    let mut keys: Vec<String> = redis::cmd("KEYS").arg("*").query_async(&mut backend).await.unwrap();
    keys.retain(|k| !k.starts_with("tenantry:"));
    assert_eq!(keys, vec!["app:v3:key1"]);
}

#[tokio::test]
async fn sighup_reloads_a_change_the_watcher_cannot_see() {
    let redis = RedisServer::start();
    // The watched directory holds a symlink to a file elsewhere: editing that
    // file makes no event in the watched directory.
    let watched = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let real = elsewhere.path().join("real.yaml");
    std::fs::write(&real, config(&redis, "app:", "")).unwrap();
    let path = watched.path().join("tenants.yaml");
    std::os::unix::fs::symlink(&real, &path).unwrap();
    let proxy = TestProxy::start_file(&path).await;

    let text = config(&redis, "app:", "  other: { backend: local, namespace: \"other:\" }\n");
    std::fs::write(&real, &text).unwrap();
    let start = Instant::now();
    let pid = std::process::id().to_string();
    assert!(std::process::Command::new("kill").args(["-HUP", &pid]).status().unwrap().success());
    proxy.wait_for_version(&version_of(text.as_bytes())).await;
    // Well before the 5 s poll would have found it.
    assert!(start.elapsed() < Duration::from_secs(3), "took {:?}", start.elapsed());
}

#[tokio::test]
async fn settings_that_need_a_restart_are_reported_not_half_applied() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tenants.yaml");
    write_atomic(&path, &config(&redis, "app:", ""));
    let proxy = TestProxy::start_file(&path).await;
    let changed =
        config(&redis, "app:", "").replace("admin: 127.0.0.1:0\n", "admin: 127.0.0.1:0\nlimits: { max_clients: 7 }\n");
    let version = write_atomic(&path, &changed);
    proxy.wait_for_version(&version).await;
    let (_, body) = http_get(proxy.admin_addr().unwrap(), "/config").await;
    assert!(body.contains("limits.max_clients: running with 10000, config says 7"), "{body}");
    // Still served as before: more than 7 clients at once.
    let mut clients = Vec::new();
    for _ in 0..10 {
        let mut c = proxy.raw().await;
        assert_eq!(c.cmd(&[b"PING"]).await, b"+PONG\r\n");
        clients.push(c);
    }
}
