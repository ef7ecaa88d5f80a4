use super::*;
use crate::command::{ALL_FUNCTIONS, ALL_SCRIPTS, SERVER_WIDE};
use crate::strip::ReplyKeys;
use bytes::Bytes;

fn req(line: &str) -> Request {
    Request { args: line.split(' ').map(|a| Bytes::copy_from_slice(a.as_bytes())).collect() }
}

fn action(line: &str) -> (Action, Vec<usize>) {
    let mut keys = Vec::new();
    let a = classify(&req(line), &mut keys);
    (a, keys)
}

fn error(line: &str) -> String {
    match action(line).0 {
        Action::Reject(r) => r.to_string(),
        other => panic!("{line}: expected a rejection, got {other:?}"),
    }
}

#[test]
fn keyed_commands_forward_with_positions() {
    let (a, keys) = action("set k v EX 10");
    assert!(matches!(a, Action::Forward { profile: &Profile { reply: ReplyKeys::None, .. }, .. }));
    assert_eq!(keys, vec![1]);
    let (a, keys) = action("XREAD COUNT 1 STREAMS a b 0 0");
    assert!(matches!(a, Action::Forward { profile: &Profile { reply: ReplyKeys::StreamKeys, .. }, .. }));
    assert_eq!(keys, vec![4, 5]);
    assert!(matches!(action("ping").0, Action::Forward { .. }));
    assert!(matches!(action("OBJECT HELP").0, Action::Forward { .. }));
    // A container alone: COMMAND lists the table; the others lack arguments.
    assert!(matches!(action("COMMAND").0, Action::Forward { .. }));
    assert!(matches!(action("COMMAND COUNT").0, Action::Forward { .. }));
    assert_eq!(error("CONFIG"), "ERR wrong number of arguments for 'config' command");
    let (a, keys) = action("SCAN 0 MATCH user:* COUNT 10");
    assert!(matches!(
        a,
        Action::Forward { profile: &Profile { reply: ReplyKeys::ScanPage, .. }, match_all: false, .. }
    ));
    assert_eq!(keys, vec![3]);
    assert!(matches!(action("SCAN 0 COUNT 10").0, Action::Forward { match_all: true, .. }));
    assert!(matches!(
        action("BLPOP a b 0").0,
        Action::Forward { blocking: true, profile: &Profile { reply: ReplyKeys::FirstElement, .. }, .. }
    ));
    assert!(matches!(action("XREAD BLOCK 0 STREAMS s $").0, Action::Forward { blocking: true, .. }));
    assert!(matches!(action("XREAD STREAMS s $").0, Action::Forward { blocking: false, .. }));
    let (a, keys) = action("EVAL s 2 a b x");
    assert!(matches!(a, Action::Forward { profile: &Profile { script: true, .. }, .. }));
    assert_eq!(keys, vec![3, 4]);
    let (a, keys) = action("KEYS u*");
    assert!(matches!(a, Action::Forward { profile: &Profile { reply: ReplyKeys::KeyList, .. }, .. }));
    assert_eq!(keys, vec![1]);
}

#[test]
fn errors_match_redis_wording() {
    assert_eq!(error("get"), "ERR wrong number of arguments for 'get' command");
    assert_eq!(error("object encoding"), "ERR wrong number of arguments for 'object|encoding' command");
    assert_eq!(error("object foo"), "ERR unknown subcommand 'foo'. Try OBJECT HELP.");
    assert_eq!(error("foo a b"), "ERR unknown command 'foo', with args beginning with: 'a' 'b' ");
    assert_eq!(error("lmpop x a left"), "ERR numkeys should be greater than 0");
    assert_eq!(error("lmpop 0 a left"), "ERR numkeys should be greater than 0");
    assert_eq!(error("zmpop -1 a min"), "ERR numkeys should be greater than 0");
    assert_eq!(error("zunionstore d -1 a"), "ERR at least 1 input key is needed for 'zunionstore' command");
    assert_eq!(error("zunionstore d x a"), "ERR value is not an integer or out of range");
    assert_eq!(error("eval s -1"), "ERR Number of keys can't be negative");
}

