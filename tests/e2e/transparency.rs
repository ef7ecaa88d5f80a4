//! Differential test: the same command sequence, byte for byte, against Redis
//! directly and through tenantry, in RESP2 and RESP3. Every keyed command
//! family of Redis 7.0 is covered; replies must be identical.

/// Commands whose replies do not depend on the key's own name.
const SCRIPT: &[&str] = &[
    // strings
    "SET s hello",
    "GET s",
    "APPEND s xy",
    "STRLEN s",
    "GETRANGE s 0 2",
    "SETRANGE s 1 Y",
    "GETSET s v2",
    "INCR n",
    "INCRBY n 5",
    "DECR n",
    "DECRBY n 2",
    "INCRBYFLOAT f 1.5",
    "MSET a 1 b 2",
    "MGET a b missing",
    "MSETNX c 3 d 4",
    "MSETNX c 3 e 4",
    "GETDEL d",
    "GETEX a PERSIST",
    "SETNX e 1",
    "SETEX t 100 v",
    "PSETEX pt 100000 v",
    "TTL t",
    "PTTL missing",
    "EXPIRE a 100",
    "EXPIRETIME missing",
    "PERSIST a",
    "EXISTS a b missing",
    "TYPE a",
    "RENAME a a2",
    "RENAMENX b a2",
    "COPY a2 a3",
    "DEL a3 missing",
    "UNLINK c",
    "TOUCH a2 b",
    "LCS s s",
    "SET k v NX GET",
    "SET k v2 XX GET",
    "SUBSTR s 0 1",
    // hashes
    "HSET h f1 v1 f2 v2",
    "HGET h f1",
    "HMGET h f1 nof",
    "HGETALL h",
    "HKEYS h",
    "HVALS h",
    "HLEN h",
    "HEXISTS h f1",
    "HDEL h f2",
    "HINCRBY h n 3",
    "HINCRBYFLOAT h fl 1.5",
    "HSETNX h f1 x",
    "HSTRLEN h f1",
    "HMSET h2 a 1",
    // lists
    "RPUSH l a b c",
    "LPUSH l z",
    "LRANGE l 0 -1",
    "LLEN l",
    "LINDEX l 1",
    "LSET l 0 q",
    "LINSERT l BEFORE b x",
    "LPOS l b",
    "LREM l 1 x",
    "LTRIM l 0 2",
    "RPOPLPUSH l l2",
    "LMOVE l2 l LEFT RIGHT",
    "LPOP l",
    "RPOP l 1",
    "LPUSHX l y",
    "RPUSHX nolist y",
    "LMPOP 2 nolist l LEFT COUNT 1",
    "LMPOP 1 nolist RIGHT",
    // sets
    "SADD st a b c",
    "SADD st2 b c d",
    "SISMEMBER st a",
    "SMISMEMBER st a zz",
    "SCARD st",
    "SREM st c",
    "SINTER st st2",
    "SINTERSTORE si st st2",
    "SUNIONSTORE su st st2",
    "SCARD su",
    "SDIFFSTORE sd st st2",
    "SMEMBERS sd",
    "SMOVE st st2 a",
    "SINTERCARD 2 st st2",
    "SPOP empty",
    // sorted sets
    "ZADD z 1 a 2 b 3 c",
    "ZADD z2 5 b 6 d",
    "ZRANGE z 0 -1 WITHSCORES",
    "ZRANGEBYSCORE z 1 2",
    "ZREVRANGE z 0 0",
    "ZSCORE z b",
    "ZMSCORE z a zz",
    "ZINCRBY z 2 a",
    "ZRANK z a",
    "ZCARD z",
    "ZCOUNT z 0 10",
    "ZLEXCOUNT z - +",
    "ZPOPMIN z",
    "ZMPOP 2 nozset z MAX COUNT 1",
    "ZUNIONSTORE zu 2 z z2 WEIGHTS 1 2",
    "ZRANGE zu 0 -1 WITHSCORES",
    "ZINTER 2 z z2 WITHSCORES",
    "ZDIFF 2 z2 z",
    "ZRANGESTORE zr z2 0 -1",
    "ZREMRANGEBYRANK zr 0 0",
    // streams
    "XADD x 1-1 f v",
    "XADD x 2-1 f v2",
    "XLEN x",
    "XRANGE x - +",
    "XREVRANGE x + - COUNT 1",
    "XREAD COUNT 1 STREAMS x 0",
    "XREAD STREAMS x nox 0 0",
    "XGROUP CREATE x g 0",
    "XREADGROUP GROUP g c STREAMS x >",
    "XACK x g 1-1",
    "XPENDING x g",
    "XTRIM x MAXLEN 1",
    "XDEL x 2-1",
    "XLEN x",
    // geo
    "GEOADD g 13.361389 38.115556 Palermo 15.087269 37.502669 Catania",
    "GEODIST g Palermo Catania km",
    "GEOHASH g Palermo",
    "GEOSEARCH g FROMMEMBER Palermo BYRADIUS 200 km ASC",
    "GEOSEARCHSTORE gs g FROMMEMBER Palermo BYRADIUS 200 km",
    "GEORADIUS g 15 37 200 km STORE gr",
    "ZCARD gr",
    // hyperloglog and bitmaps
    "PFADD hl a b c",
    "PFCOUNT hl",
    "PFMERGE hl2 hl",
    "PFCOUNT hl2",
    "SETBIT bm 7 1",
    "GETBIT bm 7",
    "BITCOUNT bm",
    "BITPOS bm 1",
    "BITOP AND bo bm bm",
    "GET bo",
    "BITFIELD bf INCRBY u8 0 1",
    "BITFIELD_RO bf GET u8 0",
    // generic
    "OBJECT ENCODING s",
    "OBJECT ENCODING l",
    "SORT l ALPHA",
    "SORT_RO st2 ALPHA LIMIT 0 2",
    "COPY n ncopy DB 0",
    "GET ncopy",
    "COPY n ncopy",
    "DUMP missing",
    "RENAME missing x",
    "INCR s",
    "LPUSH s x",
    "ECHO hi",
    "COMMAND COUNT",
    "PING",
    "PING hello",
];

