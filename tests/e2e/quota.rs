//! Per-tenant memory quotas on one shared redis-server: accounting against
//! the true sizes, -OOM at the quota with noeviction, and the noisy
//! neighbour: a tenant flooding far past its quota evicts only its own keys.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tenantry_tests::{direct, encode, heavy, http_get, metric, metric_sum, RawClient, RedisServer, TestProxy};

/// Sum of MEMORY USAGE over the keys matching ARGV[1], and how many there
/// are, read straight from Redis: the truth tenantry's estimate is held
/// against. Flagged to reach keys of every slot of a cluster node.
pub(crate) const TRUE_USAGE: &str = "#!lua flags=allow-cross-slot-keys,no-writes\n\
  local sum, n, cursor = 0, 0, '0' \
  repeat local r = redis.call('scan', cursor, 'match', ARGV[1], 'count', 1000) cursor = r[1] \
    for _, k in ipairs(r[2]) do sum = sum + (redis.call('memory', 'usage', k) or 0) n = n + 1 end \
  until cursor == '0' return {sum, n}";

async fn true_usage(redis: &RedisServer, namespace: &str) -> (u64, u64) {
    let mut c = direct(redis).await;
    let (bytes, keys): (u64, u64) =
        redis::cmd("EVAL").arg(TRUE_USAGE).arg(0).arg(format!("{namespace}*")).query_async(&mut c).await.unwrap();
    (bytes, keys)
}

fn config(redis: &RedisServer, a: &str, b: &str) -> String {
    format!(
        "admin: 127.0.0.1:0\nbackends:\n  shared: {{ kind: standalone, nodes: [\"{}\"] }}\n\
         tenants:\n  a: {{ backend: shared, namespace: \"a:\", auth: {{ username: a, password: pw }}{a} }}\n  \
         b: {{ backend: shared, namespace: \"b:\", auth: {{ username: b, password: pw }}{b} }}\n",
        redis.addr()
    )
}

/// Every tenant of these tests has the password `pw`.
pub(crate) async fn login(proxy: &TestProxy, user: &str) -> RawClient {
    proxy.login(user, "pw").await
}

async fn used(proxy: &TestProxy, tenant: &str) -> f64 {
    metric(&proxy.metrics().await, &format!("tenantry_tenant_memory_used_bytes{{tenant=\"{tenant}\"}}"))
}

/// Waits until the proxy's figure for `tenant` has stopped moving (two
/// measuring passes after the last write) and returns it.
pub(crate) async fn settled_usage(proxy: &TestProxy, tenant: &str) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut last = -1.0;
    loop {
        tokio::time::sleep(Duration::from_millis(1200)).await;
        let now = used(proxy, tenant).await;
        if now > 0.0 && (now - last).abs() <= now * 0.001 {
            return now;
        }
        assert!(Instant::now() < deadline, "usage of {tenant} never settled ({last} then {now})");
        last = now;
    }
}

/// Sends SETs of `size`-byte values to `prefix{from..to}` in pipelines of 200;
/// returns (written, refused with -OOM).
pub(crate) async fn write(
    c: &mut RawClient,
    prefix: &str,
    range: std::ops::Range<usize>,
    size: usize,
) -> (usize, usize) {
    let value = vec![b'v'; size];
    let (mut ok, mut oom) = (0, 0);
    for chunk in range.collect::<Vec<_>>().chunks(200) {
        let req: Vec<u8> =
            chunk.iter().flat_map(|i| encode(&[b"SET", format!("{prefix}{i}").as_bytes(), &value])).collect();
        c.send(&req).await;
        for _ in chunk {
            let r = c.reply().await;
            if r == b"+OK\r\n" {
                ok += 1;
            } else {
                assert!(r.starts_with(b"-OOM command not allowed"), "{:?}", String::from_utf8_lossy(&r));
                oom += 1;
            }
        }
    }
    (ok, oom)
}

/// `n` keys of mixed sizes (10 B to 4 kB) and types (strings, hashes,
/// lists), as a real cache holds; every write must succeed.
pub(crate) async fn write_mixed(c: &mut RawClient, n: usize) {
    let mut rng = fastrand::Rng::with_seed(7);
    let mut req = Vec::new();
    for i in 0..n {
        let size = rng.usize(10..4000);
        req.extend(match i % 3 {
            0 => encode(&[b"SET", format!("s:{i}").as_bytes(), &vec![b'x'; size]]),
            1 => encode(&[b"HSET", format!("h:{i}").as_bytes(), b"f1", &vec![b'y'; size / 2], b"f2", b"z"]),
            _ => encode(&[b"RPUSH", format!("l:{i}").as_bytes(), &vec![b'w'; size / 3], b"a", b"b"]),
        });
    }
    c.send(&req).await;
    for _ in 0..n {
        assert!(!c.reply().await.starts_with(b"-"));
    }
}

