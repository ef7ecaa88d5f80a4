//! What a backend answered to tenantry's own calls (quota scripts, cleanup
//! and eviction scans, INFO, keyspace events, the owners of functions,
//! CONFIG GET): read through redis-protocol's decoder, RESP2 or RESP3, into
//! the few shapes those calls expect. Client traffic never comes here: it
//! passes through as bytes (see `reply` and `strip`).

use redis_protocol::resp2::types::OwnedFrame as Resp2;
use redis_protocol::resp3::types::OwnedFrame as Resp3;

/// Why an answer is not what the call expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnswerError {
    /// An error reply: Redis's own words.
    #[error("{0}")]
    Refused(String),
    #[error("unexpected reply: {0}")]
    Unexpected(String),
}

/// A decoded answer, whichever RESP version it came in.
enum Value {
    Str(Vec<u8>),
    Int(i64),
    Null,
    /// An array, push, set, or a map's keys and values in turn.
    Items(Vec<Value>),
    Error(String),
    /// Doubles, booleans, big numbers: no call of tenantry's expects them.
    Other,
}

impl From<Resp2> for Value {
    fn from(f: Resp2) -> Self {
        match f {
            Resp2::SimpleString(s) | Resp2::BulkString(s) => Value::Str(s),
            Resp2::Integer(i) => Value::Int(i),
            Resp2::Null => Value::Null,
            Resp2::Array(items) => Value::Items(items.into_iter().map(Value::from).collect()),
            Resp2::Error(e) => Value::Error(e),
        }
    }
}

impl From<Resp3> for Value {
    fn from(f: Resp3) -> Self {
        match f {
            Resp3::SimpleString { data, .. } | Resp3::BlobString { data, .. } => Value::Str(data),
            Resp3::VerbatimString { data, .. } => Value::Str(data),
            Resp3::Number { data, .. } => Value::Int(data),
            Resp3::Null => Value::Null,
            Resp3::Array { data, .. } | Resp3::Push { data, .. } => {
                Value::Items(data.into_iter().map(Value::from).collect())
            }
            Resp3::Set { data, .. } => Value::Items(data.into_iter().map(Value::from).collect()),
            Resp3::Map { data, .. } => {
                Value::Items(data.into_iter().flat_map(|(k, v)| [Value::from(k), Value::from(v)]).collect())
            }
            Resp3::SimpleError { data, .. } => Value::Error(data),
            Resp3::BlobError { data, .. } => Value::Error(String::from_utf8_lossy(&data).into_owned()),
            _ => Value::Other,
        }
    }
}

/// One whole answer, decoded: as RESP2 (whose nulls RESP3's decoder
/// refuses), else as RESP3.
fn decode(reply: &[u8]) -> Result<Value, AnswerError> {
    let value = match redis_protocol::resp2::decode::decode(reply) {
        Ok(Some((frame, _))) => Value::from(frame),
        _ => match redis_protocol::resp3::decode::complete::decode(reply) {
            Ok(Some((frame, _))) => Value::from(frame),
            _ => return Err(unexpected(reply)),
        },
    };
    match value {
        Value::Error(e) => Err(AnswerError::Refused(e)),
        v => Ok(v),
    }
}

fn unexpected(reply: &[u8]) -> AnswerError {
    let shown = &reply[..reply.len().min(200)];
    AnswerError::Unexpected(String::from_utf8_lossy(shown).trim_end().to_string())
}

fn elements(v: Value) -> Option<Vec<Value>> {
    match v {
        Value::Items(items) => Some(items),
        _ => None,
    }
}

fn string(v: Value) -> Option<Vec<u8>> {
    match v {
        Value::Str(s) => Some(s),
        _ => None,
    }
}

/// An array of integers (what tenantry's quota scripts return).
pub fn integers(reply: &[u8]) -> Result<Vec<i64>, AnswerError> {
    let items = elements(decode(reply)?).ok_or_else(|| unexpected(reply))?;
    items
        .into_iter()
        .map(|v| match v {
            Value::Int(i) => Ok(i),
            _ => Err(unexpected(reply)),
        })
        .collect()
}

/// One integer (`:n`).
pub fn integer(reply: &[u8]) -> Result<i64, AnswerError> {
    match decode(reply)? {
        Value::Int(i) => Ok(i),
        _ => Err(unexpected(reply)),
    }
}

/// A string (bulk, simple or verbatim: INFO's text), or `None` for a null.
pub fn text(reply: &[u8]) -> Result<Option<Vec<u8>>, AnswerError> {
    match decode(reply)? {
        Value::Null => Ok(None),
        v => string(v).map(Some).ok_or_else(|| unexpected(reply)),
    }
}

