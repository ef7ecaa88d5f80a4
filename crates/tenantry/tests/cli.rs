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

#[test]
fn check_reads_each_tenants_backend_user_and_warns_when_it_reaches_outside_the_namespace() {
    let redis = tenantry_tests::RedisServer::start_with(&["--requirepass", "admin-pw"]);
    let admin = ["-a", "admin-pw", "--no-auth-warning"];
    let made = |args: &[&str]| assert_eq!(redis.cli(&[&admin[..], args].concat()).trim_end(), "OK");
    made(&["ACL", "SETUSER", "narrow", "on", ">pw", "~app:*", "&app:*", "+@all"]);
    made(&["ACL", "SETUSER", "wide", "on", ">pw", "~*", "&app:*", "+@all"]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("users.yaml");
    std::fs::write(
        &path,
        format!(
            "listen: 127.0.0.1:6379\n\
             backends:\n  b: {{ kind: standalone, nodes: [\"{}\"], password: admin-pw }}\n\
             tenants:\n  \
               app: {{ backend: b, namespace: \"app:\", backend_auth: {{ username: narrow, password: pw }} }}\n  \
               web: {{ backend: b, namespace: \"web:\", backend_auth: {{ username: wide, password: pw }} }}\n  \
               gone: {{ backend: b, namespace: \"gone:\", backend_auth: {{ username: nobody, password: pw }} }}\n",
            redis.addr()
        ),
    )
    .unwrap();
    let (code, stdout, stderr) = check(&path);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains(": ok ("), "{stdout}");
    let warnings: Vec<&str> = stderr.lines().filter(|l| l.contains("warning")).collect();
    assert!(!stderr.contains("tenants.app."), "{stderr}");
    assert!(
        warnings.iter().any(|w| w.contains("tenants.web.backend_auth") && w.contains("key pattern ~*")),
        "{stderr}"
    );
    assert!(
        warnings.iter().any(|w| w.contains("tenants.web.backend_auth") && w.contains("channel pattern &app:*")),
        "{stderr}"
    );
    assert!(warnings.iter().any(|w| w.contains("tenants.gone.backend_auth: no user nobody")), "{stderr}");
}
