use super::*;
use std::path::PathBuf;

const GOOD: &str = r#"
listen: 127.0.0.1:6379
admin: 127.0.0.1:9121
backends:
  local:
    kind: standalone
    nodes: ["127.0.0.1:7000"]
    password_env: BACKEND_PW
tenants:
  app:
    backend: local
    namespace: "app:"
  demo:
    backend: local
    namespace: "demo:"
    auth: { username: demo, password: demo-password }
default_tenant: app
"#;

fn env(name: &str) -> Option<String> {
    (name == "BACKEND_PW").then(|| "s3cret".to_string())
}

fn errors(text: &str) -> Vec<String> {
    match parse(text, &PathBuf::from("t.yaml"), &env) {
        Ok(_) => vec![],
        Err(e) => e.0.iter().map(|e| e.to_string()).collect(),
    }
}

#[test]
fn a_good_config_resolves_everything() {
    let c = parse(GOOD, &PathBuf::from("t.yaml"), &env).unwrap();
    assert_eq!(c.listen, vec![Listener::plain("127.0.0.1:6379".parse().unwrap())]);
    let b = &c.backends[&BackendName::new("local")];
    assert_eq!(b.auth.as_ref().unwrap().password.expose(), b"s3cret");
    assert_eq!(b.connections, 1, "the default");
    let demo = &c.tenants[&TenantId::new("demo")];
    assert_eq!(demo.namespace.as_bytes(), b"demo:");
    assert_eq!(demo.auth.as_ref().unwrap().password.expose(), b"demo-password");
    assert_eq!(c.default_tenant, Some(TenantId::new("app")));
}

#[test]
fn unknown_fields_are_errors_with_a_line() {
    let text = GOOD.replace("    namespace: \"app:\"", "    namespace: \"app:\"\n    namespaec: x");
    let errs = errors(&text);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(errs[0].starts_with("t.yaml:13:5: unknown field `namespaec`"), "{errs:?}");
}

#[test]
fn every_semantic_error_is_reported_with_file_line_and_field() {
    let text = GOOD
        .replace("namespace: \"app:\"", "namespace: \"a{pp:\"")
        .replace("backend: local\n    namespace: \"demo:\"", "backend: nowhere\n    namespace: \"demo:\"")
        .replace("default_tenant: app", "default_tenant: ghost");
    let errs = errors(&text);
    assert_eq!(errs.len(), 3, "{errs:?}");
    assert!(errs[0].starts_with("t.yaml:12:16: tenants.app.namespace") && errs[0].contains("hash tag"), "{errs:?}");
    assert!(errs[1].starts_with("t.yaml:14:14:") && errs[1].contains("tenants.demo.backend"), "{errs:?}");
    assert!(errs[2].contains("default_tenant") && errs[2].contains("ghost"), "{errs:?}");
}

#[test]
fn overlapping_namespaces_on_one_backend_are_refused() {
    let errs = errors(&GOOD.replace("namespace: \"demo:\"", "namespace: \"app:x:\""));
    assert!(errs.iter().any(|e| e.contains("overlaps tenant app")), "{errs:?}");
}

#[test]
fn secrets_come_from_files_and_missing_env_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("pw"), "from-file\n").unwrap();
    let file = dir.path().join("c.yaml");
    let text = GOOD.replace("password: demo-password", "password_file: pw");
    let c = parse(&text, &file, &env).unwrap();
    assert_eq!(c.tenants[&TenantId::new("demo")].auth.as_ref().unwrap().password.expose(), b"from-file");

    let errs = errors(&GOOD.replace("BACKEND_PW", "NOPE"));
    assert!(errs[0].contains("backends.local.password_env") && errs[0].contains("NOPE is not set"), "{errs:?}");
    let errs = errors(&GOOD.replace("password: demo-password", "password: a, password_env: BACKEND_PW"));
    assert!(errs[0].contains("only one of"), "{errs:?}");
}

