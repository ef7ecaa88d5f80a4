//! The Kubernetes manifests in deploy/kubernetes render with `kubectl
//! kustomize`, validate against the Kubernetes schemas offline, and have the
//! properties the README promises (see deploy/kubernetes/check.py).

#[test]
fn the_kubernetes_overlays_render_validate_and_keep_their_promises() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let out = std::process::Command::new("python3")
        .arg("deploy/kubernetes/check.py")
        .current_dir(root)
        .output()
        .expect("python3 runs (make deps installs kubernetes-validate; kubectl must be on PATH)");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{text}");
    assert!(text.contains("render, validate against Kubernetes"), "{text}");
}
