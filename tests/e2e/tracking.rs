//! Client-side caching (CLIENT TRACKING, RESP3): invalidations as Redis sends
//! them, under the client's key names, and never for another tenant's keys.

use std::time::Duration;
use tenantry_tests::{encode, RawClient, RedisServer, TestProxy};

async fn cmd(c: &mut RawClient, line: &str) -> Vec<u8> {
    let args: Vec<&[u8]> = line.split(' ').map(str::as_bytes).collect();
    c.cmd(&args).await
}

/// Every frame that arrived before the reply to a PING sent now.
async fn frames(c: &mut RawClient) -> Vec<Vec<u8>> {
    c.send(&encode(&[b"PING", b"probe"])).await;
    let mut out = Vec::new();
    loop {
        let f = c.reply().await;
        if f == b"$5\r\nprobe\r\n" {
            return out;
        }
        out.push(f);
    }
}

/// The same tracking session against Redis directly and through tenantry:
/// `(who, command)`; after each step, everything the tracker received
/// (replies and invalidations) is compared.
async fn differential(steps: &[(&str, &str)]) {
    let direct_redis = RedisServer::start();
    let proxied_redis = RedisServer::start();
    let proxy = TestProxy::two_tenants(&proxied_redis).await;
    let mut sides = [
        (RawClient::connect(direct_redis.addr()).await, RawClient::connect(direct_redis.addr()).await),
        (proxy.raw().await, proxy.raw().await),
    ];
    let mut transcripts = [Vec::new(), Vec::new()];
    for (i, (tracker, writer)) in sides.iter_mut().enumerate() {
        cmd(tracker, "HELLO 3").await;
        for &(who, line) in steps {
            let reply = if who == "tracker" { cmd(tracker, line).await } else { cmd(writer, line).await };
            tokio::time::sleep(Duration::from_millis(20)).await;
            let pushed: Vec<String> =
                frames(tracker).await.iter().map(|f| String::from_utf8_lossy(f).into_owned()).collect();
            transcripts[i].push((who, line, String::from_utf8_lossy(&reply).into_owned(), pushed));
        }
    }
    for (want, got) in transcripts[0].iter().zip(&transcripts[1]) {
        assert_eq!(got, want);
    }
}

#[tokio::test]
async fn default_mode_invalidations_are_byte_identical_to_redis() {
    differential(&[
        ("tracker", "CLIENT TRACKING ON"),
        ("tracker", "SET k v"),
        ("tracker", "GET k"),
        ("writer", "SET k w"),
        ("tracker", "GET k"),
        ("tracker", "MGET a b"),
        ("writer", "DEL a b"),
        ("tracker", "PING"),
        ("tracker", "CLIENT GETREDIR"),
        ("tracker", "CLIENT TRACKING OFF"),
        ("tracker", "GET k"),
        ("writer", "SET k x"),
        ("tracker", "PING"),
        ("tracker", "CLIENT TRACKING ON OPTIN"),
        ("tracker", "GET k"),
        ("tracker", "CLIENT CACHING YES"),
        ("tracker", "GET c"),
        ("writer", "SET k y"),
        ("writer", "SET c y"),
        ("tracker", "PING"),
        ("tracker", "CLIENT TRACKING ON BCAST"),
    ])
    .await;
}

#[tokio::test]
async fn bcast_sees_only_the_tenants_own_keys() {
    let redis = RedisServer::start();
    let proxy = TestProxy::two_tenants(&redis).await;
    let mut tracker = proxy.raw().await;
    cmd(&mut tracker, "HELLO 3").await;
    assert_eq!(cmd(&mut tracker, "CLIENT TRACKING ON BCAST PREFIX user:").await, b"+OK\r\n");
    let mut all = proxy.raw().await;
    cmd(&mut all, "HELLO 3").await;
    assert_eq!(cmd(&mut all, "CLIENT TRACKING ON BCAST").await, b"+OK\r\n");

    let mut writer = proxy.raw().await;
    let mut other_tenant = proxy.raw().await;
    cmd(&mut other_tenant, "AUTH demo demo-pw").await;
    // Another tenant's writes, same names: nobody here hears of them.
    cmd(&mut other_tenant, "SET user:1 x").await;
    cmd(&mut other_tenant, "SET cart:1 x").await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(frames(&mut tracker).await, Vec::<Vec<u8>>::new());
    assert_eq!(frames(&mut all).await, Vec::<Vec<u8>>::new());
    // The tenant's own: by prefix, and everything for BCAST alone.
    cmd(&mut writer, "SET user:1 y").await;
    cmd(&mut writer, "SET cart:1 y").await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let user = b">2\r\n$10\r\ninvalidate\r\n*1\r\n$6\r\nuser:1\r\n".to_vec();
    let cart = b">2\r\n$10\r\ninvalidate\r\n*1\r\n$6\r\ncart:1\r\n".to_vec();
    assert_eq!(frames(&mut tracker).await, vec![user.clone()]);
    assert_eq!(frames(&mut all).await, vec![user, cart]);
}