#[test]
fn sizes_and_limits() {
    assert_eq!(parse_size("64KiB"), Some(65536));
    assert_eq!(parse_size("1000"), Some(1000));
    assert_eq!(parse_size("1 MiB"), Some(1 << 20));
    assert_eq!(parse_size("12XB"), None);
    let errs = errors(&format!("{GOOD}limits: {{ max_bulk_bytes: 1GiB }}\n"));
    assert!(errs[0].contains("limits.max_bulk_bytes") && errs[0].contains("above Redis's own limit"), "{errs:?}");
}

const POLICY: &str = r#"
listen: 127.0.0.1:6379
backends:
  local: { kind: standalone, nodes: ["127.0.0.1:7000"] }
tenants:
  app:
    backend: local
    namespace: "app:"
    rate_limit: { ops_per_sec: 100, burst: 200, bytes_per_sec: 1MiB, on_exceed: delay, max_delay: 20ms, per_connection_ops_per_sec: 50 }
    commands: { allow: ["@read", "@write", "SET"], deny: [KEYS, "@dangerous"] }
    limits: { max_key_bytes: 1KiB, max_value_bytes: 1MiB, max_connections: 10, max_pipeline: 100 }
    ttl:
      default: 10m
      max: 24h
      jitter: 10%
      keyspaces:
        session: { default: 30m, jitter: 5% }
cleanup: { keys_per_sec: 1000, batch: 100 }
"#;

#[test]
fn tenant_policy_is_parsed() {
    let c = parse(POLICY, &PathBuf::from("t.yaml"), &env).unwrap();
    let t = &c.tenants[&TenantId::new("app")];
    let r = t.rate_limit.unwrap();
    assert_eq!(r.ops, Some(Quota { per_sec: 100, burst: 200 }));
    assert_eq!(r.bytes, Some(Quota { per_sec: 1 << 20, burst: 1 << 20 }));
    assert_eq!(r.on_exceed, OnExceed::Delay(std::time::Duration::from_millis(20)));
    assert_eq!(r.per_connection_ops, Some(Quota { per_sec: 50, burst: 50 }));
    assert_eq!(t.commands.allow.len(), 3);
    assert!(matches!(&t.commands.deny[1], CommandRule::Category { name, .. } if name == "dangerous"));
    assert_eq!(t.limits.max_key_bytes, Some(1024));
    assert_eq!(t.limits.max_connections, Some(10));
    assert_eq!(t.ttl.tenant.jitter_percent, 10);
    let session = t.ttl.rule_for(b"session:42");
    assert_eq!(session.default, Some(std::time::Duration::from_secs(1800)));
    assert_eq!(session.max, Some(std::time::Duration::from_secs(86400)), "inherited from the tenant");
    assert_eq!(session.jitter_percent, 5);
    assert_eq!(t.ttl.rule_for(b"other:1").jitter_percent, 10);
    assert_eq!(c.cleanup, Cleanup { keys_per_sec: 1000, batch: 100 });
}

#[test]
fn bad_policy_values_are_reported() {
    let text = POLICY
        .replace("on_exceed: delay", "on_exceed: wait")
        .replace("deny: [KEYS,", "deny: [NOPE,")
        .replace("\"@read\"", "\"@reading\"")
        .replace("jitter: 10%", "jitter: 150%")
        .replace("default: 10m", "default: 48h");
    let errs = errors(&text);
    assert_eq!(errs.len(), 5, "{errs:?}");
    for needle in [
        "on_exceed",
        "\"NOPE\" is not a Redis command",
        "unknown ACL category \"@reading\"",
        "jitter",
        "default is longer than max",
    ] {
        assert!(errs.iter().any(|e| e.contains(needle)), "{needle}: {errs:?}");
    }
}

#[test]
fn namespaces_may_not_reach_tenantrys_own_keys() {
    for bad in ["tenantry:", "tenantry:x:", "ten"] {
        let errs = errors(&GOOD.replace("namespace: \"app:\"", &format!("namespace: \"{bad}\"")));
        assert!(errs.iter().any(|e| e.contains("where tenantry keeps its own keys")), "{bad}: {errs:?}");
    }
}

