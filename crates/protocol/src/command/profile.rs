//! What tenantry does with each command, beside Redis's own table: one row
//! per command that tenantry treats in a way of its own; every other
//! command gets the profile its flags in the table imply. Classification,
//! routing on several nodes, TTL rewriting and hit counting read the
//! profile; no other code matches a command's name.
//!
//! Profiles are built once, from the table, into an array indexed by each
//! spec's `id`: looking one up costs an index, not a string match.

use super::{acl, flags, tips, BeginSearch, CommandSpec, FindKeys, COMMANDS, COMMAND_COUNT};
use crate::strip::ReplyKeys;
use std::sync::LazyLock;

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
    /// CLIENT UNBLOCK: of the tenant's own blocked connections.
    ClientUnblock,
    /// ACL WHOAMI: the user the tenant's clients log in as.
    AclWhoami,
    /// CLIENT REPLY ON|OFF|SKIP: the replies of this connection only.
    ClientReply,
    /// CLIENT NO-EVICT ON|OFF: this connection only.
    ClientNoEvict,
    /// CLIENT TRACKING: the client gets a connection of its own, where its
    /// invalidations arrive; prefixes are namespaced.
    ClientTracking,
    /// FUNCTION LOAD / LIST / DELETE / FLUSH: over the libraries the tenant
    /// loaded (tenantry records who loaded what), for tenants with scripts.
    Function(FunctionOp),
    /// CONFIG GET: the server's settings, without secrets.
    ConfigGet,
    /// CONFIG SET: accepted only where it changes nothing.
    ConfigSet,
    /// WAIT: once the client's earlier commands are answered, on a
    /// connection of its own.
    Wait,
    /// SCRIPT EXISTS / FLUSH: over the scripts the tenant loaded (tenantry
    /// records their SHAs), for tenants with scripts.
    Script(ScriptOp),
}

/// The SCRIPT subcommands tenantry answers from the tenant's own scripts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScriptOp {
    Exists,
    Flush,
}

/// The FUNCTION subcommands tenantry answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FunctionOp {
    Load,
    List,
    Delete,
    Flush,
    /// DUMP / RESTORE: of the tenant's own libraries, in a payload of tenantry's.
    Dump,
    Restore,
}

impl ConnCommand {
    /// What a client may send before it has a tenant (Redis: AUTH, HELLO, QUIT, RESET).
    pub fn allowed_before_auth(self) -> bool {
        matches!(self, ConnCommand::Auth | ConnCommand::Hello | ConnCommand::Quit | ConnCommand::Reset)
    }
}

/// Which of Redis's three Pub/Sub spaces a (un)subscription is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PubSubKind {
    Channel,
    Pattern,
    Shard,
}

/// Who answers a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The tenant's backend, with its keys rewritten.
    Forward,
    /// The session, on the client's connection.
    Connection(ConnCommand),
    /// The session's subscriber connection: every argument is a channel or pattern.
    Subscription { kind: PubSubKind, subscribe: bool },
    /// Nobody: tenantry refuses it, for this reason.
    Refused(&'static str),
}

/// Which arguments are keys (to prefix with the namespace).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyArgs {
    /// As the table's key specs say.
    Spec,
    /// Argument 1: KEYS's pattern, PUBLISH's channel.
    First,
    /// Every argument from 2: PUBSUB NUMSUB's channels.
    FromSecond,
    /// An optional pattern at 2 (PUBSUB CHANNELS); without it, `*` is
    /// appended so the reply holds only the tenant's channels.
    OptionalPattern,
    /// SCAN's MATCH pattern; without it, `MATCH *` is appended.
    ScanMatch,
}

/// When a command may block (it then needs a backend connection of its own).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blocking {
    Never,
    Always,
    /// Only with a BLOCK option (XREAD, XREADGROUP).
    WithBlockOption,
}

/// How a command runs on a backend of several nodes (a cluster, a ring).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spread {
    /// On its keys' node; keys spanning nodes get `CROSSSLOT`.
    ByKeys,
    /// Split into one command per node's keys, replies merged.
    Split(Combine),
    /// On every node, replies merged.
    Every(Combine),
    /// On the node the cursor names (SCAN).
    Scan,
    /// On any node (PUBLISH and the channel lists, where tenantry's
    /// subscribers are).
    AnyNode,
}

