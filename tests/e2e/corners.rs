//! Protocol corners where a tenant is allowed what Redis does: each step
//! runs against a redis-server directly and through tenantry, and the
//! replies must be the same bytes (or, where the value is the server's own
//! and changes from call to call, the same shape).

use std::time::Duration;
use tenantry_tests::{encode, RawClient, RedisServer, TestProxy};

async fn cmd(c: &mut RawClient, line: &str) -> Vec<u8> {
    let args: Vec<&[u8]> = line.split(' ').map(str::as_bytes).collect();
    c.cmd(&args).await
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A Redis directly, and tenantry in front of another with a default tenant
/// without a password.
struct Sides {
    _direct: RedisServer,
    _proxied: RedisServer,
    proxy: TestProxy,
    direct_addr: String,
}

impl Sides {
    async fn start() -> Sides {
        let direct = RedisServer::start();
        let proxied = RedisServer::start();
        let proxy = TestProxy::two_tenants(&proxied).await;
        Sides { direct_addr: direct.addr(), _direct: direct, _proxied: proxied, proxy }
    }

    /// A connection to each: `[direct, through tenantry]`.
    async fn clients(&self) -> [RawClient; 2] {
        [RawClient::connect(&self.direct_addr).await, self.proxy.raw().await]
    }
}

/// Each line on both sides; the replies must be byte-identical.
async fn same(clients: &mut [RawClient; 2], lines: &[&str]) {
    for line in lines {
        let want = cmd(&mut clients[0], line).await;
        let got = cmd(&mut clients[1], line).await;
        assert_eq!(text(&got), text(&want), "{line}");
    }
}

#[tokio::test]
async fn auth_as_the_default_user_takes_any_password_when_it_has_none() {
    let sides = Sides::start().await;
    let mut c = sides.clients().await;
    same(&mut c, &["AUTH default anything", "AUTH default", "AUTH onlypassword", "AUTH nobody pw", "SET k v", "GET k"])
        .await;
    // HELLO 3 AUTH default <password>: what clients send when a password is configured.
    for (i, side) in c.iter_mut().enumerate() {
        let hello = cmd(side, "HELLO 3 AUTH default secret").await;
        assert!(hello.starts_with(b"%7\r\n"), "side {i}: {}", text(&hello));
        assert_eq!(cmd(side, "GET k").await, b"$1\r\nv\r\n", "side {i}");
    }
    // A tenant with a password of its own keeps it.
    let mut demo = sides.proxy.raw().await;
    assert!(cmd(&mut demo, "AUTH demo wrong").await.starts_with(b"-WRONGPASS"));
}

#[tokio::test]
async fn server_facts_and_acl_helpers_are_answered_as_redis_does() {
    let sides = Sides::start().await;
    let mut c = sides.clients().await;
    same(&mut c, &["ROLE", "ACL CAT", "ACL CAT nosuchcategory", "ACL WHOAMI", "ACL GENPASS x"]).await;
    // A dict's order, which differs from server to server: the same elements.
    let mut cats = Vec::new();
    for side in c.iter_mut() {
        let mut lines: Vec<String> = text(&cmd(side, "ACL CAT string").await).split("\r\n").map(String::from).collect();
        lines.sort();
        cats.push(lines);
    }
    assert_eq!(cats[1], cats[0]);
    for side in c.iter_mut() {
        let lastsave = cmd(side, "LASTSAVE").await;
        assert!(lastsave.starts_with(b":") && lastsave.len() > 5, "{}", text(&lastsave));
        let pass = cmd(side, "ACL GENPASS").await;
        assert!(pass.starts_with(b"$64\r\n"), "{}", text(&pass));
        let short = cmd(side, "ACL GENPASS 32").await;
        assert!(short.starts_with(b"$8\r\n"), "{}", text(&short));
    }
    // The user a tenant with a username logs in as.
    let mut demo = sides.proxy.login("demo", "demo-pw").await;
    assert_eq!(cmd(&mut demo, "ACL WHOAMI").await, b"$4\r\ndemo\r\n");
}

/// CLIENT UNBLOCK of a connection blocked in BLPOP, both ways, and of one
/// that is not blocked or does not exist.
#[tokio::test]
async fn client_unblock_releases_a_tenants_own_blocked_connection() {
    let sides = Sides::start().await;
    let mut transcripts = Vec::new();
    for side in 0..2 {
        let [blocked, unblocker] = if side == 0 {
            let [a, _] = sides.clients().await;
            let [b, _] = sides.clients().await;
            [a, b]
        } else {
            [sides.proxy.raw().await, sides.proxy.raw().await]
        };
        let (mut blocked, mut unblocker) = (blocked, unblocker);
        let id = text(&cmd(&mut blocked, "CLIENT ID").await);
        let id = id.trim_start_matches(':').trim_end();
        let mut lines = Vec::new();
        lines.push(text(&cmd(&mut unblocker, &format!("CLIENT UNBLOCK {id}")).await));
        for how in ["", " TIMEOUT", " ERROR"] {
            blocked.send(&encode(&[b"BLPOP", b"list", b"0"])).await;
            // Until the BLPOP is blocked (on a busy machine it may take a while to get there).
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            let answer = loop {
                let r = text(&cmd(&mut unblocker, &format!("CLIENT UNBLOCK {id}{how}")).await);
                if r != ":0\r\n" || std::time::Instant::now() > deadline {
                    break r;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            };
            lines.push(answer);
            lines.push(text(&blocked.reply().await));
        }
        lines.push(text(&cmd(&mut unblocker, &format!("CLIENT UNBLOCK {id} SOMETIMES")).await));
        lines.push(text(&cmd(&mut unblocker, "CLIENT UNBLOCK notanumber").await));
        lines.push(text(&cmd(&mut unblocker, "CLIENT UNBLOCK 987654").await));
        // The unblocked connection goes on as before.
        lines.push(text(&cmd(&mut blocked, "RPUSH list a").await));
        lines.push(text(&cmd(&mut blocked, "BLPOP list 0").await));
        transcripts.push(lines);
    }
    assert_eq!(transcripts[1], transcripts[0]);
    assert_eq!(transcripts[0][1], ":1\r\n");
}

#[tokio::test]
async fn another_tenants_blocked_connection_cannot_be_unblocked() {
    let redis = RedisServer::start();
    let proxy = TestProxy::two_tenants(&redis).await;
    let mut blocked = proxy.raw().await;
    let id = text(&cmd(&mut blocked, "CLIENT ID").await);
    blocked.send(&encode(&[b"BLPOP", b"list", b"1"])).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut demo = proxy.login("demo", "demo-pw").await;
    let id = id.trim_start_matches(':').trim_end();
    assert_eq!(cmd(&mut demo, &format!("CLIENT UNBLOCK {id}")).await, b":0\r\n");
    // It times out on its own, a second later.
    assert_eq!(blocked.reply().await, b"*-1\r\n");
}

/// Everything a connection receives until `+OK` (the reply to CLIENT REPLY ON).
async fn until_ok(c: &mut RawClient) -> Vec<String> {
    let mut out = Vec::new();
    loop {
        let f = text(&c.reply().await);
        if f == "+OK\r\n" {
            return out;
        }
        out.push(f);
    }
}

/// With CLIENT REPLY OFF, a subscriber still gets its confirmations and
/// messages (Redis sends them as Pub/Sub messages, not as replies). The
/// same frames as from Redis, RESP2 and RESP3.
#[tokio::test]
async fn pubsub_pushes_are_delivered_with_replies_off() {
    let sides = Sides::start().await;
    for proto in ["2", "3"] {
        let mut transcripts = Vec::new();
        for side in 0..2 {
            let [mut a, mut b] = sides.clients().await;
            let [mut c, mut d] = sides.clients().await;
            let (sub, publisher) = if side == 0 { (&mut a, &mut c) } else { (&mut b, &mut d) };
            cmd(sub, &format!("HELLO {proto}")).await;
            for line in ["CLIENT REPLY OFF", "SUBSCRIBE ch", "PSUBSCRIBE p*"] {
                let args: Vec<&[u8]> = line.split(' ').map(str::as_bytes).collect();
                sub.send(&encode(&args)).await;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
            assert_eq!(cmd(publisher, "PUBLISH ch hi").await, b":1\r\n", "proto {proto} side {side}");
            assert_eq!(cmd(publisher, "PUBLISH px yo").await, b":1\r\n", "proto {proto} side {side}");
            for line in ["UNSUBSCRIBE ch", "PUNSUBSCRIBE", "CLIENT REPLY ON"] {
                let args: Vec<&[u8]> = line.split(' ').map(str::as_bytes).collect();
                sub.send(&encode(&args)).await;
            }
            transcripts.push(until_ok(sub).await);
        }
        assert_eq!(transcripts[1], transcripts[0], "proto {proto}");
        // Four confirmations and two messages.
        assert_eq!(transcripts[0].len(), 6, "{:?}", transcripts[0]);
    }
}

/// INFO and CONFIG GET inside MULTI are queued and answered in EXEC's
/// reply, in their places: CONFIG GET with Redis's bytes, INFO with the
/// tenant's view, taken after the transaction's writes.
#[tokio::test]
async fn info_and_config_get_are_answered_inside_exec() {
    let sides = Sides::start().await;
    for proto in ["2", "3"] {
        let mut c = sides.clients().await;
        for side in c.iter_mut() {
            cmd(side, &format!("HELLO {proto}")).await;
        }
        same(&mut c, &["MULTI", "SET k v", "CONFIG GET maxmemory-policy", "INFO keyspace", "GET k"]).await;
        let mut execs = Vec::new();
        for side in c.iter_mut() {
            let reply = cmd(side, "EXEC").await;
            let redis::Value::Array(items) = redis::parse_redis_value(&reply).expect("EXEC's reply parses") else {
                panic!("EXEC: {}", text(&reply));
            };
            execs.push(items);
        }
        let [direct, proxied] = [&execs[0], &execs[1]];
        assert_eq!(proxied.len(), 4, "proto {proto}: {proxied:?}");
        assert_eq!(proxied[0], direct[0], "proto {proto}");
        assert_eq!(proxied[1], direct[1], "proto {proto}: CONFIG GET");
        assert_eq!(proxied[3], direct[3], "proto {proto}: GET");
        let info = match &proxied[2] {
            redis::Value::BulkString(b) => text(b),
            redis::Value::VerbatimString { text, .. } => text.clone(),
            other => panic!("proto {proto}: INFO's place holds {other:?}"),
        };
        assert!(info.contains("# Keyspace") && info.contains("db0:keys=1,"), "proto {proto}: {info}");
        same(&mut c, &["DEL k"]).await;
    }
    // CONFIG SET stays refused inside MULTI (outside it too, but for a no-op).
    let [_, mut proxied] = sides.clients().await;
    cmd(&mut proxied, "MULTI").await;
    let refused = text(&cmd(&mut proxied, "CONFIG SET maxmemory-policy noeviction").await);
    assert!(refused.starts_with("-ERR CONFIG inside MULTI"), "{refused}");
    assert_eq!(
        text(&cmd(&mut proxied, "EXEC").await),
        "-EXECABORT Transaction discarded because of previous errors.\r\n"
    );
}
