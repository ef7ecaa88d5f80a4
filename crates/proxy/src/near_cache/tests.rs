use super::*;
use crate::telemetry::Families;
use std::time::Duration;

fn cache(max_bytes: usize) -> Arc<NearCache> {
    let config = tenantry_config::NearCache { max_bytes, max_staleness: Duration::from_millis(100), keyspaces: None };
    let metrics = Arc::new(TenantMetrics::new("t", Arc::new(Families::new()), 20));
    Arc::new(NearCache::new(config, Namespace::new("t:").unwrap(), metrics))
}

/// As if every tracker had its PING answered just now.
fn heard_now(c: &NearCache) {
    c.horizon_us.store(c.micros(Instant::now()).max(1), Ordering::Release);
}

fn get(c: &Arc<NearCache>, key: &[u8], barrier: Option<Instant>) -> Lookup {
    let key = Bytes::copy_from_slice(key);
    c.lookup(&key, Protocol::Resp2, 7, std::slice::from_ref(&key), barrier)
}

fn fill_of(l: Lookup) -> Fill {
    match l {
        Lookup::Miss(Some(f)) => f,
        Lookup::Miss(None) => panic!("a miss that does not fill"),
        Lookup::Hit(r) => panic!("a hit: {r:?}"),
    }
}

fn hit(l: Lookup) -> Bytes {
    match l {
        Lookup::Hit(r) => r,
        _ => panic!("expected a hit"),
    }
}

#[test]
fn nothing_is_served_or_filled_before_the_trackers_are_heard() {
    let c = cache(1 << 20);
    assert!(matches!(get(&c, b"k", None), Lookup::Miss(None)));
    heard_now(&c);
    fill_of(get(&c, b"k", None)).land(b"$1\r\nv\r\n");
    assert_eq!(hit(get(&c, b"k", None)), Bytes::from_static(b"$1\r\nv\r\n"));
    // Another protocol or command is another entry.
    let resp3 = c.lookup(&Bytes::from_static(b"k"), Protocol::Resp3, 7, &[Bytes::from_static(b"k")], None);
    assert!(matches!(resp3, Lookup::Miss(_)));
}

#[test]
fn a_horizon_older_than_max_staleness_serves_nothing() {
    let c = cache(1 << 20);
    heard_now(&c);
    fill_of(get(&c, b"k", None)).land(b"$1\r\nv\r\n");
    std::thread::sleep(Duration::from_millis(160));
    let old = c.micros(Instant::now()) - 150_000;
    c.horizon_us.store(old, Ordering::Release);
    assert!(matches!(get(&c, b"k", None), Lookup::Miss(None)));
}

#[test]
fn a_key_that_changes_while_its_fill_is_in_flight_is_not_kept() {
    let c = cache(1 << 20);
    heard_now(&c);
    let fill = fill_of(get(&c, b"k", None));
    // Only one fill at a time.
    assert!(matches!(get(&c, b"k", None), Lookup::Miss(None)));
    c.invalidate(b"t:k");
    fill.land(b"$3\r\nold\r\n");
    drop(fill);
    assert!(matches!(get(&c, b"k", None), Lookup::Miss(Some(_))), "not kept, and a new fill may start");
}

#[test]
fn invalidations_and_flushes_drop_entries_and_other_tenants_keys_are_ignored() {
    let c = cache(1 << 20);
    heard_now(&c);
    fill_of(get(&c, b"a", None)).land(b"$1\r\n1\r\n");
    fill_of(get(&c, b"b", None)).land(b"$1\r\n2\r\n");
    c.invalidate(b"u:a");
    hit(get(&c, b"a", None));
    c.invalidate(b"t:a");
    assert!(matches!(get(&c, b"a", None), Lookup::Miss(_)));
    hit(get(&c, b"b", None));
    c.clear();
    assert_eq!(c.size(), (0, 0));
}

#[test]
fn errors_are_not_kept_and_a_failed_fill_clears_its_mark() {
    let c = cache(1 << 20);
    heard_now(&c);
    fill_of(get(&c, b"k", None)).land(b"-MOVED 1 127.0.0.1:7000\r\n");
    let lost = fill_of(get(&c, b"k", None));
    drop(lost);
    fill_of(get(&c, b"k", None)).land(b"$1\r\nv\r\n");
    hit(get(&c, b"k", None));
}

#[test]
fn a_writer_is_served_only_once_a_ping_after_its_write_is_answered() {
    let c = cache(1 << 20);
    heard_now(&c);
    fill_of(get(&c, b"k", None)).land(b"$1\r\nv\r\n");
    std::thread::sleep(Duration::from_millis(2));
    let answered = Instant::now();
    assert!(matches!(get(&c, b"k", Some(answered)), Lookup::Miss(None)));
    std::thread::sleep(Duration::from_millis(2));
    heard_now(&c);
    hit(get(&c, b"k", Some(answered)));
}

#[test]
fn the_oldest_entries_go_when_the_cache_is_full() {
    let value = vec![b'x'; 300];
    let reply: Vec<u8> = [b"$300\r\n".as_slice(), &value, b"\r\n"].concat();
    let c = cache(1000);
    heard_now(&c);
    for key in [&b"a"[..], b"b", b"c", b"d"] {
        fill_of(get(&c, key, None)).land(&reply);
    }
    let (entries, bytes) = c.size();
    assert!(bytes <= 1000 && entries == 2, "{entries} entries, {bytes} bytes");
    assert!(matches!(get(&c, b"a", None), Lookup::Miss(_)));
    hit(get(&c, b"d", None));
}

#[test]
fn churn_below_the_byte_bound_does_not_grow_the_eviction_queue() {
    let c = cache(1 << 20);
    for _ in 0..10_000 {
        // Heard at each turn: on a loaded machine the loop can outlast max_staleness.
        heard_now(&c);
        fill_of(get(&c, b"k", None)).land(b"$1\r\nv\r\n");
        c.invalidate(b"t:k");
    }
    assert!(c.queued() <= 66, "{} keys queued", c.queued());
}
