use tenantry_tests::{encode, RedisServer, TestProxy};

/// 10,000 mixed commands in one write: backend replies, tenantry's own
/// replies and errors interleave, and every reply comes back in order.
#[tokio::test]
async fn ten_thousand_pipelined_commands_reply_in_order() {
    let redis = RedisServer::start();
    let proxy = TestProxy::two_tenants(&redis).await;
    let mut raw = proxy.raw().await;
    let mut request = Vec::new();
    let mut expected: Vec<Vec<u8>> = Vec::new();
    let mut counter = 0;
    for i in 0..10_000 {
        let key = format!("k{}", i % 500);
        let val = format!("v{i}");
        match i % 7 {
            0 => {
                request.extend(encode(&[b"SET", key.as_bytes(), val.as_bytes()]));
                expected.push(b"+OK\r\n".to_vec());
            }
            1 => {
                request.extend(encode(&[b"SET", key.as_bytes(), val.as_bytes()]));
                request.extend(encode(&[b"GET", key.as_bytes()]));
                expected.push(b"+OK\r\n".to_vec());
                expected.push(format!("${}\r\n{val}\r\n", val.len()).into_bytes());
            }
            2 => {
                counter += 1;
                request.extend(encode(&[b"INCR", b"counter"]));
                expected.push(format!(":{counter}\r\n").into_bytes());
            }
            3 => {
                request.extend(encode(&[b"NOSUCH", key.as_bytes()]));
                expected.push(
                    format!(
                        "-ERR unknown command 'NOSUCH', with args beginning with: '{key}' \r\n"
                    )
                    .into_bytes(),
                );
            }
            4 => {
                request.extend(encode(&[b"CLIENT", b"SETNAME", format!("n{i}").as_bytes()]));
                expected.push(b"+OK\r\n".to_vec());
            }
            5 => {
                request.extend(encode(&[b"ECHO", val.as_bytes()]));
                expected.push(format!("${}\r\n{val}\r\n", val.len()).into_bytes());
            }
            _ => {
                request.extend(encode(&[b"GET"]));
                expected.push(b"-ERR wrong number of arguments for 'get' command\r\n".to_vec());
            }
        }
    }
    raw.send(&request).await;
    for (i, want) in expected.iter().enumerate() {
        let got = raw.reply().await;
        assert_eq!(
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(want),
            "reply {i}"
        );
    }
}

/// Many clients pipelining at once over the shared backend connections:
/// each gets its own replies, never another client's.
#[tokio::test]
async fn concurrent_clients_never_get_each_others_replies() {
    let redis = RedisServer::start();
    let proxy = TestProxy::two_tenants(&redis).await;
    let mut tasks = Vec::new();
    for c in 0..20 {
        let addr = proxy.addr;
        tasks.push(tokio::spawn(async move {
            let mut raw = tenantry_tests::RawClient::connect(addr).await;
            let mut request = Vec::new();
            for i in 0..500 {
                let v = format!("c{c}-{i}");
                request.extend(encode(&[
                    b"SET",
                    format!("key{c}").as_bytes(),
                    v.as_bytes(),
                ]));
                request.extend(encode(&[b"GET", format!("key{c}").as_bytes()]));
            }
            raw.send(&request).await;
            for i in 0..500 {
                assert_eq!(raw.reply().await, b"+OK\r\n");
                let v = format!("c{c}-{i}");
                assert_eq!(
                    raw.reply().await,
                    format!("${}\r\n{v}\r\n", v.len()).into_bytes()
                );
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}
