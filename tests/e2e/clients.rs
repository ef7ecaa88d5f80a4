//! CLIENT LIST / INFO / KILL: a tenant sees and kills its own connections
//! only, in Redis's formats.

use std::time::Duration;
use tenantry_tests::{encode, RawClient, RedisServer, TestProxy};

/// The body of a bulk or verbatim string reply.
fn text(reply: &[u8]) -> String {
    let s = String::from_utf8_lossy(reply).into_owned();
    let body = s.split_once("\r\n").map_or("", |(_, b)| b).trim_end_matches("\r\n");
    body.strip_prefix("txt:").unwrap_or(body).to_string()
}

fn field<'a>(line: &'a str, name: &str) -> &'a str {
    line.split(' ').find_map(|kv| kv.strip_prefix(&format!("{name}="))).unwrap_or_else(|| panic!("{name} in {line}"))
}

async fn id_of(c: &mut RawClient) -> String {
    let r = c.cmd(&[b"CLIENT", b"ID"]).await;
    String::from_utf8_lossy(&r[1..r.len() - 2]).into_owned()
}

#[tokio::test]
async fn a_tenant_lists_and_kills_only_its_own_connections() {
    let redis = RedisServer::start();
    let proxy = TestProxy::two_tenants(&redis).await;
    let mut app1 = proxy.raw().await;
    let mut app2 = proxy.raw().await;
    let mut demo = proxy.raw().await;
    assert_eq!(demo.cmd(&[b"AUTH", b"demo", b"demo-pw"]).await, b"+OK\r\n");
    assert_eq!(app2.cmd(&[b"CLIENT", b"SETNAME", b"worker-2"]).await, b"+OK\r\n");
    let (id1, id2, demo_id) = (id_of(&mut app1).await, id_of(&mut app2).await, id_of(&mut demo).await);

    let list = text(&app1.cmd(&[b"CLIENT", b"LIST"]).await);
    let lines: Vec<&str> = list.lines().collect();
    assert_eq!(lines.len(), 2, "{list}");
    let ids: Vec<&str> = lines.iter().map(|l| field(l, "id")).collect();
    assert_eq!(ids, vec![id1.as_str(), id2.as_str()]);
    let two = lines.iter().find(|l| field(l, "id") == id2).unwrap();
    assert_eq!(
        (field(two, "name"), field(two, "user"), field(two, "db"), field(two, "flags")),
        ("worker-2", "default", "0", "N")
    );
    assert_eq!(field(two, "cmd"), "client|id");
    let demo_list = text(&demo.cmd(&[b"CLIENT", b"LIST"]).await);
    assert_eq!(demo_list.lines().count(), 1);
    assert_eq!(field(demo_list.trim(), "user"), "demo");

    // CLIENT INFO: this connection, in RESP3 a verbatim string.
    demo.cmd(&[b"HELLO", b"3"]).await;
    let info = demo.cmd(&[b"CLIENT", b"INFO"]).await;
    assert!(info.starts_with(b"="), "{:?}", String::from_utf8_lossy(&info));
    let info = text(&info).trim_end().to_string();
    assert_eq!((field(&info, "id"), field(&info, "resp"), field(&info, "cmd")), (demo_id.as_str(), "3", "client|info"));

    // Subscribed and in-MULTI connections show it.
    app2.send(&encode(&[b"SUBSCRIBE", b"a", b"b"])).await;
    app2.reply().await;
    app2.reply().await;
    assert_eq!(app1.cmd(&[b"MULTI"]).await, b"+OK\r\n");
    assert_eq!(app1.cmd(&[b"GET", b"x"]).await, b"+QUEUED\r\n");
    assert_eq!(app1.cmd(&[b"DISCARD"]).await, b"+OK\r\n");
    let mut app3 = proxy.raw().await;
    let pubsub = text(&app3.cmd(&[b"CLIENT", b"LIST", b"TYPE", b"pubsub"]).await);
    assert_eq!(pubsub.lines().count(), 1, "{pubsub}");
    assert_eq!((field(pubsub.trim(), "flags"), field(pubsub.trim(), "sub")), ("P", "2"));
    let by_id = text(&app3.cmd(&[b"CLIENT", b"LIST", b"ID", id1.as_bytes(), demo_id.as_bytes()]).await);
    assert_eq!(by_id.lines().count(), 1, "another tenant's id lists nothing: {by_id}");

    // Killing: another tenant's connection is not there; one's own goes.
    assert_eq!(app3.cmd(&[b"CLIENT", b"KILL", b"ID", demo_id.as_bytes()]).await, b":0\r\n");
    assert_eq!(demo.cmd(&[b"PING"]).await, b"+PONG\r\n");
    assert_eq!(app3.cmd(&[b"CLIENT", b"KILL", b"USER", b"demo"]).await, b"-ERR No such user 'demo'\r\n");
    assert_eq!(app3.cmd(&[b"CLIENT", b"KILL", b"127.0.0.1:1"]).await, b"-ERR No such client\r\n");
    assert_eq!(app3.cmd(&[b"CLIENT", b"KILL", b"TYPE", b"bogus"]).await, b"-ERR Unknown client type 'bogus'\r\n");
    assert_eq!(app3.cmd(&[b"CLIENT", b"KILL", b"ID", id1.as_bytes()]).await, b":1\r\n");
    assert!(app1.closed().await, "killed connection still open");
    // TYPE normal with SKIPME (default yes): app2 is pubsub, so nothing.
    assert_eq!(app3.cmd(&[b"CLIENT", b"KILL", b"TYPE", b"normal"]).await, b":0\r\n");
    assert_eq!(app3.cmd(&[b"CLIENT", b"KILL", b"TYPE", b"pubsub"]).await, b":1\r\n");
    assert!(app2.closed().await);
    // Killing oneself: the reply, then the connection closes.
    let me = id_of(&mut app3).await;
    assert_eq!(app3.cmd(&[b"CLIENT", b"KILL", b"ID", me.as_bytes(), b"SKIPME", b"no"]).await, b":1\r\n");
    assert!(app3.closed().await);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut app4 = proxy.raw().await;
    let left = text(&app4.cmd(&[b"CLIENT", b"LIST"]).await);
    assert_eq!(left.lines().count(), 1, "only app4 is left: {left}");
}

