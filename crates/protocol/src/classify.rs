//! What tenantry does with each command: forward it (with its keys rewritten),
//! handle it in the session, or refuse it with a reason. One lookup per
//! command; everything here is decided from Redis's own table.

use crate::command::{
    self, key_positions, profile, Blocking, CommandSpec, KeyArgs, KeyError, KeyPositions, Profile, Role, Special,
    TimedOut, OTHER_DB,
};
use crate::request::Request;
use std::fmt;

pub use crate::command::{ConnCommand, PubSubKind};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send to the tenant's backend with the argument indices in the key
    /// positions prefixed; strip keys from the reply as the profile says. With
    /// `match_all`, append `MATCH *` to a SCAN, `*` to PUBSUB CHANNELS (the
    /// `*` prefixed too): without a pattern they must still see only the
    /// tenant's keys or channels.
    Forward {
        spec: &'static CommandSpec,
        /// What tenantry decides about it, beyond Redis's table.
        profile: &'static Profile,
        match_all: bool,
        /// It may block (BLPOP, XREAD BLOCK, ...): it needs a backend
        /// connection of its own, not a shared one.
        blocking: bool,
    },
    Connection(ConnCommand),
    /// SUBSCRIBE, PSUBSCRIBE, SSUBSCRIBE (`subscribe: true`) and their
    /// UNSUBSCRIBEs: every argument is a channel or pattern, prefixed.
    PubSub {
        spec: &'static CommandSpec,
        kind: PubSubKind,
        subscribe: bool,
    },
    Reject(Rejection),
}

/// An error reply; the connection stays open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    UnknownCommand {
        name: Vec<u8>,
        args: Vec<Vec<u8>>,
    },
    UnknownSubcommand {
        container: &'static str,
        sub: Vec<u8>,
    },
    WrongArity(&'static str),
    Keys(KeyError),
    /// A command tenantry does not let a tenant run, and why.
    Refused {
        name: &'static str,
        reason: &'static str,
    },
}

impl Rejection {
    /// A short name for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Rejection::UnknownCommand { .. } | Rejection::UnknownSubcommand { .. } => "unknown_command",
            Rejection::WrongArity(_) => "wrong_arity",
            Rejection::Keys(_) => "syntax",
            Rejection::Refused { .. } => "refused",
        }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // Redis: at most 128 bytes of name, args while the list is under 128 bytes.
            Rejection::UnknownCommand { name, args } => {
                write!(f, "ERR unknown command '{}', with args beginning with: ", lossy(name, 128))?;
                let mut written = 0;
                for arg in args {
                    if written >= 128 {
                        break;
                    }
                    let s = format!("'{}' ", lossy(arg, 128 - written));
                    written += s.len();
                    f.write_str(&s)?;
                }
                Ok(())
            }
            Rejection::UnknownSubcommand { container, sub } => {
                write!(f, "ERR unknown subcommand '{}'. Try {} HELP.", lossy(sub, 128), container.to_ascii_uppercase())
            }
            Rejection::WrongArity(name) => {
                write!(f, "ERR wrong number of arguments for '{name}' command")
            }
            Rejection::Keys(e) => write!(f, "{e}"),
            Rejection::Refused { name, reason } => {
                write!(f, "ERR command '{name}' is not allowed through tenantry: {reason}")
            }
        }
    }
}

fn lossy(raw: &[u8], max: usize) -> String {
    String::from_utf8_lossy(&raw[..raw.len().min(max)]).into_owned()
}

/// Classifies a request and fills `keys` with the argument positions to prefix.
pub fn classify(req: &Request, keys: &mut KeyPositions) -> Action {
    keys.clear();
    let args = &req.args;
    let Some(top) = command::lookup(&args[0]) else {
        return Action::Reject(Rejection::UnknownCommand {
            name: args[0].to_vec(),
            args: args[1..].iter().map(|a| a.to_vec()).collect(),
        });
    };
    if !top.arity_ok(args.len()) {
        return Action::Reject(Rejection::WrongArity(top.name));
    }
    // A container alone passed its arity: COMMAND, which lists the table.
    let spec = match args.get(1).filter(|_| !top.subcommands.is_empty()) {
        None => top,
        Some(sub) => match command::lookup_subcommand(top, sub) {
            Some(sub) => sub,
            None => return Action::Reject(Rejection::UnknownSubcommand { container: top.name, sub: sub.to_vec() }),
        },
    };
    if !spec.arity_ok(args.len()) {
        return Action::Reject(Rejection::WrongArity(spec.name));
    }
    let p = profile(spec);
    match p.role {
        Role::Forward => {}
        Role::Connection(conn) => return Action::Connection(conn),
        Role::Subscription { kind, subscribe } => {
            keys.extend(1..args.len());
            return Action::PubSub { spec, kind, subscribe };
        }
        Role::Refused(reason) => return Action::Reject(Rejection::Refused { name: spec.name, reason }),
    }
    // `DB 0` is the tenant's own database (every tenant is in 0): allowed.
    let other_db = |i: usize| args[i].eq_ignore_ascii_case(b"db") && args.get(i + 1).is_none_or(|n| &n[..] != b"0");
    if p.special == Special::Copy && (3..args.len()).any(other_db) {
        return Action::Reject(Rejection::Refused { name: spec.name, reason: OTHER_DB });
    }
    let mut match_all = false;
    match p.keys {
        KeyArgs::First => keys.push(1),
        KeyArgs::FromSecond => keys.extend(2..args.len()),
        KeyArgs::OptionalPattern => {
            keys.extend((args.len() > 2).then_some(2));
            match_all = keys.is_empty();
        }
        KeyArgs::ScanMatch => {
            keys.extend((2..args.len()).filter(|&i| args[i - 1].eq_ignore_ascii_case(b"MATCH")));
            match_all = keys.is_empty();
        }
        KeyArgs::Spec => {
            if let Err(e) = key_positions(spec, args, keys) {
                return Action::Reject(Rejection::Keys(e));
            }
        }
    }
    let blocking = match p.blocking {
        Blocking::Never => false,
        Blocking::Always => true,
        Blocking::WithBlockOption => args.iter().skip(1).any(|a| a.eq_ignore_ascii_case(b"block")),
    };
    Action::Forward { spec, profile: p, match_all, blocking }
}

/// What a blocking command answers when its timeout passes with nothing to
/// take: a null bulk string for BLMOVE and BRPOPLPUSH, a null array for the
/// others (RESP3: a null).
pub fn timed_out_reply(p: &Profile, proto: crate::Protocol) -> &'static [u8] {
    match (proto, p.timed_out) {
        (crate::Protocol::Resp3, _) => b"_\r\n",
        (_, TimedOut::NullBulk) => b"$-1\r\n",
        (_, TimedOut::NullArray) => b"*-1\r\n",
    }
}

#[cfg(test)]
#[path = "classify_tests.rs"]
mod tests;
