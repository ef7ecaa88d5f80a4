//! The shape of one entry in Redis's command table, as `COMMAND INFO` reports it.

/// Command flags (`COMMAND INFO` field 3), one bit each.
pub mod flags {
    pub const WRITE: u32 = 1 << 0;
    pub const READONLY: u32 = 1 << 1;
    pub const DENYOOM: u32 = 1 << 2;
    pub const ADMIN: u32 = 1 << 3;
    pub const PUBSUB: u32 = 1 << 4;
    pub const NOSCRIPT: u32 = 1 << 5;
    pub const BLOCKING: u32 = 1 << 6;
    pub const LOADING: u32 = 1 << 7;
    pub const STALE: u32 = 1 << 8;
    pub const SKIP_MONITOR: u32 = 1 << 9;
    pub const SKIP_SLOWLOG: u32 = 1 << 10;
    pub const ASKING: u32 = 1 << 11;
    pub const FAST: u32 = 1 << 12;
    pub const NO_AUTH: u32 = 1 << 13;
    pub const MAY_REPLICATE: u32 = 1 << 14;
    pub const SENTINEL: u32 = 1 << 15;
    pub const ONLY_SENTINEL: u32 = 1 << 16;
    pub const NO_MANDATORY_KEYS: u32 = 1 << 17;
    pub const PROTECTED: u32 = 1 << 18;
    pub const MODULE: u32 = 1 << 19;
    pub const MOVABLEKEYS: u32 = 1 << 20;
    pub const NO_MULTI: u32 = 1 << 21;
    pub const NO_ASYNC_LOADING: u32 = 1 << 22;
    pub const ALLOW_BUSY: u32 = 1 << 23;
    pub const MODULE_NO_CLUSTER: u32 = 1 << 24;

    /// Names in bit order, as Redis spells them.
    pub const NAMES: [&str; 25] = [
        "write",
        "readonly",
        "denyoom",
        "admin",
        "pubsub",
        "noscript",
        "blocking",
        "loading",
        "stale",
        "skip_monitor",
        "skip_slowlog",
        "asking",
        "fast",
        "no_auth",
        "may_replicate",
        "sentinel",
        "only_sentinel",
        "no_mandatory_keys",
        "protected",
        "module",
        "movablekeys",
        "no_multi",
        "no_async_loading",
        "allow_busy",
        "module_no_cluster",
    ];
}

/// ACL categories (`COMMAND INFO` field 7), one bit each.
pub mod acl {
    pub const KEYSPACE: u32 = 1 << 0;
    pub const READ: u32 = 1 << 1;
    pub const WRITE: u32 = 1 << 2;
    pub const SET: u32 = 1 << 3;
    pub const SORTEDSET: u32 = 1 << 4;
    pub const LIST: u32 = 1 << 5;
    pub const HASH: u32 = 1 << 6;
    pub const STRING: u32 = 1 << 7;
    pub const BITMAP: u32 = 1 << 8;
    pub const HYPERLOGLOG: u32 = 1 << 9;
    pub const GEO: u32 = 1 << 10;
    pub const STREAM: u32 = 1 << 11;
    pub const PUBSUB: u32 = 1 << 12;
    pub const ADMIN: u32 = 1 << 13;
    pub const FAST: u32 = 1 << 14;
    pub const SLOW: u32 = 1 << 15;
    pub const BLOCKING: u32 = 1 << 16;
    pub const DANGEROUS: u32 = 1 << 17;
    pub const CONNECTION: u32 = 1 << 18;
    pub const TRANSACTION: u32 = 1 << 19;
    pub const SCRIPTING: u32 = 1 << 20;

    /// Names in bit order, without the `@`.
    pub const NAMES: [&str; 21] = [
        "keyspace",
        "read",
        "write",
        "set",
        "sortedset",
        "list",
        "hash",
        "string",
        "bitmap",
        "hyperloglog",
        "geo",
        "stream",
        "pubsub",
        "admin",
        "fast",
        "slow",
        "blocking",
        "dangerous",
        "connection",
        "transaction",
        "scripting",
    ];
}

/// Key spec flags.
pub mod keyspec_flags {
    pub const RO: u16 = 1 << 0;
    pub const RW: u16 = 1 << 1;
    pub const OW: u16 = 1 << 2;
    pub const RM: u16 = 1 << 3;
    pub const ACCESS: u16 = 1 << 4;
    pub const UPDATE: u16 = 1 << 5;
    pub const INSERT: u16 = 1 << 6;
    pub const DELETE: u16 = 1 << 7;
    /// The argument is a channel (SPUBLISH, SSUBSCRIBE), not a key.
    pub const NOT_KEY: u16 = 1 << 8;
    pub const INCOMPLETE: u16 = 1 << 9;
    pub const VARIABLE_FLAGS: u16 = 1 << 10;

    pub const NAMES: [&str; 11] =
        ["RO", "RW", "OW", "RM", "access", "update", "insert", "delete", "not_key", "incomplete", "variable_flags"];
}

/// Command tips (`COMMAND INFO` field 8) that say what a reply may be: the
/// request and response policies are left out (tenantry routes by its own
/// profile).
pub mod tips {
    /// Two identical calls may answer differently with nothing written in
    /// between (SRANDMEMBER, TTL, SCAN): such replies are never shared.
    pub const NONDETERMINISTIC_OUTPUT: u8 = 1 << 0;
    /// The same elements, in any order (SMEMBERS, HGETALL).
    pub const NONDETERMINISTIC_OUTPUT_ORDER: u8 = 1 << 1;

    pub const NAMES: [&str; 2] = ["nondeterministic_output", "nondeterministic_output_order"];
}

/// One command (or subcommand, named `container|sub`) of Redis's table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommandSpec {
    /// Lower case, as `COMMAND INFO` names it.
    pub name: &'static str,
    /// Its place in the table (0..`COMMAND_COUNT`, depth first): where its
    /// [`Profile`](super::Profile) is found without a name lookup.
    pub id: u16,
    /// Positive: exact argument count including the name; negative: at least `-arity`.
    pub arity: i16,
    pub flags: u32,
    pub acl: u32,
    pub tips: u8,
    pub key_specs: &'static [KeySpec],
    /// Sorted by name.
    pub subcommands: &'static [CommandSpec],
}

impl CommandSpec {
    pub fn has_flag(&self, flag: u32) -> bool {
        self.flags & flag != 0
    }

    pub fn in_category(&self, category: u32) -> bool {
        self.acl & category != 0
    }

    pub fn arity_ok(&self, argc: usize) -> bool {
        let arity = self.arity as isize;
        if arity >= 0 {
            argc as isize == arity
        } else {
            argc as isize >= -arity
        }
    }
}

/// Where a command's keys are, in Redis 7's key spec language.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeySpec {
    pub flags: u16,
    pub begin: BeginSearch,
    pub find: FindKeys,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BeginSearch {
    Index(i32),
    /// Search for `keyword` from `startfrom` (negative: from the end, backwards).
    Keyword {
        keyword: &'static [u8],
        startfrom: i32,
    },
    /// Keys depend on the values (SORT's BY/GET/STORE): handled by a dedicated rewrite.
    Unknown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FindKeys {
    /// Keys from the begin position to `lastkey` (relative; negative: from the end),
    /// every `keystep`; `limit` > 1 means only the first 1/limit of the remaining args.
    Range {
        lastkey: i32,
        keystep: i32,
        limit: i32,
    },
    /// The number of keys is the argument at `keynumidx` (relative to begin).
    Keynum {
        keynumidx: i32,
        firstkey: i32,
        keystep: i32,
    },
    Unknown,
}
