//! Online tenant migration: a tenant moves to another backend by a config
//! edit, while clients write through several proxies, losing nothing.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tenantry_proxy::version_of;
use tenantry_tests::cluster::RedisCluster;
use tenantry_tests::{direct, encode, heavy, http_get, RawClient, RedisServer, TestProxy};

/// `migrate`: what goes in tenant a's flow map, after its namespace.
fn config(shared: &RedisServer, target: &str, a_backend: &str, migrate: &str) -> String {
    format!(
        "listen: 127.0.0.1:0\nadmin: 127.0.0.1:0\n\
         backends:\n  shared: {{ kind: standalone, nodes: [\"{}\"] }}\n  {target}\n\
         tenants:\n  a: {{ backend: {a_backend}, namespace: \"a:\"{migrate} }}\n  \
         b: {{ backend: shared, namespace: \"b:\", auth: {{ username: b, password: pw }} }}\n\
         default_tenant: a\n",
        shared.addr()
    )
}

fn cluster_backend(cluster: &RedisCluster) -> String {
    let seeds: Vec<String> = cluster.seeds().iter().map(|s| format!("\"{s}\"")).collect();
    format!("big: {{ kind: cluster, nodes: [{}] }}", seeds.join(", "))
}

/// Writes a file the way an editor's "save" does: new content, then rename.
fn write_atomic(path: &Path, text: &str) -> String {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
    version_of(text.as_bytes())
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
}

/// Tenant a's migration as `/tenants` shows it (null if none).
async fn migration(proxy: &TestProxy) -> serde_json::Value {
    let (_, body) = http_get(proxy.admin_addr().unwrap(), "/tenants").await;
    let tenants: serde_json::Value = serde_json::from_str(&body).unwrap();
    let a = tenants.as_array().unwrap().iter().find(|t| t["tenant"] == "a").unwrap();
    a["migration"].clone()
}