#[test]
fn memory_quotas_and_their_settings() {
    let text = GOOD.replace(
        "    namespace: \"app:\"\n",
        "    namespace: \"app:\"\n    memory_quota: 2GiB\n    eviction: allkeys-lfu\n",
    ) + "quotas: { scan_keys_per_sec: 1000, sample_one_in: 4, eviction_samples: 10, refresh: 250ms }\n";
    let c = parse(&text, &PathBuf::from("t.yaml"), &env).unwrap();
    let app = &c.tenants[&TenantId::new("app")];
    assert_eq!(app.memory, Some(MemoryQuota { bytes: 2 << 30, eviction: Eviction::AllKeysLfu }));
    assert_eq!(c.tenants[&TenantId::new("demo")].memory, None);
    assert_eq!(c.quotas.sample_one_in, 4);
    assert_eq!(c.quotas.refresh, std::time::Duration::from_millis(250));
    // The policy defaults to Redis's default, noeviction.
    let text = GOOD.replace("    namespace: \"app:\"\n", "    namespace: \"app:\"\n    memory_quota: 1MiB\n");
    let c = parse(&text, &PathBuf::from("t.yaml"), &env).unwrap();
    assert_eq!(c.tenants[&TenantId::new("app")].memory.unwrap().eviction, Eviction::NoEviction);
}

#[test]
fn bad_memory_settings_are_reported() {
    let text = GOOD
        .replace("    namespace: \"app:\"\n", "    namespace: \"app:\"\n    memory_quota: 1MiB\n    eviction: lru\n")
        .replace("    namespace: \"demo:\"\n", "    namespace: \"demo:\"\n    eviction: allkeys-lru\n")
        + "quotas: { sample_one_in: 0 }\n";
    let e = errors(&text);
    assert!(
        e.iter().any(|e| e.contains("tenants.app.eviction: \"lru\" is not one of noeviction, allkeys-lru")),
        "{e:?}"
    );
    assert!(e.iter().any(|e| e.contains("tenants.demo.eviction: only used with memory_quota")), "{e:?}");
    assert!(e.iter().any(|e| e.contains("quotas.sample_one_in: must be at least 1")), "{e:?}");
}

#[test]
fn cluster_and_ring_backends() {
    let text = GOOD
        .replace("kind: standalone", "kind: cluster\n    topology_refresh: 3s")
        .replace("    namespace: \"app:\"\n", "    namespace: \"app:\"\n    read_from_replicas: prefer\n");
    let c = parse(&text, &PathBuf::from("t.yaml"), &env).unwrap();
    let backend = c.backends.values().next().unwrap();
    assert_eq!(backend.kind, BackendKind::Cluster { topology_refresh: std::time::Duration::from_secs(3) });
    assert_eq!(c.tenants[&TenantId::new("app")].read_from, ReadFrom::Prefer);
    assert_eq!(c.tenants[&TenantId::new("demo")].read_from, ReadFrom::Never);

    let ring = GOOD.replace("kind: standalone", "kind: ring\n    hash: md5\n    hash_tag: \"{}\"");
    let ring = ring.replace("nodes: [\"127.0.0.1:7000\"]", "nodes: [\"127.0.0.1:6390:2 cache-a\", \"127.0.0.1:6391\"]");
    let c = parse(&ring, &PathBuf::from("t.yaml"), &env).unwrap();
    let backend = c.backends.values().next().unwrap();
    assert_eq!(backend.nodes, vec![BackendAddr::new("127.0.0.1:6390"), BackendAddr::new("127.0.0.1:6391")]);
    let BackendKind::Ring(spec) = &backend.kind else { panic!("a ring") };
    assert_eq!(spec.hash, RingHash::Md5);
    assert_eq!(spec.hash_tag, Some(*b"{}"));
    assert_eq!(spec.weights, vec![2, 1]);
    assert_eq!(spec.names, vec!["cache-a".to_string(), "127.0.0.1:6391".to_string()]);
}

