//! The tenant routing YAML: parsed with serde-saphyr (unknown fields are
//! errors), validated with every error's file, line and field, secrets resolved.
#![forbid(unsafe_code)]

mod diff;
mod error;
mod migrate;
mod model;
mod policy;
mod raw;
mod tls;
mod validate;

pub use diff::{Change, ConfigDiff, TenantMove};
pub use error::{ConfigError, ConfigErrors};
pub use model::*;
pub use validate::parse_size;

use std::path::Path;

/// Reads and validates a config file. Secrets come from the file, from files
/// it names, or from the process environment.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    parse_bytes(&read(path)?, path, &|name| std::env::var(name).ok())
}

/// The file's bytes, or the error `load` would give.
pub fn read(path: &Path) -> Result<Vec<u8>, ConfigErrors> {
    std::fs::read(path).map_err(|e| file_error(path, format!("cannot read: {e}")))
}

/// Validates a file's bytes (see `parse`).
pub fn parse_bytes(bytes: &[u8], file: &Path, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigErrors> {
    let text = std::str::from_utf8(bytes).map_err(|e| file_error(file, format!("not UTF-8: {e}")))?;
    parse(text, file, env)
}

fn file_error(file: &Path, message: String) -> ConfigErrors {
    ConfigErrors(vec![ConfigError { file: file.to_path_buf(), line: 0, column: 0, field: String::new(), message }])
}

/// Validates config text; `file` names it in errors and anchors relative
/// `password_file` paths; `env` looks up `password_env` variables.
pub fn parse(text: &str, file: &Path, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigErrors> {
    let raw: raw::RawConfig = serde_saphyr::from_str(text).map_err(|e| {
        let (line, column) = e.location().map(|l| (l.line(), l.column())).unwrap_or((0, 0));
        ConfigErrors(vec![ConfigError {
            file: file.to_path_buf(),
            line,
            column,
            field: String::new(),
            message: first_line(&e.to_string()),
        }])
    })?;
    validate::validate(raw, file, env)
}

/// serde-saphyr renders a source snippet after the message; the CLI prints
/// file:line:column itself, so keep the message line.
fn first_line(s: &str) -> String {
    let line = s.lines().find(|l| !l.trim().is_empty()).unwrap_or(s).trim();
    let line = line.strip_prefix("error: ").unwrap_or(line);
    // Drop serde-saphyr's own "line N column M: " since the location is printed already.
    match line.strip_prefix("line ").and_then(|rest| rest.split_once(": ")) {
        Some((pos, msg)) if pos.contains(" column ") => msg.to_string(),
        _ => line.to_string(),
    }
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