/// On shutdown every client is closed, but only after the replies it is
/// owed: a request waiting on a stalled backend still gets its answer.
#[tokio::test]
async fn shutdown_closes_clients_after_the_replies_they_are_owed() {
    let redis = RedisServer::start();
    let proxy = TestProxy::start(&format!(
        "backends:\n  local: {{ kind: standalone, nodes: [\"{}\"] }}\n\
         tenants:\n  app: {{ backend: local, namespace: \"app:\" }}\ndefault_tenant: app\n",
        redis.addr()
    ))
    .await;
    let mut idle = proxy.raw().await;
    let mut waiting = proxy.raw().await;
    assert_eq!(waiting.cmd(&[b"SET", b"k", b"v"]).await, b"+OK\r\n");
    assert_eq!(idle.cmd(&[b"PING"]).await, b"+PONG\r\n");
    redis.freeze();
    waiting.send(&encode(&[b"GET", b"k"])).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let stopping = tokio::spawn(proxy.stop());
    assert!(idle.closed().await, "an idle client is closed at shutdown");
    redis.thaw();
    assert_eq!(waiting.reply().await, b"$1\r\nv\r\n", "the owed reply comes first");
    assert!(waiting.closed().await, "then the connection closes");
    stopping.await.expect("shutdown");
}

