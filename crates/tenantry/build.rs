//! Links the functions that a start and ordinary traffic run next to each
//! other, in the order `code-order.txt` lists them (made by
//! `scripts/code-order.sh`). The kernel maps a binary's pages 64 KiB around
//! each page fault, so code spread over the whole text keeps most of it
//! resident; packed, the process keeps little more than what runs.
//!
//! Only for optimized builds on x86_64 Linux with rustc 1.90 or later, which
//! links there with its own LLD: `--symbol-ordering-file` is LLD's (GNU ld
//! would refuse it). `TENANTRY_NO_CODE_ORDER=1` turns it off, for a build
//! that sets another linker. A name the file lists that the binary
//! no longer has (code changed since the file was made) is skipped quietly;
//! the order then only gets less good, never wrong.

fn main() {
    println!("cargo:rerun-if-changed=code-order.txt");
    println!("cargo:rerun-if-changed=build.rs");
    let target = std::env::var("TARGET").unwrap_or_default();
    let optimized = std::env::var("OPT_LEVEL").is_ok_and(|level| level != "0");
    println!("cargo:rerun-if-env-changed=TENANTRY_NO_CODE_ORDER");
    if target != "x86_64-unknown-linux-gnu" || !optimized || std::env::var_os("TENANTRY_NO_CODE_ORDER").is_some() {
        return;
    }
    if !rustc_links_with_lld() {
        return;
    }
    let Ok(dir) = std::env::var("CARGO_MANIFEST_DIR") else { return };
    let file = std::path::Path::new(&dir).join("code-order.txt");
    if file.exists() {
        println!("cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={}", file.display());
        println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
    }
}

/// rustc 1.90 made its bundled LLD the default linker on x86_64 Linux.
fn rustc_links_with_lld() -> bool {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let Ok(out) = std::process::Command::new(rustc).arg("--version").output() else { return false };
    // "rustc 1.95.0 (59807616e 2026-04-14)"
    let version = String::from_utf8_lossy(&out.stdout);
    let mut parts = version.split_whitespace().nth(1).unwrap_or("").split('.');
    let major: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    let minor: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    (major, minor) >= (1, 90)
}
