use tenantry_tests::{RedisServer, TestProxy};

async fn no_default_tenant(redis: &RedisServer) -> TestProxy {
    TestProxy::start(&format!(
        "backends:\n  local: {{ kind: standalone, nodes: [\"{}\"] }}\n\
         tenants:\n  demo: {{ backend: local, namespace: \"demo:\", auth: {{ username: demo, password: demo-pw }} }}\n",
        redis.addr()
    ))
    .await
}

#[tokio::test]
async fn unauthenticated_clients_get_noauth_and_wrong_credentials_wrongpass() {
    let redis = RedisServer::start();
    let proxy = no_default_tenant(&redis).await;
    let mut c = proxy.raw().await;
    assert_eq!(c.cmd(&[b"GET", b"k"]).await, b"-NOAUTH Authentication required.\r\n");
    assert_eq!(c.cmd(&[b"NOSUCH"]).await, b"-NOAUTH Authentication required.\r\n");
    assert_eq!(
        c.cmd(&[b"AUTH", b"demo", b"nope"]).await,
        b"-WRONGPASS invalid username-password pair or user is disabled.\r\n"
    );
    assert_eq!(
        c.cmd(&[b"AUTH", b"ghost", b"demo-pw"]).await,
        b"-WRONGPASS invalid username-password pair or user is disabled.\r\n"
    );
    assert!(c
        .cmd(&[b"AUTH", b"demo-pw"])
        .await
        .starts_with(b"-ERR AUTH <password> called without any password configured"));
    assert!(c
        .cmd(&[b"HELLO", b"3"])
        .await
        .starts_with(b"-NOAUTH HELLO must be called with the client already authenticated"));
    assert_eq!(c.cmd(&[b"AUTH", b"demo", b"demo-pw"]).await, b"+OK\r\n");
    assert_eq!(c.cmd(&[b"SET", b"k", b"v"]).await, b"+OK\r\n");
    assert_eq!(c.cmd(&[b"GET", b"k"]).await, b"$1\r\nv\r\n");
}

#[tokio::test]
async fn hello_switches_protocol_and_authenticates() {
    let redis = RedisServer::start();
    let proxy = no_default_tenant(&redis).await;
    let mut c = proxy.raw().await;
    assert_eq!(c.cmd(&[b"HELLO", b"4"]).await, b"-NOPROTO unsupported protocol version\r\n");
    assert_eq!(
        c.cmd(&[b"HELLO", b"3", b"AUTH", b"demo", b"bad"]).await,
        b"-WRONGPASS invalid username-password pair or user is disabled.\r\n"
    );
    let hello = c.cmd(&[b"HELLO", b"3", b"AUTH", b"demo", b"demo-pw", b"SETNAME", b"me"]).await;
    let text = String::from_utf8_lossy(&hello);
    assert!(text.starts_with("%7\r\n$6\r\nserver\r\n$5\r\nredis\r\n$7\r\nversion\r\n"), "{text}");
    assert!(text.contains("$5\r\nproto\r\n:3\r\n"), "{text}");
    assert_eq!(c.cmd(&[b"CLIENT", b"GETNAME"]).await, b"$2\r\nme\r\n");
    // RESP3 replies from the backend: a map, a null, a double.
    assert_eq!(c.cmd(&[b"HSET", b"h", b"f", b"v"]).await, b":1\r\n");
    assert_eq!(c.cmd(&[b"HGETALL", b"h"]).await, b"%1\r\n$1\r\nf\r\n$1\r\nv\r\n");
    assert_eq!(c.cmd(&[b"GET", b"missing"]).await, b"_\r\n");
    assert_eq!(c.cmd(&[b"ZADD", b"z", b"1.5", b"m"]).await, b":1\r\n");
    assert_eq!(c.cmd(&[b"ZSCORE", b"z", b"m"]).await, b",1.5\r\n");
    // Back to RESP2 on the same connection.
    let hello2 = c.cmd(&[b"HELLO", b"2"]).await;
    assert!(hello2.starts_with(b"*14\r\n"));
    assert_eq!(c.cmd(&[b"HGETALL", b"h"]).await, b"*2\r\n$1\r\nf\r\n$1\r\nv\r\n");
    assert_eq!(c.cmd(&[b"GET", b"missing"]).await, b"$-1\r\n");
    assert_eq!(c.cmd(&[b"RESET"]).await, b"+RESET\r\n");
    assert_eq!(c.cmd(&[b"GET", b"k"]).await, b"-NOAUTH Authentication required.\r\n");
}

#[tokio::test]
async fn redis_crate_authenticates_with_resp3() {
    let redis = RedisServer::start();
    let proxy = no_default_tenant(&redis).await;
    let url = format!("redis://demo:demo-pw@{}/?protocol=resp3", proxy.addr);
    let mut c = redis::Client::open(url).unwrap().get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("SET").arg("x").arg(42).query_async(&mut c).await.unwrap();
    let v: i64 = redis::cmd("GET").arg("x").query_async(&mut c).await.unwrap();
    assert_eq!(v, 42);
}