#[test]
fn sentinel_backends() {
    let text = GOOD
        .replace(
            "kind: standalone",
            "kind: sentinel\n    master_name: mymaster\n    sentinel_auth: { username: watcher, password: s3cret }",
        )
        .replace("nodes: [\"127.0.0.1:7000\"]", "nodes: [\"127.0.0.1:26379\", \"127.0.0.1:26380\"]")
        .replace("    namespace: \"app:\"\n", "    namespace: \"app:\"\n    read_from_replicas: prefer\n");
    let c = parse(&text, &PathBuf::from("t.yaml"), &env).unwrap();
    let backend = c.backends.values().next().unwrap();
    assert_eq!(backend.nodes.len(), 2, "the sentinels");
    let BackendKind::Sentinel(spec) = &backend.kind else { panic!("a sentinel backend") };
    assert_eq!(spec.master_name, "mymaster");
    assert_eq!(spec.refresh, std::time::Duration::from_secs(10));
    let auth = spec.auth.as_ref().unwrap();
    assert_eq!(auth.username.as_deref(), Some("watcher"));
    assert_eq!(auth.password.expose(), b"s3cret");
    assert_eq!(c.tenants[&TenantId::new("app")].read_from, ReadFrom::Prefer);

    let e = errors(&GOOD.replace("kind: standalone", "kind: sentinel\n    sentinel_auth: { username: watcher }"));
    assert!(e.iter().any(|e| e.contains("master_name: a sentinel backend needs master_name")), "{e:?}");
    assert!(e.iter().any(|e| e.contains("sentinel_auth: sentinel_auth needs a password")), "{e:?}");
    let e = errors(
        &GOOD.replace("kind: standalone", "kind: standalone\n    master_name: m\n    sentinel_auth: { password: x }"),
    );
    assert!(e.iter().any(|e| e.contains("master_name: only a sentinel backend has master_name")), "{e:?}");
    assert!(e.iter().any(|e| e.contains("sentinel_auth: only a sentinel backend has sentinel_auth")), "{e:?}");
}

#[test]
fn bad_cluster_and_ring_settings_are_reported() {
    let text = GOOD
        .replace("kind: standalone", "kind: ring\n    hash: crc99\n    hash_tag: \"{\"\n    topology_refresh: 1s")
        .replace("    namespace: \"app:\"\n", "    namespace: \"app:\"\n    read_from_replicas: sometimes\n")
        .replace("    namespace: \"demo:\"\n", "    namespace: \"demo:\"\n    read_from_replicas: always\n")
        .replace("nodes: [\"127.0.0.1:7000\"]", "nodes: [\"127.0.0.1:7000:0\", \"nohost\"]");
    let e = errors(&text);
    let has = |s: &str| e.iter().any(|e| e.contains(s));
    assert!(has("hash: unknown hash \"crc99\""), "{e:?}");
    assert!(has("hash_tag: a hash tag is two characters"), "{e:?}");
    assert!(has("topology_refresh: only a cluster or sentinel backend has topology_refresh"), "{e:?}");
    assert!(has("read_from_replicas: \"sometimes\" is not one of never, prefer, always"), "{e:?}");
    assert!(has("replicas are known only on a cluster or sentinel backend"), "{e:?}");
    assert!(has("\"127.0.0.1:7000:0\" is not host:port[:weight] [name]"), "{e:?}");
    assert!(has("\"nohost\" is not host:port[:weight] [name]"), "{e:?}");
}