/// RESP2: invalidations redirected to another of the tenant's connections,
/// subscribed to `__redis__:invalidate`, as Redis's own tests do it.
#[tokio::test]
async fn resp2_redirect_delivers_invalidations_to_the_subscriber() {
    let redis = RedisServer::start();
    let proxy = TestProxy::two_tenants(&redis).await;
    let mut subscriber = proxy.raw().await;
    let id = cmd(&mut subscriber, "CLIENT ID").await;
    let id = String::from_utf8_lossy(&id[1..id.len() - 2]).into_owned();
    subscriber.send(&encode(&[b"SUBSCRIBE", b"__redis__:invalidate"])).await;
    assert_eq!(subscriber.reply().await, b"*3\r\n$9\r\nsubscribe\r\n$20\r\n__redis__:invalidate\r\n:1\r\n");
    let mut tracker = proxy.raw().await;
    assert_eq!(cmd(&mut tracker, &format!("CLIENT TRACKING ON REDIRECT {id}")).await, b"+OK\r\n");
    assert_eq!(cmd(&mut tracker, "CLIENT GETREDIR").await, format!(":{id}\r\n").into_bytes());
    assert_eq!(cmd(&mut tracker, "GET k").await, b"$-1\r\n");
    let mut writer = proxy.raw().await;
    cmd(&mut writer, "SET k v").await;
    assert_eq!(
        subscriber.reply().await,
        b"*3\r\n$7\r\nmessage\r\n$20\r\n__redis__:invalidate\r\n*1\r\n$1\r\nk\r\n".to_vec()
    );
    // Another tenant's connection is not a target, whatever its id.
    let mut demo = proxy.raw().await;
    cmd(&mut demo, "AUTH demo demo-pw").await;
    assert_eq!(
        cmd(&mut demo, &format!("CLIENT TRACKING ON REDIRECT {id}")).await,
        b"-ERR The client ID you want redirect to does not exist\r\n"
    );
    // Without REDIRECT in RESP2, Redis accepts tracking (there is nowhere to send invalidations).
    let mut resp2 = proxy.raw().await;
    assert_eq!(cmd(&mut resp2, "CLIENT TRACKING ON").await, b"+OK\r\n");
}

/// Every frame a RESP2 connection received before the reply to a PING sent now.
async fn subscriber_frames(c: &mut RawClient) -> Vec<Vec<u8>> {
    c.send(&encode(&[b"PING", b"probe"])).await;
    let mut out = Vec::new();
    loop {
        let f = c.reply().await;
        // Subscribed (RESP2) or not.
        if f == b"*2\r\n$4\r\npong\r\n$5\r\nprobe\r\n" || f == b"$5\r\nprobe\r\n" {
            return out;
        }
        out.push(f);
    }
}

/// A tracker (RESP2 at first), a subscriber to `__redis__:invalidate` and
/// a writer, against Redis directly and through tenantry. `{sub}` in a step
/// is the subscriber's client id on that side (and is written so in what
/// is compared). A step by `tracker~` has its reply left out of the
/// comparison (HELLO's names the server's version and the connection's id).
/// `subscribed`: the subscriber subscribes before the first step (else a
/// `subscriber` step does).
async fn redirect_differential(subscribed: bool, steps: &[(&str, &str)]) {
    let direct_redis = RedisServer::start();
    let proxied_redis = RedisServer::start();
    let proxy = TestProxy::two_tenants(&proxied_redis).await;
    let direct = direct_redis.addr();
    let mut transcripts = [Vec::new(), Vec::new()];
    for (side, transcript) in transcripts.iter_mut().enumerate() {
        let connect = || async {
            if side == 0 {
                RawClient::connect(&direct).await
            } else {
                proxy.raw().await
            }
        };
        let (mut tracker, mut subscriber, mut writer) = (connect().await, connect().await, connect().await);
        let id = cmd(&mut subscriber, "CLIENT ID").await;
        let id = String::from_utf8_lossy(&id[1..id.len() - 2]).into_owned();
        if subscribed {
            subscriber.send(&encode(&[b"SUBSCRIBE", b"__redis__:invalidate"])).await;
            subscriber.reply().await;
        }
        let own = format!(":{id}\r\n");
        let norm = |b: &[u8]| {
            if b == own.as_bytes() {
                ":{sub}\r\n".to_string()
            } else {
                String::from_utf8_lossy(b).into_owned()
            }
        };
        for &(who, line) in steps {
            let sent = line.replace("{sub}", &id);
            let reply = match who {
                "writer" => cmd(&mut writer, &sent).await,
                "subscriber" => cmd(&mut subscriber, &sent).await,
                _ => cmd(&mut tracker, &sent).await,
            };
            let reply = if who == "tracker~" { String::new() } else { norm(&reply) };
            tokio::time::sleep(Duration::from_millis(20)).await;
            let pushed: Vec<String> = frames(&mut tracker).await.iter().map(|f| norm(f)).collect();
            let redirected: Vec<String> = subscriber_frames(&mut subscriber).await.iter().map(|f| norm(f)).collect();
            transcript.push((who, line, reply, pushed, redirected));
        }
    }
    assert_eq!(transcripts[0].len(), transcripts[1].len());
    for (want, got) in transcripts[0].iter().zip(&transcripts[1]) {
        assert_eq!(got, want);
    }
}

