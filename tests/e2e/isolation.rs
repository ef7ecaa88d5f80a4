use redis::AsyncCommands;
use tenantry_tests::{direct, RedisServer, TestProxy};

#[tokio::test]
async fn two_tenants_writing_the_same_key_see_their_own_values() {
    let redis = RedisServer::start();
    let proxy = TestProxy::two_tenants(&redis).await;
    let mut app = proxy.client().await;
    let mut demo = proxy.client_as("demo", "demo-pw").await;

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

/// Walks the whole command table as tenant `demo`, aiming generated
/// invocations of every command and subcommand at the names of tenant `app`'s
/// keys: no reply shows app's data or namespace, and app's keys are exactly
/// as they were (nothing read, written, expired, renamed or deleted).
#[tokio::test]
async fn no_command_in_the_table_reaches_another_tenants_data() {
    use tenantry_protocol::command::{CommandSpec, COMMANDS};
    let _heavy = tenantry_tests::heavy().await;
    let redis = RedisServer::start();
    let proxy = TestProxy::two_tenants(&redis).await;
    let mut app = proxy.raw().await;
    for cmd in [
        "SET k SECRET-A",
        "HSET h f SECRET-A",
        "RPUSH l SECRET-A",
        "SADD s SECRET-A",
        "ZADD z 1 SECRET-A",
        "XADD x 1-1 f SECRET-A",
        "PFADD p SECRET-A",
        "GEOADD g 13.36 38.11 SECRET-A",
        "SET {t}k SECRET-A",
    ] {
        let args: Vec<&[u8]> = cmd.split(' ').map(str::as_bytes).collect();
        assert!(!app.cmd(&args).await.starts_with(b"-"), "{cmd}");
    }
    let mut backend = direct(&redis).await;
    let snapshot = |keys: Vec<String>| async {
        let mut d = direct(&redis).await;
        let mut out = Vec::new();
        for k in keys.into_iter().filter(|k| k.starts_with("app:")) {
            let dump: Vec<u8> = redis::cmd("DUMP").arg(&k).query_async(&mut d).await.unwrap();
            let ttl: i64 = redis::cmd("PTTL").arg(&k).query_async(&mut d).await.unwrap();
            out.push((k, dump, ttl));
        }
        out.sort();
        out
    };
    let before = snapshot(backend.keys("*").await.unwrap()).await;
    assert_eq!(before.len(), 9);

    let mut demo = proxy.raw().await;
    assert_eq!(demo.cmd(&[b"AUTH", b"demo", b"demo-pw"]).await, b"+OK\r\n");
    let names: [&[u8]; 9] = [b"k", b"h", b"l", b"s", b"z", b"x", b"p", b"g", b"{t}k"];
    let words: [&[u8]; 20] = [
        b"k", b"h", b"l", b"s", b"z", b"x", b"p", b"g", b"*", b"0", b"1", b"-1", b"+inf", b"STORE", b"STREAMS", b"BY",
        b"GET", b"#", b"$", b"KEYS",
    ];
    let mut gen = tenantry_tests::Invocations::new(0x150);
    let mut sent = 0;
    for top in COMMANDS {
        let specs: Vec<&CommandSpec> =
            if top.subcommands.is_empty() { vec![top] } else { top.subcommands.iter().collect() };
        // These change who the connection is, or end it; blocking commands
        // could wait forever on a generated timeout of 0 (tests/e2e/blocking.rs
        // covers them).
        let skip = |s: &CommandSpec| {
            matches!(s.name, "quit" | "reset" | "auth" | "hello")
                || s.has_flag(tenantry_protocol::command::flags::BLOCKING)
        };
        for spec in specs.into_iter().filter(|s| !skip(s)) {
            for _ in 0..6 {
                let args = gen.next(spec, &words, |i| names[i % names.len()].to_vec());
                let refs: Vec<&[u8]> = args.iter().map(|a| a.as_slice()).collect();
                let reply = demo.cmd(&refs).await;
                let shown = String::from_utf8_lossy(&reply);
                assert!(
                    !shown.contains("SECRET-A") && !shown.contains("app:"),
                    "{} leaked: {shown}",
                    String::from_utf8_lossy(&args.join(&b' '))
                );
                sent += 1;
            }
        }
    }
    assert!(sent > 2000, "{sent}");
    // A MULTI from the walk may still be open: close it.
    demo.cmd(&[b"DISCARD"]).await;

    let keys: Vec<String> = backend.keys("*").await.unwrap();
    for k in &keys {
        assert!(
            k.starts_with("app:") || k.starts_with("demo:") || k.starts_with("tenantry:"),
            "a key outside every namespace: {k}"
        );
    }
    assert_eq!(snapshot(keys).await, before, "tenant app's keys changed");
}
