use redis::AsyncCommands;
use tenantry_tests::{direct, RedisServer, TestProxy};

#[tokio::test]
async fn two_tenants_writing_the_same_key_see_their_own_values() {
    let redis = RedisServer::start();
    let proxy = TestProxy::two_tenants(&redis).await;
    let mut app = proxy.client().await;
    let mut demo = redis::Client::open(format!("redis://demo:demo-pw@{}/", proxy.addr))
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();

    let _: () = app.set("user:1", "from-app").await.unwrap();
    let _: () = demo.set("user:1", "from-demo").await.unwrap();
    let a: String = app.get("user:1").await.unwrap();
    let d: String = demo.get("user:1").await.unwrap();
    assert_eq!((a.as_str(), d.as_str()), ("from-app", "from-demo"));

    // The backend holds the prefixed keys, nothing else (but tenantry's own
    // event-reporter lease, under the reserved `tenantry:` prefix).
    let mut backend = direct(&redis).await;
    let mut keys: Vec<String> = backend.keys("*").await.unwrap();
    keys.retain(|k| !k.starts_with("tenantry:"));
    keys.sort();
    assert_eq!(keys, vec!["app:user:1", "demo:user:1"]);
    let raw: String = backend.get("demo:user:1").await.unwrap();
    assert_eq!(raw, "from-demo");

    // Deleting in one tenant leaves the other's key.
    let n: i64 = demo.del("user:1").await.unwrap();
    assert_eq!(n, 1);
    let still: Option<String> = app.get("user:1").await.unwrap();
    assert_eq!(still.as_deref(), Some("from-app"));
}

#[tokio::test]
async fn multi_key_commands_and_key_returning_replies_are_namespaced() {
    let redis = RedisServer::start();
    let proxy = TestProxy::two_tenants(&redis).await;
    let mut c = proxy.client().await;
    let _: () = redis::cmd("MSET").arg("a").arg(1).arg("b").arg(2).query_async(&mut c).await.unwrap();
    let v: Vec<Option<i64>> = c.mget(&["a", "b", "zz"]).await.unwrap();
    assert_eq!(v, vec![Some(1), Some(2), None]);
    let _: () = redis::cmd("RENAME").arg("a").arg("c").query_async(&mut c).await.unwrap();
    let n: i64 = redis::cmd("EXISTS").arg("a").arg("b").arg("c").query_async(&mut c).await.unwrap();
    assert_eq!(n, 2);

    // LMPOP names the key it popped from: the client sees its own name.
    let _: () = c.rpush("list", &["x", "y"]).await.unwrap();
    let popped: (String, Vec<String>) =
        redis::cmd("LMPOP").arg(2).arg("nolist").arg("list").arg("LEFT").query_async(&mut c).await.unwrap();
    assert_eq!(popped, ("list".to_string(), vec!["x".to_string()]));

    // XREAD replies name streams.
    let _: String = redis::cmd("XADD").arg("s1").arg("1-1").arg("f").arg("v").query_async(&mut c).await.unwrap();
    let reply: redis::Value = redis::cmd("XREAD").arg("STREAMS").arg("s1").arg("0").query_async(&mut c).await.unwrap();
    let text = format!("{reply:?}");
    assert!(text.contains("s1") && !text.contains("app:"), "{text}");

    // SORT's BY and GET patterns and STORE stay inside the namespace.
    let _: () = c.rpush("ids", &["2", "1"]).await.unwrap();
    let _: () = c.set("w_1", "10").await.unwrap();
    let _: () = c.set("w_2", "20").await.unwrap();
    let _: () = c.set("name_1", "one").await.unwrap();
    let _: () = c.set("name_2", "two").await.unwrap();
    let sorted: Vec<String> = redis::cmd("SORT")
        .arg("ids")
        .arg("BY")
        .arg("w_*")
        .arg("GET")
        .arg("name_*")
        .arg("GET")
        .arg("#")
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(sorted, vec!["one", "1", "two", "2"]);
    let mut backend = direct(&redis).await;
    let _: () = backend.set("w_1", "999").await.unwrap(); // outside every namespace: must not be read
    let stored: i64 =
        redis::cmd("SORT").arg("ids").arg("BY").arg("w_*").arg("STORE").arg("out").query_async(&mut c).await.unwrap();
    assert_eq!(stored, 2);
    let out: Vec<String> = backend.lrange("app:out", 0, -1).await.unwrap();
    assert_eq!(out, vec!["1", "2"]);
}

#[tokio::test]
async fn binary_keys_and_values_round_trip() {
    let redis = RedisServer::start();
    let proxy = TestProxy::two_tenants(&redis).await;
    let mut c = proxy.client().await;
    let key: Vec<u8> = (0u8..=255).collect();
    let value: Vec<u8> = (0u8..=255).rev().cycle().take(100_000).collect();
    let _: () = c.set(&key, &value).await.unwrap();
    let got: Vec<u8> = c.get(&key).await.unwrap();
    assert_eq!(got, value);
    let mut prefixed = b"app:".to_vec();
    prefixed.extend_from_slice(&key);
    let mut backend = direct(&redis).await;
    let raw: Vec<u8> = backend.get(&prefixed).await.unwrap();
    assert_eq!(raw, value);
    // A key containing CRLF and a hash tag.
    let _: () = c.set(b"a\r\n{tag}b".as_slice(), b"\r\n".as_slice()).await.unwrap();
    let got: Vec<u8> = c.get(b"a\r\n{tag}b".as_slice()).await.unwrap();
    assert_eq!(got, b"\r\n");
}