#[tokio::test]
async fn inline_commands_and_connection_commands() {
    let redis = RedisServer::start();
    let proxy = TestProxy::two_tenants(&redis).await;
    let mut c = proxy.raw().await;
    c.send(b"PING\r\n\r\nset greeting \"hello world\"\nGET greeting\r\n").await;
    assert_eq!(c.reply().await, b"+PONG\r\n");
    assert_eq!(c.reply().await, b"+OK\r\n");
    assert_eq!(c.reply().await, b"$11\r\nhello world\r\n");
    assert_eq!(c.cmd(&[b"SELECT", b"0"]).await, b"+OK\r\n");
    assert!(c.cmd(&[b"SELECT", b"1"]).await.starts_with(b"-ERR SELECT is not allowed through tenantry"));
    assert_eq!(
        c.cmd(&[b"CLIENT", b"SETNAME", b"a b"]).await,
        b"-ERR Client names cannot contain spaces, newlines or special characters.\r\n"
    );
    assert!(c.cmd(&[b"CLIENT", b"ID"]).await.starts_with(b":"));
    assert_eq!(c.cmd(&[b"QUIT"]).await, b"+OK\r\n");
    assert!(c.closed().await);
}

#[tokio::test]
async fn info_describes_this_tenant_only() {
    let redis = RedisServer::start();
    let proxy = TestProxy::two_tenants(&redis).await;
    let mut c = proxy.raw().await;
    let info = String::from_utf8(c.cmd(&[b"INFO"]).await).unwrap();
    assert!(info.starts_with('$'), "{info}");
    for line in
        ["# Server", "redis_version:7.", "redis_mode:standalone", "arch_bits:64", "# Clients", "connected_clients:1"]
    {
        assert!(info.contains(line), "{line} missing from {info}");
    }
    // Nothing that describes the shared backend (other tenants' keys, commands, names).
    for absent in ["db0:", "cmdstat_", "demo"] {
        assert!(!info.contains(absent), "{absent} in {info}");
    }
    let tenantry = String::from_utf8(c.cmd(&[b"INFO", b"tenantry"]).await).unwrap();
    assert!(tenantry.contains("tenant:app\r\nnamespace:app:\r\n"), "{tenantry}");
    let server = String::from_utf8(c.cmd(&[b"INFO", b"server"]).await).unwrap();
    assert!(server.contains("# Server") && !server.contains("# Clients"), "{server}");
    c.cmd(&[b"HELLO", b"3"]).await;
    let resp3 = String::from_utf8(c.cmd(&[b"INFO", b"clients"]).await).unwrap();
    assert!(resp3.starts_with('=') && resp3.contains("txt:# Clients"), "{resp3}");
    // The redis crate reads it like Redis's.
    let mut r = proxy.client().await;
    let info: redis::InfoDict = redis::cmd("INFO").arg("tenantry").query_async(&mut r).await.unwrap();
    assert_eq!(info.get::<String>("tenant").as_deref(), Some("app"));

    // The keyspace section, asked for by name: this tenant's keys only.
    let mut app = proxy.raw().await;
    assert_eq!(app.cmd(&[b"INFO", b"keyspace"]).await, b"$12\r\n# Keyspace\r\n\r\n");
    for (k, ttl) in [(&b"a"[..], None), (b"b", Some(&b"100"[..])), (b"c", Some(b"300"))] {
        let mut args: Vec<&[u8]> = vec![b"SET", k, b"v"];
        if let Some(t) = ttl {
            args.extend([&b"EX"[..], t]);
        }
        assert_eq!(app.cmd(&args).await, b"+OK\r\n");
    }
    let mut demo = proxy.raw().await;
    demo.cmd(&[b"AUTH", b"demo", b"demo-pw"]).await;
    for i in 0..5 {
        demo.cmd(&[b"SET", format!("d{i}").as_bytes(), b"v"]).await;
    }
    let text = String::from_utf8(app.cmd(&[b"INFO", b"keyspace"]).await).unwrap();
    let line = text.lines().find(|l| l.starts_with("db0:")).unwrap_or_else(|| panic!("{text}"));
    let avg: u64 = line.rsplit_once("avg_ttl=").unwrap().1.parse().unwrap();
    assert!(line.starts_with("db0:keys=3,expires=2,avg_ttl="), "{line}");
    assert!((150_000..=200_000).contains(&avg), "{line}");
    // `all` takes the keyspace line from the measuring pass; naming the section counts at once.
    let all = String::from_utf8(demo.cmd(&[b"INFO", b"all", b"keyspace"]).await).unwrap();
    assert!(all.contains("# Server") && all.contains("db0:keys=5,expires=0,avg_ttl=0"), "{all}");
}
