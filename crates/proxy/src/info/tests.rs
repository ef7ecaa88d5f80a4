use super::*;

/// `INFO everything` of a Redis 7.0.15, as `redis-cli` printed it.
const REDIS_7_0: &str = include_str!("redis-7.0-everything.txt");

fn tenant() -> TenantInfo {
    TenantInfo {
        tenant: "app".into(),
        namespace: "app:".into(),
        backend: "shared".into(),
        tcp_port: Some(6379),
        connected_clients: 3,
        max_clients: 100,
        used_memory: 6_291_456,
        quota: Some((8_388_608, "allkeys-lru")),
        commands: vec![("set", 2), ("get", 5), ("hello", 0)],
        errors: vec![("WRONGTYPE", 1), ("ERR", 2)],
        hits: 4,
        misses: 1,
        keyspace: Some((10, 4, 1500)),
        ..TenantInfo::default()
    }
}

fn names(text: &str) -> Vec<String> {
    text.split("\r\n").filter(|l| !l.is_empty()).map(|l| l.split(':').next().unwrap().to_string()).collect()
}

fn value<'a>(text: &'a str, field: &str) -> &'a str {
    text.split("\r\n").find_map(|l| l.strip_prefix(field).and_then(|r| r.strip_prefix(':'))).unwrap_or_else(|| {
        panic!("no {field} in {text}");
    })
}

#[test]
fn the_fixed_sections_have_redis_fields_in_redis_order() {
    let out = render(&[REDIS_7_0.to_string()], &Wanted::parse(&["everything"]), &tenant());
    let listing = ["# Commandstats", "# Errorstats", "# Latencystats", "# Keyspace"];
    let fixed = |text: &str| -> Vec<String> {
        let mut keep = true;
        names(text)
            .into_iter()
            .filter(|n| {
                if n.starts_with("# ") {
                    keep = !listing.contains(&n.as_str());
                    return true;
                }
                keep
            })
            .collect()
    };
    assert_eq!(fixed(&out), fixed(&REDIS_7_0.replace('\n', "\r\n")));
}

#[test]
fn tenant_figures_replace_the_servers() {
    let out = render(&[REDIS_7_0.to_string()], &Wanted::parse(&[] as &[&str]), &tenant());
    assert_eq!(value(&out, "redis_version"), "7.0.15", "a server fact");
    assert_eq!(value(&out, "arch_bits"), "64");
    assert_eq!(value(&out, "tcp_port"), "6379");
    assert_eq!(value(&out, "process_id"), std::process::id().to_string());
    assert_eq!(value(&out, "executable"), "");
    assert_eq!(value(&out, "connected_clients"), "3");
    assert_eq!(value(&out, "used_memory"), "6291456");
    assert_eq!(value(&out, "used_memory_human"), "6.00M");
    assert_eq!(value(&out, "maxmemory"), "8388608");
    assert_eq!(value(&out, "maxmemory_human"), "8.00M");
    assert_eq!(value(&out, "maxmemory_policy"), "allkeys-lru");
    assert_eq!(value(&out, "allocator_frag_ratio"), "0.00");
    assert_eq!(value(&out, "total_commands_processed"), "7");
    assert_eq!(value(&out, "keyspace_hits"), "4");
    assert_eq!(value(&out, "total_error_replies"), "3");
    assert_eq!(value(&out, "total_reads_processed"), "0", "another tenant's activity");
    assert_eq!(value(&out, "used_cpu_user"), "0.000000");
    assert_eq!(value(&out, "db0"), "keys=10,expires=4,avg_ttl=1500");
    assert_eq!(value(&out, "errorstat_ERR"), "count=2");
    assert!(!out.contains("# Commandstats") && !out.contains("# Latencystats"), "not in the default sections");
    assert!(!out.contains("# Tenantry"), "only when named");
}

#[test]
fn a_tenant_without_quota_has_the_backends_maxmemory_summed_over_nodes() {
    let t = TenantInfo { quota: None, ..tenant() };
    let node = REDIS_7_0.replace("maxmemory:0\n", "maxmemory:1000\n");
    let out = render(&[node.clone(), node], &Wanted::parse(&["memory"]), &t);
    assert_eq!(value(&out, "maxmemory"), "2000");
    assert_eq!(value(&out, "maxmemory_policy"), "noeviction");
}

#[test]
fn sections_are_chosen_as_redis_chooses_them() {
    let t = tenant();
    let one = render(&[REDIS_7_0.to_string()], &Wanted::parse(&["CPU", "commandstats"]), &t);
    assert!(one.starts_with("# CPU\r\nused_cpu_sys:"), "{one}");
    assert!(
        one.ends_with(
            "# Commandstats\r\n\
        cmdstat_get:calls=5,usec=0,usec_per_call=0.00,rejected_calls=0,failed_calls=0\r\n\
        cmdstat_set:calls=2,usec=0,usec_per_call=0.00,rejected_calls=0,failed_calls=0\r\n"
        ),
        "{one}"
    );
    let all = render(&[REDIS_7_0.to_string()], &Wanted::parse(&["all"]), &t);
    assert!(all.contains("# Latencystats\r\n\r\n# Cluster\r\ncluster_enabled:0\r\n"), "{all}");
    let tenantry = render(&[REDIS_7_0.to_string()], &Wanted::parse(&["tenantry"]), &t);
    assert_eq!(value(&tenantry, "tenant"), "app");
    assert_eq!(render(&[REDIS_7_0.to_string()], &Wanted::parse(&["nosuch"]), &t), "");
    let empty = TenantInfo { keyspace: Some((0, 0, 0)), ..tenant() };
    assert_eq!(render(&[REDIS_7_0.to_string()], &Wanted::parse(&["keyspace"]), &empty), "# Keyspace\r\n");
}

#[test]
fn a_later_versions_keyspace_fields_are_kept() {
    let node = REDIS_7_0.replace("db0:keys=1,expires=0,avg_ttl=0", "db0:keys=1,expires=0,avg_ttl=0,subexpiry=0");
    let out = render(&[node], &Wanted::parse(&["keyspace"]), &tenant());
    assert_eq!(value(&out, "db0"), "keys=10,expires=4,avg_ttl=1500,subexpiry=0");
}