async fn compare(hello: Option<&[u8]>) {
    let _heavy = tenantry_tests::heavy().await;
    tenantry_tests::assert_same_replies_as_redis(SCRIPT, hello).await;
}

#[tokio::test]
async fn replies_are_identical_to_redis_resp2() {
    compare(None).await;
}

#[tokio::test]
async fn replies_are_identical_to_redis_resp3() {
    compare(Some(b"3")).await;
}

/// CLIENT REPLY OFF, ON and SKIP, pipelined among local and backend
/// commands (and a transaction), in one write: the reply stream is Redis's,
/// byte for byte, and the muted commands ran.
#[tokio::test]
async fn client_reply_off_on_skip_are_redis_own() {
    use tenantry_tests::{encode, RawClient, RedisServer, TestProxy};
    const PIPELINE: &[&str] = &[
        "PING",
        "CLIENT REPLY OFF",
        "SET a 1",
        "GET a",
        "PING",
        "INCR n",
        "CLIENT REPLY ON",
        "GET a",
        "CLIENT REPLY SKIP",
        "GET a",
        "SET b 2",
        "CLIENT REPLY SKIP",
        "PING",
        "MGET a b n",
        "CLIENT REPLY SKIP",
        "MULTI",
        "INCR n",
        "EXEC",
        "CLIENT REPLY MAYBE",
        "GET n",
        "ECHO end",
    ];
    async fn stream(c: &mut RawClient) -> Vec<String> {
        let bytes: Vec<u8> =
            PIPELINE.iter().flat_map(|l| encode(&l.split(' ').map(str::as_bytes).collect::<Vec<_>>())).collect();
        c.send(&bytes).await;
        let mut replies = Vec::new();
        loop {
            let r = String::from_utf8_lossy(&c.reply().await).into_owned();
            if r == "$3\r\nend\r\n" {
                return replies;
            }
            replies.push(r);
        }
    }
    let direct_redis = RedisServer::start();
    let proxied_redis = RedisServer::start();
    let proxy = TestProxy::two_tenants(&proxied_redis).await;
    let want = stream(&mut RawClient::connect(direct_redis.addr()).await).await;
    let got = stream(&mut proxy.raw().await).await;
    assert_eq!(got, want);
    // What Redis answers, for the record: the muted commands did run.
    assert_eq!(want[0], "+PONG\r\n");
    assert!(want.contains(&"*3\r\n$1\r\n1\r\n$1\r\n2\r\n$1\r\n1\r\n".to_string()), "{want:?}");
    assert_eq!(want.last().unwrap(), "$1\r\n2\r\n", "{want:?}");
    proxy.stop().await;
}
