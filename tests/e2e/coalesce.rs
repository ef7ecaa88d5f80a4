//! Request coalescing: identical reads in flight at once reach the backend
//! as one, every client still gets its own reply in its own order, and a
//! client always reads its own writes.

use std::time::Duration;
use tenantry_tests::{encode, RawClient, RedisServer, TestProxy};

fn config(redis: &RedisServer, coalesce: &str) -> String {
    format!(
        "admin: 127.0.0.1:0\nbackends:\n  local: {{ kind: standalone, nodes: [\"{}\"] }}\n\
         tenants:\n  app: {{ backend: local, namespace: \"app:\", coalesce: {coalesce} }}\n  \
         demo: {{ backend: local, namespace: \"demo:\", coalesce: {coalesce}, auth: {{ username: demo, password: demo-pw }} }}\n\
         default_tenant: app\n",
        redis.addr()
    )
}

/// 100 connections send 10 GETs of one key each while the backend is
/// frozen (a stampede on a slow backend), then it thaws: every reply, in
/// order, and how many GETs the backend ran.
async fn stampede(redis: &RedisServer, clients: &mut [RawClient]) -> (Vec<Vec<u8>>, u64) {
    redis.cli(&["CONFIG", "RESETSTAT"]);
    redis.freeze();
    let gets: Vec<u8> = (0..10).flat_map(|_| encode(&[b"GET", b"hot"])).collect();
    for c in clients.iter_mut() {
        c.send(&gets).await;
    }
    // Every request reaches tenantry (and the leading ones its backend
    // connection) while nothing answers.
    tokio::time::sleep(Duration::from_millis(300)).await;
    redis.thaw();
    let mut replies = Vec::new();
    for c in clients.iter_mut() {
        for _ in 0..10 {
            replies.push(c.reply().await);
        }
    }
    let gets = redis.calls("get");
    eprintln!("stampede: {} replies, {gets} GETs on the backend", replies.len());
    (replies, gets)
}

#[tokio::test]
async fn a_stampede_reaches_the_backend_as_a_handful_of_reads() {
    let _heavy = tenantry_tests::heavy().await;
    let redis = RedisServer::start();
    let proxy = TestProxy::start(&config(&redis, "true")).await;
    let mut clients = Vec::new();
    for _ in 0..100 {
        clients.push(RawClient::connect(proxy.addr).await);
    }
    // Missing: every client gets the null, from a handful of backend reads.
    let (replies, backend_gets) = stampede(&redis, &mut clients).await;
    assert_eq!(replies.len(), 1000);
    assert!(replies.iter().all(|r| r == b"$-1\r\n"), "{:?}", replies.iter().find(|r| *r != b"$-1\r\n"));
    assert!(backend_gets <= 5, "1,000 GETs reached the backend as {backend_gets}");
    // Then set: every client gets the value.
    assert_eq!(clients[0].cmd(&[b"SET", b"hot", b"value"]).await, b"+OK\r\n");
    let (replies, backend_gets) = stampede(&redis, &mut clients).await;
    assert!(replies.iter().all(|r| r == b"$5\r\nvalue\r\n"), "{:?}", replies.iter().find(|r| *r != b"$5\r\nvalue\r\n"));
    assert!(backend_gets <= 5, "1,000 GETs reached the backend as {backend_gets}");
    let metrics = proxy.metrics().await;
    let coalesced: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("tenantry_coalesced_requests_total{tenant=\"app\"} "))
        .expect("the coalesced counter")
        .parse()
        .unwrap();
    assert!(coalesced >= 1990, "coalesced {coalesced}");
    let (_, tenants) = tenantry_tests::http_get(proxy.admin_addr().unwrap(), "/tenants").await;
    assert!(tenants.contains(&format!("\"coalesced\": {coalesced}")), "{tenants}");
    proxy.stop().await;
}

