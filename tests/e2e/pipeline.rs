use tenantry_tests::{encode, RedisServer, TestProxy};

/// 10,000 mixed commands in one write: backend replies, tenantry's own
/// replies and errors interleave, and every reply comes back in order.
#[tokio::test]
async fn ten_thousand_pipelined_commands_reply_in_order() {
    let _heavy = tenantry_tests::heavy().await;
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
                    format!("-ERR unknown command 'NOSUCH', with args beginning with: '{key}' \r\n").into_bytes(),
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
        assert_eq!(String::from_utf8_lossy(&got), String::from_utf8_lossy(want), "reply {i}");
    }
}

/// Many clients pipelining at once over the shared backend connections:
/// each gets its own replies, never another client's.
#[tokio::test]
async fn concurrent_clients_never_get_each_others_replies() {
    let _heavy = tenantry_tests::heavy().await;
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
                request.extend(encode(&[b"SET", format!("key{c}").as_bytes(), v.as_bytes()]));
                request.extend(encode(&[b"GET", format!("key{c}").as_bytes()]));
            }
            raw.send(&request).await;
            for i in 0..500 {
                assert_eq!(raw.reply().await, b"+OK\r\n");
                let v = format!("c{c}-{i}");
                assert_eq!(raw.reply().await, format!("${}\r\n{v}\r\n", v.len()).into_bytes());
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

/// A client that pipelines without reading its replies stops being read once
/// `max_pipeline` requests are in flight and its output buffer is full,
/// instead of having its replies buffered without bound; when it reads again,
/// every reply arrives, in order.
#[tokio::test]
async fn a_client_that_does_not_read_is_not_read_either() {
    let _heavy = tenantry_tests::heavy().await;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let redis = RedisServer::start();
    let proxy = TestProxy::start(&format!(
        "limits: {{ max_pipeline: 64 }}\nbackends:\n  local: {{ kind: standalone, nodes: [\"{}\"] }}\n\
         tenants:\n  app: {{ backend: local, namespace: \"app:\" }}\ndefault_tenant: app\n",
        redis.addr()
    ))
    .await;
    // 2,000 ECHOs of 64 KiB: 128 MiB of replies if tenantry buffered them all.
    let payload = vec![b'e'; 64 * 1024];
    let one = encode(&[b"ECHO", &payload]);
    let total = 2_000;
    let request: Vec<u8> = one.iter().copied().cycle().take(one.len() * total).collect();
    let mut stream = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    let (mut rd, mut wr) = stream.split();

    let mut written = 0;
    loop {
        match tokio::time::timeout(Duration::from_secs(1), wr.write(&request[written..])).await {
            Ok(Ok(n)) => written += n,
            Ok(Err(e)) => panic!("write failed: {e}"),
            Err(_) => break, // no progress for a second: tenantry stopped reading
        }
        assert!(written < request.len(), "tenantry read all 128 MiB from a client that reads nothing");
    }
    assert!(written < request.len() / 4, "tenantry read {written} bytes before pushing back");

    let mut header = format!("${}\r\n", payload.len()).into_bytes();
    header.extend_from_slice(&payload);
    header.extend_from_slice(b"\r\n");
    let expected = header;
    let reader = async {
        let mut buf = vec![0u8; expected.len()];
        for i in 0..total {
            rd.read_exact(&mut buf).await.unwrap();
            assert!(buf == expected, "reply {i} differs");
        }
    };
    let writer = async { wr.write_all(&request[written..]).await.unwrap() };
    tokio::join!(reader, writer);
}