/// GETs `prefix0..n`: how many hit.
pub(crate) async fn hits(c: &mut RawClient, prefix: &str, n: usize) -> usize {
    let mut found = 0;
    for chunk in (0..n).collect::<Vec<_>>().chunks(200) {
        let req: Vec<u8> = chunk.iter().flat_map(|i| encode(&[b"GET", format!("{prefix}{i}").as_bytes()])).collect();
        c.send(&req).await;
        for _ in chunk {
            if c.reply().await != b"$-1\r\n" {
                found += 1;
            }
        }
    }
    found
}

#[tokio::test]
async fn usage_is_measured_within_a_few_percent_of_the_true_sum() {
    let redis = RedisServer::start();
    let proxy = TestProxy::start(&config(&redis, ", memory_quota: 512MiB", "")).await;
    let mut a = login(&proxy, "a").await;
    write_mixed(&mut a, 3000).await;
    let estimate = settled_usage(&proxy, "a").await;
    let (truth, keys) = true_usage(&redis, "a:").await;
    let error = (estimate - truth as f64) / truth as f64;
    println!(
        "tenant a: {keys} keys, true MEMORY USAGE sum {truth} bytes, tenantry's estimate {estimate} ({:+.1}%)",
        error * 100.0
    );
    assert!(error.abs() <= 0.10, "estimate {estimate} vs true {truth}");
    let text = proxy.metrics().await;
    assert_eq!(metric(&text, "tenantry_tenant_memory_quota_bytes{tenant=\"a\"}"), 512.0 * 1024.0 * 1024.0);
    // Tenant b has no quota: no figure at all.
    assert_eq!(metric(&text, "tenantry_tenant_memory_used_bytes{tenant=\"b\"}"), 0.0);
}