/// Every transition of tracking's options: REDIRECT added, removed and
/// back, RESP2 <-> RESP3 in between, BCAST prefixes added, modes switched
/// (and the switches Redis refuses), each checked against Redis by what the
/// tracker and the subscriber receive.
#[tokio::test]
async fn tracking_transitions_match_redis() {
    redirect_differential(
        true,
        &[
            ("tracker", "CLIENT TRACKING on REDIRECT {sub}"),
            ("tracker", "GET k"),
            ("writer", "SET k v1"),
            ("tracker", "CLIENT GETREDIR"),
            // To RESP3, then tracking on again without REDIRECT: pushes to the tracker itself.
            ("tracker~", "HELLO 3"),
            ("tracker", "CLIENT TRACKING on"),
            ("tracker", "CLIENT GETREDIR"),
            ("tracker", "GET k"),
            ("writer", "SET k v2"),
            // REDIRECT back, while on.
            ("tracker", "CLIENT TRACKING on REDIRECT {sub}"),
            ("tracker", "GET k"),
            ("writer", "SET k v3"),
            // Back to RESP2: still redirected.
            ("tracker~", "HELLO 2"),
            ("tracker", "GET k"),
            ("writer", "SET k v4"),
            // Without REDIRECT in RESP2: nowhere to send invalidations.
            ("tracker", "CLIENT TRACKING on"),
            ("tracker", "GET k"),
            ("writer", "SET k v5"),
            // Switches Redis refuses while on, and the state they leave.
            ("tracker", "CLIENT TRACKING on BCAST REDIRECT {sub}"),
            ("tracker", "CLIENT TRACKING on OPTIN REDIRECT {sub}"),
            ("tracker", "CLIENT TRACKING on OPTOUT"),
            ("tracker", "CLIENT GETREDIR"),
            ("tracker", "CLIENT CACHING yes"),
            ("tracker", "GET k"),
            ("writer", "SET k v6"),
            ("tracker", "CLIENT TRACKING off"),
            ("tracker", "CLIENT GETREDIR"),
            // BCAST with prefixes added, and overlaps refused.
            ("tracker", "CLIENT TRACKING on BCAST PREFIX a: REDIRECT {sub}"),
            ("writer", "SET a:1 x"),
            ("writer", "SET b:1 x"),
            ("tracker", "CLIENT TRACKING on BCAST PREFIX b: REDIRECT {sub}"),
            ("tracker", "CLIENT TRACKING on BCAST PREFIX a:x REDIRECT {sub}"),
            ("tracker", "CLIENT TRACKING on BCAST PREFIX c PREFIX cd"),
            ("writer", "SET b:2 x"),
            ("writer", "SET c:1 x"),
            ("tracker~", "HELLO 3"),
            ("tracker", "CLIENT TRACKING on BCAST PREFIX c:"),
            ("writer", "SET c:2 x"),
            ("writer", "SET a:2 x"),
            ("tracker", "CLIENT TRACKING off"),
            ("writer", "SET a:3 x"),
            ("tracker", "CLIENT TRACKING on OPTIN PREFIX a"),
        ],
    )
    .await;
}

/// REDIRECT to a connection that subscribes only later: accepted, as Redis
/// does; invalidations before it subscribes are lost (as Redis drops them),
/// and come to it once it has, in the default mode and in BCAST.
#[tokio::test]
async fn redirect_to_a_connection_that_subscribes_later() {
    redirect_differential(
        false,
        &[
            ("tracker", "CLIENT TRACKING on REDIRECT {sub}"),
            ("tracker", "CLIENT GETREDIR"),
            ("tracker", "GET k"),
            ("writer", "SET k v1"),
            ("subscriber", "SUBSCRIBE __redis__:invalidate"),
            ("tracker", "GET k"),
            ("writer", "SET k v2"),
            ("tracker", "CLIENT TRACKING off"),
            ("subscriber", "UNSUBSCRIBE"),
        ],
    )
    .await;
    redirect_differential(
        false,
        &[
            ("tracker", "CLIENT TRACKING on BCAST PREFIX a: PREFIX b: NOLOOP REDIRECT {sub}"),
            ("writer", "SET a:1 x"),
            ("subscriber", "SUBSCRIBE __redis__:invalidate"),
            ("writer", "SET a:2 x"),
            ("writer", "SET b:2 x"),
            ("writer", "SET c:2 x"),
            ("tracker", "SET a:3 x"),
            ("tracker", "CLIENT TRACKING on BCAST PREFIX c: REDIRECT {sub}"),
            ("writer", "SET c:3 x"),
        ],
    )
    .await;
}
