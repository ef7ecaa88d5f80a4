//! TLS on both sides: TLS-only redis-server processes and a TLS-only
//! Redis Cluster, certificates made by the test, redis-cli `--tls` and the
//! `redis` crate with TLS through tenantry.

use std::path::Path;
use std::time::{Duration, Instant};
use tenantry_tests::cluster::RedisCluster;
use tenantry_tests::tls::{CertFiles, Pki, Spec};
use tenantry_tests::{RawClient, RedisServer, TestProxy};

/// A plain listener and a TLS listener (listed in that order).
fn listeners(server: &CertFiles, client_ca: Option<&Path>) -> String {
    let ca = client_ca.map(|c| format!(", client_ca_file: \"{}\"", c.display())).unwrap_or_default();
    format!(
        "listen:\n  - 127.0.0.1:0\n  - {{ addr: \"127.0.0.1:0\", tls: {{ cert_file: \"{}\", key_file: \"{}\"{ca} }} }}\n",
        server.cert.display(),
        server.key.display()
    )
}

fn backend_tls(pki: &Pki, extra: &str) -> String {
    format!("tls: {{ ca_file: \"{}\"{extra} }}", pki.ca_file.display())
}

/// redis-cli through tenantry's TLS listener (a child process awaited, not
/// waited for: tenantry runs on this test's thread).
async fn cli_tls(port: u16, ca: &Path, args: &[&str]) -> String {
    let out = tokio::process::Command::new("redis-cli")
        .args(["-p", &port.to_string(), "--tls", "--cacert"])
        .arg(ca)
        .args(args)
        .kill_on_drop(true)
        .output();
    let out =
        tokio::time::timeout(Duration::from_secs(10), out).await.expect("redis-cli answers").expect("redis-cli runs");
    String::from_utf8_lossy(&out.stdout).trim_end().to_string()
}

#[tokio::test]
async fn redis_cli_and_the_redis_crate_reach_a_tls_only_backend_through_tls_on_both_sides() {
    let pki = Pki::new();
    let redis = RedisServer::start_tls(&pki, &[]);
    let proxy = TestProxy::start_listening(&format!(
        "{}backends:\n  secure: {{ kind: standalone, nodes: [\"{}\"], {} }}\n\
         tenants:\n  app: {{ backend: secure, namespace: \"app:\" }}\ndefault_tenant: app\n",
        listeners(&pki.server("tenantry"), None),
        redis.addr(),
        backend_tls(&pki, "")
    ))
    .await;
    let tls_port = proxy.addrs[1].port();
    assert_eq!(cli_tls(tls_port, &pki.ca_file, &["SET", "k", "over tls"]).await, "OK");
    assert_eq!(cli_tls(tls_port, &pki.ca_file, &["GET", "k"]).await, "over tls");
    // The key is in the tenant's namespace on the TLS-only backend.
    assert_eq!(redis.cli(&["GET", "app:k"]).trim_end(), "over tls");

    // The redis crate over TLS, trusting the test CA.
    let certs = redis::TlsCertificates { client_tls: None, root_cert: Some(std::fs::read(&pki.ca_file).unwrap()) };
    let client = redis::Client::build_with_tls(format!("rediss://localhost:{tls_port}/"), certs).expect("client");
    let mut conn = client.get_multiplexed_async_connection().await.expect("TLS connection through tenantry");
    let v: String = redis::cmd("GET").arg("k").query_async(&mut conn).await.unwrap();
    assert_eq!(v, "over tls");
    let n: i64 = redis::cmd("INCRBY").arg("n").arg(5).query_async(&mut conn).await.unwrap();
    assert_eq!(n, 5);

    // A big value both ways, pipelined (TLS records, partial writes).
    let big = "x".repeat(300_000);
    let mut c = RawClient::connect_tls(proxy.addrs[1], &pki.ca_file, None).await.expect("handshake");
    let mut pipeline = Vec::new();
    for i in 0..50 {
        pipeline.extend(tenantry_tests::encode(&[b"SET", format!("big{i}").as_bytes(), big.as_bytes()]));
        pipeline.extend(tenantry_tests::encode(&[b"GET", format!("big{i}").as_bytes()]));
    }
    c.send(&pipeline).await;
    for _ in 0..50 {
        assert_eq!(c.reply().await, b"+OK\r\n");
        assert_eq!(c.reply().await.len(), big.len() + 11);
    }

    // The plain listener serves the same tenant, and a plain client on the
    // TLS port is told what is wrong.
    let mut plain = proxy.raw().await;
    assert_eq!(plain.cmd(&[b"GET", b"k"]).await, b"$8\r\nover tls\r\n");
    let mut wrong = RawClient::connect(proxy.addrs[1]).await;
    wrong.send(b"PING\r\n").await;
    assert!(wrong.reply().await.starts_with(b"-ERR this port speaks TLS only"));
    assert!(wrong.closed().await);
}

