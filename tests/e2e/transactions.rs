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
];

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
    let watch = redis::cmd("WATCH").arg("k").query_async::<()>(&mut c).await.unwrap_err();
    assert!(watch.to_string().contains("WATCH is not supported yet"), "{watch}");
}
