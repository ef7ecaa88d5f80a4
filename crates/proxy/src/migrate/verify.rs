//! Checks on the target: which sampled keys differ from the old backend,
//! and which proxies have not answered the barrier.

use super::copy::{dump, node_of, renamed};
use crate::error::Error;
use crate::tenant::migration::Migration;
use bytes::Bytes;
use std::collections::HashMap;
use std::sync::Arc;
use tenantry_protocol::answer;

/// A digest of a key's value that does not depend on how the server
/// stores it: DUMP's payload does (a set or hash in a hash table is
/// serialized in its table's order, which differs between two servers).
/// `none` for no key; nil for a type it does not know (a module's), which
/// is compared by DUMP.
const DIGEST: &str = r#"
local t = redis.call('TYPE', KEYS[1])['ok']
local parts = {t}
local function add(v) parts[#parts + 1] = #v .. ':' .. v end
if t == 'none' then return 'none'
elseif t == 'string' then add(redis.call('GET', KEYS[1]))
elseif t == 'list' then for _, v in ipairs(redis.call('LRANGE', KEYS[1], 0, -1)) do add(v) end
elseif t == 'set' then
  local m = redis.call('SMEMBERS', KEYS[1]); table.sort(m)
  for _, v in ipairs(m) do add(v) end
elseif t == 'hash' then
  local h = redis.call('HGETALL', KEYS[1]); local names, values = {}, {}
  for i = 1, #h, 2 do names[#names + 1] = h[i]; values[h[i]] = h[i + 1] end
  table.sort(names)
  for _, n in ipairs(names) do add(n); add(values[n]) end
elseif t == 'zset' then for _, v in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')) do add(v) end
elseif t == 'stream' then
  for _, e in ipairs(redis.call('XRANGE', KEYS[1], '-', '+')) do
    add(e[1]); for _, f in ipairs(e[2]) do add(f) end
  end
else return nil end
return redis.sha1hex(table.concat(parts, ','))
"#;

/// DUMP's trailer: the RDB version (2 bytes) and a CRC64 (8): servers of
/// two versions may write different trailers for one value.
const TRAILER: usize = 10;

fn body(payload: &[u8]) -> &[u8] {
    &payload[..payload.len().saturating_sub(TRAILER)]
}

/// One key's value as compared: its digest (or DUMP body) and PTTL.
#[derive(Debug, PartialEq)]
struct Seen {
    value: Option<Vec<u8>>,
    pttl: i64,
}

/// `keys` (full names, all held by `node`) as compared.
async fn seen(node: &crate::backend::NodePool, keys: &[Bytes]) -> Result<Vec<Seen>, Error> {
    let mut bytes = bytes::BytesMut::new();
    let ns = tenantry_protocol::Namespace::new("-").expect("valid");
    for k in keys {
        tenantry_protocol::encode::command(&mut bytes, &[&b"EVAL"[..], DIGEST.as_bytes(), b"1", k], &[], &ns);
        tenantry_protocol::encode::command(&mut bytes, &[&b"PTTL"[..], k], &[], &ns);
    }
    let replies = super::copy::pipeline(node, bytes, keys.len() * 2).await?;
    let mut out = Vec::with_capacity(keys.len());
    for (key, pair) in keys.iter().zip(replies.chunks(2)) {
        let pttl = answer::integer(&pair[1]).map_err(|e| Error::from(e).context("PTTL"))?;
        let value = match answer::text(&pair[0]).map_err(|e| Error::from(e).context("value digest"))? {
            Some(digest) => Some(digest),
            // A type the script does not know: its DUMP.
            None => dump(node, std::slice::from_ref(key)).await?.remove(0).payload.map(|p| body(&p).to_vec()),
        };
        out.push(Seen { value, pttl });
    }
    Ok(out)
}

/// The keys of `keys` (old names, held by one old node or several) whose
/// value or TTL differs on the target.
pub(super) async fn differing(job: &Migration, keys: &[Bytes], ttl_tolerance_ms: i64) -> Result<Vec<Bytes>, Error> {
    let mut by_source: HashMap<usize, (Arc<crate::backend::NodePool>, Vec<Bytes>)> = HashMap::new();
    for k in keys {
        let node = node_of(&job.source, &job.from_ns, k)?;
        by_source.entry(Arc::as_ptr(&node) as usize).or_insert_with(|| (node, Vec::new())).1.push(k.clone());
    }
    let mut out = Vec::new();
    for (node, keys) in by_source.into_values() {
        let old = seen(&node, &keys).await?;
        for (key, old) in keys.iter().zip(old) {
            let new_key = Bytes::from(renamed(job, key));
            let target = node_of(&job.target, &job.to_ns, &new_key)?;
            let new = seen(&target, std::slice::from_ref(&new_key)).await?.remove(0);
            let same_ttl = match (old.pttl, new.pttl) {
                (a, b) if a >= 0 && b >= 0 => (a - b).abs() <= ttl_tolerance_ms,
                (a, b) => a == b,
            };
            if !(old.value == new.value && same_ttl) {
                out.push(key.clone());
            }
        }
    }
    Ok(out)
}

/// The proxies serving the tenant (a live heartbeat) that have not answered
/// switch number `n`.
pub(super) async fn unacked(job: &Migration, n: u64) -> Result<Vec<Vec<u8>>, Error> {
    let node = job.keys.node(&job.source);
    let members = job.keys.members();
    let now = super::follower::now_ms().to_string();
    answer::integer(&node.call(&[b"ZREMRANGEBYSCORE", &members, b"-inf", now.as_bytes()]).await?)?;
    let live = answer::strings(&node.call(&[b"ZRANGE", &members, b"0", b"-1"]).await?)?;
    let mut missing = Vec::new();
    for name in live {
        let reply = node.call(&[b"GET", &job.keys.ack(&name)]).await?;
        let acked = answer::text(&reply)?.and_then(|v| String::from_utf8(v).ok()?.parse::<u64>().ok());
        if acked != Some(n) {
            missing.push(name);
        }
    }
    Ok(missing)
}
