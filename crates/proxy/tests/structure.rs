//! Rules of the proxy crate's shape, checked on its sources:
//! - what a command does is decided by its profile in the protocol crate
//!   (`command/profile.rs`), never by matching its name here: a new
//!   command's behaviour must be one row there;
//! - the session's files stay small enough to read: `session/mod.rs` under
//!   250 lines, no function in `session/` over 80;
//! - errors are typed (`crate::error`): no function returns `Result<_, String>`;
//! - the crate's modules use each other one way: no cycle among them (the
//!   state every part shares is in `tenant/`, so `runtime`, `session`,
//!   `quota` and `telemetry` need not import each other).

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
    // FLUSHDB's, FUNCTION FLUSH's and SCRIPT FLUSH's ASYNC | SYNC.
    ("keyspace.rs", "sync"),
    ("functions.rs", "sync"),
    ("scripts.rs", "sync"),
    // FUNCTION RESTORE's APPEND policy.
    ("function_dump.rs", "append"),
    // HELLO's AUTH option.
    ("connection.rs", "auth"),
    // INFO's keyspace line fields and its memory section.
    ("mod.rs", "keys"),
    ("fields.rs", "memory"),
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

fn sources(dir: &Path, out: &mut Vec<(std::path::PathBuf, String)>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path).expect("read file");
            out.push((path, text));
        }
    }
}

/// (name, lines) of each function whose body closes at its own indentation.
fn function_lengths(text: &str) -> Vec<(String, usize)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let code = line.trim_start();
        let indent = &line[..line.len() - code.len()];
        let signature = ["fn ", "pub fn ", "pub(super) fn ", "pub(crate) fn ", "async fn ", "pub async fn "]
            .iter()
            .chain(&["pub(super) async fn ", "pub(crate) async fn "])
            .find_map(|p| code.strip_prefix(p));
        if let Some(rest) = signature.filter(|_| !line.trim_end().ends_with(';')) {
            let name: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            let close = format!("{indent}}}");
            if let Some(end) = (i + 1..lines.len()).find(|&j| lines[j] == close) {
                out.push((name, end - i + 1));
                i = end;
            }
        }
        i += 1;
    }
    out
}

#[test]
fn the_session_stays_small() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/session");
    let mut files = Vec::new();
    sources(&dir, &mut files);
    let mut long = Vec::new();
    for (path, text) in &files {
        if path.ends_with("mod.rs") {
            assert!(text.lines().count() < 250, "session/mod.rs has {} lines", text.lines().count());
        }
        for (name, n) in function_lengths(text) {
            if n > 80 {
                long.push(format!("{}: {name} is {n} lines", path.display()));
            }
        }
    }
    assert!(long.is_empty(), "functions over 80 lines:\n{}", long.join("\n"));
}

#[test]
fn no_function_returns_a_string_error() {
    let mut files = Vec::new();
    sources(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), &mut files);
    let mut found = Vec::new();
    for (path, text) in &files {
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            if code.contains("-> Result<") && code.contains(", String>") {
                found.push(format!("{}:{}", path.display(), n + 1));
            }
        }
    }
    assert!(found.is_empty(), "Result<_, String> returned at:\n{}", found.join("\n"));
}

#[test]
fn function_lengths_are_measured_to_the_closing_brace() {
    let text = "fn a() {\n    x();\n}\n\n    pub(super) fn b(\n        y: u8,\n    ) {\n    }\nfn c();\n";
    assert_eq!(function_lengths(text), [("a".to_string(), 3), ("b".to_string(), 4)]);
}

/// Each top-level module of the proxy crate and the others it names as `crate::x`.
fn module_uses() -> std::collections::BTreeMap<String, std::collections::BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut modules = std::collections::BTreeMap::new();
    for entry in std::fs::read_dir(&src).expect("read src") {
        let path = entry.expect("entry").path();
        let name = path.file_stem().and_then(|n| n.to_str()).unwrap_or("").to_string();
        if name == "lib" || !(path.is_dir() || path.extension().is_some_and(|e| e == "rs")) {
            continue;
        }
        let mut files = Vec::new();
        if path.is_dir() {
            sources(&path, &mut files);
        } else {
            files.push((path.clone(), std::fs::read_to_string(&path).expect("read file")));
        }
        modules.insert(name, files);
    }
    let names: HashSet<String> = modules.keys().cloned().collect();
    modules
        .iter()
        .map(|(name, files)| {
            let mut uses = std::collections::BTreeSet::new();
            for (_, text) in files {
                for line in text.lines() {
                    let code = line.split("//").next().unwrap_or("");
                    for (at, _) in code.match_indices("crate::") {
                        let rest = &code[at + "crate::".len()..];
                        let used: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                        if used != *name && names.contains(&used) {
                            uses.insert(used);
                        }
                    }
                }
            }
            (name.clone(), uses)
        })
        .collect()
}

#[test]
fn modules_use_each_other_one_way() {
    let uses = module_uses();
    // Depth-first, with the path so far: a module met again on it closes a cycle.
    fn visit(
        m: &str,
        uses: &std::collections::BTreeMap<String, std::collections::BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut HashSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|p| p == m) {
            let mut cycle = path[at..].to_vec();
            cycle.push(m.to_string());
            return Some(cycle);
        }
        if done.contains(m) {
            return None;
        }
        path.push(m.to_string());
        for next in uses.get(m).into_iter().flatten() {
            if let Some(cycle) = visit(next, uses, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(m.to_string());
        None
    }
    let mut done = HashSet::new();
    for m in uses.keys() {
        if let Some(cycle) = visit(m, &uses, &mut Vec::new(), &mut done) {
            panic!("modules import each other in a circle: {}", cycle.join(" -> "));
        }
    }
    assert!(uses["session"].contains("tenant") && uses["quota"].contains("tenant"), "the graph is read");
}
