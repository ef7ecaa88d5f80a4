//! Pub/Sub through tenantry: channels and patterns namespaced both ways,
//! RESP2 subscribed-mode rules and RESP3 pushes exactly as Redis gives them,
//! and no tenant receiving, listing or counting another's.

use futures_util::StreamExt;
use std::time::Duration;
use tenantry_tests::{encode, RawClient, RedisServer, TestProxy};

/// A subscriber's and a publisher's view of one exchange.
struct Side {
    sub: RawClient,
    publisher: RawClient,
}

impl Side {
    /// Sends `line` on the subscriber connection and reads `frames` frames.
    async fn sub(&mut self, line: &str, frames: usize) -> Vec<u8> {
        let args: Vec<&[u8]> = line.split(' ').map(str::as_bytes).collect();
        self.sub.send(&encode(&args)).await;
        let mut out = Vec::new();
        for _ in 0..frames {
            out.extend(self.sub.reply().await);
        }
        out
    }

    async fn publish(&mut self, line: &str) -> Vec<u8> {
        let args: Vec<&[u8]> = line.split(' ').map(str::as_bytes).collect();
        self.publisher.cmd(&args).await
    }
}

/// The same exchange against Redis directly and through tenantry (as the
/// default tenant, namespace `app:`), compared byte for byte.
async fn differential(hello: Option<&str>, steps: &[(&str, &str, usize)]) {
    let direct_redis = RedisServer::start();
    let proxied_redis = RedisServer::start();
    let proxy = TestProxy::two_tenants(&proxied_redis).await;
    let mut direct = Side {
        sub: RawClient::connect(direct_redis.addr()).await,
        publisher: RawClient::connect(direct_redis.addr()).await,
    };
    let mut proxied = Side { sub: proxy.raw().await, publisher: proxy.raw().await };
    if let Some(proto) = hello {
        let line = format!("HELLO {proto}");
        let a = direct.sub(&line, 1).await;
        let b = proxied.sub(&line, 1).await;
        assert_eq!(a.starts_with(b"%"), b.starts_with(b"%"));
    }
    for &(who, line, frames) in steps {
        let (want, got) = if who == "pub" {
            (direct.publish(line).await, proxied.publish(line).await)
        } else {
            (direct.sub(line, frames).await, proxied.sub(line, frames).await)
        };
        assert_eq!(String::from_utf8_lossy(&got), String::from_utf8_lossy(&want), "{who}: {line} (hello {hello:?})");
    }
}

#[tokio::test]
async fn resp2_subscribed_mode_is_byte_identical_to_redis() {
    differential(
        None,
        &[
            ("sub", "SUBSCRIBE news sport", 2),
            ("sub", "PSUBSCRIBE n*", 1),
            ("sub", "SSUBSCRIBE shard1", 1),
            ("pub", "PUBLISH news hello", 0),
            ("sub", "PING", 2), // the message, then the subscribed PING's [pong, ""]
            ("pub", "SPUBLISH shard1 s-hello", 0),
            ("sub", "PING payload", 2),
            ("sub", "GET k", 1),
            ("sub", "UNSUBSCRIBE news", 1),
            ("pub", "PUBSUB NUMSUB news sport nothing", 0),
            ("pub", "PUBSUB CHANNELS", 0),
            ("pub", "PUBSUB CHANNELS s*", 0),
            ("pub", "PUBSUB SHARDCHANNELS", 0),
            ("pub", "PUBSUB SHARDNUMSUB shard1", 0),
            ("pub", "PUBSUB NUMPAT", 0),
            ("sub", "UNSUBSCRIBE", 1),
            ("sub", "PUNSUBSCRIBE", 1),
            ("sub", "SUNSUBSCRIBE", 1),
            // Out of subscribed mode: anything goes again.
            ("sub", "SET k v", 1),
            ("sub", "UNSUBSCRIBE", 1),
            ("sub", "PUNSUBSCRIBE a b", 2),
        ],
    )
    .await;
}

#[tokio::test]
async fn resp3_pushes_mix_with_replies_as_in_redis() {
    differential(
        Some("3"),
        &[
            ("sub", "SUBSCRIBE news", 1),
            ("sub", "PSUBSCRIBE n*", 1),
            ("sub", "SET k v", 1),
            ("pub", "PUBLISH news hello", 0),
            ("sub", "GET k", 3), // message, pmessage, then the reply
            ("sub", "PING", 1),
            ("sub", "UNSUBSCRIBE", 1),
            ("sub", "PUNSUBSCRIBE", 1),
            ("sub", "SUNSUBSCRIBE", 1),
        ],
    )
    .await;
}