#[tokio::test]
async fn noeviction_refuses_growing_writes_at_the_quota_but_serves_reads_and_deletes() {
    let redis = RedisServer::start();
    let proxy = TestProxy::start(&config(&redis, ", memory_quota: 1MiB, eviction: noeviction", "")).await;
    let mut a = login(&proxy, "a").await;
    let (written, refused) = write(&mut a, "k:", 0..3000, 1000).await;
    assert!(refused > 0, "never refused");
    // About 1 MiB worth of 1 kB values got in, not the 3 MB sent.
    assert!((700..=1100).contains(&written), "{written} written");
    let r = a.cmd(&[b"SET", b"one-more", b"x"]).await;
    assert!(
        String::from_utf8_lossy(&r)
            .starts_with("-OOM command not allowed when used memory > tenant 'a' memory_quota ("),
        "{:?}",
        String::from_utf8_lossy(&r)
    );
    assert_eq!(a.cmd(&[b"GET", b"k:0"]).await.len(), 1000 + 9, "reads still work");
    assert_eq!(a.cmd(&[b"DEL", b"k:0"]).await, b":1\r\n", "deletes still work");
    assert_eq!(a.cmd(&[b"EXPIRE", b"k:1", b"100"]).await, b":1\r\n");
    // Another tenant on the same backend is not affected.
    let mut b = login(&proxy, "b").await;
    assert_eq!(write(&mut b, "k:", 0..2000, 1000).await, (2000, 0));
    let text = proxy.metrics().await;
    assert_eq!(metric(&text, "tenantry_tenant_quota_refused_writes_total{tenant=\"a\"}"), (refused + 1) as f64);
    assert_eq!(metric(&text, "tenantry_command_errors_total{tenant=\"a\",kind=\"oom\"}"), (refused + 1) as f64);

    // Deleting makes room again once the next measurement has seen it.
    let keys: Vec<Vec<u8>> = (1..600).map(|i| format!("k:{i}").into_bytes()).collect();
    let mut del: Vec<&[u8]> = vec![b"DEL"];
    del.extend(keys.iter().map(Vec::as_slice));
    a.cmd(&del).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while a.cmd(&[b"SET", b"again", b"x"]).await != b"+OK\r\n" {
        assert!(Instant::now() < deadline, "room never came back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The scenario quotas exist for, run twice on a redis-server with a small
/// maxmemory: without quotas (one shared eviction policy) and with them.
#[tokio::test]
async fn a_noisy_tenant_evicts_only_its_own_keys() {
    let _heavy = heavy().await;
    const B_KEYS: usize = 4000;
    const A_FLOOD: usize = 60_000;
    const VALUE: usize = 1000;
    const A_QUOTA: f64 = 6.0 * 1024.0 * 1024.0;
    let maxmemory = ["--maxmemory", "24mb", "--maxmemory-policy", "allkeys-lru"];

    // Without quotas: the backend's one policy evicts whoever's keys.
    let plain = {
        let redis = RedisServer::start_with(&maxmemory);
        let proxy = TestProxy::start(&config(&redis, "", "")).await;
        let (mut a, mut b) = (login(&proxy, "a").await, login(&proxy, "b").await);
        write(&mut b, "work:", 0..B_KEYS, VALUE).await;
        let before = hits(&mut b, "work:", B_KEYS).await;
        write(&mut a, "flood:", 0..A_FLOOD, VALUE).await;
        let after = hits(&mut b, "work:", B_KEYS).await;
        (before, after)
    };

    // With quotas: A gets 6 MiB with allkeys-lru of its own, B 8 MiB.
    let redis = RedisServer::start_with(&maxmemory);
    let proxy = TestProxy::start(&config(
        &redis,
        ", memory_quota: 6MiB, eviction: allkeys-lru",
        ", memory_quota: 8MiB, eviction: allkeys-lru",
    ))
    .await;
    let (mut a, mut b) = (login(&proxy, "a").await, login(&proxy, "b").await);
    assert_eq!(write(&mut b, "work:", 0..B_KEYS, VALUE).await, (B_KEYS, 0));
    let before = hits(&mut b, "work:", B_KEYS).await;
    // Sample A's true usage while it floods.
    let peak = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (addr, peak) = (redis.addr(), peak.clone());
        tokio::spawn(async move {
            let client = redis::Client::open(format!("redis://{addr}")).unwrap();
            let mut c = client.get_multiplexed_async_connection().await.unwrap();
            loop {
                let r: Result<(u64, u64), _> =
                    redis::cmd("EVAL").arg(TRUE_USAGE).arg(0).arg("a:*").query_async(&mut c).await;
                if let Ok((bytes, _)) = r {
                    peak.fetch_max(bytes, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let started = Instant::now();
    let (a_written, a_refused) = write(&mut a, "flood:", 0..A_FLOOD, VALUE).await;
    let flood_secs = started.elapsed().as_secs_f64();
    let after = hits(&mut b, "work:", B_KEYS).await;

    // Let eviction finish, then count.
    settled_usage(&proxy, "a").await;
    let (a_bytes, a_left) = true_usage(&redis, "a:flood:").await;
    let text = proxy.metrics().await;
    let evicted = metric_sum(&text, "tenantry_evictions_total", "tenant=\"a\",keyspace=\"flood\",reason=\"quota\"")
        + metric_sum(&text, "tenantry_evictions_total", "tenant=\"a\",keyspace=\"other\",reason=\"quota\"");
    let b_evicted = metric_sum(&text, "tenantry_evictions_total", "tenant=\"b\"");
    sampler.abort();
    let peak = peak.load(Ordering::Relaxed);
    let mut d = direct(&redis).await;
    let info: String = redis::cmd("INFO").arg("stats").query_async(&mut d).await.unwrap();
    let backend_evicted = info.lines().find_map(|l| l.strip_prefix("evicted_keys:")).unwrap().trim().to_string();

    println!("noisy neighbour, {B_KEYS} keys of B then {A_FLOOD} writes of A ({VALUE}-byte values), 24 MB maxmemory:");
    println!("                          B hits before  B hits after  backend evictions");
    println!("  plain shared Redis      {:>13}  {:>12}  (any tenant's keys)", plain.0, plain.1);
    println!("  tenantry quotas         {before:>13}  {after:>12}  {backend_evicted}");
    println!(
        "  A: {a_written} written, {a_refused} refused (-OOM) in {flood_secs:.1} s; {a_left} left using {a_bytes} bytes \
         ({:.1}% of its quota, peak {:.1}%); {evicted} evicted by quota",
        a_bytes as f64 / A_QUOTA * 100.0,
        peak as f64 / A_QUOTA * 100.0
    );

    assert!(plain.1 < plain.0, "without quotas B should lose keys to A's flood: {plain:?}");
    assert_eq!((before, after), (B_KEYS, B_KEYS), "B lost keys");
    assert_eq!(b_evicted, 0.0);
    assert_eq!(backend_evicted, "0", "the backend's own policy evicted");
    assert!(a_bytes as f64 <= A_QUOTA * 1.10, "A uses {a_bytes} bytes");
    assert!(peak as f64 <= A_QUOTA * 1.10, "A peaked at {peak} bytes");
    assert!(a_bytes as f64 >= A_QUOTA * 0.80, "A was evicted far below its quota: {a_bytes} bytes");
    assert_eq!(evicted as u64, a_written as u64 - a_left, "A's quota evictions vs A's keys that disappeared");
    assert!(a_refused < A_FLOOD / 10, "eviction should keep up with most of the flood: {a_refused} refused");
}

#[tokio::test]
async fn ready_warns_when_quotas_overcommit_or_the_backend_can_evict_across_tenants() {
    let redis = RedisServer::start_with(&["--maxmemory", "10mb", "--maxmemory-policy", "allkeys-lru"]);
    // 8 + 8 MiB of quotas on a 10 MB node; b has none.
    let proxy = TestProxy::start(&format!(
        "{}  c: {{ backend: shared, namespace: \"c:\", memory_quota: 8MiB }}\n",
        config(&redis, ", memory_quota: 8MiB", "")
    ))
    .await;
    let admin = proxy.admin_addr().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = http_get(admin, "/ready").await;
        assert_eq!(status, 200, "a warning, not unready: {body}");
        if body.contains("memory quotas overcommit the node") {
            assert!(body.contains("add up to 16777216 bytes on it, its maxmemory is 10485760"), "{body}");
            assert!(body.contains("maxmemory-policy allkeys-lru can still evict any tenant's keys"), "{body}");
            assert!(body.contains("tenants without a memory_quota share it: b"), "{body}");
            break;
        }
        assert!(Instant::now() < deadline, "no warning: {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// SETs with a TTL: `prefix{i}` expires in `1000 + i` seconds.
async fn write_with_ttl(c: &mut RawClient, prefix: &str, range: std::ops::Range<usize>, size: usize) -> usize {
    let value = vec![b'v'; size];
    let mut ok = 0;
    for chunk in range.collect::<Vec<_>>().chunks(200) {
        let req: Vec<u8> = chunk
            .iter()
            .flat_map(|i| {
                encode(&[b"SET", format!("{prefix}{i}").as_bytes(), &value, b"EX", (1000 + i).to_string().as_bytes()])
            })
            .collect();
        c.send(&req).await;
        for _ in chunk {
            if c.reply().await == b"+OK\r\n" {
                ok += 1;
            }
        }
    }
    ok
}

/// Which of `prefix0..n` still exist.
async fn exists(c: &mut RawClient, prefix: &str, n: usize) -> Vec<bool> {
    let req: Vec<u8> = (0..n).flat_map(|i| encode(&[b"EXISTS", format!("{prefix}{i}").as_bytes()])).collect();
    c.send(&req).await;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(c.reply().await == b":1\r\n");
    }
    out
}

#[tokio::test]
async fn volatile_policies_evict_only_keys_with_a_ttl_soonest_first() {
    let redis = RedisServer::start();
    let proxy = TestProxy::start(&config(
        &redis,
        ", memory_quota: 2MiB, eviction: volatile-ttl",
        ", memory_quota: 512KiB, eviction: volatile-lru",
    ))
    .await;
    let mut a = login(&proxy, "a").await;
    assert_eq!(write(&mut a, "keep:", 0..500, 1000).await, (500, 0));
    let written = write_with_ttl(&mut a, "tmp:", 0..6000, 1000).await;
    settled_usage(&proxy, "a").await;
    assert!(exists(&mut a, "keep:", 500).await.iter().all(|&e| e), "a key without a TTL was evicted");
    let tmp = exists(&mut a, "tmp:", 6000).await;
    let first: usize = tmp[..1500].iter().filter(|&&e| e).count();
    let last: usize = tmp[4500..].iter().filter(|&&e| e).count();
    println!("volatile-ttl: {written} written; survivors among the 1500 soonest to expire {first}, latest {last}");
    assert!(last > 2 * first.max(10), "soonest-to-expire keys should go first: {first} vs {last}");
    let (bytes, _) = true_usage(&redis, "a:").await;
    assert!(bytes as f64 <= 2.0 * 1024.0 * 1024.0 * 1.1, "a uses {bytes}");

    // volatile-lru with no key that has a TTL: nothing can go, writes get -OOM.
    let mut b = login(&proxy, "b").await;
    let (ok, refused) = write(&mut b, "k:", 0..1500, 1000).await;
    assert!(refused > 0 && ok < 600, "{ok} written, {refused} refused");
    assert!(exists(&mut b, "k:", ok).await.iter().all(|&e| e));
}

/// Two sidecars in front of one backend: one figure, one over-quota state,
/// one evictor, and a new evictor when that one goes away.
#[tokio::test]
async fn proxies_share_usage_and_one_of_them_evicts() {
    let _heavy = heavy().await;
    let redis = RedisServer::start();
    let yaml = config(&redis, ", memory_quota: 2MiB, eviction: allkeys-lru", ", memory_quota: 512KiB");
    let one = TestProxy::start(&yaml).await;
    let two = TestProxy::start(&yaml).await;
    let mut a1 = login(&one, "a").await;
    let (written1, _) = write(&mut a1, "k:", 0..4000, 1000).await;
    // Both see the same figure.
    let u1 = settled_usage(&one, "a").await;
    let u2 = used(&two, "a").await;
    assert!((u1 - u2).abs() <= u1 * 0.02, "proxies disagree: {u1} vs {u2}");
    let evictions =
        |text: &str| metric_sum(text, "tenantry_evictions_total", "tenant=\"a\",keyspace=\"k\",reason=\"quota\"");
    let (e1, e2) = (evictions(&one.metrics().await), evictions(&two.metrics().await));
    assert!(e1 == 0.0 || e2 == 0.0, "both proxies evicted: {e1} and {e2}");
    let left = exists(&mut a1, "k:", 4000).await.iter().filter(|&&e| e).count();
    assert_eq!((e1 + e2) as usize, written1 - left);

    // noeviction's full state reaches the other proxy within a refresh.
    let mut b1 = login(&one, "b").await;
    let (_, refused) = write(&mut b1, "k:", 0..1000, 1000).await;
    assert!(refused > 0);
    let mut b2 = login(&two, "b").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(b2.cmd(&[b"SET", b"x", b"y"]).await.starts_with(b"-OOM"), "the other proxy let b write");

    // The evicting proxy leaves; the other takes over (the lease is released on shutdown).
    let (leader, survivor) = if e1 > 0.0 { (one, two) } else { (two, one) };
    leader.stop().await;
    let mut a2 = login(&survivor, "a").await;
    let (written2, _) = write(&mut a2, "more:", 0..4000, 1000).await;
    settled_usage(&survivor, "a").await;
    let took_over = metric_sum(&survivor.metrics().await, "tenantry_evictions_total", "tenant=\"a\",keyspace=\"more\"");
    assert!(took_over > 0.0, "no eviction after the leader left ({written2} written)");
    let (bytes, _) = true_usage(&redis, "a:").await;
    assert!(bytes as f64 <= 2.0 * 1024.0 * 1024.0 * 1.1, "a uses {bytes}");
}

/// allkeys-lfu evicts by access frequency where the node tracks it (an LFU
/// maxmemory-policy), and says on /ready that it evicts by idle time where
/// it does not.
#[tokio::test]
async fn allkeys_lfu_keeps_frequently_read_keys() {
    for backend_policy in ["allkeys-lfu", "noeviction"] {
        let redis = RedisServer::start_with(&["--maxmemory-policy", backend_policy]);
        let proxy = TestProxy::start(&config(&redis, ", memory_quota: 1MiB, eviction: allkeys-lfu", "")).await;
        let mut a = login(&proxy, "a").await;
        assert_eq!(write(&mut a, "hot:", 0..200, 1000).await, (200, 0));
        // Read the hot keys often: their LFU counters (logarithmic) climb.
        for _ in 0..50 {
            assert_eq!(hits(&mut a, "hot:", 200).await, 200);
        }
        write(&mut a, "cold:", 0..3000, 1000).await;
        settled_usage(&proxy, "a").await;
        let hot = hits(&mut a, "hot:", 200).await;
        let (_, ready) = http_get(proxy.admin_addr().unwrap(), "/ready").await;
        println!("backend {backend_policy}: {hot} of 200 hot keys kept");
        if backend_policy == "allkeys-lfu" {
            // Sampled eviction, as Redis's: most, not necessarily all, of the hot keys stay.
            assert!(hot >= 150, "LFU evicted frequently read keys: {hot} of 200 left");
            assert!(!ready.contains("evicts by idle time"), "{ready}");
        } else {
            assert!(ready.contains("tenant 'a' (allkeys-lfu) evicts by idle time instead"), "{ready}");
        }
        let (bytes, _) = true_usage(&redis, "a:").await;
        assert!(bytes as f64 <= 1024.0 * 1024.0 * 1.1, "a uses {bytes}");
    }
}
