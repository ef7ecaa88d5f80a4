//! MULTI / EXEC / DISCARD through tenantry, byte for byte as Redis answers,
//! and atomic with respect to other clients on the shared connections.

use tenantry_tests::{encode, RawClient, RedisServer, TestProxy};

const SCRIPT: &[&str] = &[
    "MULTI",
    "SET k 1",
    "INCR k",
    "GET k",
    "EXEC",
    "MULTI",
    "EXEC",
    "MULTI",
    "SET k 5",
    "DISCARD",
    "GET k",
    "EXEC",
    "DISCARD",
    "MULTI",
    "MULTI",
    "INCR k",
    "EXEC",
    "MULTI",
    "NOSUCH x",
    "INCR k",
    "EXEC",
    "GET k",
    "MULTI",
    "GET",
    "EXEC",
    "MULTI",
    "SET s abc",
    "INCR s",
    "GET s",
    "EXEC",
    "MULTI",
    "LPUSH l a b",
    "LRANGE l 0 -1",
    "EXEC",
    "UNWATCH",
    // WATCH: a key this very client changes after WATCH aborts EXEC, as in Redis.
    "WATCH k",
    "SET k 10",
    "MULTI",
    "INCR k",
    "EXEC",
    "GET k",
    "WATCH k",
    "MULTI",
    "INCR k",
    "EXEC",
    "WATCH k l",
    "MULTI",
    "WATCH k",
    "INCR k",
    "EXEC",
    "WATCH k",
    "UNWATCH",
    "SET k 20",
    "MULTI",
    "INCR k",
    "EXEC",
    "WATCH k",
    "MULTI",
    "DISCARD",
    "SET k 30",
    "MULTI",
    "INCR k",
    "EXEC",
    "WATCH k",
    "MULTI",
    "NOSUCH",
    "EXEC",
    "SET k 40",
    "MULTI",
    "INCR k",
    "EXEC",
    "WATCH",
    // Key names in replies inside EXEC's are the client's.
    "MULTI",
    "KEYS k*",
    "RPUSH q a b",
    "LMPOP 1 q LEFT",
    "SCAN 0 MATCH q*",
    "EXEC",
];

/// Another client's write to a watched key aborts the transaction; without
/// one it runs; the watching client's own connection is never shared.
#[tokio::test]
async fn watch_aborts_on_another_clients_write() {
    let redis = RedisServer::start();
    let proxy = TestProxy::two_tenants(&redis).await;
    let mut c1 = proxy.raw().await;
    let mut c2 = proxy.raw().await;
    for (conflict, want) in [(true, &b"*-1\r\n"[..]), (false, &b"*1\r\n:2\r\n"[..])] {
        assert_eq!(c1.cmd(&[b"SET", b"balance", b"1"]).await, b"+OK\r\n");
        assert_eq!(c1.cmd(&[b"WATCH", b"balance"]).await, b"+OK\r\n");
        assert_eq!(c1.cmd(&[b"GET", b"balance"]).await, b"$1\r\n1\r\n");
        if conflict {
            assert_eq!(c2.cmd(&[b"SET", b"balance", b"7"]).await, b"+OK\r\n");
        }
        assert_eq!(c1.cmd(&[b"MULTI"]).await, b"+OK\r\n");
        assert_eq!(c1.cmd(&[b"INCR", b"balance"]).await, b"+QUEUED\r\n");
        assert_eq!(c1.cmd(&[b"EXEC"]).await, want, "conflict: {conflict}");
    }
    // Another tenant writing the same client key is another key: no conflict.
    let mut demo = proxy.raw().await;
    assert_eq!(demo.cmd(&[b"AUTH", b"demo", b"demo-pw"]).await, b"+OK\r\n");
    assert_eq!(c1.cmd(&[b"WATCH", b"balance"]).await, b"+OK\r\n");
    assert_eq!(demo.cmd(&[b"SET", b"balance", b"99"]).await, b"+OK\r\n");
    assert_eq!(c1.cmd(&[b"MULTI"]).await, b"+OK\r\n");
    assert_eq!(c1.cmd(&[b"INCR", b"balance"]).await, b"+QUEUED\r\n");
    assert_eq!(c1.cmd(&[b"EXEC"]).await, b"*1\r\n:3\r\n");
    // Pipelined: WATCH, a read and a transaction in one write, replies in order.
    let mut req = Vec::new();
    for args in
        [&[&b"WATCH"[..], b"p"][..], &[b"GET", b"p"], &[b"MULTI"], &[b"SET", b"p", b"1"], &[b"EXEC"], &[b"GET", b"p"]]
    {
        req.extend(encode(args));
    }
    c1.send(&req).await;
    let mut replies = Vec::new();
    for _ in 0..6 {
        replies.extend(c1.reply().await);
    }
    assert_eq!(replies, b"+OK\r\n$-1\r\n+OK\r\n+QUEUED\r\n*1\r\n+OK\r\n$1\r\n1\r\n");
}

#[tokio::test]
async fn transactions_answer_as_redis_does() {
    for hello in [None, Some(&b"3"[..])] {
        tenantry_tests::assert_same_replies_as_redis(SCRIPT, hello).await;
    }
}

/// While another client hammers the same key, each transaction's INCRs
/// still run back to back: nothing lands inside it.
#[tokio::test]
async fn a_transaction_is_not_interleaved_with_other_clients() {
    let _heavy = tenantry_tests::heavy().await;
    let redis = RedisServer::start();
    let proxy = TestProxy::two_tenants(&redis).await;
    let addr = proxy.addr;
    let noise = tokio::spawn(async move {
        let mut c = RawClient::connect(addr).await;
        let req: Vec<u8> = (0..100).flat_map(|_| encode(&[b"INCR", b"n"])).collect();
        for _ in 0..100 {
            c.send(&req).await;
            for _ in 0..100 {
                c.reply().await;
            }
        }
    });
    let mut c = proxy.raw().await;
    for _ in 0..200 {
        let mut req = encode(&[b"MULTI"]);
        for _ in 0..10 {
            req.extend(encode(&[b"INCR", b"n"]));
        }
        req.extend(encode(&[b"EXEC"]));
        c.send(&req).await;
        assert_eq!(c.reply().await, b"+OK\r\n");
        for _ in 0..10 {
            assert_eq!(c.reply().await, b"+QUEUED\r\n");
        }
        let exec = String::from_utf8(c.reply().await).unwrap();
        let values: Vec<i64> = exec.lines().skip(1).map(|l| l.trim_start_matches(':').parse().unwrap()).collect();
        assert_eq!(values.len(), 10, "{exec}");
        assert!(values.windows(2).all(|w| w[1] == w[0] + 1), "interleaved: {values:?}");
    }
    noise.await.unwrap();
}

#[tokio::test]
async fn the_redis_crate_runs_atomic_pipelines() {
    let redis = RedisServer::start();
    let proxy = TestProxy::two_tenants(&redis).await;
    let mut c = proxy.client().await;
    let (a, b): (i64, String) = redis::pipe()
        .atomic()
        .cmd("INCRBY")
        .arg("counter")
        .arg(5)
        .cmd("SET")
        .arg("name")
        .arg("x")
        .ignore()
        .cmd("GET")
        .arg("name")
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!((a, b.as_str()), (5, "x"));
    // WATCH, then an atomic pipeline: the optimistic-locking pattern.
    redis::cmd("WATCH").arg("counter").query_async::<()>(&mut c).await.unwrap();
    let (n,): (i64,) = redis::pipe().atomic().incr("counter", 1).query_async(&mut c).await.unwrap();
    assert_eq!(n, 6);
}
