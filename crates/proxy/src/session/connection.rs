//! Commands about the client's own connection, answered by tenantry:
//! AUTH, HELLO, SELECT, CLIENT SETNAME/GETNAME/ID, RESET, QUIT.

use super::client_cmds as clients;
use super::state::State;
use crate::error::{Error, Kind};
use crate::runtime::AuthOutcome;
use bytes::{Bytes, BytesMut};
use tenantry_protocol::encode::Reply;
use tenantry_protocol::num::parse_i64;
use tenantry_protocol::{ConnCommand, Protocol, Request};

const NOAUTH_HELLO: &str = "NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time";
const WRONGPASS: &str = "invalid username-password pair or user is disabled.";
const NO_DEFAULT_PASSWORD: &str = "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?";
const BAD_NAME: &str = "ERR Client names cannot contain spaces, newlines or special characters.";

/// What the session does after the reply is written.
#[derive(Debug, PartialEq, Eq)]
pub enum After {
    Continue,
    Close,
}

pub fn handle(state: &mut State, cmd: ConnCommand, req: &Request, out: &mut BytesMut) -> After {
    let args = &req.args;
    if let Some(spec) = spec_of(args) {
        state.client.ran(spec);
    }
    match cmd {
        ConnCommand::Auth => {
            let (user, pass): (&[u8], &[u8]) = match args.len() {
                2 => (b"default", &args[1]),
                3 => (&args[1], &args[2]),
                _ => return error(state, out, "ERR syntax error"),
            };
            if args.len() == 2 && !state.runtime.load().has_user(b"default") {
                return error(state, out, NO_DEFAULT_PASSWORD);
            }
            match authenticate(state, user, pass) {
                Ok(()) => reply(state, out).simple("OK"),
                Err(e) => reply(state, out).error(&e.resp()),
            }
        }
        ConnCommand::Hello => return hello(state, args, out),
        ConnCommand::Quit => {
            reply(state, out).simple("OK");
            return After::Close;
        }
        ConnCommand::Reset => {
            state.reset();
            reply(state, out).simple("RESET");
        }
        ConnCommand::Select => match parse_i64(&args[1]) {
            Some(0) => reply(state, out).simple("OK"),
            Some(_) => {
                reply(state, out).error("ERR SELECT is not allowed through tenantry: each tenant has database 0 only")
            }
            None => reply(state, out).error("ERR value is not an integer or out of range"),
        },
        ConnCommand::ClientSetName => {
            if !valid_name(&args[2]) {
                return error(state, out, BAD_NAME);
            }
            state.set_name((!args[2].is_empty()).then(|| args[2].clone()));
            reply(state, out).simple("OK");
        }
        ConnCommand::ClientGetName => match state.name.clone() {
            Some(name) => reply(state, out).bulk(&name),
            None => reply(state, out).null(),
        },
        ConnCommand::ClientId => reply(state, out).integer(state.id as i64),
        ConnCommand::ClientList => return clients::list(state, args, out),
        ConnCommand::ClientInfo => {
            let line = clients::line_of(state, &state.client);
            reply(state, out).text(&(line + "\n"));
        }
        ConnCommand::ClientKill => return clients::kill(state, args, out),
        ConnCommand::ClientUnblock => return clients::unblock(state, args, out),
        ConnCommand::AclWhoami => reply(state, out).bulk(clients::user(state).as_bytes()),
        ConnCommand::ClientNoEvict => return no_evict(state, &args[2], out),
        ConnCommand::NumPat => {
            let n = state.tenant.as_ref().map_or(0, |t| t.patterns.count());
            reply(state, out).integer(n as i64)
        }
        // The session answers these itself (transaction.rs, keyspace.rs, info.rs) and never passes them here.
        ConnCommand::Info
        | ConnCommand::Multi
        | ConnCommand::Exec
        | ConnCommand::Discard
        | ConnCommand::Unwatch
        | ConnCommand::Flush
        | ConnCommand::DbSize
        | ConnCommand::RandomKey
        | ConnCommand::ClientTracking
        | ConnCommand::ClientReply
        | ConnCommand::Function(_)
        | ConnCommand::Script(_)
        | ConnCommand::ConfigGet
        | ConnCommand::ConfigSet
        | ConnCommand::Wait => reply(state, out).error("ERR this command is answered by the session"),
    }
    After::Continue
}

