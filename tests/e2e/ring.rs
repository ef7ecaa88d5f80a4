//! A ring backend places keys as twemproxy's ketama does: keys written
//! through `nutcracker` are read back through tenantry from the same nodes,
//! and the other way round.

use redis::AsyncCommands;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tenantry_tests::{RawClient, RedisServer, TestProxy};

/// nutcracker on a free port, killed on drop.
struct Nutcracker {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Nutcracker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `servers`: twemproxy server lines (`host:port:weight [name]`).
fn nutcracker(hash: &str, hash_tag: Option<&str>, servers: &[String]) -> Nutcracker {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut conf = format!(
        "pool:\n  listen: 127.0.0.1:{port}\n  hash: {hash}\n  distribution: ketama\n  redis: true\n  \
         auto_eject_hosts: false\n"
    );
    if let Some(tag) = hash_tag {
        conf.push_str(&format!("  hash_tag: \"{tag}\"\n"));
    }
    conf.push_str("  servers:\n");
    for s in servers {
        conf.push_str(&format!("   - {s}\n"));
    }
    let path = dir.path().join("nutcracker.yml");
    std::fs::write(&path, conf).unwrap();
    let child = Command::new("nutcracker")
        .arg("-c")
        .arg(&path)
        .args(["-s", &free_port().to_string(), "-a", "127.0.0.1", "-o"])
        .arg(dir.path().join("log"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nutcracker is installed (make deps)");
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nutcracker did not listen");
        std::thread::sleep(Duration::from_millis(20));
    }
    Nutcracker { child, port, _dir: dir }
}

async fn round_trip(hash: &str, hash_tag: Option<&str>, weights: [u32; 3], named: bool) {
    let nodes: Vec<RedisServer> = (0..3).map(|_| RedisServer::start()).collect();
    let servers: Vec<String> = nodes
        .iter()
        .zip(weights)
        .enumerate()
        .map(|(i, (n, w))| if named { format!("{}:{w} cache-{i}", n.addr()) } else { format!("{}:{w}", n.addr()) })
        .collect();
    let twem = nutcracker(hash, hash_tag, &servers);
    let list: Vec<String> = servers.iter().map(|s| format!("\"{s}\"")).collect();
    let tag = hash_tag.map(|t| format!(", hash_tag: \"{t}\"")).unwrap_or_default();
    let proxy = TestProxy::start(&format!(
        "backends:\n  r: {{ kind: ring, nodes: [{}], hash: {hash}{tag} }}\n\
         tenants:\n  app: {{ backend: r, namespace: \"app:\" }}\ndefault_tenant: app\n",
        list.join(", ")
    ))
    .await;
    // A raw client: twemproxy closes connections that send what it does not
    // support (the redis crate's CLIENT SETINFO on connect).
    let mut via_twem = RawClient::connect(("127.0.0.1", twem.port)).await;
    let mut via_tenantry = proxy.client().await;
    // Written through twemproxy with the tenant's namespace on the wire...
    for i in 0..300 {
        let (k, v) = (format!("app:user:{i}"), format!("t-{i}"));
        assert_eq!(via_twem.cmd(&[b"SET", k.as_bytes(), v.as_bytes()]).await, b"+OK\r\n");
    }
    // ...read through tenantry, which must pick the same node for each.
    for i in 0..300 {
        let v: Option<String> = via_tenantry.get(format!("user:{i}")).await.unwrap();
        assert_eq!(v.as_deref(), Some(format!("t-{i}").as_str()), "{hash}: user:{i}");
    }
    // And the other way round.
    for i in 0..300 {
        let _: () = via_tenantry.set(format!("{{grp}}:{i}"), i).await.unwrap();
    }
    for i in 0..300 {
        let k = format!("app:{{grp}}:{i}");
        let want = i.to_string();
        let got = via_twem.cmd(&[b"GET", k.as_bytes()]).await;
        assert_eq!(got, format!("${}\r\n{want}\r\n", want.len()).into_bytes());
    }
    // Every node holds some of the keys: the ring is really spread.
    for n in &nodes {
        let mut c = tenantry_tests::direct(n).await;
        let size: i64 = redis::cmd("DBSIZE").query_async(&mut c).await.unwrap();
        assert!(size > 0, "{hash}: node {} holds no key", n.addr());
    }
    proxy.stop().await;
}

#[tokio::test]
async fn keys_written_through_twemproxy_are_found_through_tenantry() {
    round_trip("fnv1a_64", None, [1, 1, 1], false).await;
    round_trip("md5", Some("{}"), [1, 2, 1], true).await;
    round_trip("fnv1a_32", None, [3, 1, 2], false).await;
}