/// How the replies of a command's parts make one reply (see `merge`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Combine {
    /// Elements back in the client's key order (MGET).
    Arrays,
    /// (name, count) pairs back in the client's order (PUBSUB SHARDNUMSUB).
    Pairs,
    /// `+OK` when every part says so (MSET).
    AllOk,
    /// The sum of the parts' integers (DEL, EXISTS, ...).
    Sum,
    /// The parts' arrays one after another (KEYS).
    Concat,
    /// The first part's (each node answers the same: SCRIPT LOAD).
    First,
}

/// How a read's reply counts as hits and misses (see `hits`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counted {
    /// A value is a hit, a null a miss.
    Nullable,
    /// As `Nullable`, only without a count argument (SRANDMEMBER key).
    NullableWithoutCount,
    /// Each element: a hit unless null (MGET).
    PerElement,
    /// The reply counts the keys that exist (EXISTS).
    Exists,
    /// A non-empty collection is a hit.
    NonEmpty,
}

/// Where a command's arguments carry a TTL (see `ttl`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TtlArgs {
    None,
    /// EX / PX / EXAT / PXAT options from this argument on (SET, GETEX).
    Options {
        from: usize,
    },
    /// A TTL at argument 2, rewritten in ms under the command `rename`.
    Second {
        ms: bool,
        absolute: bool,
        rename: &'static str,
    },
    /// RESTORE's TTL in ms at argument 2 (absolute with ABSTTL).
    Restore,
}

/// Which keys a command writes, for the default TTL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Writes {
    /// As the key specs' flags say (insert, update, overwrite).
    BySpec,
    /// Only the key after STORE (SORT).
    StoreOption,
}

/// What a blocking command answers when its timeout passes empty-handed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimedOut {
    NullArray,
    NullBulk,
}

/// Commands the session treats in a way of their own, beyond their role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Special {
    None,
    /// PING: the one non-Pub/Sub command a RESP2 subscriber may send.
    Ping,
    /// WATCH: its keys pin the client to one backend connection.
    Watch,
    /// CLIENT GETREDIR: answered from the client's tracking redirect.
    GetRedir,
    /// COPY: refused when it names another database.
    Copy,
    /// EVAL, EVAL_RO (1), SCRIPT LOAD (2): the script at this argument
    /// becomes one of the tenant's (its SHA is recorded).
    ScriptBody(u8),
    /// EVALSHA, EVALSHA_RO: runs only a script the tenant has loaded since
    /// its last SCRIPT FLUSH (argument 1), else NOSCRIPT.
    ScriptBySha,
}

/// Everything tenantry decides about one command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Profile {
    pub role: Role,
    pub keys: KeyArgs,
    /// Where key names sit in the reply, to strip.
    pub reply: ReplyKeys,
    pub blocking: Blocking,
    /// A script: only for tenants whose config allows scripts.
    pub script: bool,
    pub spread: Spread,
    pub counted: Option<Counted>,
    pub ttl: TtlArgs,
    pub writes: Writes,
    /// It frees memory (DEL, UNLINK): the tenant's quota figure is refreshed.
    pub frees: bool,
    pub timed_out: TimedOut,
    pub special: Special,
    /// Identical requests in flight at once may share one reply (request
    /// coalescing): a read of one key whose reply depends only on what the
    /// key holds.
    pub shareable: bool,
}

const FORWARD: Profile = Profile {
    role: Role::Forward,
    keys: KeyArgs::Spec,
    reply: ReplyKeys::None,
    blocking: Blocking::Never,
    script: false,
    spread: Spread::ByKeys,
    counted: None,
    ttl: TtlArgs::None,
    writes: Writes::BySpec,
    frees: false,
    timed_out: TimedOut::NullArray,
    special: Special::None,
    shareable: false,
};

pub const ALL_FUNCTIONS: &str = "it acts on every tenant's functions";
pub const ALL_SCRIPTS: &str = "it acts on every tenant's scripts";
pub const OTHER_DB: &str = "it reaches another database, outside the tenant's namespace";
pub const SERVER_WIDE: &str = "it reaches beyond one tenant (server administration)";

/// The profile of a command of the table.
pub fn profile(spec: &CommandSpec) -> &'static Profile {
    static PROFILES: LazyLock<Vec<Profile>> = LazyLock::new(|| {
        let mut all = vec![FORWARD; COMMAND_COUNT];
        fn fill(specs: &[CommandSpec], all: &mut [Profile]) {
            for spec in specs {
                all[usize::from(spec.id)] = build(spec);
                fill(spec.subcommands, all);
            }
        }
        fill(COMMANDS, &mut all);
        all
    });
    &PROFILES[usize::from(spec.id)]
}