#[test]
fn output_limits_are_global_with_a_tenant_override() {
    let text = format!(
        "{GOOD}limits: {{ output_soft: 4MiB, output_soft_seconds: 5, output_hard: 32MiB, max_pipeline_bytes: 1MiB, request_read_timeout: 2s }}\n"
    );
    let c = parse(&text, &PathBuf::from("t.yaml"), &env).unwrap();
    let out = OutputLimits { soft: 4 << 20, soft_for: std::time::Duration::from_secs(5), hard: 32 << 20 };
    assert_eq!(c.limits.output, out);
    assert_eq!(c.limits.max_pipeline_bytes, 1 << 20);
    assert_eq!(c.limits.request_read_timeout, std::time::Duration::from_secs(2));
    let defaults = parse(GOOD, &PathBuf::from("t.yaml"), &env).unwrap();
    assert_eq!(defaults.limits.output, OutputLimits::default());

    let with_tenant = POLICY.replace("max_pipeline: 100 }", "max_pipeline: 100, output_hard: 16MiB }");
    let c = parse(&with_tenant, &PathBuf::from("t.yaml"), &env).unwrap();
    let t = &c.tenants[&TenantId::new("app")];
    assert_eq!(t.limits.output, Some(OutputLimits { hard: 16 << 20, ..OutputLimits::default() }));

    let errs = errors(&format!("{GOOD}limits: {{ output_soft: 10MiB, output_hard: 1MiB }}\n"));
    assert!(errs[0].contains("limits.output_soft") && errs[0].contains("above output_hard"), "{errs:?}");
    let errs = errors(&POLICY.replace("max_pipeline: 100 }", "max_pipeline: 100, output_soft: 100MiB }"));
    assert!(errs[0].contains("tenants.app.limits.output_soft"), "{errs:?}");
    let errs = errors(&format!("{GOOD}limits: {{ max_pipeline_bytes: 0 }}\n"));
    assert!(errs[0].contains("limits.max_pipeline_bytes") && errs[0].contains("at least 1 byte"), "{errs:?}");
}

#[test]
fn tls_listeners_backends_and_certificate_tenants() {
    let dir = tempfile::tempdir().unwrap();
    for f in ["s.crt", "s.key", "ca.crt"] {
        std::fs::write(dir.path().join(f), "pem").unwrap();
    }
    let file = dir.path().join("c.yaml");
    let text = r#"
listen:
  - 127.0.0.1:6379
  - { addr: 127.0.0.1:6380, tls: { cert_file: s.crt, key_file: s.key, client_ca_file: ca.crt } }
backends:
  secure: { kind: standalone, nodes: ["redis.internal:6380"], tls: { ca_file: ca.crt, server_name: redis.internal } }
tenants:
  app: { backend: secure, namespace: "app:" }
  pay: { backend: secure, namespace: "pay:", auth: { tls_san: "spiffe://cluster.local/ns/pay/sa/api" } }
  old: { backend: secure, namespace: "old:", auth: { tls_cn: batch, username: old, password: pw } }
"#;
    let c = parse(text, &file, &env).unwrap();
    assert_eq!(c.listen[0], Listener::plain("127.0.0.1:6379".parse().unwrap()));
    let tls = c.listen[1].tls.as_ref().unwrap();
    assert_eq!(tls.cert.cert_file, dir.path().join("s.crt"));
    assert_eq!(tls.client_ca_file.as_deref(), Some(dir.path().join("ca.crt").as_path()));
    let b = c.backends[&BackendName::new("secure")].tls.as_ref().unwrap();
    assert_eq!(b.server_name.as_deref(), Some("redis.internal"));
    assert!(!b.insecure_skip_verify && b.client_cert.is_none());
    let pay = &c.tenants[&TenantId::new("pay")];
    assert_eq!(pay.certificate, Some(CertIdentity::San("spiffe://cluster.local/ns/pay/sa/api".into())));
    assert!(pay.auth.is_none());
    let old = &c.tenants[&TenantId::new("old")];
    assert_eq!(old.certificate, Some(CertIdentity::CommonName("batch".into())));
    assert_eq!(old.auth.as_ref().unwrap().username, "old");

    let check = |t: &str| match parse(t, &file, &env) {
        Ok(_) => vec![],
        Err(e) => e.0.iter().map(|e| e.to_string()).collect::<Vec<_>>(),
    };
    let errs = check(&text.replace("key_file: s.key", "key_file: missing.key"));
    assert!(errs.iter().any(|e| e.contains("listen[1].tls.key_file") && e.contains("missing.key")), "{errs:?}");
    let errs = check(&text.replace(", client_ca_file: ca.crt", ""));
    assert!(errs.iter().any(|e| e.contains("tenants.pay.auth") && e.contains("client certificates")), "{errs:?}");
    let errs = check(&text.replace("tls_cn: batch", "tls_san: \"spiffe://cluster.local/ns/pay/sa/api\""));
    assert!(errs.iter().any(|e| e.contains("already chooses tenant")), "{errs:?}");
    let errs = check(&text.replace("server_name: redis.internal", "server_name: \"not a name\""));
    assert!(errs.iter().any(|e| e.contains("backends.secure.tls.server_name")), "{errs:?}");
    let errs =
        check(&text.replace("server_name: redis.internal", "server_name: redis.internal, insecure_skip_verify: true"));
    assert!(
        errs.iter().any(|e| e.contains("backends.secure.tls.insecure_skip_verify") && e.contains("would not be used")),
        "{errs:?}"
    );
    let errs = check(&text.replace("ca_file: ca.crt, server_name: redis.internal", "cert_file: s.crt"));
    assert!(errs.iter().any(|e| e.contains("cert_file and key_file go together")), "{errs:?}");
}