#[test]
fn unsafe_commands_are_refused_with_a_reason() {
    for (line, reason) in [
        ("FUNCTION KILL", ALL_FUNCTIONS),
        ("FUNCTION STATS", ALL_FUNCTIONS),
        ("SCRIPT KILL", ALL_SCRIPTS),
        ("MOVE k 1", OTHER_DB),
        ("COPY a b DB 2", OTHER_DB),
        ("CONFIG RESETSTAT", SERVER_WIDE),
        ("DEBUG SLEEP 1", SERVER_WIDE),
        ("BGSAVE", SERVER_WIDE),
        ("MEMORY STATS", SERVER_WIDE),
    ] {
        let msg = error(line);
        assert!(msg.starts_with("ERR command '") && msg.ends_with(reason), "{line}: {msg}");
    }
    assert!(matches!(action("COPY a b REPLACE").0, Action::Forward { .. }));
    assert!(matches!(action("COPY a b DB 0 REPLACE").0, Action::Forward { .. }), "the tenant's own database");
}

#[test]
fn channels_are_named_like_keys() {
    let (a, keys) = action("SUBSCRIBE a b");
    assert!(matches!(a, Action::PubSub { kind: PubSubKind::Channel, subscribe: true, .. }));
    assert_eq!(keys, vec![1, 2]);
    assert!(matches!(action("PUNSUBSCRIBE").0, Action::PubSub { kind: PubSubKind::Pattern, subscribe: false, .. }));
    assert!(matches!(action("SSUBSCRIBE s").0, Action::PubSub { kind: PubSubKind::Shard, subscribe: true, .. }));
    assert_eq!(action("PUBLISH c m").1, vec![1]);
    assert_eq!(action("WATCH a b").1, vec![1, 2]);
    assert!(matches!(action("FCALL f 2 a b x").0, Action::Forward { profile: &Profile { script: true, .. }, .. }));
    assert_eq!(action("FCALL f 2 a b x").1, vec![3, 4]);
    assert_eq!(
        action("FUNCTION LOAD x").0,
        Action::Connection(ConnCommand::Function(crate::command::FunctionOp::Load))
    );
    assert_eq!(action("SPUBLISH c m").1, vec![1]);
    let (a, keys) = action("PUBSUB NUMSUB a b");
    assert!(matches!(a, Action::Forward { profile: &Profile { reply: ReplyKeys::NumSub, .. }, .. }));
    assert_eq!(keys, vec![2, 3]);
    assert!(matches!(
        action("PUBSUB CHANNELS").0,
        Action::Forward { match_all: true, profile: &Profile { reply: ReplyKeys::KeyList, .. }, .. }
    ));
    assert_eq!(action("PUBSUB SHARDCHANNELS x*").1, vec![2]);
    assert_eq!(action("PUBSUB NUMPAT").0, Action::Connection(ConnCommand::NumPat));
}

#[test]
fn connection_commands_stay_in_the_session() {
    assert_eq!(action("AUTH u p").0, Action::Connection(ConnCommand::Auth));
    assert_eq!(action("client setname x").0, Action::Connection(ConnCommand::ClientSetName));
    assert_eq!(action("HELLO 3").0, Action::Connection(ConnCommand::Hello));
}

/// Every keyed command of the table is either forwarded with its keys found
/// or refused with a reason: nothing keyed slips through unprefixed.
#[test]
fn no_keyed_command_is_forwarded_without_its_keys() {
    for top in command::COMMANDS {
        let specs: Vec<&CommandSpec> =
            if top.subcommands.is_empty() { vec![top] } else { top.subcommands.iter().collect() };
        for spec in specs {
            for ks in spec.key_specs {
                if matches!(ks.begin, command::BeginSearch::Unknown) {
                    assert!(matches!(spec.name, "sort" | "sort_ro"), "{} has keys tenantry cannot locate", spec.name);
                }
            }
        }
    }
}
