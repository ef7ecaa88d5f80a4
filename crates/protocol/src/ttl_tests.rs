use super::*;
use crate::command::{key_positions, lookup};

const NOW: u64 = 1_700_000_000_000;

fn run(line: &str, rule: TtlRule, unit: f64) -> TtlRewrite {
    let args: Vec<Bytes> = line.split(' ').map(|a| Bytes::copy_from_slice(a.as_bytes())).collect();
    let spec = lookup(&args[0]).unwrap();
    let mut keys = Vec::new();
    key_positions(spec, &args, &mut keys).unwrap();
    rewrite(spec, &args, &keys, |_| &rule, NOW, || unit)
}

fn rule(default: Option<u64>, max: Option<u64>, jitter: u8) -> TtlRule {
    TtlRule { default: default.map(Duration::from_secs), max: max.map(Duration::from_secs), jitter_percent: jitter }
}

#[test]
fn long_ttls_are_clamped_to_max() {
    let rw = run("SET k v EX 100000", rule(None, Some(3600), 0), 0.0);
    assert_eq!(rw.replace, vec![(3, Bytes::from("PX")), (4, Bytes::from("3600000"))]);
    let rw = run("EXPIRE k 7200 NX", rule(None, Some(3600), 0), 0.0);
    assert_eq!(rw.rename, Some("PEXPIRE"));
    assert_eq!(rw.replace, vec![(2, Bytes::from("3600000"))]);
    let rw = run("SETEX k 10 v", rule(None, Some(3600), 0), 0.0);
    assert_eq!((rw.rename, rw.replace), (Some("PSETEX"), vec![(2, Bytes::from("10000"))]));
    let at = (NOW / 1000 + 7200).to_string();
    let rw = run(&format!("EXPIREAT k {at}"), rule(None, Some(3600), 0), 0.0);
    assert_eq!(rw.replace, vec![(2, Bytes::from((NOW + 3_600_000).to_string()))]);
}

#[test]
fn jitter_shortens_within_its_bound() {
    let r = rule(None, None, 10);
    assert_eq!(r.adjust_ms(100_000, 0.0), 100_000);
    assert_eq!(r.adjust_ms(100_000, 0.5), 95_000);
    assert_eq!(r.adjust_ms(100_000, 0.999_999), 90_001);
    let rw = run("PSETEX k 1000 v", r, 0.5);
    assert_eq!(rw.replace, vec![(2, Bytes::from("950"))]);
}

#[test]
fn writes_without_ttl_get_the_default_on_each_written_key() {
    let r = rule(Some(600), None, 0);
    assert_eq!(run("SET k v", r, 0.0).default_for, vec![(1, 600_000)]);
    assert_eq!(run("MSET a 1 b 2", r, 0.0).default_for, vec![(1, 600_000), (3, 600_000)]);
    assert_eq!(run("HSET h f v", r, 0.0).default_for, vec![(1, 600_000)]);
    assert_eq!(run("SUNIONSTORE d a b", r, 0.0).default_for, vec![(1, 600_000)], "sources are only read");
    assert_eq!(run("LMOVE a b LEFT RIGHT", r, 0.0).default_for, vec![(2, 600_000)]);
    assert!(run("SET k v EX 5", r, 0.0).default_for.is_empty(), "explicit TTL");
    assert!(run("GET k", r, 0.0).is_empty());
    assert!(run("DEL k", r, 0.0).is_empty());
    assert!(run("EXPIRE k 10", r, 0.0).default_for.is_empty());
}

#[test]
fn past_and_persistent_ttls_are_left_alone() {
    let r = rule(Some(600), Some(60), 10);
    assert!(run("EXPIRE k -1", r, 0.5).replace.is_empty());
    assert!(run("EXPIREAT k 1", r, 0.5).replace.is_empty());
    assert!(run("GETEX k PERSIST", r, 0.5).replace.is_empty());
    assert!(run("RESTORE k 0 payload", r, 0.5).replace.is_empty());
}