#[tokio::test]
async fn a_client_certificate_chooses_the_tenant() {
    let pki = Pki::new();
    let redis = RedisServer::start();
    let proxy = TestProxy::start_listening(&format!(
        "{}admin: 127.0.0.1:0\nbackends:\n  local: {{ kind: standalone, nodes: [\"{}\"] }}\n\
         tenants:\n  \
           app: {{ backend: local, namespace: \"app:\" }}\n  \
           payments: {{ backend: local, namespace: \"pay:\", auth: {{ tls_san: \"spiffe://cluster.local/ns/pay/sa/api\" }} }}\n  \
           legacy: {{ backend: local, namespace: \"legacy:\", auth: {{ tls_cn: \"legacy-batch\" }} }}\n\
         default_tenant: app\n",
        listeners(&pki.server("tenantry"), Some(&pki.ca_file)),
        redis.addr()
    ))
    .await;
    let tls = proxy.addrs[1];
    let spiffe = pki.client("pay", "pay-api", Some("spiffe://cluster.local/ns/pay/sa/api"));
    let mut c = RawClient::connect_tls(tls, &pki.ca_file, Some(&spiffe)).await.expect("mTLS handshake");
    assert_eq!(c.cmd(&[b"SET", b"k", b"1"]).await, b"+OK\r\n");
    let cn = pki.client("legacy", "legacy-batch", None);
    let mut c = RawClient::connect_tls(tls, &pki.ca_file, Some(&cn)).await.expect("mTLS handshake");
    assert_eq!(c.cmd(&[b"SET", b"k", b"2"]).await, b"+OK\r\n");
    // A certificate of the CA that names no tenant: the default tenant.
    let other = pki.client("other", "someone", Some("spiffe://cluster.local/ns/x/sa/y"));
    let mut c = RawClient::connect_tls(tls, &pki.ca_file, Some(&other)).await.expect("mTLS handshake");
    assert_eq!(c.cmd(&[b"SET", b"k", b"3"]).await, b"+OK\r\n");
    assert_eq!(redis.cli(&["MGET", "pay:k", "legacy:k", "app:k"]).trim_end(), "1\n2\n3");

    // No certificate, or one from another CA: no connection.
    let none = RawClient::connect_tls(tls, &pki.ca_file, None).await.err().expect("refused");
    assert!(none.contains("CertificateRequired") || none.contains("certificate"), "{none}");
    let other_ca = Pki::named("another CA");
    let stranger = other_ca.client("pay", "pay-api", Some("spiffe://cluster.local/ns/pay/sa/api"));
    let err = RawClient::connect_tls(tls, &pki.ca_file, Some(&stranger)).await.err().expect("refused");
    assert!(err.contains("UnknownCA") || err.contains("certificate"), "{err}");
    // And the tenants' clients go on.
    let mut c = RawClient::connect_tls(tls, &pki.ca_file, Some(&spiffe)).await.expect("mTLS handshake");
    assert_eq!(c.cmd(&[b"GET", b"k"]).await, b"$1\r\n1\r\n");
    // The two refused handshakes are counted, for the TLS listener.
    let sample = format!("tenantry_tls_handshake_failures_total{{listener=\"{tls}\"}}");
    assert_eq!(tenantry_tests::metric(&proxy.metrics().await, &sample), 2.0);
}