#[tokio::test]
async fn without_coalescing_every_read_reaches_the_backend() {
    let _heavy = tenantry_tests::heavy().await;
    let redis = RedisServer::start();
    let proxy = TestProxy::start(&config(&redis, "false")).await;
    let mut clients = Vec::new();
    for _ in 0..100 {
        clients.push(RawClient::connect(proxy.addr).await);
    }
    redis.cli(&["SET", "app:hot", "value"]);
    let (replies, backend_gets) = stampede(&redis, &mut clients).await;
    assert!(replies.iter().all(|r| r == b"$5\r\nvalue\r\n"));
    assert_eq!(backend_gets, 1000);
    proxy.stop().await;
}

/// A client whose write is not yet answered never joins a read that may
/// have run before it: its GET after its SET sees the SET.
#[tokio::test]
async fn a_client_reads_its_own_write_even_with_a_read_of_the_old_value_in_flight() {
    let redis = RedisServer::start();
    let proxy = TestProxy::start(&config(&redis, "true")).await;
    redis.cli(&["SET", "app:k", "old"]);
    let mut reader = RawClient::connect(proxy.addr).await;
    let mut writer = RawClient::connect(proxy.addr).await;
    redis.freeze();
    reader.send(&encode(&[b"GET", b"k"])).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut both = encode(&[b"SET", b"k", b"new"]);
    both.extend(encode(&[b"GET", b"k"]));
    writer.send(&both).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    redis.thaw();
    assert_eq!(reader.reply().await, b"$3\r\nold\r\n");
    assert_eq!(writer.reply().await, b"+OK\r\n");
    assert_eq!(writer.reply().await, b"$3\r\nnew\r\n");
    // Answered now: its next read may join others'.
    redis.cli(&["CONFIG", "RESETSTAT"]);
    redis.freeze();
    reader.send(&encode(&[b"GET", b"k"])).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    writer.send(&encode(&[b"GET", b"k"])).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    redis.thaw();
    assert_eq!(reader.reply().await, b"$3\r\nnew\r\n");
    assert_eq!(writer.reply().await, b"$3\r\nnew\r\n");
    assert_eq!(redis.calls("get"), 1, "the second read joined the first");
    proxy.stop().await;
}

/// Two tenants reading the same key name at once never share a reply, and
/// replies keep their order among a client's other commands.
#[tokio::test]
async fn tenants_never_share_and_order_holds() {
    let redis = RedisServer::start();
    let proxy = TestProxy::start(&config(&redis, "true")).await;
    redis.cli(&["SET", "app:k", "app-value"]);
    redis.cli(&["SET", "demo:k", "demo-value"]);
    let mut app = RawClient::connect(proxy.addr).await;
    let mut app2 = RawClient::connect(proxy.addr).await;
    let mut demo = proxy.login("demo", "demo-pw").await;
    redis.freeze();
    let mut mixed = encode(&[b"GET", b"k"]);
    mixed.extend(encode(&[b"PING"]));
    mixed.extend(encode(&[b"GET", b"k"]));
    mixed.extend(encode(&[b"STRLEN", b"k"]));
    app.send(&mixed).await;
    app2.send(&mixed).await;
    demo.send(&mixed).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    redis.thaw();
    for c in [&mut app, &mut app2] {
        assert_eq!(c.reply().await, b"$9\r\napp-value\r\n");
        assert_eq!(c.reply().await, b"+PONG\r\n");
        assert_eq!(c.reply().await, b"$9\r\napp-value\r\n");
        assert_eq!(c.reply().await, b":9\r\n");
    }
    assert_eq!(demo.reply().await, b"$10\r\ndemo-value\r\n");
    assert_eq!(demo.reply().await, b"+PONG\r\n");
    assert_eq!(demo.reply().await, b"$10\r\ndemo-value\r\n");
    assert_eq!(demo.reply().await, b":10\r\n");
    proxy.stop().await;
}