/// Waits until `done` holds of every proxy's view of the migration.
async fn wait_for(proxies: &[&TestProxy], limit: Duration, what: &str, done: impl Fn(&serde_json::Value) -> bool) {
    let deadline = Instant::now() + limit;
    loop {
        let mut all = true;
        let mut last = serde_json::Value::Null;
        for p in proxies {
            last = migration(p).await;
            all &= done(&last);
        }
        if all {
            return;
        }
        assert!(Instant::now() < deadline, "{what} within {limit:?}; last seen: {last}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Tenant a's keys: `n` of six types (streams too), a third with a TTL of an hour and
/// `i` ms (so each key's deadline is known), and one 4 MB string.
async fn populate(redis: &RedisServer, n: usize, t0: u64) {
    let mut c = direct(redis).await;
    for chunk in (0..n).collect::<Vec<_>>().chunks(1000) {
        let mut p = redis::pipe();
        for &i in chunk {
            let key = format!("a:k:{i}");
            match i % 6 {
                0 => p.cmd("SET").arg(&key).arg(format!("value-{i}")),
                1 => p.cmd("HSET").arg(&key).arg("f1").arg(i).arg("f2").arg("x"),
                2 => p.cmd("RPUSH").arg(&key).arg(i).arg("y").arg("z"),
                3 => p.cmd("SADD").arg(&key).arg(i).arg("m"),
                4 => p.cmd("ZADD").arg(&key).arg(i).arg("m"),
                _ => p.cmd("XADD").arg(&key).arg("*").arg("f").arg(i),
            }
            .ignore();
            if i % 3 == 0 {
                p.cmd("PEXPIREAT").arg(&key).arg(t0 + 3_600_000 + i as u64).ignore();
            }
        }
        let () = p.query_async(&mut c).await.unwrap();
    }
    let big = "x".repeat(4 << 20);
    let () = redis::cmd("SET").arg("a:big").arg(big).query_async(&mut c).await.unwrap();
}

/// What a writer got acknowledged.
#[derive(Debug, Default)]
struct Acked {
    rounds: u64,
    /// Round-trip times of its rounds (µs) while the migration was on.
    during: Vec<u64>,
    /// ... and before it began.
    before: Vec<u64>,
}

/// A client writing its own keys in rounds of INCR, SET, HSET, LPUSH,
/// EXPIRE and GET, checking every reply: its INCR and LPUSH replies must
/// count up one by one (a write lost or applied twice shows at once).
fn writer(
    addr: std::net::SocketAddr,
    c: usize,
    stop: Arc<AtomicBool>,
    on: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<Acked> {
    tokio::spawn(async move {
        let mut client = RawClient::connect(addr).await;
        let mut acked = Acked::default();
        while !stop.load(Ordering::Relaxed) {
            let i = acked.rounds;
            let (s, h, l, counter) = (format!("s:{c}:{i}"), format!("h:{c}"), format!("l:{c}"), format!("n:{c}"));
            let mut req = Vec::new();
            req.extend(encode(&[b"INCR", counter.as_bytes()]));
            req.extend(encode(&[b"SET", s.as_bytes(), format!("v{i}").as_bytes()]));
            req.extend(encode(&[b"HSET", h.as_bytes(), format!("f{i}").as_bytes(), b"v"]));
            req.extend(encode(&[b"LPUSH", l.as_bytes(), format!("{i}").as_bytes()]));
            req.extend(encode(&[b"EXPIRE", s.as_bytes(), b"600"]));
            req.extend(encode(&[b"GET", s.as_bytes()]));
            let began = Instant::now();
            client.send(&req).await;
            let want = [
                format!(":{}\r\n", i + 1),
                "+OK\r\n".to_string(),
                ":1\r\n".to_string(),
                format!(":{}\r\n", i + 1),
                ":1\r\n".to_string(),
                format!("${}\r\nv{i}\r\n", format!("v{i}").len()),
            ];
            for w in want {
                let got = client.reply().await;
                assert_eq!(String::from_utf8_lossy(&got), w, "client {c} round {i}");
            }
            let took = began.elapsed().as_micros() as u64;
            if on.load(Ordering::Relaxed) {
                acked.during.push(took);
            } else {
                acked.before.push(took);
            }
            acked.rounds += 1;
        }
        acked
    })
}

/// A tenant b client on the shared backend, doing the same as before.
fn bystander(addr: std::net::SocketAddr, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<u64> {
    tokio::spawn(async move {
        let mut client = RawClient::connect(addr).await;
        assert_eq!(client.cmd(&[b"AUTH", b"b", b"pw"]).await, b"+OK\r\n");
        let mut n = 0u64;
        while !stop.load(Ordering::Relaxed) {
            n += 1;
            assert_eq!(client.cmd(&[b"INCR", b"count"]).await, format!(":{n}\r\n").into_bytes());
            let key = format!("k:{}", n % 1000);
            assert_eq!(client.cmd(&[b"GET", key.as_bytes()]).await, b"$2\r\nbv\r\n");
        }
        n
    })
}

fn percentile(v: &mut [u64], q: f64) -> u64 {
    v.sort_unstable();
    v.get(((v.len() as f64 * q) as usize).min(v.len().saturating_sub(1))).copied().unwrap_or(0)
}

/// Counts keys matching `pattern` on a node.
fn count(redis: &RedisServer, pattern: &str) -> u64 {
    redis.cli(&["EVAL", "return #redis.call('keys', ARGV[1])", "0", pattern]).trim().parse().unwrap()
}

#[tokio::test]
async fn a_tenant_moves_to_a_cluster_under_writes_through_two_proxies_losing_nothing() {
    let _heavy = heavy().await;
    const KEYS: usize = 50_000;
    const CLIENTS: usize = 8;
    let shared = RedisServer::start();
    let cluster = RedisCluster::start(3, 0);
    let target = cluster_backend(&cluster);
    let t0 = now_ms();
    populate(&shared, KEYS, t0).await;
    for i in 0..1000 {
        shared.cli(&["SET", &format!("b:k:{i}"), "bv"]);
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tenants.yaml");
    write_atomic(&path, &config(&shared, &target, "shared", ""));
    let (p1, p2) = (TestProxy::start_file(&path).await, TestProxy::start_file(&path).await);

    let (stop, on) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
    let writers: Vec<_> =
        (0..CLIENTS).map(|c| writer(if c % 2 == 0 { p1.addr } else { p2.addr }, c, stop.clone(), on.clone())).collect();
    let b = bystander(p1.addr, stop.clone());
    tokio::time::sleep(Duration::from_millis(500)).await;

    on.store(true, Ordering::Relaxed);
    let began = Instant::now();
    let version =
        write_atomic(&path, &config(&shared, &target, "shared", ", migrate: { to: big, keys_per_sec: 1000000 }"));
    p1.wait_for_version(&version).await;
    p2.wait_for_version(&version).await;
    let copied =
        |m: &serde_json::Value| matches!(m["progress"]["phase"].as_str(), Some("verify" | "switch" | "cut" | "done"));
    wait_for(&[&p1], Duration::from_secs(120), "the backfill done", copied).await;
    let backfill = began.elapsed();
    wait_for(&[&p1, &p2], Duration::from_secs(60), "the cut-over", |m| m["here"] == "cut").await;
    on.store(false, Ordering::Relaxed);
    wait_for(&[&p1, &p2], Duration::from_secs(60), "the old copies deleted", |m| m["progress"]["phase"] == "done")
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await; // writes on the new backend only
    stop.store(true, Ordering::Relaxed);
    let mut acked = Vec::new();
    for w in writers {
        acked.push(w.await.expect("a writer saw an error or a wrong reply"));
    }
    let b_rounds = b.await.expect("tenant b saw an error or a wrong reply");

    let m = migration(&p1).await;
    let (keys, bytes) =
        (m["progress"]["keys_copied"].as_u64().unwrap(), m["progress"]["bytes_copied"].as_u64().unwrap());
    let secs = backfill.as_secs_f64();
    let (mut before, mut during): (Vec<u64>, Vec<u64>) =
        (acked.iter().flat_map(|a| a.before.clone()).collect(), acked.iter().flat_map(|a| a.during.clone()).collect());
    println!(
        "migration: {keys} keys, {bytes} bytes copied in {secs:.2} s = {:.0} keys/s, {:.1} MB/s; \
         a round of 6 writes p50/p99 {}/{} µs before, {}/{} µs during ({} rounds during)",
        keys as f64 / secs,
        bytes as f64 / secs / 1e6,
        percentile(&mut before, 0.5),
        percentile(&mut before, 0.99),
        percentile(&mut during, 0.5),
        percentile(&mut during, 0.99),
        during.len()
    );
    assert!(keys > KEYS as u64, "{m}");
    // The cut-over pause: how long requests waited at the barrier, per proxy.
    for (name, p) in [("p1", &p1), ("p2", &p2)] {
        let m = migration(p).await;
        let pr = &m["progress"];
        println!(
            "cut-over on {name}: {} requests held, p99 {} ms, longest {} ms",
            pr["held"], pr["hold_p99_ms"], pr["hold_max_ms"]
        );
        assert!(pr["held"].as_u64() > Some(0), "{m}");
        // The goal is under 100 ms (65-75 ms measured on this test's debug
        // build); the bound leaves room for a loaded CI machine.
        assert!(pr["hold_p99_ms"].as_u64() < Some(200), "{m}");
    }

    // Through a proxy (now on the cluster) and on the cluster itself.
    let mut c = RawClient::connect(p2.addr).await;
    for (i, a) in acked.iter().enumerate() {
        let n = a.rounds;
        assert!(n > 0);
        assert_eq!(
            c.cmd(&[b"GET", format!("n:{i}").as_bytes()]).await,
            format!("${}\r\n{n}\r\n", n.to_string().len()).into_bytes()
        );
        assert_eq!(c.cmd(&[b"LLEN", format!("l:{i}").as_bytes()]).await, format!(":{n}\r\n").into_bytes());
        assert_eq!(c.cmd(&[b"HLEN", format!("h:{i}").as_bytes()]).await, format!(":{n}\r\n").into_bytes());
        let last = format!("s:{i}:{}", n - 1);
        let ttl = String::from_utf8(c.cmd(&[b"TTL", last.as_bytes()]).await).unwrap();
        assert!(ttl.starts_with(":59") || ttl == ":600\r\n", "{last}: {ttl}");
    }
    for i in (0..KEYS).step_by(97) {
        let key = format!("k:{i}");
        let pttl: i64 =
            String::from_utf8(c.cmd(&[b"PTTL", key.as_bytes()]).await).unwrap()[1..].trim().parse().unwrap();
        if i % 3 == 0 {
            let deadline = t0 + 3_600_000 + i as u64;
            let off = (now_ms() as i64 + pttl) - deadline as i64;
            assert!(off.abs() <= 1000, "{key}: deadline off by {off} ms");
        } else {
            assert_eq!(pttl, -1, "{key}");
        }
        let kind = c.cmd(&[b"TYPE", key.as_bytes()]).await;
        let want = ["+string\r\n", "+hash\r\n", "+list\r\n", "+set\r\n", "+zset\r\n", "+stream\r\n"][i % 6];
        assert_eq!(String::from_utf8_lossy(&kind), want, "{key}");
    }
    assert_eq!(c.cmd(&[b"STRLEN", b"big"]).await, format!(":{}\r\n", 4 << 20).into_bytes());
    let written: u64 = acked.iter().map(|a| a.rounds).sum::<u64>() + 3 * CLIENTS as u64;
    let on_cluster: u64 = cluster.masters().iter().map(|(m, _)| count(&cluster.nodes[*m], "a:*")).sum();
    assert_eq!(on_cluster, KEYS as u64 + 1 + written, "every key of a, and no other, is on the cluster");
    assert_eq!(cluster.masters().iter().map(|(m, _)| count(&cluster.nodes[*m], "b:*")).sum::<u64>(), 0);

    // The old copies are gone; b's keys are all there.
    assert_eq!(count(&shared, "a:*"), 0);
    assert_eq!(count(&shared, "b:k:*"), 1000);
    assert_eq!(shared.cli(&["GET", "b:count"]).trim(), b_rounds.to_string());

    // Finishing: a on its new backend, no migrate; its record goes.
    let version = write_atomic(&path, &config(&shared, &target, "big", ""));
    p1.wait_for_version(&version).await;
    p2.wait_for_version(&version).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while count(&shared, "tenantry:migrate:*") > 0 {
        assert!(Instant::now() < deadline, "the migration's record is removed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let n = acked[0].rounds.to_string();
    assert_eq!(c.cmd(&[b"GET", b"n:0"]).await, format!("${}\r\n{n}\r\n", n.len()).into_bytes());
    p1.stop().await;
    p2.stop().await;
}

/// Two standalone servers and a proxy following `path`.
struct Pair {
    old: RedisServer,
    new: RedisServer,
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
}

impl Pair {
    async fn start(keys: usize) -> Pair {
        Pair::start_with(keys, &[]).await
    }

    /// `target`: the new server's extra arguments.
    async fn start_with(keys: usize, target: &[&str]) -> Pair {
        let (old, new) = (RedisServer::start(), RedisServer::start_with(target));
        populate(&old, keys, now_ms()).await;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tenants.yaml");
        let pair = Pair { old, new, _dir: dir, path };
        write_atomic(&pair.path, &pair.config(""));
        pair
    }

    fn config(&self, migrate: &str) -> String {
        config(&self.old, &format!("two: {{ kind: standalone, nodes: [\"{}\"] }}", self.new.addr()), "shared", migrate)
    }
}

#[tokio::test]
async fn removing_migrate_before_the_cut_over_deletes_the_copies_and_changes_nothing_else() {
    const KEYS: usize = 20_000;
    let pair = Pair::start(KEYS).await;
    let proxy = TestProxy::start_file(&pair.path).await;
    let (stop, on) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(true)));
    let w = writer(proxy.addr, 0, stop.clone(), on);
    let version = write_atomic(&pair.path, &pair.config(", migrate: { to: two, keys_per_sec: 4000 }"));
    proxy.wait_for_version(&version).await;
    wait_for(&[&proxy], Duration::from_secs(30), "some keys copied", |m| {
        m["progress"]["keys_copied"].as_u64() > Some(2000)
    })
    .await;
    assert!(count(&pair.new, "a:*") > 0);
    let version = write_atomic(&pair.path, &pair.config(""));
    proxy.wait_for_version(&version).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while count(&pair.new, "a:*") > 0 || count(&pair.old, "tenantry:migrate:*") > 0 {
        assert!(
            Instant::now() < deadline,
            "the copies and the record are deleted: {} copies, record {:?}",
            count(&pair.new, "a:*"),
            pair.old.cli(&["KEYS", "tenantry:migrate:*"])
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Nothing of the tenant's is left there (tenantry's own keys may be).
    let left = pair.new.cli(&["KEYS", "*"]);
    assert!(left.lines().all(|k| k.is_empty() || k.starts_with("tenantry:")), "{left}");
    stop.store(true, Ordering::Relaxed);
    let rounds = w.await.expect("the writer saw an error").rounds;
    assert_eq!(count(&pair.old, "a:k:*"), KEYS as u64);
    assert_eq!(pair.old.cli(&["GET", "a:n:0"]).trim(), rounds.to_string());
    assert!(migration(&proxy).await.is_null());
    proxy.stop().await;
}

#[tokio::test]
async fn a_migration_goes_on_from_where_it_was_when_its_driver_stops() {
    const KEYS: usize = 20_000;
    let pair = Pair::start(KEYS).await;
    write_atomic(&pair.path, &pair.config(", migrate: { to: two, keys_per_sec: 5000 }"));
    let first = TestProxy::start_file(&pair.path).await;
    wait_for(&[&first], Duration::from_secs(30), "some keys copied", |m| {
        m["progress"]["keys_copied"].as_u64() > Some(3000)
    })
    .await;
    // A second proxy joins; the first stops, as in a rolling restart.
    let second = TestProxy::start_file(&pair.path).await;
    let (stop, on) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(true)));
    let w = writer(second.addr, 0, stop.clone(), on);
    first.stop().await;
    wait_for(&[&second], Duration::from_secs(60), "the migration done", |m| m["progress"]["phase"] == "done").await;
    stop.store(true, Ordering::Relaxed);
    let rounds = w.await.expect("the writer saw an error").rounds;
    let m = migration(&second).await;
    let copied = m["progress"]["keys_copied"].as_u64().unwrap();
    // From the cursor it had reached, not from the start again: the keys
    // there were (and the writer's: one a round, and three more), and a page
    // or two seen again.
    let there = KEYS as u64 + 1 + rounds + 3;
    assert!(copied <= there + 400, "copied {copied} of {there}: {m}");
    assert_eq!(count(&pair.new, "a:k:*"), KEYS as u64);
    assert_eq!(count(&pair.old, "a:*"), 0);
    assert_eq!(pair.new.cli(&["GET", "a:n:0"]).trim(), rounds.to_string());
    // A proxy started now serves the tenant from the new backend at once.
    let third = TestProxy::start_file(&pair.path).await;
    let mut c = RawClient::connect(third.addr).await;
    assert_eq!(c.cmd(&[b"GET", b"k:0"]).await, b"$7\r\nvalue-0\r\n");
    second.stop().await;
    third.stop().await;
}

/// Step one of a move: an idle tenant, standalone to standalone, by a
/// config edit. Its phases show on `/tenants` and in the metrics as they
/// pass; every key lands with its type, value and deadline, the other
/// tenant's keys stay, and the old copies go.
#[tokio::test]
async fn an_idle_tenant_moves_to_another_standalone_backend() {
    const KEYS: usize = 5_000;
    let t0 = now_ms();
    let pair = Pair::start(KEYS).await;
    for i in 0..100 {
        pair.old.cli(&["SET", &format!("b:k:{i}"), "bv"]);
    }
    let proxy = TestProxy::start_file(&pair.path).await;
    assert!(migration(&proxy).await.is_null());
    let version = write_atomic(&pair.path, &pair.config(", migrate: { to: two, keys_per_sec: 2000 }"));
    proxy.wait_for_version(&version).await;
    // Mid-copy: the phase, what is copied and what is left, on both pages.
    wait_for(&[&proxy], Duration::from_secs(30), "the copy under way", |m| {
        m["progress"]["phase"] == "copy" && m["progress"]["keys_copied"].as_u64() > Some(1000)
    })
    .await;
    let m = migration(&proxy).await;
    assert_eq!(
        (m["to"].as_str(), m["namespace"].as_str(), m["here"].as_str()),
        (Some("two"), Some("a:"), Some("copying"))
    );
    let left = m["progress"]["keys_left"].as_u64().unwrap();
    assert!(left > 0 && left < KEYS as u64, "{m}");
    let metrics = proxy.metrics().await;
    assert!(metrics.contains("tenantry_migration_phase{tenant=\"a\",phase=\"copy\"} 1"), "{metrics}");
    assert!(metrics.contains("tenantry_migration_copied_keys{tenant=\"a\"}"), "{metrics}");
    assert!(metrics.contains("tenantry_migration_left_keys{tenant=\"a\"}"), "{metrics}");
    wait_for(&[&proxy], Duration::from_secs(60), "the migration done", |m| m["progress"]["phase"] == "done").await;
    let m = migration(&proxy).await;
    assert_eq!((m["here"].as_str(), m["progress"]["keys_left"].as_u64()), (Some("cut"), Some(0)), "{m}");
    assert!(proxy.metrics().await.contains("tenantry_migration_phase{tenant=\"a\",phase=\"done\"} 1"));

    // Every key on the new backend, as it was; nothing of a's left on the old.
    assert_eq!(count(&pair.new, "a:k:*"), KEYS as u64);
    assert_eq!(count(&pair.old, "a:*"), 0);
    assert_eq!(count(&pair.old, "b:k:*"), 100);
    assert_eq!(count(&pair.new, "b:*"), 0);
    let mut c = RawClient::connect(proxy.addr).await;
    for i in (0..KEYS).step_by(37) {
        let key = format!("k:{i}");
        let kind = String::from_utf8(c.cmd(&[b"TYPE", key.as_bytes()]).await).unwrap();
        assert_eq!(
            kind,
            ["+string\r\n", "+hash\r\n", "+list\r\n", "+set\r\n", "+zset\r\n", "+stream\r\n"][i % 6],
            "{key}"
        );
        let pttl: i64 =
            String::from_utf8(c.cmd(&[b"PTTL", key.as_bytes()]).await).unwrap()[1..].trim().parse().unwrap();
        if i % 3 == 0 {
            let off = (now_ms() as i64 + pttl) - (t0 + 3_600_000 + i as u64) as i64;
            assert!(off.abs() <= 1000, "{key}: deadline off by {off} ms");
        } else {
            assert_eq!(pttl, -1, "{key}");
        }
    }
    assert_eq!(c.cmd(&[b"GET", b"k:6"]).await, b"$7\r\nvalue-6\r\n");
    assert_eq!(c.cmd(&[b"XLEN", b"k:5"]).await, b":1\r\n");
    assert_eq!(c.cmd(&[b"SISMEMBER", b"k:9", b"m"]).await, b":1\r\n");
    assert_eq!(c.cmd(&[b"STRLEN", b"big"]).await, format!(":{}\r\n", 4 << 20).into_bytes());
    // Served from the new backend: a write lands there.
    assert_eq!(c.cmd(&[b"SET", b"after", b"1"]).await, b"+OK\r\n");
    assert_eq!(pair.new.cli(&["GET", "a:after"]).trim(), "1");
    proxy.stop().await;
}

/// A key bigger than the target's `proto-max-bulk-len` stops the move in
/// the phase `stopped`, naming the key; the tenant is served as before,
/// nothing is lost, and once the target takes it the move goes on.
#[tokio::test]
async fn a_key_too_big_for_the_target_stops_the_move_until_it_fits() {
    const KEYS: usize = 1_000;
    let pair = Pair::start_with(KEYS, &["--proto-max-bulk-len", "1mb"]).await;
    // 2 MiB that DUMP cannot compress (its LZF would shrink a repeated byte).
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let noise: Vec<u8> = (0..2 << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let mut direct_old = direct(&pair.old).await;
    let () = redis::cmd("SET").arg("a:big").arg(&noise).query_async(&mut direct_old).await.unwrap();
    let proxy = TestProxy::start_file(&pair.path).await;
    let version = write_atomic(&pair.path, &pair.config(", migrate: { to: two, keys_per_sec: 100000 }"));
    proxy.wait_for_version(&version).await;
    wait_for(&[&proxy], Duration::from_secs(30), "the move stopped", |m| m["progress"]["phase"] == "stopped").await;
    let m = migration(&proxy).await;
    assert_eq!(m["progress"]["stopped_key"], "a:big", "{m}");
    let error = m["progress"]["error"].as_str().unwrap_or_default();
    assert!(error.contains("\"a:big\"") && error.contains("proto-max-bulk-len (1048576)"), "{m}");
    assert!(proxy.metrics().await.contains("tenantry_migration_phase{tenant=\"a\",phase=\"stopped\"} 1"));
    // Served from the old backend meanwhile, writes included.
    let mut c = RawClient::connect(proxy.addr).await;
    assert_eq!(c.cmd(&[b"STRLEN", b"big"]).await, format!(":{}\r\n", 2 << 20).into_bytes());
    assert_eq!(c.cmd(&[b"INCR", b"n"]).await, b":1\r\n");
    assert_eq!(pair.old.cli(&["GET", "a:n"]).trim(), "1");
    // The target takes it now: the move goes on, and nothing is lost.
    pair.new.cli(&["CONFIG", "SET", "proto-max-bulk-len", "512mb"]);
    wait_for(&[&proxy], Duration::from_secs(60), "the move done", |m| m["progress"]["phase"] == "done").await;
    let moved: Vec<u8> = redis::cmd("GET").arg("a:big").query_async(&mut direct(&pair.new).await).await.unwrap();
    assert!(moved == noise, "the big key arrived whole");
    assert_eq!(c.cmd(&[b"INCR", b"n"]).await, b":2\r\n");
    assert_eq!(pair.new.cli(&["GET", "a:n"]).trim(), "2");
    assert_eq!(count(&pair.new, "a:k:*"), KEYS as u64);
    assert_eq!(count(&pair.old, "a:*"), 0);
    proxy.stop().await;
}

/// The target goes down mid-copy and comes back empty (no persistence): the
/// tenant is served from the old backend throughout, without an error; the
/// move says why it waits, sees that the copies are gone, copies again from
/// the start, and ends with every key there.
#[tokio::test]
async fn a_target_that_goes_down_mid_copy_and_comes_back_empty() {
    const KEYS: usize = 20_000;
    let mut pair = Pair::start(KEYS).await;
    let proxy = TestProxy::start_file(&pair.path).await;
    let (stop, on) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(true)));
    let w = writer(proxy.addr, 0, stop.clone(), on);
    let version = write_atomic(&pair.path, &pair.config(", migrate: { to: two, keys_per_sec: 10000 }"));
    proxy.wait_for_version(&version).await;
    wait_for(&[&proxy], Duration::from_secs(30), "some keys copied", |m| {
        m["progress"]["keys_copied"].as_u64() > Some(3000)
    })
    .await;
    pair.new.stop();
    wait_for(&[&proxy], Duration::from_secs(30), "the failure reported", |m| !m["progress"]["error"].is_null()).await;
    assert_eq!(migration(&proxy).await["here"], "copying");
    tokio::time::sleep(Duration::from_secs(2)).await;
    pair.new.restart();
    wait_for(&[&proxy], Duration::from_secs(90), "the migration done", |m| m["progress"]["phase"] == "done").await;
    stop.store(true, Ordering::Relaxed);
    let rounds = w.await.expect("the writer saw an error").rounds;
    assert_eq!(count(&pair.new, "a:k:*"), KEYS as u64);
    assert_eq!(pair.new.cli(&["STRLEN", "a:big"]).trim(), (4 << 20).to_string());
    assert_eq!(pair.new.cli(&["GET", "a:n:0"]).trim(), rounds.to_string());
    assert_eq!(pair.new.cli(&["LLEN", "a:l:0"]).trim(), rounds.to_string());
    assert_eq!(count(&pair.old, "a:*"), 0);
    // tenantry's marks are gone from the target with the move.
    assert_eq!(count(&pair.new, "tenantry:migrate:*"), 0);
    proxy.stop().await;
}

/// A tenant with a backend user of its own: `provision_acl` lets that user
/// write (only) its dirty sets, so each write's mark goes in the write's
/// own batch; none is refused (the refusal would count as the tenant's
/// NOPERM error), and every write is on the target after the move.
#[tokio::test]
async fn a_tenant_with_its_own_backend_user_marks_its_writes_in_their_batches() {
    const KEYS: usize = 2_000;
    let (old, new) = (RedisServer::start(), RedisServer::start());
    populate(&old, KEYS, now_ms()).await;
    let yaml = format!(
        "backends:\n  shared: {{ kind: standalone, nodes: [\"{}\"], provision_acl: true }}\n  \
         two: {{ kind: standalone, nodes: [\"{}\"], provision_acl: true }}\n\
         tenants:\n  a: {{ backend: shared, namespace: \"a:\", backend_auth: {{ username: tenant-a, password: s }}, \
         migrate: {{ to: two, keys_per_sec: 2000 }} }}\n\
         default_tenant: a\n",
        old.addr(),
        new.addr()
    );
    let proxy = TestProxy::start_listening(&format!("listen: 127.0.0.1:0\nadmin: 127.0.0.1:0\n{yaml}")).await;
    let (stop, on) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(true)));
    // The user is made a moment after start: the writer starts once it serves.
    let mut c = RawClient::connect(proxy.addr).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while c.cmd(&[b"SET", b"ready", b"1"]).await != b"+OK\r\n" {
        assert!(Instant::now() < deadline, "tenant a never served");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let user = old.cli(&["ACL", "GETUSER", "tenant-a"]);
    assert!(user.contains("%W~tenantry:migrate:dirty:613a*"), "{user}");
    let w = writer(proxy.addr, 0, stop.clone(), on);
    wait_for(&[&proxy], Duration::from_secs(60), "the migration done", |m| m["progress"]["phase"] == "done").await;
    stop.store(true, Ordering::Relaxed);
    let rounds = w.await.expect("the writer saw an error").rounds;
    assert!(rounds > 0);
    assert_eq!(new.cli(&["GET", "a:n:0"]).trim(), rounds.to_string());
    assert_eq!(new.cli(&["LLEN", "a:l:0"]).trim(), rounds.to_string());
    assert_eq!(count(&new, "a:k:*"), KEYS as u64);
    let metrics = proxy.metrics().await;
    assert!(
        !metrics.lines().any(|l| l.starts_with("tenantry_command_errors_total") && l.contains("NOPERM")),
        "{metrics}"
    );
    proxy.stop().await;
}

/// Keys written through the proxy, read back through it: `k:<i>` = `v<i>`
/// for every i below `n`, each either a string or a hash.
async fn fill_through(proxy: &TestProxy, n: usize) {
    let mut c = proxy.client().await;
    for chunk in (0..n).collect::<Vec<_>>().chunks(500) {
        let mut p = redis::pipe();
        for &i in chunk {
            match i % 2 {
                0 => p.cmd("SET").arg(format!("k:{i}")).arg(format!("v{i}")).ignore(),
                _ => p.cmd("HSET").arg(format!("k:{i}")).arg("f").arg(format!("v{i}")).ignore(),
            };
        }
        let () = p.query_async(&mut c).await.unwrap();
    }
}

async fn check_through(proxy: &TestProxy, n: usize) {
    let mut c = proxy.client().await;
    for i in (0..n).step_by(7) {
        let v: String = if i % 2 == 0 {
            redis::cmd("GET").arg(format!("k:{i}")).query_async(&mut c).await.unwrap()
        } else {
            redis::cmd("HGET").arg(format!("k:{i}")).arg("f").query_async(&mut c).await.unwrap()
        };
        assert_eq!(v, format!("v{i}"), "k:{i}");
    }
}

/// Ring -> cluster, then cluster -> standalone, under a writer: every key
/// where the target's placement puts it, counters exact.
#[tokio::test]
async fn a_tenant_moves_from_a_ring_to_a_cluster_and_on_to_a_standalone_server() {
    let _heavy = heavy().await;
    const KEYS: usize = 3_000;
    let ring: Vec<RedisServer> = (0..3).map(|_| RedisServer::start()).collect();
    let cluster = RedisCluster::start(3, 0);
    let single = RedisServer::start();
    let ring_nodes: Vec<String> = ring.iter().map(|r| format!("\"{}\"", r.addr())).collect();
    let seeds: Vec<String> = cluster.seeds().iter().map(|s| format!("\"{s}\"")).collect();
    let config = |a: &str| {
        format!(
            "listen: 127.0.0.1:0\nadmin: 127.0.0.1:0\n\
             backends:\n  ring: {{ kind: ring, nodes: [{}] }}\n  big: {{ kind: cluster, nodes: [{}] }}\n  \
             single: {{ kind: standalone, nodes: [\"{}\"] }}\n\
             tenants:\n  a: {{ namespace: \"a:\", {a} }}\n\
             default_tenant: a\n",
            ring_nodes.join(", "),
            seeds.join(", "),
            single.addr()
        )
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tenants.yaml");
    write_atomic(&path, &config("backend: ring"));
    let proxy = TestProxy::start_file(&path).await;
    fill_through(&proxy, KEYS).await;
    let spread = ring.iter().filter(|r| count(r, "a:k:*") > 0).count();
    assert_eq!(spread, 3, "the ring spreads the keys");

    let mut rounds = 0;
    for (step, (from, to)) in [("ring", "big"), ("big", "single")].into_iter().enumerate() {
        let (stop, on) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(true)));
        let w = writer(proxy.addr, step, stop.clone(), on);
        let version =
            write_atomic(&path, &config(&format!("backend: {from}, migrate: {{ to: {to}, keys_per_sec: 100000 }}")));
        proxy.wait_for_version(&version).await;
        wait_for(&[&proxy], Duration::from_secs(60), "the move done", |m| m["progress"]["phase"] == "done").await;
        stop.store(true, Ordering::Relaxed);
        rounds = w.await.expect("the writer saw an error").rounds;
        // Finished: the tenant on its new backend.
        let version = write_atomic(&path, &config(&format!("backend: {to}")));
        proxy.wait_for_version(&version).await;
        check_through(&proxy, KEYS).await;
        let mut c = RawClient::connect(proxy.addr).await;
        let n = format!("n:{step}");
        assert_eq!(
            c.cmd(&[b"GET", n.as_bytes()]).await,
            format!("${}\r\n{rounds}\r\n", rounds.to_string().len()).into_bytes(),
            "step {step}"
        );
    }
    // On the standalone server at the end, and nowhere else.
    assert_eq!(count(&single, "a:k:*"), KEYS as u64);
    assert_eq!(single.cli(&["GET", "a:n:1"]).trim(), rounds.to_string());
    for r in &ring {
        assert_eq!(count(r, "a:*"), 0);
    }
    let on_cluster: u64 = cluster.masters().iter().map(|(m, _)| count(&cluster.nodes[*m], "a:*")).sum();
    assert_eq!(on_cluster, 0);
    proxy.stop().await;
}