#[tokio::test]
async fn wrong_ca_expired_certificate_and_wrong_name_each_fail_clearly_and_others_keep_serving() {
    let pki = Pki::new();
    let good = RedisServer::start_tls(&pki, &[]);
    let expired = RedisServer::start_tls_cert(
        &pki,
        pki.issue("expired", &Spec { cn: "redis", dns: &["localhost"], ip: true, expired: true, ..Spec::default() }),
        &[],
    );
    let stranger = Pki::named("another CA");
    let proxy = TestProxy::start(&format!(
        "backends:\n  \
           good: {{ kind: standalone, nodes: [\"{good}\"], {tls} }}\n  \
           wrong_ca: {{ kind: standalone, nodes: [\"{good}\"], {other} }}\n  \
           expired: {{ kind: standalone, nodes: [\"{exp}\"], {tls} }}\n  \
           wrong_name: {{ kind: standalone, nodes: [\"{good}\"], {named} }}\n  \
           unverified: {{ kind: standalone, nodes: [\"{good}\"], tls: {{ insecure_skip_verify: true }} }}\n\
         tenants:\n  \
           good: {{ backend: good, namespace: \"g:\" }}\n  \
           a: {{ backend: wrong_ca, namespace: \"a:\", auth: {{ username: a, password: pw }} }}\n  \
           b: {{ backend: expired, namespace: \"b:\", auth: {{ username: b, password: pw }} }}\n  \
           c: {{ backend: wrong_name, namespace: \"c:\", auth: {{ username: c, password: pw }} }}\n  \
           d: {{ backend: unverified, namespace: \"d:\", auth: {{ username: d, password: pw }} }}\n\
         default_tenant: good\n",
        good = good.addr(),
        exp = expired.addr(),
        tls = backend_tls(&pki, ""),
        other = backend_tls(&stranger, ""),
        named = backend_tls(&pki, ", server_name: redis.example.com"),
    ))
    .await;
    for (user, why) in [("a", "UnknownIssuer"), ("b", "certificate expired"), ("c", "certificate not valid for name")] {
        let mut c = proxy.login(user, "pw").await;
        let reply = String::from_utf8(c.cmd(&[b"GET", b"k"]).await).unwrap();
        assert!(reply.starts_with("-ERR backend"), "{user}: {reply}");
        assert!(
            reply.contains("TLS handshake failed: invalid peer certificate") && reply.contains(why),
            "{user}: {reply}"
        );
    }
    let mut ok = proxy.raw().await;
    assert_eq!(ok.cmd(&[b"SET", b"k", b"v"]).await, b"+OK\r\n");
    assert_eq!(good.cli(&["GET", "g:k"]).trim_end(), "v");
    // With verification switched off (and no CA given), the same server is reached.
    let mut d = proxy.login("d", "pw").await;
    assert_eq!(d.cmd(&[b"SET", b"k", b"unverified"]).await, b"+OK\r\n");
    assert_eq!(good.cli(&["GET", "d:k"]).trim_end(), "unverified");
}

#[tokio::test]
async fn a_certificate_swap_reaches_new_connections_and_a_pipelining_client_sees_no_error() {
    let _heavy = tenantry_tests::heavy().await;
    let old_ca = Pki::new();
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    let first = old_ca.server("tenantry");
    std::fs::copy(&first.cert, &cert).unwrap();
    std::fs::copy(&first.key, &key).unwrap();
    let files = CertFiles { cert: cert.clone(), key: key.clone() };
    let proxy = TestProxy::start_listening(&format!(
        "{}backends:\n  local: {{ kind: standalone, nodes: [\"{}\"] }}\n\
         tenants:\n  app: {{ backend: local, namespace: \"app:\" }}\ndefault_tenant: app\n",
        listeners(&files, None),
        redis.addr()
    ))
    .await;
    let tls = proxy.addrs[1];
    // A client pipelining 100 INCRs at a time across the swap.
    let mut busy = RawClient::connect_tls(tls, &old_ca.ca_file, None).await.expect("handshake");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let pipelining = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let batch: Vec<u8> = (0..100).flat_map(|_| tenantry_tests::encode(&[b"INCR", b"n"])).collect();
            let mut done = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                busy.send(&batch).await;
                for _ in 0..100 {
                    let r = busy.reply().await;
                    assert!(r.starts_with(b":"), "{:?}", String::from_utf8_lossy(&r));
                    done += 1;
                }
            }
            done
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;

    // A broken file first: the old certificate keeps serving.
    std::fs::write(&cert, b"-----BEGIN CERTIFICATE-----\nnot base64\n").unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    RawClient::connect_tls(tls, &old_ca.ca_file, None).await.expect("old certificate still served");

    // Then a new certificate from a new CA, written as Kubernetes does: the
    // files swapped in by rename.
    let new_ca = Pki::named("rotated CA");
    let next = new_ca.server("tenantry");
    std::fs::copy(&next.key, dir.path().join("new.key")).unwrap();
    std::fs::copy(&next.cert, dir.path().join("new.crt")).unwrap();
    std::fs::rename(dir.path().join("new.key"), &key).unwrap();
    std::fs::rename(dir.path().join("new.crt"), &cert).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if RawClient::connect_tls(tls, &new_ca.ca_file, None).await.is_ok() {
            break;
        }
        assert!(Instant::now() < deadline, "the new certificate was not picked up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(RawClient::connect_tls(tls, &old_ca.ca_file, None).await.is_err(), "old certificate still served");
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let done = pipelining.await.expect("the pipelining client saw no error");
    assert!(done >= 1000, "only {done} INCRs");
    assert_eq!(redis.cli(&["GET", "app:n"]).trim_end(), done.to_string());
}

