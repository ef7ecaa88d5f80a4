//! The scripts a tenant has loaded. Redis's script cache is server-wide,
//! so SCRIPT EXISTS would tell a tenant what another loaded, and SCRIPT
//! FLUSH would empty everyone's. tenantry keeps each tenant's SHAs in a set
//! on the backend (`tenantry:scripts:<namespace>`, where every proxy of the
//! tenant sees it) and a short-lived copy here, so EVALSHA of a script the
//! tenant loaded costs nothing extra and one it did not (or flushed) gets
//! NOSCRIPT as from Redis.

use sha1::{Digest, Sha1};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tenantry_protocol::Namespace;

/// How long this proxy trusts what it knows of a SHA before it asks the
/// backend's set again: a SCRIPT FLUSH through another proxy is seen here
/// within this time.
const FRESH: Duration = Duration::from_secs(2);

/// A script's SHA1, as 40 lower-case hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Sha([u8; 40]);

impl Sha {
    /// The SHA Redis gives the script `body`.
    pub fn of_script(body: &[u8]) -> Sha {
        let digest = Sha1::digest(body);
        let mut hex = [0u8; 40];
        for (i, b) in digest.iter().enumerate() {
            hex[2 * i] = HEX[usize::from(b >> 4)];
            hex[2 * i + 1] = HEX[usize::from(b & 0xf)];
        }
        Sha(hex)
    }

    /// A SHA as a client sent it; `None` if it cannot be one (Redis answers
    /// NOSCRIPT to those too). Case is ignored, as Redis ignores it.
    pub fn parse(arg: &[u8]) -> Option<Sha> {
        let hex: [u8; 40] = arg.try_into().ok()?;
        hex.iter().all(u8::is_ascii_hexdigit).then(|| Sha(hex.map(|b| b.to_ascii_lowercase())))
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// The set on the backend holding a namespace's SHAs.
pub fn scripts_key(namespace: &Namespace) -> Vec<u8> {
    super::own_key("scripts", namespace)
}

/// What this proxy knows of one SHA.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Known {
    /// The tenant loaded it (as of the backend's set a moment ago).
    Loaded,
    /// It did not, or flushed it since.
    Absent,
    /// A look at the backend's set is on its way: ask again shortly.
    Checking,
    /// Nothing fresh: the caller looks at the backend's set (`checked`).
    Unknown,
}

#[derive(Debug, Default)]
pub struct Scripts {
    shas: Mutex<HashMap<Sha, (Known, Instant)>>,
}

impl Scripts {
    /// What is known of `sha`; `Unknown` is answered once, then `Checking`
    /// until the caller reports the backend's answer.
    pub fn lookup(&self, sha: Sha) -> Known {
        let mut shas = self.shas.lock().expect("not poisoned");
        let now = Instant::now();
        match shas.get(&sha) {
            // A look that never reported (its task lost) is taken again.
            Some(&(known, at)) if now.duration_since(at) < FRESH => known,
            _ => {
                shas.insert(sha, (Known::Checking, now));
                Known::Unknown
            }
        }
    }

    /// The tenant ran or loaded the script; true if the backend's set may
    /// not have it yet (the caller adds it).
    pub fn loaded(&self, sha: Sha) -> bool {
        let mut shas = self.shas.lock().expect("not poisoned");
        let now = Instant::now();
        let fresh = matches!(shas.get(&sha), Some(&(Known::Loaded, at)) if now.duration_since(at) < FRESH);
        if !fresh {
            shas.insert(sha, (Known::Loaded, now));
        }
        !fresh
    }

    /// The backend's set says whether the tenant loaded `sha`.
    pub fn checked(&self, sha: Sha, loaded: bool) {
        let known = if loaded { Known::Loaded } else { Known::Absent };
        self.shas.lock().expect("not poisoned").insert(sha, (known, Instant::now()));
    }

    /// SCRIPT FLUSH: nothing is loaded any more.
    pub fn flushed(&self) {
        self.shas.lock().expect("not poisoned").clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shas_are_redis_own() {
        // redis-cli SCRIPT LOAD "return 1"
        assert_eq!(Sha::of_script(b"return 1").as_bytes(), b"e0e1f9fabfc9d4800c877a703b823ac0578ff8db");
        let upper = b"E0E1F9FABFC9D4800C877A703B823AC0578FF8DB";
        assert_eq!(Sha::parse(upper), Some(Sha::of_script(b"return 1")));
        assert_eq!(Sha::parse(b"e0e1"), None);
        assert_eq!(Sha::parse(b"z0e1f9fabfc9d4800c877a703b823ac0578ff8db"), None);
    }

    #[test]
    fn an_unknown_sha_is_looked_up_once_and_flushes_forget() {
        let s = Scripts::default();
        let sha = Sha::of_script(b"return 1");
        assert_eq!(s.lookup(sha), Known::Unknown);
        assert_eq!(s.lookup(sha), Known::Checking, "one look at the backend at a time");
        s.checked(sha, false);
        assert_eq!(s.lookup(sha), Known::Absent);
        assert!(s.loaded(sha), "newly loaded: the backend's set needs it");
        assert!(!s.loaded(sha), "already there");
        assert_eq!(s.lookup(sha), Known::Loaded);
        s.flushed();
        assert_eq!(s.lookup(sha), Known::Unknown);
    }
}
