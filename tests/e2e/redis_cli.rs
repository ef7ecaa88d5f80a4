//! redis-cli, Redis's own client, through tenantry: the same script of
//! commands prints the same output as against Redis directly, and its
//! scanning and Pub/Sub modes work.

use std::process::Stdio;
use std::time::Duration;
use tenantry_tests::{RedisServer, TestProxy};
use tokio::io::AsyncWriteExt;

async fn redis_cli(port: u16, args: &[&str], stdin: &str) -> String {
    let mut child = tokio::process::Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("redis-cli (Debian's redis-tools; `make test` installs it)");
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.as_bytes()).await.unwrap();
    drop(input);
    let out = tokio::time::timeout(Duration::from_secs(20), child.wait_with_output()).await.unwrap().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

const SCRIPT: &str = "SET k 1
INCR k
MULTI
INCR k
LPUSH list a b c
EXEC
WATCH k
MULTI
INCR k
EXEC
RPUSH q x
BLPOP q 1
BLPOP nothing 0.1
LMPOP 1 list LEFT COUNT 2
SADD s a b
SMISMEMBER s a z
KEYS k*
DBSIZE
PUBLISH news hi
PUBSUB NUMSUB news
EXISTS k list q nothing
FLUSHDB
DBSIZE
";

#[tokio::test]
async fn redis_cli_prints_the_same_as_against_redis() {
    let direct = RedisServer::start();
    let backend = RedisServer::start();
    let proxy = TestProxy::two_tenants(&backend).await;
    for extra in [&[][..], &["-3"][..]] {
        let want = redis_cli(direct.port(), extra, SCRIPT).await;
        let got = redis_cli(proxy.addr.port(), extra, SCRIPT).await;
        assert!(want.lines().count() > 20, "{want}");
        assert_eq!(got, want, "redis-cli {extra:?}");
        redis_cli(direct.port(), &[], "FLUSHALL\n").await;
    }
}

#[tokio::test]
async fn redis_cli_scans_and_subscribes_as_a_tenant() {
    let backend = RedisServer::start();
    let proxy = TestProxy::two_tenants(&backend).await;
    let port = proxy.addr.port();
    redis_cli(port, &[], "SET user:1 a\nSET user:2 b\nSET cart:1 c\n").await;
    redis_cli(port, &["--user", "demo", "--pass", "demo-pw", "--no-auth-warning"], "SET user:9 x\n").await;
    let mut scanned: Vec<String> =
        redis_cli(port, &["--scan", "--pattern", "user:*"], "").await.lines().map(String::from).collect();
    scanned.sort();
    assert_eq!(scanned, vec!["user:1", "user:2"], "only the tenant's keys, under its names");

    let subscriber = tokio::process::Command::new("redis-cli")
        .args(["-p", &port.to_string(), "SUBSCRIBE", "news"])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(redis_cli(port, &[], "PUBLISH news hello\n").await.trim(), "1");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut subscriber = subscriber;
    subscriber.start_kill().unwrap();
    let out = String::from_utf8_lossy(&subscriber.wait_with_output().await.unwrap().stdout).into_owned();
    assert!(out.contains("subscribe\nnews\n1\nmessage\nnews\nhello"), "{out}");
}
