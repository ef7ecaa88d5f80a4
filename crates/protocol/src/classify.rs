//! What tenantry does with each command: forward it (with its keys rewritten),
//! handle it in the session, or refuse it with a reason. One lookup per
//! command; everything here is decided from Redis's own table.

use crate::command::{self, acl, flags, key_positions, CommandSpec, KeyError, KeyPositions};
use crate::request::Request;
use crate::strip::ReplyKeys;
use std::fmt;

/// Commands that act on the client's connection, answered by the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnCommand {
    Auth,
    Hello,
    Quit,
    Reset,
    Select,
    ClientSetName,
    ClientGetName,
    ClientId,
    Multi,
    Exec,
    Discard,
    Unwatch,
    /// FLUSHDB / FLUSHALL: the tenant's keys only.
    Flush,
    /// DBSIZE: the tenant's keys only.
    DbSize,
    /// INFO: tenantry's own answer, about this tenant only.
    Info,
    /// RANDOMKEY: one of the tenant's keys.
    RandomKey,
    /// PUBSUB NUMPAT: Redis counts every tenant's patterns, so tenantry answers.
    NumPat,
    /// CLIENT LIST / INFO / KILL: the tenant's own connections, from tenantry.
    ClientList,
    ClientInfo,
    ClientKill,
    /// CLIENT TRACKING: the client gets a connection of its own, where its
    /// invalidations arrive; prefixes are namespaced.
    ClientTracking,
    /// FUNCTION LOAD / LIST / DELETE / FLUSH: over the libraries the tenant
    /// loaded (tenantry records who loaded what), for tenants with scripts.
    Function,
    /// CONFIG GET: the server's settings, without secrets.
    ConfigGet,
    /// CONFIG SET: accepted only where it changes nothing.
    ConfigSet,
    /// WAIT: once the client's earlier commands are answered, on a
    /// connection of its own.
    Wait,
}

/// Which of Redis's three Pub/Sub spaces a (un)subscription is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PubSubKind {
    Channel,
    Pattern,
    Shard,
}