#[tokio::test]
async fn a_tls_only_cluster_is_served_over_tls_on_every_node_it_learns() {
    let _heavy = tenantry_tests::heavy().await;
    let pki = Pki::new();
    let cluster = RedisCluster::start_tls(&pki, 3, 0);
    let proxy = TestProxy::start_listening(&format!(
        "{}backends:\n  c: {{ kind: cluster, nodes: [\"{}\"], {} }}\n\
         tenants:\n  app: {{ backend: c, namespace: \"app:\" }}\ndefault_tenant: app\n",
        listeners(&pki.server("tenantry"), None),
        cluster.seeds()[0],
        backend_tls(&pki, "")
    ))
    .await;
    // The redis crate over TLS to tenantry, tenantry over TLS to the cluster.
    let certs = redis::TlsCertificates { client_tls: None, root_cert: Some(std::fs::read(&pki.ca_file).unwrap()) };
    let url = format!("rediss://localhost:{}/", proxy.addrs[1].port());
    let client = redis::Client::build_with_tls(url, certs).expect("client");
    let mut conn = client.get_multiplexed_async_connection().await.expect("TLS connection through tenantry");
    let pairs: Vec<(String, String)> = (0..20).map(|i| (format!("user:{i}"), format!("u{i}"))).collect();
    let () = redis::cmd("MSET").arg(&pairs).query_async(&mut conn).await.expect("MSET across slots");
    let names: Vec<&String> = pairs.iter().map(|(k, _)| k).collect();
    let values: Vec<String> = redis::cmd("MGET").arg(&names).query_async(&mut conn).await.expect("MGET");
    assert_eq!(values, pairs.iter().map(|(_, v)| v.clone()).collect::<Vec<_>>());
    let () = redis::cmd("DEL").arg(&names).query_async::<i64>(&mut conn).await.map(|n| assert_eq!(n, 20)).unwrap();
    let mut c = RawClient::connect_tls(proxy.addrs[1], &pki.ca_file, None).await.expect("handshake");
    // Keys in every slot range: every master is reached over TLS.
    for i in 0..60 {
        let k = format!("key{i}");
        assert_eq!(c.cmd(&[b"SET", k.as_bytes(), b"v"]).await, b"+OK\r\n", "{k}");
    }
    let mut keys: Vec<Vec<u8>> = (0..60).map(|i| format!("key{i}").into_bytes()).collect();
    keys.insert(0, b"MGET".to_vec());
    let args: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
    let reply = c.cmd(&args).await;
    assert!(
        reply.starts_with(b"*60\r\n") && !reply.windows(3).any(|w| w == b"$-1"),
        "{:?}",
        String::from_utf8_lossy(&reply)
    );
    // (tenantry keeps a key of its own on a node too: count the tenant's.)
    let per_node: Vec<usize> = (0..3).map(|n| cluster.cli(n, &["KEYS", "app:*"]).lines().count()).collect();
    assert_eq!(per_node.iter().sum::<usize>(), 60, "{per_node:?}");
    assert!(per_node.iter().all(|&n| n > 0), "a node got no keys: {per_node:?}");
}

#[tokio::test]
async fn a_backend_that_requires_client_certificates_gets_tenantrys() {
    let pki = Pki::new();
    let redis = RedisServer::start_tls(&pki, &["--tls-auth-clients", "yes"]);
    let cert = pki.client("tenantry-client", "tenantry", None);
    let with_cert = format!(", cert_file: \"{}\", key_file: \"{}\"", cert.cert.display(), cert.key.display());
    let proxy = TestProxy::start(&format!(
        "backends:\n  mtls: {{ kind: standalone, nodes: [\"{r}\"], {a} }}\n  bare: {{ kind: standalone, nodes: [\"{r}\"], {b} }}\n\
         tenants:\n  app: {{ backend: mtls, namespace: \"app:\" }}\n  \
         other: {{ backend: bare, namespace: \"o:\", auth: {{ username: o, password: pw }} }}\n\
         default_tenant: app\n",
        r = redis.addr(),
        a = backend_tls(&pki, &with_cert),
        b = backend_tls(&pki, ""),
    ))
    .await;
    let mut c = proxy.raw().await;
    assert_eq!(c.cmd(&[b"SET", b"k", b"v"]).await, b"+OK\r\n");
    // Without a certificate the backend refuses the connection.
    let mut o = proxy.login("o", "pw").await;
    let reply = String::from_utf8(o.cmd(&[b"GET", b"k"]).await).unwrap();
    assert!(reply.starts_with("-ERR backend 'bare'") && reply.contains("unavailable"), "{reply}");
}