#[tokio::test]
async fn tenants_never_receive_list_or_count_each_others_channels() {
    let redis = RedisServer::start();
    let proxy = TestProxy::two_tenants(&redis).await;
    // The default tenant (app:) and demo subscribe to the same names.
    let mut app = proxy.raw().await;
    app.send(&encode(&[b"SUBSCRIBE", b"news"])).await;
    app.reply().await;
    app.send(&encode(&[b"PSUBSCRIBE", b"*"])).await;
    app.reply().await;
    let mut demo = proxy.login("demo", "demo-pw").await;
    demo.send(&encode(&[b"SUBSCRIBE", b"news"])).await;
    demo.reply().await;

    let mut demo_pub = proxy.login("demo", "demo-pw").await;
    // One receiver: demo's own subscriber (app's `*` pattern is app:*).
    assert_eq!(demo_pub.cmd(&[b"PUBLISH", b"news", b"for demo"]).await, b":1\r\n");
    assert_eq!(
        demo.reply().await,
        b"*3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$8\r\nfor demo\r\n".to_vec(),
        "demo's subscriber gets its message under the client's channel name"
    );
    assert_eq!(demo_pub.cmd(&[b"PUBSUB", b"CHANNELS"]).await, b"*1\r\n$4\r\nnews\r\n");
    assert_eq!(demo_pub.cmd(&[b"PUBSUB", b"NUMSUB", b"news"]).await, b"*2\r\n$4\r\nnews\r\n:1\r\n");
    assert_eq!(demo_pub.cmd(&[b"PUBSUB", b"NUMPAT"]).await, b":0\r\n", "app's pattern is not demo's");
    let mut app_pub = proxy.raw().await;
    assert_eq!(app_pub.cmd(&[b"PUBSUB", b"NUMPAT"]).await, b":1\r\n");
    // App's subscriber got nothing of demo's: the next frames are for app's own publish.
    assert_eq!(app_pub.cmd(&[b"PUBLISH", b"news", b"for app"]).await, b":2\r\n");
    assert_eq!(app.reply().await, b"*3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$7\r\nfor app\r\n".to_vec());
    assert_eq!(app.reply().await, b"*4\r\n$8\r\npmessage\r\n$1\r\n*\r\n$4\r\nnews\r\n$7\r\nfor app\r\n".to_vec());
    // Keyspace notifications are outside every namespace: a tenant cannot reach them.
    let mut direct = RawClient::connect(redis.addr()).await;
    let channels = direct.cmd(&[b"PUBSUB", b"CHANNELS"]).await;
    assert!(channels.windows(8).any(|w| w == b"app:news") && channels.windows(9).any(|w| w == b"demo:news"));

    // A subscriber that goes away releases its subscription on the backend.
    drop(demo);
    let mut n = Vec::new();
    for _ in 0..50 {
        n = direct.cmd(&[b"PUBSUB", b"NUMSUB", b"demo:news"]).await;
        if n.ends_with(b":0\r\n") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(n.ends_with(b":0\r\n"), "{:?}", String::from_utf8_lossy(&n));
    drop(app);
    let mut numpat = Vec::new();
    for _ in 0..50 {
        numpat = app_pub.cmd(&[b"PUBSUB", b"NUMPAT"]).await;
        if numpat == b":0\r\n" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(numpat, b":0\r\n");
}

/// The `redis` crate's own Pub/Sub client, through tenantry.
#[tokio::test]
async fn the_redis_crate_subscribes_and_receives() {
    let redis = RedisServer::start();
    let proxy = TestProxy::two_tenants(&redis).await;
    let client = redis::Client::open(proxy.url()).unwrap();
    let mut pubsub = client.get_async_pubsub().await.unwrap();
    pubsub.subscribe("orders").await.unwrap();
    pubsub.psubscribe("ord*").await.unwrap();
    let mut publisher = proxy.client().await;
    let receivers: i64 = redis::cmd("PUBLISH").arg("orders").arg("o-1").query_async(&mut publisher).await.unwrap();
    assert_eq!(receivers, 2);
    let mut stream = pubsub.on_message();
    let mut got = Vec::new();
    for _ in 0..2 {
        let msg = tokio::time::timeout(Duration::from_secs(5), stream.next()).await.unwrap().unwrap();
        got.push((msg.get_channel_name().to_string(), msg.get_payload::<String>().unwrap(), msg.from_pattern()));
    }
    got.sort();
    assert_eq!(got, vec![("orders".into(), "o-1".into(), false), ("orders".into(), "o-1".into(), true)]);
}