impl ConnCommand {
    /// What a client may send before it has a tenant (Redis: AUTH, HELLO, QUIT, RESET).
    pub fn allowed_before_auth(self) -> bool {
        matches!(self, ConnCommand::Auth | ConnCommand::Hello | ConnCommand::Quit | ConnCommand::Reset)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send to the tenant's backend with the argument indices in the key
    /// positions prefixed; strip keys from the reply as `reply` says. With
    /// `match_all`, append `MATCH *` to a SCAN, `*` to PUBSUB CHANNELS (the
    /// `*` prefixed too): without a pattern they must still see only the
    /// tenant's keys or channels.
    Forward {
        spec: &'static CommandSpec,
        reply: ReplyKeys,
        match_all: bool,
        /// It may block (BLPOP, XREAD BLOCK, ...): it needs a backend
        /// connection of its own, not a shared one.
        blocking: bool,
        /// A script (EVAL, EVALSHA, SCRIPT LOAD/EXISTS): only for tenants
        /// that allow scripts.
        script: bool,
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

const ALL_FUNCTIONS: &str = "it acts on every tenant's functions";
const ALL_SCRIPTS: &str = "it acts on every tenant's scripts";
const OTHER_DB: &str = "it reaches another database, outside the tenant's namespace";
const SERVER_WIDE: &str = "it reaches beyond one tenant (server administration)";

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
    if let Some(conn) = connection_command(spec.name) {
        return Action::Connection(conn);
    }
    if let Some((kind, subscribe)) = subscription(spec.name) {
        keys.extend(1..args.len());
        return Action::PubSub { spec, kind, subscribe };
    }
    if let Some(reason) = refusal(spec, args) {
        return Action::Reject(Rejection::Refused { name: spec.name, reason });
    }
    let mut match_all = false;
    match spec.name {
        // Patterns are keys to prefix: the namespace has no glob characters,
        // so `namespace + pattern` matches exactly the tenant's keys that
        // `pattern` matches.
        "keys" => keys.push(1),
        // Channels are named like keys: the tenant's namespace is their prefix.
        "publish" | "spublish" => keys.push(1),
        "pubsub|numsub" | "pubsub|shardnumsub" => keys.extend(2..args.len()),
        "pubsub|channels" | "pubsub|shardchannels" => {
            keys.extend((args.len() > 2).then_some(2));
            match_all = keys.is_empty();
        }
        "scan" => {
            keys.extend((2..args.len()).filter(|&i| args[i - 1].eq_ignore_ascii_case(b"MATCH")));
            match_all = keys.is_empty();
        }
        _ => {
            if let Err(e) = key_positions(spec, args, keys) {
                return Action::Reject(Rejection::Keys(e));
            }
        }
    }
    // XREAD and XREADGROUP only block with BLOCK.
    let blocking = spec.has_flag(flags::BLOCKING)
        && (!matches!(spec.name, "xread" | "xreadgroup")
            || args.iter().skip(1).any(|a| a.eq_ignore_ascii_case(b"block")));
    let reply = match spec.name {
        "lmpop" | "zmpop" | "blpop" | "brpop" | "blmpop" | "bzmpop" | "bzpopmin" | "bzpopmax" => {
            ReplyKeys::FirstElement
        }
        "xread" | "xreadgroup" => ReplyKeys::StreamKeys,
        "keys" | "pubsub|channels" | "pubsub|shardchannels" => ReplyKeys::KeyList,
        "pubsub|numsub" | "pubsub|shardnumsub" => ReplyKeys::NumSub,
        "scan" => ReplyKeys::ScanPage,
        _ => ReplyKeys::None,
    };
    Action::Forward { spec, reply, match_all, blocking, script: is_script(spec.name) }
}

/// What a blocking command answers when its timeout passes with nothing to
/// take: a null bulk string for BLMOVE and BRPOPLPUSH, a null array for the
/// others (RESP3: a null).
pub fn timed_out_reply(spec: &CommandSpec, proto: crate::Protocol) -> &'static [u8] {
    match (proto, spec.name) {
        (crate::Protocol::Resp3, _) => b"_\r\n",
        (_, "blmove" | "brpoplpush") => b"$-1\r\n",
        _ => b"*-1\r\n",
    }
}

fn connection_command(name: &str) -> Option<ConnCommand> {
    Some(match name {
        "auth" => ConnCommand::Auth,
        "hello" => ConnCommand::Hello,
        "quit" => ConnCommand::Quit,
        "reset" => ConnCommand::Reset,
        "select" => ConnCommand::Select,
        "client|setname" => ConnCommand::ClientSetName,
        "client|getname" => ConnCommand::ClientGetName,
        "client|id" => ConnCommand::ClientId,
        "multi" => ConnCommand::Multi,
        "exec" => ConnCommand::Exec,
        "discard" => ConnCommand::Discard,
        "unwatch" => ConnCommand::Unwatch,
        "flushdb" | "flushall" => ConnCommand::Flush,
        "dbsize" => ConnCommand::DbSize,
        "info" => ConnCommand::Info,
        "randomkey" => ConnCommand::RandomKey,
        "pubsub|numpat" => ConnCommand::NumPat,
        "client|list" => ConnCommand::ClientList,
        "client|info" => ConnCommand::ClientInfo,
        "client|kill" => ConnCommand::ClientKill,
        "client|tracking" => ConnCommand::ClientTracking,
        "function|load" | "function|list" | "function|delete" | "function|flush" => ConnCommand::Function,
        "config|get" => ConnCommand::ConfigGet,
        "config|set" => ConnCommand::ConfigSet,
        "wait" => ConnCommand::Wait,
        _ => return None,
    })
}

fn subscription(name: &str) -> Option<(PubSubKind, bool)> {
    Some(match name {
        "subscribe" => (PubSubKind::Channel, true),
        "unsubscribe" => (PubSubKind::Channel, false),
        "psubscribe" => (PubSubKind::Pattern, true),
        "punsubscribe" => (PubSubKind::Pattern, false),
        "ssubscribe" => (PubSubKind::Shard, true),
        "sunsubscribe" => (PubSubKind::Shard, false),
        _ => return None,
    })
}

fn is_pubsub_forward(name: &str) -> bool {
    matches!(
        name,
        "publish" | "spublish" | "pubsub|channels" | "pubsub|shardchannels" | "pubsub|numsub" | "pubsub|shardnumsub"
    )
}

/// Scripts a tenant may run when its config allows them.
fn is_script(name: &str) -> bool {
    matches!(
        name,
        "eval" | "evalsha" | "eval_ro" | "evalsha_ro" | "script|load" | "script|exists" | "fcall" | "fcall_ro"
    )
}

/// Keyless commands that touch nothing of any tenant.
fn keyless_allowed(name: &str) -> bool {
    matches!(
        name,
        "ping"
            | "echo"
            | "command"
            | "time"
            | "lolwut"
            | "scan"
            | "keys"
            | "script|load"
            | "script|exists"
            // About the client's own tracking, on its own connection.
            | "client|caching"
            | "client|getredir"
            | "client|trackinginfo"
    ) || name.starts_with("command|")
        || name.ends_with("|help")
}

fn refusal<A: AsRef<[u8]>>(spec: &CommandSpec, args: &[A]) -> Option<&'static str> {
    let name = spec.name;
    if spec.in_category(acl::SCRIPTING) && !is_script(name) {
        return Some(if name.starts_with("script|") { ALL_SCRIPTS } else { ALL_FUNCTIONS });
    }
    if matches!(name, "move" | "swapdb" | "migrate")
        || (name == "copy" && args.iter().skip(3).any(|a| a.as_ref().eq_ignore_ascii_case(b"db")))
    {
        return Some(OTHER_DB);
    }
    if spec.has_flag(flags::ADMIN) || spec.has_flag(flags::ASKING) {
        return Some(SERVER_WIDE);
    }
    if spec.key_specs.is_empty() && !keyless_allowed(name) && !is_pubsub_forward(name) {
        return Some(SERVER_WIDE);
    }
    None
}

#[cfg(test)]
#[path = "classify_tests.rs"]
mod tests;
