//! What a command does is decided by its profile in the protocol crate
//! (`command/profile.rs`), never by matching its name here: a new command's
//! behaviour must be one row there. This scans the proxy's sources for a
//! command's name compared or matched as a literal.

use std::collections::HashSet;
use std::path::Path;
use tenantry_protocol::command::{CommandSpec, COMMANDS};

/// Literals that are a command's name but stand for something else here.
const NOT_COMMANDS: &[(&str, &str)] = &[
    // Fields of ACL GETUSER's reply.
    ("backend_users.rs", "keys"),
    ("backend_users.rs", "channels"),
    // CLIENT KILL's filters.
    ("client_cmds.rs", "type"),
    ("client_cmds.rs", "pubsub"),
    // FLUSHDB's and FUNCTION FLUSH's ASYNC | SYNC.
    ("keyspace.rs", "sync"),
    ("functions.rs", "sync"),
    // HELLO's AUTH option.
    ("connection.rs", "auth"),
];

fn names() -> HashSet<String> {
    fn walk(specs: &[CommandSpec], out: &mut HashSet<String>) {
        for s in specs {
            out.insert(s.name.to_string());
            walk(s.subcommands, out);
        }
    }
    let mut out = HashSet::new();
    walk(COMMANDS, &mut out);
    out
}

/// The string literals of a line that are compared or matched: a match
/// arm, an alternative, `==`, `matches!`, `eq_ignore_ascii_case`.
fn matched_literals(line: &str) -> Vec<String> {
    let code = line.split("//").next().unwrap_or("");
    let mut found = Vec::new();
    let bytes = code.as_bytes();
    let mut i = 0;
    while let Some(start) = code[i..].find('"').map(|s| s + i) {
        let Some(end) = code[start + 1..].find('"').map(|e| e + start + 1) else { break };
        let lit = &code[start + 1..end];
        let before = code[..start].trim_end_matches('b').trim_end();
        let after = code[end + 1..].trim_start();
        let compared = before.ends_with("==")
            || before.ends_with('|')
            || before.ends_with("eq_ignore_ascii_case(")
            || before.ends_with("matches!(")
            || (before.ends_with(',') && code.contains("matches!("))
            || after.starts_with("=>")
            || after.starts_with('|')
            || after.starts_with("==");
        if compared {
            found.push(lit.to_ascii_lowercase());
        }
        i = end + 1;
        if i >= bytes.len() {
            break;
        }
    }
    found
}

fn scan(dir: &Path, names: &HashSet<String>, hits: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            scan(&path, names, hits);
            continue;
        }
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let file = path.file_name().and_then(|f| f.to_str()).unwrap_or("").to_string();
        let text = std::fs::read_to_string(&path).expect("read file");
        for (n, line) in text.lines().enumerate() {
            for lit in matched_literals(line) {
                let excused = NOT_COMMANDS.iter().any(|&(f, l)| f == file && l == lit);
                if names.contains(&lit) && !excused {
                    hits.push(format!("{}:{}: \"{lit}\"", path.display(), n + 1));
                }
            }
        }
    }
}

#[test]
fn no_command_name_is_matched_in_the_proxy() {
    let names = names();
    let mut hits = Vec::new();
    scan(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), &names, &mut hits);
    assert!(hits.is_empty(), "command names matched outside the profile table:\n{}", hits.join("\n"));
}

#[test]
fn the_scan_sees_a_match_arm_and_a_comparison() {
    assert_eq!(matched_literals(r#"        "watch" => x,"#), ["watch"]);
    assert_eq!(matched_literals(r#"if spec.name == "scan" {"#), ["scan"]);
    assert_eq!(matched_literals(r#"matches!(spec.name, "del" | "unlink")"#), ["del", "unlink"]);
    assert_eq!(matched_literals(r#"a.eq_ignore_ascii_case(b"GET")"#), ["get"]);
    assert!(matched_literals(r#"encode(&[b"PEXPIRE", k])"#).is_empty());
}
