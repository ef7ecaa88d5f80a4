//! What an error reply was, as a metric label. The set is fixed: a label
//! value never comes from what a client or a backend sends (a script can
//! raise `redis.error_reply('X' .. n)` for any n; such codes count as
//! `other`), so `/metrics` stays bounded however errors are made.

use tenantry_protocol::classify::Rejection;

macro_rules! error_kinds {
    ($( $(#[$doc:meta])* $variant:ident = $label:literal, )*) => {
        /// The `kind` label of `tenantry_command_errors_total`.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorKind {
            $( $(#[$doc])* $variant, )*
        }

        impl ErrorKind {
            pub const ALL: &'static [ErrorKind] = &[$(ErrorKind::$variant,)*];

            pub fn label(self) -> &'static str {
                match self {
                    $(ErrorKind::$variant => $label,)*
                }
            }
        }
    };
}

error_kinds! {
    // tenantry's own refusals, in lower case.
    /// The tenant may not run the command (commands.allow/deny, scripts).
    NoPerm = "noperm",
    /// A key or value over the tenant's size limits.
    TooLarge = "too_large",
    /// Over the tenant's memory quota.
    Oom = "oom",
    RateLimited = "rate_limited",
    /// Keys of one command or transaction in several cluster slots.
    CrossSlot = "crossslot",
    /// A read for replicas only, and no replica of its slot up.
    NoReplica = "no_replica",
    BackendUnavailable = "backend_unavailable",
    /// A request that did not arrive whole within request_read_timeout.
    Timeout = "timeout",
    UnknownCommand = "unknown_command",
    WrongArity = "wrong_arity",
    /// Arguments that name no valid keys.
    Syntax = "syntax",
    /// A command tenantry does not let tenants run.
    Refused = "refused",
    /// Held at a migration's cut-over for longer than it may be.
    Migrating = "migrating",
    // A backend's error replies, by the codes Redis itself uses.
    Err = "ERR",
    WrongType = "WRONGTYPE",
    BackendOom = "OOM",
    NoAuth = "NOAUTH",
    WrongPass = "WRONGPASS",
    BackendNoPerm = "NOPERM",
    NoProto = "NOPROTO",
    Busy = "BUSY",
    NotBusy = "NOTBUSY",
    Unkillable = "UNKILLABLE",
    NoScript = "NOSCRIPT",
    Loading = "LOADING",
    ReadOnly = "READONLY",
    MasterDown = "MASTERDOWN",
    Misconf = "MISCONF",
    ExecAbort = "EXECABORT",
    NoReplicas = "NOREPLICAS",
    BusyKey = "BUSYKEY",
    BusyGroup = "BUSYGROUP",
    NoGroup = "NOGROUP",
    BackendCrossSlot = "CROSSSLOT",
    Moved = "MOVED",
    Ask = "ASK",
    TryAgain = "TRYAGAIN",
    ClusterDown = "CLUSTERDOWN",
    Unblocked = "UNBLOCKED",
    /// Any other code.
    Other = "other",
}

impl ErrorKind {
    /// The kind of a backend error reply from its code (the first word after `-`).
    pub fn of_code(code: &[u8]) -> ErrorKind {
        Self::ALL[Self::ALL
            .iter()
            .position(|k| k.is_reply_code() && k.label().as_bytes() == code)
            .unwrap_or(Self::ALL.len() - 1)]
    }

    /// The code the client saw at the start of the error (INFO's
    /// `errorstat_<code>`); `None` for codes tenantry cannot name.
    pub fn reply_code(self) -> Option<&'static str> {
        match self {
            ErrorKind::Other => None,
            ErrorKind::NoPerm => Some("NOPERM"),
            ErrorKind::Oom => Some("OOM"),
            ErrorKind::CrossSlot => Some("CROSSSLOT"),
            k if k.is_reply_code() => Some(k.label()),
            _ => Some("ERR"),
        }
    }

    fn is_reply_code(self) -> bool {
        self.label().bytes().all(|b| b.is_ascii_uppercase())
    }

    pub fn of_rejection(r: &Rejection) -> ErrorKind {
        match r {
            Rejection::UnknownCommand { .. } | Rejection::UnknownSubcommand { .. } => ErrorKind::UnknownCommand,
            Rejection::WrongArity(_) => ErrorKind::WrongArity,
            Rejection::Keys(_) => ErrorKind::Syntax,
            Rejection::Refused { .. } => ErrorKind::Refused,
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

impl From<crate::error::Kind> for ErrorKind {
    /// What a request that failed with this kind counts as.
    fn from(kind: crate::error::Kind) -> ErrorKind {
        use crate::error::Kind;
        match kind {
            Kind::NoPerm => ErrorKind::NoPerm,
            Kind::Limit => ErrorKind::TooLarge,
            Kind::CrossSlot => ErrorKind::CrossSlot,
            Kind::WrongPass => ErrorKind::WrongPass,
            Kind::NoReplica => ErrorKind::NoReplica,
            Kind::Backend | Kind::BadReply | Kind::Setup | Kind::Shutdown => ErrorKind::BackendUnavailable,
            Kind::Refused | Kind::Invalid => ErrorKind::Err,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_codes_map_to_redis_codes_and_anything_else_to_other() {
        assert_eq!(ErrorKind::of_code(b"WRONGTYPE"), ErrorKind::WrongType);
        assert_eq!(ErrorKind::of_code(b"ERR"), ErrorKind::Err);
        assert_eq!(ErrorKind::of_code(b"OOM"), ErrorKind::BackendOom);
        // tenantry's own lower-case kinds are never taken from a reply.
        assert_eq!(ErrorKind::of_code(b"noperm"), ErrorKind::Other);
        assert_eq!(ErrorKind::of_code(b"X123456"), ErrorKind::Other);
        assert_eq!(ErrorKind::of_code(b""), ErrorKind::Other);
        assert_eq!(ErrorKind::Other.index(), ErrorKind::ALL.len() - 1);
        for (i, k) in ErrorKind::ALL.iter().enumerate() {
            assert_eq!(k.index(), i);
        }
    }

    #[test]
    fn error_kinds_count_as_their_metric() {
        assert_eq!(ErrorKind::from(crate::error::Kind::NoPerm), ErrorKind::NoPerm);
        assert_eq!(ErrorKind::from(crate::error::Kind::Limit), ErrorKind::TooLarge);
        assert_eq!(ErrorKind::from(crate::error::Kind::NoReplica), ErrorKind::NoReplica);
    }
}
