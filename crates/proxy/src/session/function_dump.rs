//! FUNCTION DUMP and RESTORE of a tenant's own libraries. Redis's payload
//! holds every library of the server, so tenantry writes one of its own:
//! the tenant's libraries' code, with a SHA-256 so a damaged payload is
//! refused as Redis refuses one. RESTORE loads each library as FUNCTION
//! LOAD would (its name must not be another tenant's); it is not atomic
//! across libraries: one that fails leaves those before it loaded.

use super::functions::{error, library_name, Call};
use crate::error::Error;
use bytes::Bytes;
use sha2::{Digest, Sha256};
use tenantry_protocol::answer;

const HEADER: &[u8] = b"tenantry-functions/1 ";
const BAD_PAYLOAD: &str = "ERR DUMP payload version or checksum are wrong";

/// The payload for these libraries' code.
fn encode(codes: &[Vec<u8>]) -> Vec<u8> {
    let mut body = Vec::new();
    for code in codes {
        body.extend_from_slice(format!("{}\n", code.len()).as_bytes());
        body.extend_from_slice(code);
    }
    let mut out = HEADER.to_vec();
    out.extend_from_slice(hex(&Sha256::digest(&body)).as_bytes());
    out.push(b'\n');
    out.extend_from_slice(&body);
    out
}

/// The libraries' code in a payload of `encode`; `None` for anything else.
fn decode(payload: &[u8]) -> Option<Vec<Vec<u8>>> {
    let rest = payload.strip_prefix(HEADER)?;
    let (sum, mut body) = (rest.get(..64)?, rest.get(65..)?);
    if rest.get(64) != Some(&b'\n') || sum != hex(&Sha256::digest(body)).as_bytes() {
        return None;
    }
    let mut codes = Vec::new();
    while !body.is_empty() {
        let newline = body.iter().position(|&b| b == b'\n')?;
        let len: usize = std::str::from_utf8(&body[..newline]).ok()?.parse().ok()?;
        let code = body.get(newline + 1..newline + 1 + len)?;
        codes.push(code.to_vec());
        body = &body[newline + 1 + len..];
    }
    Some(codes)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Policy {
    Append,
    Replace,
    Flush,
}

impl Call {
    /// FUNCTION DUMP: the tenant's libraries.
    pub(super) async fn dump(&self) -> Result<Bytes, Error> {
        let mut libs = self.owned().await?;
        libs.sort();
        let mut codes = Vec::with_capacity(libs.len());
        for lib in libs {
            let reply = self.node.call(&[b"FUNCTION", b"LIST", b"LIBRARYNAME", &lib, b"WITHCODE"]).await?;
            let records = answer::records(&reply)?;
            // Library names hold no glob characters: the pattern matches only itself.
            let code = records.iter().flatten().find(|(name, _)| name == b"library_code");
            if let Some((_, values)) = code {
                codes.push(values.first().cloned().unwrap_or_default());
            }
        }
        let payload = encode(&codes);
        let mut out = format!("${}\r\n", payload.len()).into_bytes();
        out.extend_from_slice(&payload);
        out.extend_from_slice(b"\r\n");
        Ok(Bytes::from(out))
    }

    /// FUNCTION RESTORE payload [FLUSH|APPEND|REPLACE].
    pub(super) async fn restore(&self) -> Result<Bytes, Error> {
        let policy = match self.args.get(3) {
            None => Policy::Append,
            Some(p) if p.eq_ignore_ascii_case(b"APPEND") => Policy::Append,
            Some(p) if p.eq_ignore_ascii_case(b"REPLACE") => Policy::Replace,
            Some(p) if p.eq_ignore_ascii_case(b"FLUSH") => Policy::Flush,
            Some(_) => {
                return Ok(error("ERR Wrong restore policy given, value should be either FLUSH, APPEND or REPLACE."))
            }
        };
        if self.args.len() > 4 {
            return Ok(error("ERR syntax error"));
        }
        let Some(codes) = decode(&self.args[2]) else { return Ok(error(BAD_PAYLOAD)) };
        // Every name is checked before anything changes.
        for code in &codes {
            let Some(lib) = library_name(code) else { return Ok(error(BAD_PAYLOAD)) };
            let owner = self.owner_of(lib).await?;
            let theirs = owner.as_ref().is_some_and(|o| *o != self.owner);
            if theirs || (policy == Policy::Append && owner.is_some()) {
                return Ok(error(&format!("ERR Library {} already exists", String::from_utf8_lossy(lib))));
            }
        }
        if policy == Policy::Flush {
            let flush =
                Call { args: vec![Bytes::from_static(b"FUNCTION"), Bytes::from_static(b"FLUSH")], ..self.clone() };
            flush.flush().await?;
        }
        for code in codes {
            let mut args = vec![Bytes::from_static(b"FUNCTION"), Bytes::from_static(b"LOAD")];
            if policy == Policy::Replace {
                args.push(Bytes::from_static(b"REPLACE"));
            }
            args.push(Bytes::from(code));
            let reply = Call { args, ..self.clone() }.load().await?;
            if reply.first() == Some(&b'-') {
                return Ok(reply);
            }
        }
        Ok(Bytes::from_static(b"+OK\r\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_round_trip_and_damage_is_refused() {
        let codes = vec![b"#!lua name=a\nreturn 1".to_vec(), b"#!lua name=b\n\n12\nx".to_vec()];
        let payload = encode(&codes);
        assert_eq!(decode(&payload), Some(codes));
        assert_eq!(decode(&encode(&[])), Some(vec![]));
        let mut damaged = payload.clone();
        *damaged.last_mut().unwrap() ^= 1;
        assert_eq!(decode(&damaged), None);
        assert_eq!(decode(b"\x0f\x01redis-own-payload"), None);
        assert_eq!(decode(&payload[..payload.len() - 3]), None);
    }
}