#[test]
fn coalescing_for_the_tenant_or_some_keyspaces() {
    let text = GOOD.replace("    namespace: \"app:\"\n", "    namespace: \"app:\"\n    coalesce: true\n");
    let c = parse(&text, &PathBuf::from("t.yaml"), &env).unwrap();
    assert_eq!(c.tenants[&TenantId::new("app")].coalesce, Coalesce::All);
    assert_eq!(c.tenants[&TenantId::new("demo")].coalesce, Coalesce::Off);

    let text = GOOD.replace(
        "    namespace: \"app:\"\n",
        "    namespace: \"app:\"\n    coalesce: { keyspaces: [session, user] }\n",
    );
    let c = parse(&text, &PathBuf::from("t.yaml"), &env).unwrap();
    let app = &c.tenants[&TenantId::new("app")].coalesce;
    assert!(app.covers(b"session:42") && app.covers(b"user") && !app.covers(b"cart:1") && !app.covers(b"sessions"));

    let e = errors(
        &GOOD.replace("    namespace: \"app:\"\n", "    namespace: \"app:\"\n    coalesce: { keyspaces: [] }\n"),
    );
    assert!(e.iter().any(|e| e.contains("tenants.app.coalesce.keyspaces: name at least one keyspace")), "{e:?}");
    let tenant_with =
        |setting: &str| GOOD.replace("    namespace: \"app:\"\n", &format!("    namespace: \"app:\"\n    {setting}\n"));
    let off = parse(&tenant_with("coalesce: false"), &PathBuf::from("t.yaml"), &env).unwrap();
    assert_eq!(off.tenants[&TenantId::new("app")].coalesce, Coalesce::Off);
    // Anything else says what is expected.
    let e = errors(&tenant_with("coalesce: maybe"));
    assert!(e.iter().any(|e| e.contains("expected true, false, or { keyspaces: [...] }")), "{e:?}");
    let e = errors(&tenant_with("coalesce: { keyspace: [a] }"));
    assert!(e.iter().any(|e| e.contains("unknown field `keyspace`")), "{e:?}");
}

#[test]
fn near_cache_settings_defaults_and_refusals() {
    let text = GOOD
        .replace("    namespace: \"app:\"\n", "    namespace: \"app:\"\n    near_cache: { keyspaces: [product] }\n");
    let c = parse(&text, &PathBuf::from("t.yaml"), &env).unwrap();
    let n = c.tenants[&TenantId::new("app")].near_cache.clone().unwrap();
    assert_eq!((n.max_bytes, n.max_staleness), (64 << 20, std::time::Duration::from_millis(100)));
    assert!(n.covers(b"product:1") && !n.covers(b"cart:1"));
    assert!(c.tenants[&TenantId::new("demo")].near_cache.is_none());

    let fast =
        GOOD.replace("    namespace: \"app:\"\n", "    namespace: \"app:\"\n    near_cache: { max_staleness: 1ms }\n");
    assert!(errors(&fast).iter().any(|e| e.contains("tenants.app.near_cache.max_staleness: at least 4ms")));
    let ring = fast.replace("kind: standalone", "kind: ring").replace("max_staleness: 1ms", "max_bytes: 1MiB");
    let e = errors(&ring);
    assert!(e.iter().any(|e| e.contains("tenants.app.near_cache: only on a standalone or cluster backend")), "{e:?}");
}

