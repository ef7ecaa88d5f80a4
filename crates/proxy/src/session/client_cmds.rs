//! CLIENT LIST, CLIENT INFO and CLIENT KILL over the tenant's own
//! connections on this proxy (`crate::clients`), in Redis's formats and
//! with Redis's errors. Another tenant's connections are not there to list
//! or kill: to a tenant, they do not exist.

use super::connection::After;
use super::state::State;
use crate::clients::ClientHandle;
use crate::error::{self, Error};
use bytes::{Bytes, BytesMut};
use std::sync::Arc;
use tenantry_protocol::encode::Reply;
use tenantry_protocol::num::parse_i64;

/// The username CLIENT LIST shows for a tenant's connections.
pub(super) fn user(state: &State) -> String {
    state
        .tenant
        .as_ref()
        .and_then(|t| t.config.auth.as_ref().map(|a| a.username.clone()))
        .unwrap_or_else(|| "default".to_string())
}

pub fn line_of(state: &State, client: &ClientHandle) -> String {
    client.line(&user(state))
}

fn peers(state: &State) -> Vec<Arc<ClientHandle>> {
    state.tenant.as_ref().map(|t| t.clients.all()).unwrap_or_default()
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Normal,
    PubSub,
    /// master, replica, slave: never a client of tenantry's.
    Replication,
}

fn kind(raw: &Bytes) -> Result<Kind, Error> {
    match raw.to_ascii_lowercase().as_slice() {
        b"normal" => Ok(Kind::Normal),
        b"pubsub" => Ok(Kind::PubSub),
        b"master" | b"replica" | b"slave" => Ok(Kind::Replication),
        _ => Err(Error::new(error::Kind::Invalid, format!("Unknown client type '{}'", String::from_utf8_lossy(raw)))),
    }
}

fn is_kind(c: &ClientHandle, k: Kind) -> bool {
    match k {
        Kind::Normal => !c.is_pubsub(),
        Kind::PubSub => c.is_pubsub(),
        Kind::Replication => false,
    }
}

fn error(state: &State, out: &mut BytesMut, msg: &str) -> After {
    Reply { out, proto: state.proto }.error(msg);
    After::Continue
}

/// `CLIENT LIST [TYPE type] [ID id ...]`
pub fn list(state: &State, args: &[Bytes], out: &mut BytesMut) -> After {
    let mut only_kind = None;
    let mut only_ids: Option<Vec<u64>> = None;
    let mut i = 2;
    while i < args.len() {
        let opt = args[i].to_ascii_lowercase();
        match opt.as_slice() {
            b"type" if i + 1 < args.len() => {
                match kind(&args[i + 1]) {
                    Ok(k) => only_kind = Some(k),
                    Err(e) => return error(state, out, &e.resp()),
                }
                i += 2;
            }
            b"id" if i + 1 < args.len() => {
                let mut ids = Vec::new();
                for raw in &args[i + 1..] {
                    match parse_i64(raw) {
                        Some(id) if id > 0 => ids.push(id as u64),
                        _ => return error(state, out, "ERR Invalid client ID"),
                    }
                }
                only_ids = Some(ids);
                i = args.len();
            }
            _ => return error(state, out, "ERR syntax error"),
        }
    }
    let mut text = String::new();
    for c in peers(state) {
        if only_kind.is_some_and(|k| !is_kind(&c, k)) || only_ids.as_ref().is_some_and(|ids| !ids.contains(&c.id)) {
            continue;
        }
        text.push_str(&line_of(state, &c));
        text.push('\n');
    }
    Reply { out, proto: state.proto }.text(&text);
    After::Continue
}

/// `CLIENT KILL addr` or `CLIENT KILL [ID id] [TYPE type] [USER user] [ADDR addr] [LADDR addr] [SKIPME yes|no]`
pub fn kill(state: &State, args: &[Bytes], out: &mut BytesMut) -> After {
    let clients = peers(state);
    if args.len() == 3 {
        // The old form: one address, +OK or an error.
        let Some(target) = clients.iter().find(|c| c.addr.is_some_and(|a| a.to_string().as_bytes() == args[2])) else {
            return error(state, out, "ERR No such client");
        };
        Reply { out, proto: state.proto }.simple("OK");
        return kill_one(state, target);
    }
    if args.len() < 4 || !args.len().is_multiple_of(2) {
        return error(state, out, "ERR syntax error");
    }
    let (mut id, mut only_kind, mut addr, mut laddr, mut skipme) = (None, None, None, None, true);
    for pair in args[2..].chunks(2) {
        let value = &pair[1];
        match pair[0].to_ascii_lowercase().as_slice() {
            b"id" => match parse_i64(value) {
                Some(n) if n > 0 => id = Some(n as u64),
                _ => return error(state, out, "ERR client-id should be greater than 0"),
            },
            b"type" => match kind(value) {
                Ok(k) => only_kind = Some(k),
                Err(e) => return error(state, out, &e.resp()),
            },
            b"user" => {
                if value.as_ref() != user(state).as_bytes() {
                    let msg = format!("ERR No such user '{}'", String::from_utf8_lossy(value));
                    return error(state, out, &msg);
                }
            }
            b"addr" => addr = Some(value.clone()),
            b"laddr" => laddr = Some(value.clone()),
            b"skipme" => match value.to_ascii_lowercase().as_slice() {
                b"yes" => skipme = true,
                b"no" => skipme = false,
                _ => return error(state, out, "ERR syntax error"),
            },
            _ => return error(state, out, "ERR syntax error"),
        }
    }
    let same = |a: Option<std::net::SocketAddr>, want: &Option<Bytes>| {
        want.as_ref().is_none_or(|w| a.is_some_and(|a| a.to_string().as_bytes() == w.as_ref()))
    };
    let targets: Vec<&Arc<ClientHandle>> = clients
        .iter()
        .filter(|c| id.is_none_or(|id| c.id == id))
        .filter(|c| only_kind.is_none_or(|k| is_kind(c, k)))
        .filter(|c| same(c.addr, &addr) && same(c.laddr, &laddr))
        .filter(|c| !(skipme && c.id == state.id))
        .collect();
    Reply { out, proto: state.proto }.integer(targets.len() as i64);
    let mut after = After::Continue;
    for t in targets {
        if kill_one(state, t) == After::Close {
            after = After::Close;
        }
    }
    after
}

/// `CLIENT UNBLOCK id [TIMEOUT|ERROR]`: a blocking command of one of the
/// tenant's connections answers now, as if it timed out or with Redis's
/// UNBLOCKED error; 1 if one was blocked, else 0 (another tenant's
/// connections do not exist).
pub fn unblock(state: &State, args: &[Bytes], out: &mut BytesMut) -> After {
    let error_reply = match args.get(3).map(|a| a.to_ascii_lowercase()) {
        None => false,
        Some(a) if a == b"timeout" && args.len() == 4 => false,
        Some(a) if a == b"error" && args.len() == 4 => true,
        _ => return error(state, out, "ERR CLIENT UNBLOCK reason should be TIMEOUT or ERROR"),
    };
    let Some(id) = parse_i64(&args[2]) else {
        return error(state, out, "ERR value is not an integer or out of range");
    };
    let target = peers(state).into_iter().find(|c| c.id as i64 == id);
    let done = target.is_some_and(|t| t.unblock(error_reply));
    Reply { out, proto: state.proto }.integer(i64::from(done));
    After::Continue
}

/// Another connection closes at once; this one after its reply, as in Redis.
fn kill_one(state: &State, target: &ClientHandle) -> After {
    if target.id == state.id {
        return After::Close;
    }
    target.kill.raise();
    After::Continue
}