/// A command's profile: its row, then what its flags in the table imply.
fn build(spec: &CommandSpec) -> Profile {
    let mut p = row(spec.name);
    if p.blocking == Blocking::Never && spec.has_flag(flags::BLOCKING) {
        p.blocking = Blocking::Always;
    }
    if p.role == Role::Forward {
        if let Some(reason) = refusal(spec, &p) {
            p.role = Role::Refused(reason);
        }
    }
    p.shareable = shareable(spec, &p);
    p
}

/// From the table alone: read-only, never blocking, not a script, one key
/// at argument 1 and no other, and a reply Redis does not call
/// nondeterministic (SRANDMEMBER, TTL, SCAN and OBJECT's fields are out; the
/// same elements in another order, as SMEMBERS answers, are a fair share).
fn shareable(spec: &CommandSpec, p: &Profile) -> bool {
    let one_key = matches!(
        spec.key_specs,
        [ks] if ks.begin == BeginSearch::Index(1) && matches!(ks.find, FindKeys::Range { lastkey: 0, .. })
    );
    p.role == Role::Forward
        && p.blocking == Blocking::Never
        && !p.script
        && spec.has_flag(flags::READONLY)
        && !spec.has_flag(flags::WRITE)
        && !spec.has_flag(flags::MOVABLEKEYS)
        && spec.tips & tips::NONDETERMINISTIC_OUTPUT == 0
        && one_key
}

/// What tenantry will not forward, from the table: server administration,
/// other databases, scripts and functions of every tenant, and keyless
/// commands that are about the server rather than the tenant.
fn refusal(spec: &CommandSpec, p: &Profile) -> Option<&'static str> {
    if spec.in_category(acl::SCRIPTING) && !p.script {
        return Some(if spec.name.starts_with("script|") { ALL_SCRIPTS } else { ALL_FUNCTIONS });
    }
    if spec.has_flag(flags::ADMIN) || spec.has_flag(flags::ASKING) {
        return Some(SERVER_WIDE);
    }
    if spec.key_specs.is_empty() && !keyless_allowed(spec.name) {
        return Some(SERVER_WIDE);
    }
    None
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
            // Channels, which tenantry prefixes like keys.
            | "publish"
            | "spublish"
            | "pubsub|channels"
            | "pubsub|shardchannels"
            | "pubsub|numsub"
            | "pubsub|shardnumsub"
            // About the client's own tracking, on its own connection.
            | "client|caching"
            | "client|getredir"
            | "client|trackinginfo"
            // Server facts INFO already shows a tenant (persistence,
            // replication), and ACL helpers that read no server state.
            | "lastsave"
            | "role"
            | "acl|cat"
            | "acl|genpass"
    ) || name.starts_with("command|")
        || name.ends_with("|help")
}