#[test]
fn keyspace_events_are_none_by_default_and_checked_as_redis_letters() {
    let c = parse(GOOD, &PathBuf::from("t.yaml"), &env).unwrap();
    assert_eq!(c.tenants[&TenantId::new("app")].keyspace_events, tenantry_protocol::events::Flags::default());
    let text = GOOD.replace("    namespace: \"app:\"\n", "    namespace: \"app:\"\n    keyspace_events: K$x\n");
    let c = parse(&text, &PathBuf::from("t.yaml"), &env).unwrap();
    assert_eq!(c.tenants[&TenantId::new("app")].keyspace_events.to_config(), "$xK");
    let bad = GOOD.replace("    namespace: \"app:\"\n", "    namespace: \"app:\"\n    keyspace_events: KQ\n");
    let e = errors(&bad);
    assert!(
        e.len() == 1
            && e[0].starts_with("t.yaml:13:22:")
            && e[0].contains("tenants.app.keyspace_events: not a notify-keyspace-events value"),
        "{e:?}"
    );
}

/// GOOD with a second backend and `migrate:` for app.
fn migrating(migrate: &str) -> String {
    GOOD.replace("tenants:\n", "  big:\n    kind: cluster\n    nodes: [\"127.0.0.1:7100\"]\ntenants:\n")
        .replace("    namespace: \"app:\"\n", &format!("    namespace: \"app:\"\n    migrate: {migrate}\n"))
}

#[test]
fn a_migration_is_parsed_with_its_defaults() {
    let c = parse(&migrating("{ to: big, namespace: \"app:v2:\", keep_old: true }"), &PathBuf::from("t.yaml"), &env)
        .unwrap();
    let m = c.tenants[&TenantId::new("app")].migrate.clone().unwrap();
    assert_eq!(m.to, BackendName::new("big"));
    assert_eq!(m.namespace.as_ref().map(|n| n.to_string()), Some("app:v2:".into()));
    assert_eq!((m.keys_per_sec, m.verify_sample, m.keep_old), (Migrate::DEFAULT_KEYS_PER_SEC, 2_000, true));
    let app = &c.tenants[&TenantId::new("app")];
    assert_eq!(
        app.migration_target().map(|(b, n)| (b.to_string(), n.to_string())),
        Some(("big".into(), "app:v2:".into()))
    );
}

#[test]
fn bad_migrations_are_check_errors_with_their_line() {
    let errs = errors(&migrating("{ to: nowhere }"));
    assert!(
        errs.len() == 1 && errs[0].starts_with("t.yaml:16:20:") && errs[0].contains("tenants.app.migrate.to"),
        "{errs:?}"
    );
    assert!(errs[0].contains("no backend named \"nowhere\""), "{errs:?}");
    let errs = errors(&migrating("{ to: local, namespace: \"app:v2:\" }"));
    assert!(errs.len() == 1 && errs[0].contains("the tenant's current backend"), "{errs:?}");
    let errs = errors(&migrating("{ to: big, namespace: \"tenantry:x:\" }"));
    assert!(errs.iter().any(|e| e.contains("tenants.app.migrate.namespace") && e.contains("tenantry")), "{errs:?}");
    let errs = errors(&migrating("{ to: big, keys_per_sec: 0 }"));
    assert!(errs.len() == 1 && errs[0].contains("migrate.keys_per_sec"), "{errs:?}");
    // Landing on a namespace another tenant has (or will have) on the target.
    let text = migrating("{ to: big, namespace: \"shared:\" }").replace(
        "    namespace: \"demo:\"\n",
        "    namespace: \"demo:\"\n    migrate: { to: big, namespace: \"shared:x:\" }\n",
    );
    let errs = errors(&text);
    assert!(errs.iter().any(|e| e.contains("overlaps tenant demo's")), "{errs:?}");
    assert!(errs.iter().any(|e| e.contains("overlaps tenant app's")), "{errs:?}");
}
