//! What a connection's modes let a request do, decided from its
//! classification alone, before it runs (no I/O, so every rule is tested
//! here): RESP2's subscribed mode takes only (P|S)(UN)SUBSCRIBE, PING, QUIT
//! and RESET, as in Redis; inside MULTI, connection commands other than the
//! transaction's own and FLUSHDB/DBSIZE (queued as scripts, `keyspace.rs`)
//! are refused, MULTI does not nest and WATCH waits for EXEC. Pub/Sub inside
//! MULTI is refused where subscriptions are made (`pubsub.rs`), after the
//! tenant's command rules.

use tenantry_protocol::classify::{Action, ConnCommand};
use tenantry_protocol::command::Special;

/// The modes a request can meet.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Modes {
    /// RESP2 with at least one subscription.
    pub subscribed_resp2: bool,
    /// Between MULTI and EXEC or DISCARD.
    pub in_tx: bool,
}

#[derive(Debug, PartialEq, Eq)]
pub(super) enum Verdict {
    /// The request goes on as usual.
    Go,
    /// A RESP2 subscriber's PING, answered as the subscribed mode answers it.
    SubscribedPing,
    /// Refused with this error reply. `dooms`: the transaction it is in
    /// aborts at EXEC (Redis's EXECABORT).
    Refuse { error: String, dooms: bool },
}

/// `name`: the command as the client sent it (its first argument).
pub(super) fn check(modes: Modes, action: &Action, name: &[u8]) -> Verdict {
    if modes.subscribed_resp2 {
        let refused = match action {
            Action::PubSub { .. } | Action::Reject(_) => None,
            Action::Connection(ConnCommand::Quit | ConnCommand::Reset) => None,
            Action::Forward { profile, .. } if profile.special == Special::Ping => return Verdict::SubscribedPing,
            Action::Forward { spec, .. } => Some(spec.name.to_string()),
            Action::Connection(_) => Some(String::from_utf8_lossy(name).to_ascii_lowercase()),
        };
        if let Some(name) = refused {
            let error = format!(
                "ERR Can't execute '{name}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context"
            );
            return Verdict::Refuse { error, dooms: false };
        }
    }
    if modes.in_tx {
        match action {
            Action::Connection(ConnCommand::Multi) => {
                return Verdict::Refuse { error: "ERR MULTI calls can not be nested".into(), dooms: false }
            }
            Action::Connection(
                ConnCommand::Exec
                | ConnCommand::Discard
                | ConnCommand::Unwatch
                | ConnCommand::Quit
                | ConnCommand::Reset
                | ConnCommand::ClientTracking
                | ConnCommand::Flush
                | ConnCommand::DbSize
                | ConnCommand::Info
                | ConnCommand::ConfigGet,
            ) => {}
            Action::Connection(_) => {
                let name = String::from_utf8_lossy(name).to_ascii_uppercase();
                let error = format!(
                    "ERR {name} inside MULTI is not supported through tenantry: tenantry answers it itself, \
                     and cannot make it part of the backend's transaction"
                );
                return Verdict::Refuse { error, dooms: true };
            }
            Action::Forward { profile, .. } if profile.special == Special::Watch => {
                // Redis answers it without dooming the transaction.
                return Verdict::Refuse { error: "ERR WATCH inside MULTI is not allowed".into(), dooms: false };
            }
            _ => {}
        }
    }
    Verdict::Go
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use tenantry_protocol::classify::classify;
    use tenantry_protocol::Request;

    fn verdict(modes: Modes, line: &str) -> Verdict {
        let req = Request { args: line.split(' ').map(|a| Bytes::copy_from_slice(a.as_bytes())).collect() };
        let action = classify(&req, &mut Vec::new());
        check(modes, &action, &req.args[0])
    }

    fn refused(v: Verdict) -> (String, bool) {
        match v {
            Verdict::Refuse { error, dooms } => (error, dooms),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    const SUBSCRIBED: Modes = Modes { subscribed_resp2: true, in_tx: false };
    const IN_TX: Modes = Modes { subscribed_resp2: false, in_tx: true };

    #[test]
    fn normal_mode_lets_everything_through() {
        for line in ["GET k", "MULTI", "SUBSCRIBE c", "WATCH k", "CLIENT SETNAME x", "NOSUCH x"] {
            assert_eq!(verdict(Modes::default(), line), Verdict::Go, "{line}");
        }
    }

    #[test]
    fn a_resp2_subscriber_may_only_subscribe_ping_quit_and_reset() {
        for line in ["SUBSCRIBE c", "PUNSUBSCRIBE", "SSUBSCRIBE s", "QUIT", "RESET"] {
            assert_eq!(verdict(SUBSCRIBED, line), Verdict::Go, "{line}");
        }
        assert_eq!(verdict(SUBSCRIBED, "PING"), Verdict::SubscribedPing);
        let (error, dooms) = refused(verdict(SUBSCRIBED, "GET k"));
        assert_eq!(
            error,
            "ERR Can't execute 'get': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context"
        );
        assert!(!dooms);
        let (error, _) = refused(verdict(SUBSCRIBED, "Client SetName x"));
        assert!(error.starts_with("ERR Can't execute 'client':"), "{error}");
        // Unknown commands get their own error, as in Redis.
        assert_eq!(verdict(SUBSCRIBED, "NOSUCH"), Verdict::Go);
    }

    #[test]
    fn inside_multi_connection_commands_are_refused_and_doom_the_transaction() {
        for line in
            ["EXEC", "DISCARD", "UNWATCH", "QUIT", "RESET", "GET k", "SET k v", "SUBSCRIBE c", "FLUSHDB", "DBSIZE"]
        {
            assert_eq!(verdict(IN_TX, line), Verdict::Go, "{line}");
        }
        assert_eq!(refused(verdict(IN_TX, "MULTI")), ("ERR MULTI calls can not be nested".into(), false));
        assert_eq!(refused(verdict(IN_TX, "WATCH k")), ("ERR WATCH inside MULTI is not allowed".into(), false));
        for line in ["SELECT 0", "Client SETNAME x", "WAIT 0 0", "RANDOMKEY", "AUTH p"] {
            let name = line.split(' ').next().unwrap_or_default().to_ascii_uppercase();
            let (error, dooms) = refused(verdict(IN_TX, line));
            assert!(
                error.starts_with(&format!("ERR {name} inside MULTI is not supported through tenantry")),
                "{error}"
            );
            assert!(dooms, "{line}");
        }
    }

    #[test]
    fn the_subscribed_rule_comes_first() {
        let both = Modes { subscribed_resp2: true, in_tx: true };
        let (error, dooms) = refused(verdict(both, "SELECT 0"));
        assert!(error.starts_with("ERR Can't execute 'select'"), "{error}");
        assert!(!dooms);
    }
}