/// INFO's `name:value` lines, in order (section headers and blank lines
/// left out).
pub fn info(reply: &[u8]) -> Result<Vec<(String, String)>, AnswerError> {
    let text = text(reply)?.ok_or_else(|| unexpected(reply))?;
    Ok(String::from_utf8_lossy(&text)
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_string(), v.trim().to_string()))
        .collect())
}

/// The strings of a flat array, push or map (a Pub/Sub message, HGETALL,
/// CONFIG GET); a null element reads as empty.
pub fn strings(reply: &[u8]) -> Result<Vec<Vec<u8>>, AnswerError> {
    let items = elements(decode(reply)?).ok_or_else(|| unexpected(reply))?;
    items
        .into_iter()
        .map(|v| match v {
            Value::Null => Ok(Vec::new()),
            v => string(v).ok_or_else(|| unexpected(reply)),
        })
        .collect()
}

/// The first element of an array, as a string (`ROLE`'s role).
pub fn head(reply: &[u8]) -> Result<Vec<u8>, AnswerError> {
    let items = elements(decode(reply)?).ok_or_else(|| unexpected(reply))?;
    items.into_iter().next().and_then(string).ok_or_else(|| unexpected(reply))
}

/// A SCAN page: the next cursor and the keys.
pub fn scan_page(reply: &[u8]) -> Result<(Vec<u8>, Vec<Vec<u8>>), AnswerError> {
    let items = elements(decode(reply)?).ok_or_else(|| unexpected(reply))?;
    let [cursor, keys]: [Value; 2] = items.try_into().map_err(|_| unexpected(reply))?;
    let cursor = string(cursor).ok_or_else(|| unexpected(reply))?;
    let keys = elements(keys)
        .ok_or_else(|| unexpected(reply))?
        .into_iter()
        .map(|k| string(k).ok_or_else(|| unexpected(reply)))
        .collect::<Result<_, _>>()?;
    Ok((cursor, keys))
}

/// A field's name and its value's strings.
pub type Field = (Vec<u8>, Vec<Vec<u8>>);

/// A reply of named fields (`ACL GETUSER`'s: a RESP3 map, or RESP2's flat
/// array of names and values), each value as its strings: one for a string,
/// each element's for an array (nested arrays, such as selectors, flattened).
pub fn fields(reply: &[u8]) -> Result<Vec<Field>, AnswerError> {
    let items = elements(decode(reply)?).ok_or_else(|| unexpected(reply))?;
    named(items).ok_or_else(|| unexpected(reply))
}

/// A client-tracking push, `invalidate` with the keys that changed, or
/// `None` for all of them (FLUSHALL, FLUSHDB).
pub fn invalidation(push: &[u8]) -> Result<Option<Vec<Vec<u8>>>, AnswerError> {
    let mut items = elements(decode(push)?).ok_or_else(|| unexpected(push))?.into_iter();
    match (items.next(), items.next()) {
        (Some(Value::Str(kind)), Some(keys)) if kind == b"invalidate" => match keys {
            Value::Null => Ok(None),
            Value::Items(keys) => {
                keys.into_iter().map(|k| string(k).ok_or_else(|| unexpected(push))).collect::<Result<_, _>>().map(Some)
            }
            _ => Err(unexpected(push)),
        },
        _ => Err(unexpected(push)),
    }
}

/// An array of replies of named fields (`SENTINEL REPLICAS`'s).
pub fn records(reply: &[u8]) -> Result<Vec<Vec<Field>>, AnswerError> {
    let items = elements(decode(reply)?).ok_or_else(|| unexpected(reply))?;
    items.into_iter().map(|r| elements(r).and_then(named).ok_or_else(|| unexpected(reply))).collect()
}

