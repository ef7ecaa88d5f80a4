//! `tenantry check` as operators run it: the real binary, real files.

use std::process::Command;

fn check(path: &std::path::Path) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tenantry")).arg("check").arg(path).output().unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_example_configs_are_valid() {
    // config/tls.yaml names certificates made on the spot (never committed).
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let made = Command::new("scripts/tls-certs.sh").arg("target/run-tls").current_dir(root).status().unwrap();
    assert!(made.success(), "scripts/tls-certs.sh failed");
    for entry in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../../config")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let (code, stdout, stderr) = check(&path);
            assert_eq!(code, 0, "{}: {stderr}", path.display());
            assert!(stdout.contains(": ok ("), "{stdout}");
        }
    }
}

#[test]
fn every_error_is_printed_with_file_line_and_field_and_exit_status_1() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yaml");
    std::fs::write(
        &path,
        "listen: 127.0.0.1:6379\nbackends:\n  b: { kind: standalone, nodes: [\"nohost\"] }\ntenants:\n  t: { backend: b, namespace: \"t*\" }\n  u: { backend: missing, namespace: \"u:\" }\n",
    )
    .unwrap();
    let (code, _, stderr) = check(&path);
    assert_eq!(code, 1);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 3, "{stderr}");
    let file = path.display().to_string();
    assert!(lines[0].starts_with(&format!("{file}:3:")) && lines[0].contains("backends.b.nodes"), "{stderr}");
    assert!(lines[1].starts_with(&format!("{file}:5:")) && lines[1].contains("tenants.t.namespace"), "{stderr}");
    assert!(lines[2].starts_with(&format!("{file}:6:")) && lines[2].contains("tenants.u.backend"), "{stderr}");
}

#[test]
fn an_unreadable_file_is_an_error() {
    let (code, _, stderr) = check(std::path::Path::new("/nonexistent/tenants.yaml"));
    assert_eq!(code, 1);
    assert!(stderr.starts_with("/nonexistent/tenants.yaml: cannot read"), "{stderr}");
}

#[test]
fn run_refuses_an_invalid_config_with_its_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yaml");
    std::fs::write(&path, "listen: 127.0.0.1:0\nbackends: {}\ntenants:\n  t: { backend: none, namespace: \"t:\" }\n")
        .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tenantry"))
        .args(["run", "--config"])
        .arg(&path)
        .env("TENANTRY_LOG", "error")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&format!("{}:4:", path.display())) && stderr.contains("tenants.t.backend"), "{stderr}");
}
