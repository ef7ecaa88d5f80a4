//! INFO as a tenant sees it. The backend's own `INFO everything` is the
//! template: its sections and fields, in its order and format, so what a
//! client or tool parses is what that Redis version writes. Each field is
//! passed through, replaced by the tenant's figure, or given a neutral value
//! (`fields.rs` decides which); the sections that list things (commands,
//! errors, latencies, databases) are written from the tenant's telemetry.
//! No I/O here: the session fetches the template and the figures.

mod fields;

pub use fields::human;
use fields::{neutral, rule, Figure, Rule};
use std::fmt::Write;

/// The sections `INFO` is asked for, as Redis 7 reads its arguments.
#[derive(Debug, Clone, Default)]
pub struct Wanted {
    default: bool,
    all: bool,
    everything: bool,
    /// Sections named one by one, in lower case.
    named: Vec<String>,
}

/// Redis's own sections; `all` is these, `everything` adds modules' own.
const REDIS_SECTIONS: &[&str] = &[
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

/// What a bare `INFO` (or `INFO default`) gives.
const DEFAULT_SECTIONS: &[&str] = &[
    "server",
    "clients",
    "memory",
    "persistence",
    "stats",
    "replication",
    "cpu",
    "modules",
    "errorstats",
    "cluster",
    "keyspace",
];

impl Wanted {
    pub fn parse(args: &[impl AsRef<[u8]>]) -> Wanted {
        let mut wanted = Wanted { default: args.is_empty(), ..Wanted::default() };
        for arg in args {
            let name = String::from_utf8_lossy(arg.as_ref()).to_ascii_lowercase();
            match name.as_str() {
                "default" => wanted.default = true,
                "all" => wanted.all = true,
                "everything" => wanted.everything = true,
                _ => wanted.named.push(name),
            }
        }
        wanted
    }

    /// Whether `section` was asked for by its own name.
    pub fn names(&self, section: &str) -> bool {
        self.named.iter().any(|n| n == section)
    }

    fn includes(&self, section: &str) -> bool {
        let redis_own = REDIS_SECTIONS.contains(&section);
        self.everything
            || (self.all && redis_own)
            || (self.default && DEFAULT_SECTIONS.contains(&section))
            || self.names(section)
    }
}

/// The tenant's figures, taken when INFO arrived.
#[derive(Debug, Clone, Default)]
pub struct TenantInfo {
    pub tenant: String,
    pub namespace: String,
    pub backend: String,
    /// The port tenantry's listener took the client on.
    pub tcp_port: Option<u16>,
    pub connected_clients: u64,
    pub max_clients: u64,
    pub blocked_clients: u64,
    pub tracking_clients: u64,
    /// Estimated bytes of the tenant's keys (measured plus writes since).
    pub used_memory: u64,
    /// The tenant's memory quota and eviction policy, if it has one.
    pub quota: Option<(u64, &'static str)>,
    pub commands: Vec<(&'static str, u64)>,
    pub errors: Vec<(&'static str, u64)>,
    pub ops_per_sec: u64,
    pub net_input: u64,
    pub net_output: u64,
    pub hits: u64,
    pub misses: u64,
    pub evicted: u64,
    pub expired: u64,
    pub patterns: u64,
    /// keys, keys with a TTL, their mean TTL in ms; `None` if not counted.
    pub keyspace: Option<(u64, u64, u64)>,
}

/// INFO's text for the tenant. `nodes`: each backend node's own
/// `INFO everything`, the first one the template (a cluster's or ring's
/// maxmemory is summed over them).
pub fn render(nodes: &[String], wanted: &Wanted, t: &TenantInfo) -> String {
    let template = nodes.first().map_or("", String::as_str);
    let mut out = String::new();
    for section in sections(template) {
        let name = section.title.to_ascii_lowercase();
        if !wanted.includes(&name) {
            continue;
        }
        begin(&mut out, section.title);
        match name.as_str() {
            "commandstats" => commandstats(&mut out, t),
            "errorstats" => errorstats(&mut out, t),
            // tenantry does not time each command: empty, as Redis's with
            // `latency-tracking no`.
            "latencystats" => {}
            "keyspace" => keyspace(&mut out, section.lines.first().copied(), t),
            _ => {
                for line in &section.lines {
                    field(&mut out, &name, line, nodes, t);
                }
            }
        }
    }
    if wanted.names("tenantry") {
        begin(&mut out, "Tenantry");
        let _ = write!(
            out,
            "tenantry_version:{}\r\ntenant:{}\r\nnamespace:{}\r\nbackend:{}\r\n",
            env!("CARGO_PKG_VERSION"),
            t.tenant,
            t.namespace,
            t.backend
        );
    }
    out
}

struct Section<'a> {
    title: &'a str,
    lines: Vec<&'a str>,
}

fn sections(text: &str) -> Vec<Section<'_>> {
    let mut out: Vec<Section> = Vec::new();
    for line in text.split("\r\n").flat_map(|l| l.split('\n')) {
        if let Some(title) = line.strip_prefix("# ") {
            out.push(Section { title: title.trim(), lines: Vec::new() });
        } else if let (Some(section), false) = (out.last_mut(), line.is_empty()) {
            section.lines.push(line);
        }
    }
    out
}

fn begin(out: &mut String, title: &str) {
    if !out.is_empty() {
        out.push_str("\r\n");
    }
    let _ = write!(out, "# {title}\r\n");
}

fn field(out: &mut String, section: &str, line: &str, nodes: &[String], t: &TenantInfo) {
    let Some((name, value)) = line.split_once(':') else {
        out.push_str(line);
        out.push_str("\r\n");
        return;
    };
    let value = match rule(section, name) {
        Rule::Pass => value.to_string(),
        Rule::Neutral => neutral(name, value),
        Rule::Tenant(figure) => tenant_value(figure, value, nodes, t),
    };
    let _ = write!(out, "{name}:{value}\r\n");
}

fn tenant_value(figure: Figure, backend: &str, nodes: &[String], t: &TenantInfo) -> String {
    match figure {
        Figure::RedisMode => "standalone".into(),
        Figure::ProcessId => std::process::id().to_string(),
        Figure::TcpPort => t.tcp_port.map_or_else(|| backend.to_string(), |p| p.to_string()),
        Figure::ConnectedClients => t.connected_clients.to_string(),
        Figure::MaxClients => t.max_clients.to_string(),
        Figure::BlockedClients => t.blocked_clients.to_string(),
        Figure::TrackingClients => t.tracking_clients.to_string(),
        Figure::UsedMemory => t.used_memory.to_string(),
        Figure::UsedMemoryHuman => human(t.used_memory),
        Figure::FullPercent => "100.00%".into(),
        Figure::MaxMemory => max_memory(nodes, t).to_string(),
        Figure::MaxMemoryHuman => human(max_memory(nodes, t)),
        Figure::MaxMemoryPolicy => t.quota.map_or_else(|| backend.to_string(), |(_, policy)| policy.to_string()),
        Figure::CommandsProcessed => t.commands.iter().map(|(_, n)| n).sum::<u64>().to_string(),
        Figure::OpsPerSec => t.ops_per_sec.to_string(),
        Figure::NetInput => t.net_input.to_string(),
        Figure::NetOutput => t.net_output.to_string(),
        Figure::ExpiredKeys => t.expired.to_string(),
        Figure::EvictedKeys => t.evicted.to_string(),
        Figure::Hits => t.hits.to_string(),
        Figure::Misses => t.misses.to_string(),
        Figure::PubsubPatterns => t.patterns.to_string(),
        Figure::ErrorReplies => t.errors.iter().map(|(_, n)| n).sum::<u64>().to_string(),
        Figure::ClusterEnabled => "0".into(),
    }
}

/// The tenant's quota, or the backend's maxmemory summed over its nodes.
fn max_memory(nodes: &[String], t: &TenantInfo) -> u64 {
    if let Some((bytes, _)) = t.quota {
        return bytes;
    }
    nodes
        .iter()
        .filter_map(|text| text.lines().find_map(|l| l.strip_prefix("maxmemory:")))
        .filter_map(|v| v.trim().parse::<u64>().ok())
        .sum()
}

fn commandstats(out: &mut String, t: &TenantInfo) {
    let mut commands = t.commands.clone();
    commands.sort_unstable();
    for (name, calls) in commands.into_iter().filter(|(_, n)| *n > 0) {
        let _ =
            write!(out, "cmdstat_{name}:calls={calls},usec=0,usec_per_call=0.00,rejected_calls=0,failed_calls=0\r\n");
    }
}

fn errorstats(out: &mut String, t: &TenantInfo) {
    let mut errors = t.errors.clone();
    errors.sort_unstable();
    for (code, count) in errors.into_iter().filter(|(_, n)| *n > 0) {
        let _ = write!(out, "errorstat_{code}:count={count}\r\n");
    }
}

/// `db0:keys=..,expires=..,avg_ttl=..` (and any further field the
/// backend's version writes, as 0); no line for an empty tenant, as Redis.
fn keyspace(out: &mut String, backend_line: Option<&str>, t: &TenantInfo) {
    let Some((keys, expires, avg_ttl)) = t.keyspace.filter(|k| k.0 > 0) else { return };
    let _ = write!(out, "db0:keys={keys},expires={expires},avg_ttl={avg_ttl}");
    let backend_fields = backend_line.and_then(|l| l.split_once(':')).map_or("", |(_, v)| v);
    for name in backend_fields.split(',').filter_map(|f| f.split_once('=')).map(|(n, _)| n) {
        if !matches!(name, "keys" | "expires" | "avg_ttl") {
            let _ = write!(out, ",{name}=0");
        }
    }
    out.push_str("\r\n");
}

#[cfg(test)]
mod tests;