/// CLIENT NO-EVICT ON|OFF: a flag of the connection's own (tenantry evicts
/// no client for memory, so there is nothing more to do).
fn no_evict(state: &mut State, switch: &[u8], out: &mut BytesMut) -> After {
    let on = if switch.eq_ignore_ascii_case(b"ON") {
        true
    } else if switch.eq_ignore_ascii_case(b"OFF") {
        false
    } else {
        return error(state, out, "ERR syntax error");
    };
    state.client.no_evict.store(on, std::sync::atomic::Ordering::Relaxed);
    reply(state, out).simple("OK");
    After::Continue
}

fn reply<'a>(state: &State, out: &'a mut BytesMut) -> Reply<'a> {
    Reply { out, proto: state.proto }
}

fn error(state: &State, out: &mut BytesMut, msg: &str) -> After {
    reply(state, out).error(msg);
    After::Continue
}

fn authenticate(state: &mut State, user: &[u8], pass: &[u8]) -> Result<(), Error> {
    state.refresh();
    let outcome = state.runtime.load().authenticate(user, pass);
    match outcome {
        AuthOutcome::Ok(tenant) => {
            tracing::debug!(client = state.id, tenant = %tenant.id, "authenticated");
            state.select(Some(tenant), true)
        }
        AuthOutcome::WrongPass => Err(Error::new(Kind::WrongPass, WRONGPASS)),
    }
}

fn valid_name(name: &[u8]) -> bool {
    name.iter().all(|&b| (b'!'..=b'~').contains(&b))
}

/// `HELLO [protover [AUTH username password] [SETNAME clientname]]`
fn hello(state: &mut State, args: &[Bytes], out: &mut BytesMut) -> After {
    let mut proto = state.proto;
    if let Some(ver) = args.get(1) {
        proto = match parse_i64(ver) {
            Some(2) => Protocol::Resp2,
            Some(3) => Protocol::Resp3,
            Some(_) => return error(state, out, "NOPROTO unsupported protocol version"),
            None => return error(state, out, "ERR Protocol version is not an integer or out of range"),
        };
    }
    let (mut auth, mut name) = (None, None);
    let mut i = 2;
    while i < args.len() {
        let more = args.len() - i - 1;
        if args[i].eq_ignore_ascii_case(b"AUTH") && more >= 2 {
            auth = Some((&args[i + 1], &args[i + 2]));
            i += 3;
        } else if args[i].eq_ignore_ascii_case(b"SETNAME") && more >= 1 {
            name = Some(&args[i + 1]);
            i += 2;
        } else {
            let msg = format!("ERR Syntax error in HELLO option '{}'", String::from_utf8_lossy(&args[i]));
            return error(state, out, &msg);
        }
    }
    if let Some((user, pass)) = auth {
        if let Err(e) = authenticate(state, user, pass) {
            return error(state, out, &e.resp());
        }
    }
    if state.tenant.is_none() {
        return error(state, out, NOAUTH_HELLO);
    }
    if let Some(name) = name {
        if !valid_name(name) {
            return error(state, out, BAD_NAME);
        }
        state.set_name((!name.is_empty()).then(|| name.clone()));
    }
    state.set_proto(proto);
    let version = state
        .tenant
        .as_ref()
        .and_then(|t| t.backend.any_node().server_version())
        .unwrap_or_else(|| env!("CARGO_PKG_VERSION").to_string());
    let mut r = reply(state, out);
    r.map(7);
    r.bulk(b"server");
    r.bulk(b"redis");
    r.bulk(b"version");
    r.bulk(version.as_bytes());
    r.bulk(b"proto");
    r.integer(proto.version());
    r.bulk(b"id");
    r.integer(state.id as i64);
    r.bulk(b"mode");
    r.bulk(b"standalone");
    r.bulk(b"role");
    r.bulk(b"master");
    r.bulk(b"modules");
    r.array(0);
    After::Continue
}

/// The table entry of a (sub)command, for CLIENT LIST's `cmd=`.
pub(super) fn spec_of(args: &[Bytes]) -> Option<&'static tenantry_protocol::command::CommandSpec> {
    let top = tenantry_protocol::command::lookup(&args[0])?;
    match args.get(1) {
        Some(sub) if !top.subcommands.is_empty() => tenantry_protocol::command::lookup_subcommand(top, sub),
        _ => Some(top),
    }
}