/// Names and values in turn, each value as its strings.
fn named(items: Vec<Value>) -> Option<Vec<Field>> {
    fn strings_of(v: Value, out: &mut Vec<Vec<u8>>) {
        match v {
            Value::Str(s) => out.push(s),
            Value::Int(i) => out.push(i.to_string().into_bytes()),
            Value::Items(items) => items.into_iter().for_each(|i| strings_of(i, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    let mut it = items.into_iter();
    while let (Some(name), Some(value)) = (it.next(), it.next()) {
        let mut values = Vec::new();
        strings_of(value, &mut values);
        out.push((string(name)?, values));
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integer_arrays() {
        assert_eq!(integers(b"*3\r\n:1\r\n:-2\r\n:30\r\n"), Ok(vec![1, -2, 30]));
        assert_eq!(integers(b"*0\r\n"), Ok(vec![]));
        assert_eq!(integers(b"-ERR x\r\n"), Err(AnswerError::Refused("ERR x".into())));
        assert!(matches!(integers(b"*2\r\n:1\r\n$1\r\nx\r\n"), Err(AnswerError::Unexpected(_))));
        assert!(matches!(integers(b"*2\r\n:1\r\n"), Err(AnswerError::Unexpected(_))), "incomplete");
        assert_eq!(integer(b":42\r\n"), Ok(42));
    }

    #[test]
    fn scan_pages_in_resp2_and_resp3() {
        let page = (b"17".to_vec(), vec![b"v1a".to_vec(), b"v1b".to_vec()]);
        assert_eq!(scan_page(b"*2\r\n$2\r\n17\r\n*2\r\n$3\r\nv1a\r\n$3\r\nv1b\r\n"), Ok(page.clone()));
        assert_eq!(scan_page(b"*2\r\n+17\r\n*2\r\n+v1a\r\n+v1b\r\n"), Ok(page));
        assert_eq!(scan_page(b"*2\r\n$1\r\n0\r\n*0\r\n"), Ok((b"0".to_vec(), vec![])));
        assert!(matches!(scan_page(b"-ERR no\r\n"), Err(AnswerError::Refused(_))));
        assert!(matches!(scan_page(b"*1\r\n$1\r\n0\r\n"), Err(AnswerError::Unexpected(_))));
    }

    #[test]
    fn strings_of_messages_maps_and_texts() {
        let m = b"*4\r\n$8\r\npmessage\r\n$3\r\np*x\r\n$22\r\n__keyevent@0__:evicted\r\n$5\r\na:b:c\r\n";
        let want: Vec<Vec<u8>> =
            vec![b"pmessage".to_vec(), b"p*x".to_vec(), b"__keyevent@0__:evicted".to_vec(), b"a:b:c".to_vec()];
        assert_eq!(strings(m), Ok(want));
        assert_eq!(strings(b"%1\r\n$9\r\nmaxmemory\r\n$1\r\n0\r\n"), Ok(vec![b"maxmemory".to_vec(), b"0".to_vec()]));
        assert_eq!(strings(b">2\r\n$10\r\ninvalidate\r\n_\r\n"), Ok(vec![b"invalidate".to_vec(), vec![]]));
        assert_eq!(text(b"$5\r\nhello\r\n"), Ok(Some(b"hello".to_vec())));
        assert_eq!(text(b"=9\r\ntxt:a:b:c\r\n"), Ok(Some(b"a:b:c".to_vec())));
        assert_eq!(text(b"$-1\r\n"), Ok(None));
    }

    #[test]
    fn named_fields_in_resp2_and_resp3() {
        let resp2 = b"*6\r\n$5\r\nflags\r\n*1\r\n$2\r\non\r\n$4\r\nkeys\r\n$6\r\n~app:*\r\n$9\r\nselectors\r\n*0\r\n";
        let want = vec![
            (b"flags".to_vec(), vec![b"on".to_vec()]),
            (b"keys".to_vec(), vec![b"~app:*".to_vec()]),
            (b"selectors".to_vec(), vec![]),
        ];
        assert_eq!(fields(resp2), Ok(want.clone()));
        let resp3 = b"%3\r\n+flags\r\n~1\r\n+on\r\n+keys\r\n+~app:*\r\n+selectors\r\n*0\r\n";
        // (redis-protocol keeps a RESP3 map in a hash map: its order is lost.)
        let mut got = fields(resp3).unwrap();
        got.sort();
        assert_eq!(got, want);
        assert!(matches!(fields(b"-NOPERM no\r\n"), Err(AnswerError::Refused(_))));
    }

    #[test]
    fn info_fields() {
        let reply = b"$48\r\n# Memory\r\nused_memory:100\r\nmaxmemory_policy:lru\r\n\r\n\r\n";
        let fields = info(reply).unwrap();
        assert_eq!(fields, [("used_memory".into(), "100".into()), ("maxmemory_policy".into(), "lru".into())]);
        assert!(matches!(info(b"-ERR no\r\n"), Err(AnswerError::Refused(_))));
    }
}

#[cfg(test)]
mod invalidation_tests {
    use super::invalidation;

    #[test]
    fn reads_tracking_pushes() {
        let push = b">2\r\n$10\r\ninvalidate\r\n*2\r\n$3\r\nt:a\r\n$3\r\nt:b\r\n";
        assert_eq!(invalidation(push).unwrap(), Some(vec![b"t:a".to_vec(), b"t:b".to_vec()]));
        assert_eq!(invalidation(b">2\r\n$10\r\ninvalidate\r\n_\r\n").unwrap(), None);
        assert!(invalidation(b">3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$1\r\nm\r\n").is_err());
    }
}