/// On a cluster, the stampede on one key is one read on the master that
/// holds it.
#[tokio::test]
async fn a_stampede_on_a_cluster_is_one_read_on_the_keys_master() {
    use tenantry_protocol::cluster::key_slot;
    use tenantry_protocol::Namespace;
    let _heavy = tenantry_tests::heavy().await;
    let cluster = tenantry_tests::cluster::RedisCluster::start(3, 0);
    let proxy = TestProxy::start(&crate::cluster::config(&cluster, ", coalesce: true")).await;
    let mut clients = Vec::new();
    for _ in 0..50 {
        clients.push(RawClient::connect(proxy.addr).await);
    }
    assert_eq!(clients[0].cmd(&[b"SET", b"hot", b"value"]).await, b"+OK\r\n");
    let master = &cluster.nodes[cluster.master_of_slot(key_slot(&Namespace::new("app:").unwrap(), b"hot"))];
    let (replies, gets) = stampede(master, &mut clients).await;
    assert_eq!(replies.len(), 500);
    assert!(replies.iter().all(|r| r == b"$5\r\nvalue\r\n"), "{:?}", replies.iter().find(|r| *r != b"$5\r\nvalue\r\n"));
    assert!(gets <= 5, "500 GETs reached the master as {gets}");
    proxy.stop().await;
}

/// The read that others joined is answered MOVED (its slot went to another
/// master since tenantry's map was made): it is followed to the new master,
/// and every joined read gets the value, never the redirection.
#[tokio::test]
async fn reads_joined_to_one_that_is_moved_get_the_value() {
    use tenantry_protocol::cluster::key_slot;
    use tenantry_protocol::Namespace;
    let _heavy = tenantry_tests::heavy().await;
    let cluster = tokio::task::spawn_blocking(|| tenantry_tests::cluster::RedisCluster::start(3, 0)).await.unwrap();
    // Learns of the move from MOVED only.
    let yaml =
        crate::cluster::config(&cluster, ", coalesce: true").replace("topology_refresh: 1s", "topology_refresh: 1h");
    let proxy = TestProxy::start(&yaml).await;
    let mut clients = Vec::new();
    for _ in 0..50 {
        clients.push(RawClient::connect(proxy.addr).await);
    }
    assert_eq!(clients[0].cmd(&[b"SET", b"hot", b"value"]).await, b"+OK\r\n");
    let slot = key_slot(&Namespace::new("app:").unwrap(), b"hot");
    let source = cluster.master_of_slot(slot);
    let target = cluster.masters().iter().map(|(m, _)| *m).find(|&m| m != source).unwrap();
    let (sp, tp) = (cluster.nodes[source].port(), cluster.nodes[target].port());
    let cli = |port: u16, args: &[&str]| tenantry_tests::cluster::cli(port, args).trim().to_string();
    let (source_id, target_id) = (cli(sp, &["CLUSTER", "MYID"]), cli(tp, &["CLUSTER", "MYID"]));
    let s = slot.to_string();
    assert_eq!(cli(tp, &["CLUSTER", "SETSLOT", &s, "IMPORTING", &source_id]), "OK");
    assert_eq!(cli(sp, &["CLUSTER", "SETSLOT", &s, "MIGRATING", &target_id]), "OK");
    assert_eq!(cli(sp, &["MIGRATE", "127.0.0.1", &tp.to_string(), "app:hot", "0", "5000"]), "OK");
    for (i, _) in cluster.masters() {
        cli(cluster.nodes[i].port(), &["CLUSTER", "SETSLOT", &s, "NODE", &target_id]);
    }
    // The stampede meets the old master frozen: the first read waits there,
    // the rest join it; thawed, it answers MOVED.
    cluster.nodes[target].cli(&["CONFIG", "RESETSTAT"]);
    let (replies, _) = stampede(&cluster.nodes[source], &mut clients).await;
    assert_eq!(replies.len(), 500);
    let wrong = replies.iter().find(|r| *r != b"$5\r\nvalue\r\n");
    assert!(wrong.is_none(), "{:?}", wrong.map(|r| String::from_utf8_lossy(r).into_owned()));
    let on_target = cluster.nodes[target].calls("get");
    eprintln!("moved stampede: {on_target} GETs on the new master");
    assert!(on_target <= 10, "500 GETs reached the new master as {on_target}");
    let text = proxy.metrics().await;
    assert!(tenantry_tests::metric(&text, "tenantry_coalesced_requests_total{tenant=\"app\"}") >= 400.0, "{text}");
    proxy.stop().await;
}
