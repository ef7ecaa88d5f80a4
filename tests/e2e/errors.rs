use tenantry_tests::{RedisServer, TestProxy};

#[tokio::test]
async fn bad_and_refused_commands_get_errors_and_the_connection_goes_on() {
    let redis = RedisServer::start();
    let proxy = TestProxy::two_tenants(&redis).await;
    let mut c = proxy.raw().await;
    assert_eq!(c.cmd(&[b"GETT", b"a"]).await, b"-ERR unknown command 'GETT', with args beginning with: 'a' \r\n");
    assert_eq!(c.cmd(&[b"SET", b"a"]).await, b"-ERR wrong number of arguments for 'set' command\r\n");
    assert_eq!(c.cmd(&[b"OBJECT", b"NOPE"]).await, b"-ERR unknown subcommand 'NOPE'. Try OBJECT HELP.\r\n");
    for cmd in [
        &[&b"BGSAVE"[..]][..],
        &[b"SWAPDB", b"0", b"1"],
        &[b"CONFIG", b"SET", b"maxmemory", b"1"],
        &[b"FUNCTION", b"KILL"],
        &[b"SHUTDOWN"],
        &[b"MOVE", b"k", b"1"],
    ] {
        let reply = c.cmd(cmd).await;
        let text = String::from_utf8_lossy(&reply);
        assert!(text.starts_with("-ERR command '") && text.contains("is not allowed through tenantry: "), "{text}");
    }
    // Backend errors pass through unchanged.
    assert_eq!(c.cmd(&[b"SET", b"s", b"x"]).await, b"+OK\r\n");
    assert_eq!(c.cmd(&[b"INCR", b"s"]).await, b"-ERR value is not an integer or out of range\r\n");
    assert_eq!(
        c.cmd(&[b"LPUSH", b"s", b"x"]).await,
        b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n"
    );
    assert_eq!(c.cmd(&[b"PING"]).await, b"+PONG\r\n");
}

#[tokio::test]
async fn a_broken_frame_gets_a_protocol_error_then_the_connection_closes() {
    let redis = RedisServer::start();
    let proxy = TestProxy::two_tenants(&redis).await;
    let mut c = proxy.raw().await;
    c.send(b"*1\r\n$4\r\nPING\r\n*1\r\n+PING\r\n").await;
    assert_eq!(c.reply().await, b"+PONG\r\n");
    assert_eq!(c.reply().await, b"-ERR Protocol error: expected '$', got '+'\r\n");
    assert!(c.closed().await);
}

#[tokio::test]
async fn oversized_requests_are_refused_before_they_are_buffered() {
    let redis = RedisServer::start();
    let proxy = TestProxy::start(&format!(
        "limits: {{ max_bulk_bytes: 1KiB, max_inline_bytes: 100, max_args: 8 }}\n\
         backends:\n  local: {{ kind: standalone, nodes: [\"{}\"] }}\n\
         tenants:\n  app: {{ backend: local, namespace: \"app:\" }}\ndefault_tenant: app\n",
        redis.addr()
    ))
    .await;
    let mut c = proxy.raw().await;
    let ok = vec![b'x'; 1024];
    assert_eq!(c.cmd(&[b"SET", b"k", &ok]).await, b"+OK\r\n");
    c.send(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1025\r\n").await;
    assert_eq!(c.reply().await, b"-ERR Protocol error: invalid bulk length\r\n");
    assert!(c.closed().await);

    let mut c = proxy.raw().await;
    c.send(b"*9\r\n").await;
    assert_eq!(c.reply().await, b"-ERR Protocol error: invalid multibulk length\r\n");
    assert!(c.closed().await);

    let mut c = proxy.raw().await;
    c.send(&[b'a'; 200]).await;
    assert_eq!(c.reply().await, b"-ERR Protocol error: too big inline request\r\n");
    assert!(c.closed().await);
}

#[tokio::test]
async fn config_get_leaves_secrets_out_and_config_set_changes_nothing() {
    let redis = RedisServer::start_with(&["--requirepass", "s3cret"]);
    let proxy = TestProxy::start(&format!(
        "backends:\n  local: {{ kind: standalone, nodes: [\"{}\"], password: s3cret }}\n\
         tenants:\n  app: {{ backend: local, namespace: \"app:\" }}\ndefault_tenant: app\n",
        redis.addr()
    ))
    .await;
    let mut c = proxy.raw().await;
    assert_eq!(
        c.cmd(&[b"CONFIG", b"GET", b"maxmemory-policy"]).await,
        b"*2\r\n$16\r\nmaxmemory-policy\r\n$10\r\nnoeviction\r\n"
    );
    assert_eq!(c.cmd(&[b"CONFIG", b"GET", b"requirepass"]).await, b"*0\r\n");
    let all = c.cmd(&[b"CONFIG", b"GET", b"*"]).await;
    assert!(all.windows(9).any(|w| w == b"maxmemory"), "CONFIG GET * lists settings");
    assert!(!all.windows(6).any(|w| w == b"s3cret") && !all.windows(11).any(|w| w == b"requirepass"));
    c.cmd(&[b"HELLO", b"3"]).await;
    assert_eq!(c.cmd(&[b"CONFIG", b"GET", b"maxmemory"]).await, b"%1\r\n$9\r\nmaxmemory\r\n$1\r\n0\r\n");
    // Setting what is already set is a no-op; anything else is refused.
    assert_eq!(c.cmd(&[b"CONFIG", b"SET", b"maxmemory-policy", b"noeviction"]).await, b"+OK\r\n");
    let refused =
        String::from_utf8_lossy(&c.cmd(&[b"CONFIG", b"SET", b"maxmemory-policy", b"allkeys-lru"]).await).into_owned();
    assert!(refused.starts_with("-ERR command 'config|set' is not allowed through tenantry"), "{refused}");
    assert!(c.cmd(&[b"CONFIG", b"SET", b"requirepass", b"s3cret"]).await.starts_with(b"-ERR command 'config|set'"));
}