/// The drain (SIGTERM, or POST /drain): /ready says 503 at once, every
/// request a client sent is answered before its connection closes, a
/// subscriber is closed cleanly, and the drain ends once the last client is
/// gone, well within its time.
#[tokio::test]
async fn a_drain_under_pipelining_load_answers_every_request_received_and_closes_every_connection() {
    let _heavy = tenantry_tests::heavy().await;
    let redis = RedisServer::start();
    // A tenant on a second backend, frozen during the drain: a reply owed
    // there holds the drain open while /ready is looked at.
    let slow = RedisServer::start();
    let proxy = TestProxy::start(&format!(
        "admin: 127.0.0.1:0\n\
         backends:\n  local: {{ kind: standalone, nodes: [\"{}\"] }}\n  slow: {{ kind: standalone, nodes: [\"{}\"] }}\n\
         tenants:\n  app: {{ backend: local, namespace: \"app:\" }}\n  \
         hold: {{ backend: slow, namespace: \"h:\", auth: {{ username: hold, password: pw }} }}\n\
         default_tenant: app\n",
        redis.addr(),
        slow.addr()
    ))
    .await;
    let admin = proxy.admin_addr().unwrap();
    let mut holder = proxy.login("hold", "pw").await;
    assert_eq!(holder.cmd(&[b"SET", b"k", b"v"]).await, b"+OK\r\n");
    slow.freeze();
    holder.send(&encode(&[b"GET", b"k"])).await;
    assert_eq!(tenantry_tests::http_get(admin, "/ready").await.0, 200);
    let mut blpop = proxy.raw().await;
    blpop.send(&encode(&[b"BLPOP", b"q", b"0"])).await;
    let mut blmove = proxy.raw().await;
    blmove.send(&encode(&[b"BLMOVE", b"a", b"b", b"LEFT", b"RIGHT", b"0"])).await;
    let mut subscriber = proxy.raw().await;
    assert!(subscriber.cmd(&[b"SUBSCRIBE", b"news"]).await.starts_with(b"*3\r\n$9\r\nsubscribe"));
    // 8 clients, each pipelining 50 INCRs of its own counter at a time.
    let clients: Vec<_> = (0..8)
        .map(|i| {
            let addr = proxy.addr;
            tokio::spawn(async move {
                let key = format!("n{i}");
                let batch: Vec<u8> = (0..50).flat_map(|_| encode(&[b"INCR", key.as_bytes()])).collect();
                let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
                let (mut answered, mut buf) = (0u64, bytes::BytesMut::new());
                loop {
                    use tokio::io::{AsyncReadExt, AsyncWriteExt};
                    if c.write_all(&batch).await.is_err() {
                        return answered; // closed before this batch was sent
                    }
                    let mut got = 0;
                    while got < 50 {
                        match tenantry_protocol::reply::reply_len(&buf).unwrap() {
                            Some(n) => {
                                let r = buf.split_to(n);
                                answered += 1;
                                assert_eq!(&r[..], format!(":{answered}\r\n").as_bytes(), "client {i}");
                                got += 1;
                            }
                            None => {
                                let n = c.read_buf(&mut buf).await.unwrap_or(0);
                                if n == 0 {
                                    // Closed: only between requests, never with
                                    // some of a batch's replies owed.
                                    assert_eq!(got, 0, "client {i}: closed with {} replies owed", 50 - got);
                                    return answered;
                                }
                            }
                        }
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = std::time::Instant::now();
    let draining = tokio::spawn(proxy.stop_with(Duration::from_secs(5)));
    // /ready says 503 within 100 ms.
    loop {
        let (code, body) = tenantry_tests::http_get(admin, "/ready").await;
        if code == 503 {
            assert!(body.contains("draining"), "{body}");
            break;
        }
        assert!(started.elapsed() < Duration::from_millis(100), "/ready still {code} after {:?}", started.elapsed());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for (i, c) in clients.into_iter().enumerate() {
        let answered = c.await.expect("client saw no error and no lost reply");
        assert!(answered >= 50, "client {i} answered {answered}");
        let stored = redis.cli(&["GET", &format!("app:n{i}")]);
        assert_eq!(stored.trim_end(), answered.to_string(), "client {i}: every INCR sent was answered");
    }
    assert!(subscriber.closed().await, "the subscriber is closed");
    // Blocked commands get the answer of their timeout, then are closed.
    assert_eq!(blpop.reply().await, b"*-1\r\n");
    assert!(blpop.closed().await);
    assert_eq!(blmove.reply().await, b"$-1\r\n");
    assert!(blmove.closed().await);
    // The reply owed by the frozen backend is delivered, then the drain ends.
    assert!(!draining.is_finished(), "the drain waits for the owed reply");
    slow.thaw();
    assert_eq!(holder.reply().await, b"$1\r\nv\r\n");
    assert!(holder.closed().await);
    draining.await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(2), "the drain took {:?}", started.elapsed());
}

/// CLIENT NO-EVICT is about the client's own connection: answered as Redis
/// answers it, and shown in its flags.
#[tokio::test]
async fn client_no_evict_is_the_connections_own_as_in_redis() {
    let redis = RedisServer::start();
    let proxy = TestProxy::two_tenants(&redis).await;
    let mut direct = RawClient::connect(redis.addr()).await;
    let mut c = proxy.raw().await;
    for args in
        [&[&b"CLIENT"[..], b"NO-EVICT", b"on"][..], &[b"CLIENT", b"NO-EVICT", b"maybe"], &[b"CLIENT", b"NO-EVICT"]]
    {
        assert_eq!(c.cmd(args).await, direct.cmd(args).await, "{args:?}");
    }
    let flags = |info: Vec<u8>| {
        let info = String::from_utf8(info).unwrap();
        info.split(' ').find_map(|f| f.strip_prefix("flags=")).unwrap().to_string()
    };
    assert_eq!(flags(c.cmd(&[b"CLIENT", b"INFO"]).await), flags(direct.cmd(&[b"CLIENT", b"INFO"]).await));
    assert_eq!(flags(c.cmd(&[b"CLIENT", b"INFO"]).await), "e");
    assert_eq!(c.cmd(&[b"CLIENT", b"NO-EVICT", b"OFF"]).await, b"+OK\r\n");
    assert_eq!(flags(c.cmd(&[b"CLIENT", b"INFO"]).await), "N");
}
