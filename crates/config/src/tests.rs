use super::*;
use std::path::PathBuf;

const GOOD: &str = r#"
listen: 127.0.0.1:6379
admin: 127.0.0.1:9121
backends:
  local:
    kind: standalone
    nodes: ["127.0.0.1:7000"]
    password_env: BACKEND_PW
tenants:
  app:
    backend: local
    namespace: "app:"
  demo:
    backend: local
    namespace: "demo:"
    auth: { username: demo, password: demo-password }
default_tenant: app
"#;

fn env(name: &str) -> Option<String> {
    (name == "BACKEND_PW").then(|| "s3cret".to_string())
}

fn errors(text: &str) -> Vec<String> {
    match parse(text, &PathBuf::from("t.yaml"), &env) {
        Ok(_) => vec![],
        Err(e) => e.0.iter().map(|e| e.to_string()).collect(),
    }
}

#[test]
fn a_good_config_resolves_everything() {
    let c = parse(GOOD, &PathBuf::from("t.yaml"), &env).unwrap();
    assert_eq!(c.listen, vec!["127.0.0.1:6379".parse().unwrap()]);
    let b = &c.backends[&BackendName::new("local")];
    assert_eq!(b.auth.as_ref().unwrap().password.expose(), b"s3cret");
    assert_eq!(b.connections, 2);
    let demo = &c.tenants[&TenantId::new("demo")];
    assert_eq!(demo.namespace.as_bytes(), b"demo:");
    assert_eq!(
        demo.auth.as_ref().unwrap().password.expose(),
        b"demo-password"
    );
    assert_eq!(c.default_tenant, Some(TenantId::new("app")));
}

#[test]
fn unknown_fields_are_errors_with_a_line() {
    let text = GOOD.replace(
        "    namespace: \"app:\"",
        "    namespace: \"app:\"\n    namespaec: x",
    );
    let errs = errors(&text);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0].starts_with("t.yaml:13:5: unknown field `namespaec`"),
        "{errs:?}"
    );
}

#[test]
fn every_semantic_error_is_reported_with_file_line_and_field() {
    let text = GOOD
        .replace("namespace: \"app:\"", "namespace: \"a{pp:\"")
        .replace(
            "backend: local\n    namespace: \"demo:\"",
            "backend: nowhere\n    namespace: \"demo:\"",
        )
        .replace("default_tenant: app", "default_tenant: ghost");
    let errs = errors(&text);
    assert_eq!(errs.len(), 3, "{errs:?}");
    assert!(
        errs[0].starts_with("t.yaml:12:16: tenants.app.namespace") && errs[0].contains("hash tag"),
        "{errs:?}"
    );
    assert!(
        errs[1].starts_with("t.yaml:14:14:") && errs[1].contains("tenants.demo.backend"),
        "{errs:?}"
    );
    assert!(
        errs[2].contains("default_tenant") && errs[2].contains("ghost"),
        "{errs:?}"
    );
}

#[test]
fn overlapping_namespaces_on_one_backend_are_refused() {
    let errs = errors(&GOOD.replace("namespace: \"demo:\"", "namespace: \"app:x:\""));
    assert!(
        errs.iter().any(|e| e.contains("overlaps tenant app")),
        "{errs:?}"
    );
}

#[test]
fn secrets_come_from_files_and_missing_env_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("pw"), "from-file\n").unwrap();
    let file = dir.path().join("c.yaml");
    let text = GOOD.replace("password: demo-password", "password_file: pw");
    let c = parse(&text, &file, &env).unwrap();
    assert_eq!(
        c.tenants[&TenantId::new("demo")]
            .auth
            .as_ref()
            .unwrap()
            .password
            .expose(),
        b"from-file"
    );

    let errs = errors(&GOOD.replace("BACKEND_PW", "NOPE"));
    assert!(
        errs[0].contains("backends.local.password_env") && errs[0].contains("NOPE is not set"),
        "{errs:?}"
    );
    let errs = errors(&GOOD.replace(
        "password: demo-password",
        "password: a, password_env: BACKEND_PW",
    ));
    assert!(errs[0].contains("only one of"), "{errs:?}");
}

#[test]
fn sizes_and_limits() {
    assert_eq!(parse_size("64KiB"), Some(65536));
    assert_eq!(parse_size("1000"), Some(1000));
    assert_eq!(parse_size("1 MiB"), Some(1 << 20));
    assert_eq!(parse_size("12XB"), None);
    let errs = errors(&format!("{GOOD}limits: {{ max_bulk_bytes: 1GiB }}\n"));
    assert!(
        errs[0].contains("limits.max_bulk_bytes") && errs[0].contains("above Redis's own limit"),
        "{errs:?}"
    );
}