/// The rows: commands tenantry treats in a way of its own.
fn row(name: &str) -> Profile {
    use ConnCommand as C;
    let conn = |c| Profile { role: Role::Connection(c), ..FORWARD };
    let sub = |kind, subscribe| Profile { role: Role::Subscription { kind, subscribe }, ..FORWARD };
    let nullable = Profile { counted: Some(Counted::Nullable), ..FORWARD };
    let non_empty = Profile { counted: Some(Counted::NonEmpty), ..FORWARD };
    let popped = Profile { reply: ReplyKeys::FirstElement, ..FORWARD };
    let split = |c| Profile { spread: Spread::Split(c), ..FORWARD };
    let script = Profile { script: true, ..FORWARD };
    let ttl2 = |ms, absolute, rename| Profile { ttl: TtlArgs::Second { ms, absolute, rename }, ..FORWARD };
    match name {
        "auth" => conn(C::Auth),
        "hello" => conn(C::Hello),
        "quit" => conn(C::Quit),
        "reset" => conn(C::Reset),
        "select" => conn(C::Select),
        "client|setname" => conn(C::ClientSetName),
        "client|getname" => conn(C::ClientGetName),
        "client|id" => conn(C::ClientId),
        "multi" => conn(C::Multi),
        "exec" => conn(C::Exec),
        "discard" => conn(C::Discard),
        "unwatch" => conn(C::Unwatch),
        "flushdb" | "flushall" => conn(C::Flush),
        "dbsize" => conn(C::DbSize),
        "info" => conn(C::Info),
        "randomkey" => conn(C::RandomKey),
        "pubsub|numpat" => conn(C::NumPat),
        "client|list" => conn(C::ClientList),
        "client|info" => conn(C::ClientInfo),
        "client|kill" => conn(C::ClientKill),
        "client|unblock" => conn(C::ClientUnblock),
        "acl|whoami" => conn(C::AclWhoami),
        "client|reply" => conn(C::ClientReply),
        "client|no-evict" => conn(C::ClientNoEvict),
        "client|tracking" => conn(C::ClientTracking),
        "function|load" => conn(C::Function(FunctionOp::Load)),
        "function|list" => conn(C::Function(FunctionOp::List)),
        "function|delete" => conn(C::Function(FunctionOp::Delete)),
        "function|flush" => conn(C::Function(FunctionOp::Flush)),
        "function|dump" => conn(C::Function(FunctionOp::Dump)),
        "function|restore" => conn(C::Function(FunctionOp::Restore)),
        "config|get" => conn(C::ConfigGet),
        "config|set" => conn(C::ConfigSet),
        "wait" => conn(C::Wait),

        "subscribe" => sub(PubSubKind::Channel, true),
        "unsubscribe" => sub(PubSubKind::Channel, false),
        "psubscribe" => sub(PubSubKind::Pattern, true),
        "punsubscribe" => sub(PubSubKind::Pattern, false),
        "ssubscribe" => sub(PubSubKind::Shard, true),
        "sunsubscribe" => sub(PubSubKind::Shard, false),

        "move" | "swapdb" | "migrate" => Profile { role: Role::Refused(OTHER_DB), ..FORWARD },
        "copy" => Profile { special: Special::Copy, ..FORWARD },

        "ping" => Profile { special: Special::Ping, ..FORWARD },
        "watch" => Profile { special: Special::Watch, ..FORWARD },
        "client|getredir" => Profile { special: Special::GetRedir, ..FORWARD },

        // Patterns are keys to prefix: the namespace has no glob characters,
        // so `namespace + pattern` matches exactly the tenant's keys that
        // `pattern` matches.
        "keys" => Profile {
            keys: KeyArgs::First,
            reply: ReplyKeys::KeyList,
            spread: Spread::Every(Combine::Concat),
            ..FORWARD
        },
        "scan" => Profile { keys: KeyArgs::ScanMatch, reply: ReplyKeys::ScanPage, spread: Spread::Scan, ..FORWARD },
        // Channels are named like keys: the tenant's namespace is their prefix.
        "publish" => Profile { keys: KeyArgs::First, spread: Spread::AnyNode, ..FORWARD },
        "spublish" => Profile { keys: KeyArgs::First, ..FORWARD },
        "pubsub|channels" => {
            Profile { keys: KeyArgs::OptionalPattern, reply: ReplyKeys::KeyList, spread: Spread::AnyNode, ..FORWARD }
        }
        "pubsub|shardchannels" => Profile {
            keys: KeyArgs::OptionalPattern,
            reply: ReplyKeys::KeyList,
            spread: Spread::Every(Combine::Concat),
            ..FORWARD
        },
        "pubsub|numsub" => {
            Profile { keys: KeyArgs::FromSecond, reply: ReplyKeys::NumSub, spread: Spread::AnyNode, ..FORWARD }
        }
        "pubsub|shardnumsub" => {
            Profile { keys: KeyArgs::FromSecond, reply: ReplyKeys::NumSub, ..split(Combine::Pairs) }
        }

        "fcall" | "fcall_ro" => script,
        "eval" | "eval_ro" => Profile { special: Special::ScriptBody(1), ..script },
        "evalsha" | "evalsha_ro" => Profile { special: Special::ScriptBySha, ..script },
        // Scripts are cached per node: loaded everywhere, so EVALSHA finds
        // them on whichever master its keys live.
        "script|load" => Profile { spread: Spread::Every(Combine::First), special: Special::ScriptBody(2), ..script },
        "script|exists" => conn(C::Script(ScriptOp::Exists)),
        "script|flush" => conn(C::Script(ScriptOp::Flush)),

        "getex" => Profile { ttl: TtlArgs::Options { from: 2 }, ..nullable },
        "get" | "getdel" | "hget" | "lindex" | "zscore" | "zrank" | "zrevrank" => nullable,
        "srandmember" => Profile { counted: Some(Counted::NullableWithoutCount), ..FORWARD },
        "mget" => Profile { counted: Some(Counted::PerElement), ..split(Combine::Arrays) },
        "hmget" | "zmscore" => Profile { counted: Some(Counted::PerElement), ..FORWARD },
        "exists" => Profile { counted: Some(Counted::Exists), ..split(Combine::Sum) },
        "hgetall" | "hkeys" | "hvals" | "smembers" | "lrange" | "zrange" | "zrangebyscore" | "zrevrange" | "xrange"
        | "xrevrange" => non_empty,

        "mset" => split(Combine::AllOk),
        "touch" => split(Combine::Sum),
        "del" | "unlink" => Profile { frees: true, ..split(Combine::Sum) },

        "set" => Profile { ttl: TtlArgs::Options { from: 3 }, ..FORWARD },
        "setex" => ttl2(false, false, "PSETEX"),
        "psetex" => ttl2(true, false, "PSETEX"),
        "expire" => ttl2(false, false, "PEXPIRE"),
        "pexpire" => ttl2(true, false, "PEXPIRE"),
        "expireat" => ttl2(false, true, "PEXPIREAT"),
        "pexpireat" => ttl2(true, true, "PEXPIREAT"),
        "restore" => Profile { ttl: TtlArgs::Restore, ..FORWARD },
        "sort" | "sort_ro" => Profile { writes: Writes::StoreOption, ..FORWARD },

        "lmpop" | "zmpop" | "blpop" | "brpop" | "blmpop" | "bzmpop" | "bzpopmin" | "bzpopmax" => popped,
        "blmove" | "brpoplpush" => Profile { timed_out: TimedOut::NullBulk, ..FORWARD },
        "xread" | "xreadgroup" => {
            Profile { reply: ReplyKeys::StreamKeys, blocking: Blocking::WithBlockOption, ..FORWARD }
        }
        _ => FORWARD,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::lookup;

    #[test]
    fn every_spec_has_its_own_id() {
        let mut seen = vec![false; COMMAND_COUNT];
        fn walk(specs: &[CommandSpec], seen: &mut [bool]) {
            for s in specs {
                assert!(!std::mem::replace(&mut seen[usize::from(s.id)], true), "{} shares an id", s.name);
                walk(s.subcommands, seen);
            }
        }
        walk(COMMANDS, &mut seen);
        assert!(seen.iter().all(|&s| s), "ids run 0..COMMAND_COUNT");
    }

    #[test]
    fn every_row_names_a_command_of_the_table() {
        // A row for a name the table lacks would never apply: list them all
        // and look each up.
        let rows = [
            "auth",
            "client|getredir",
            "client|tracking",
            "copy",
            "del",
            "exists",
            "getex",
            "keys",
            "mget",
            "mset",
            "pubsub|shardnumsub",
            "restore",
            "scan",
            "script|exists",
            "sort",
            "srandmember",
            "watch",
            "xread",
        ];
        for name in rows {
            let (top, sub) = name.split_once('|').map_or((name, None), |(t, s)| (t, Some(s)));
            let spec = lookup(top.as_bytes()).unwrap_or_else(|| panic!("{top}"));
            let spec = match sub {
                Some(s) => crate::command::lookup_subcommand(spec, s.as_bytes()).unwrap_or_else(|| panic!("{name}")),
                None => spec,
            };
            assert_ne!(*profile(spec), FORWARD, "{name} has a row");
        }
    }

    #[test]
    fn flags_give_the_rest() {
        let blpop = lookup(b"blpop").unwrap();
        assert_eq!(profile(blpop).blocking, Blocking::Always);
        let flushdb = lookup(b"flushdb").unwrap();
        assert_eq!(profile(flushdb).role, Role::Connection(ConnCommand::Flush));
        let debug = lookup(b"debug").unwrap();
        assert_eq!(profile(debug).role, Role::Refused(SERVER_WIDE));
        let function = lookup(b"function").unwrap();
        let stats = crate::command::lookup_subcommand(function, b"stats").unwrap();
        assert_eq!(profile(stats).role, Role::Refused(ALL_FUNCTIONS));
    }

    #[test]
    fn shareable_reads_come_from_the_flags_and_tips() {
        for name in ["get", "hget", "hgetall", "lrange", "zrange", "smembers", "strlen", "getrange", "hmget"] {
            assert!(profile(lookup(name.as_bytes()).unwrap()).shareable, "{name}");
        }
        // Writes, several keys, blocking, scripts, and replies that differ
        // between two identical calls.
        for name in [
            "set",
            "getex",
            "getdel",
            "mget",
            "exists",
            "blpop",
            "xread",
            "eval_ro",
            "srandmember",
            "ttl",
            "pttl",
            "scan",
        ] {
            assert!(!profile(lookup(name.as_bytes()).unwrap()).shareable, "{name}");
        }
        let object = lookup(b"object").unwrap();
        let idle = crate::command::lookup_subcommand(object, b"idletime").unwrap();
        assert!(!profile(idle).shareable);
    }
}
