//! What each INFO field of Redis becomes through tenantry: the server's own
//! value, the tenant's figure, or a neutral value of the same type. The
//! README's INFO table says the same; a field Redis adds later falls to its
//! section's rule (`unlisted`), so a new counter of the whole server never
//! leaks before someone decides about it.

/// One field's rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// A fact about the server, as the backend says it.
    Pass,
    /// Computed by tenantry for the tenant.
    Tenant(Figure),
    /// Would tell about other tenants or the server's host: a value of the
    /// field's type that says nothing (`neutral`).
    Neutral,
}

/// The tenant figures INFO can show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Figure {
    /// Clients see a standalone server, whatever the backend's kind.
    RedisMode,
    ProcessId,
    TcpPort,
    ConnectedClients,
    MaxClients,
    BlockedClients,
    TrackingClients,
    UsedMemory,
    UsedMemoryHuman,
    /// A ratio of the tenant's memory to itself: always 100%.
    FullPercent,
    MaxMemory,
    MaxMemoryHuman,
    MaxMemoryPolicy,
    CommandsProcessed,
    OpsPerSec,
    NetInput,
    NetOutput,
    ExpiredKeys,
    EvictedKeys,
    Hits,
    Misses,
    PubsubPatterns,
    ErrorReplies,
    ClusterEnabled,
}

/// The rule for `field` of `section` (lower case, as `INFO <section>` names it).
pub fn rule(section: &str, field: &str) -> Rule {
    use Figure::*;
    let figure = match (section, field) {
        ("server", "redis_mode") => RedisMode,
        ("server", "process_id") => ProcessId,
        ("server", "tcp_port") => TcpPort,
        // Paths on the server's host.
        ("server", "executable" | "config_file") => return Rule::Neutral,
        ("clients", "connected_clients") => ConnectedClients,
        ("clients", "maxclients") => MaxClients,
        ("clients", "blocked_clients") => BlockedClients,
        ("clients", "tracking_clients") => TrackingClients,
        // The tenant's memory is its keys: no allocator, RSS or startup
        // overhead of its own, so each of these is the same figure.
        ("memory", "used_memory" | "used_memory_rss" | "used_memory_peak" | "used_memory_dataset") => UsedMemory,
        ("memory", "used_memory_human" | "used_memory_rss_human" | "used_memory_peak_human") => UsedMemoryHuman,
        ("memory", "used_memory_peak_perc" | "used_memory_dataset_perc") => FullPercent,
        ("memory", "maxmemory") => MaxMemory,
        ("memory", "maxmemory_human") => MaxMemoryHuman,
        ("memory", "maxmemory_policy") => MaxMemoryPolicy,
        ("memory", "total_system_memory" | "total_system_memory_human" | "mem_allocator") => return Rule::Pass,
        ("persistence", "rdb_changes_since_last_save") => return Rule::Neutral,
        ("stats", "total_commands_processed") => CommandsProcessed,
        ("stats", "instantaneous_ops_per_sec") => OpsPerSec,
        ("stats", "total_net_input_bytes") => NetInput,
        ("stats", "total_net_output_bytes") => NetOutput,
        ("stats", "expired_keys") => ExpiredKeys,
        ("stats", "evicted_keys") => EvictedKeys,
        ("stats", "keyspace_hits") => Hits,
        ("stats", "keyspace_misses") => Misses,
        ("stats", "pubsub_patterns") => PubsubPatterns,
        ("stats", "total_error_replies") => ErrorReplies,
        ("cluster", "cluster_enabled") => ClusterEnabled,
        _ => return unlisted(section),
    };
    Rule::Tenant(figure)
}

/// Fields not named above: the server, persistence, replication, modules
/// and cluster sections describe the server; clients, memory, stats and CPU
/// describe everyone's use of it.
fn unlisted(section: &str) -> Rule {
    match section {
        "clients" | "memory" | "stats" | "cpu" => Rule::Neutral,
        _ => Rule::Pass,
    }
}

/// A value of the same type as `value` that says nothing: 0 for a count,
/// 0 with as many decimals for a ratio, `0B` for a size, empty for a path.
pub fn neutral(field: &str, value: &str) -> String {
    if field.ends_with("_human") {
        return "0B".into();
    }
    let (number, percent) = match value.strip_suffix('%') {
        Some(n) => (n, "%"),
        None => (value, ""),
    };
    if number.parse::<i64>().is_ok() {
        return format!("0{percent}");
    }
    if let (Ok(_), Some((_, decimals))) = (number.parse::<f64>(), number.split_once('.')) {
        return format!("0.{}{percent}", "0".repeat(decimals.len()));
    }
    String::new()
}

/// Bytes as Redis writes them for humans (`bytesToHuman`): `942.98K`.
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["K", "M", "G", "T", "P", "E"];
    if bytes < 1024 {
        return format!("{bytes}B");
    }
    let mut value = bytes as f64 / 1024.0;
    for unit in UNITS {
        if value < 1024.0 || unit == "E" {
            return format!("{value:.2}{unit}");
        }
        value /= 1024.0;
    }
    unreachable!("the last unit always returns")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn neutral_values_keep_the_type() {
        assert_eq!(neutral("total_reads_processed", "5"), "0");
        assert_eq!(neutral("used_cpu_sys", "0.004525"), "0.000000");
        assert_eq!(neutral("allocator_frag_ratio", "1.08"), "0.00");
        assert_eq!(neutral("used_memory_peak_perc", "100.19%"), "0.00%");
        assert_eq!(neutral("used_memory_lua_human", "32.00K"), "0B");
        assert_eq!(neutral("executable", "/usr/bin/redis-server"), "");
    }

    #[test]
    fn sizes_are_written_as_redis_writes_them() {
        assert_eq!(human(0), "0B");
        assert_eq!(human(1023), "1023B");
        assert_eq!(human(965_608), "942.98K");
        assert_eq!(human(6_291_456), "6.00M");
        assert_eq!(human(25_276_071_936), "23.54G");
    }

    #[test]
    fn new_fields_fall_to_their_sections_rule() {
        assert_eq!(rule("stats", "some_counter_of_redis_8"), Rule::Neutral);
        assert_eq!(rule("server", "some_fact_of_redis_8"), Rule::Pass);
        assert_eq!(rule("memory", "used_memory"), Rule::Tenant(Figure::UsedMemory));
    }
}
