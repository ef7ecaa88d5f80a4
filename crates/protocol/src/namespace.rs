//! A tenant's key prefix, validated so that prefixing can never change what a
//! key means to Redis.

use bytes::Bytes;
use std::fmt;

/// The prefix prepended to every key, pattern and channel of one tenant.
///
/// Invariants (checked by [`Namespace::new`]):
/// - not empty, at most 128 bytes, printable ASCII without spaces;
/// - no `{` or `}`: the cluster hash tag of `namespace + key` is the hash tag
///   of `key`, so keys sharing a tag keep sharing a slot;
/// - no glob characters (`*?[]\`): `namespace + pattern` matches exactly the
///   tenant's keys that `pattern` matches, never more.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Namespace(Bytes);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NamespaceError {
    #[error("must not be empty")]
    Empty,
    #[error("must be at most 128 bytes")]
    TooLong,
    #[error("must not contain {0:?}: {1}")]
    Forbidden(char, &'static str),
    #[error("must be printable ASCII without spaces")]
    NotPrintable,
}

impl Namespace {
    pub fn new(prefix: &str) -> Result<Self, NamespaceError> {
        if prefix.is_empty() {
            return Err(NamespaceError::Empty);
        }
        if prefix.len() > 128 {
            return Err(NamespaceError::TooLong);
        }
        for c in prefix.chars() {
            match c {
                '{' | '}' => return Err(NamespaceError::Forbidden(c, "it would change the keys' cluster hash tag")),
                '*' | '?' | '[' | ']' | '\\' => {
                    return Err(NamespaceError::Forbidden(c, "it would turn patterns into wider globs"))
                }
                '!'..='~' => {}
                _ => return Err(NamespaceError::NotPrintable),
            }
        }
        Ok(Namespace(Bytes::copy_from_slice(prefix.as_bytes())))
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// True if one namespace's keys could be mistaken for the other's.
    pub fn overlaps(&self, other: &Namespace) -> bool {
        self.0.starts_with(&other.0) || other.0.starts_with(&self.0)
    }

    /// `namespace + key`.
    pub fn prefixed(&self, key: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.len() + key.len());
        out.extend_from_slice(&self.0);
        out.extend_from_slice(key);
        out
    }

    /// The client's view of a backend key, if the key is this tenant's.
    pub fn strip<'a>(&self, key: &'a [u8]) -> Option<&'a [u8]> {
        key.strip_prefix(self.as_bytes())
    }
}

impl fmt::Debug for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Namespace({:?})", String::from_utf8_lossy(&self.0))
    }
}

impl fmt::Display for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_protects_hash_tags_and_patterns() {
        assert!(Namespace::new("checkout:v3:").is_ok());
        assert_eq!(Namespace::new(""), Err(NamespaceError::Empty));
        assert!(matches!(Namespace::new("a{b"), Err(NamespaceError::Forbidden('{', _))));
        assert!(matches!(Namespace::new("a*"), Err(NamespaceError::Forbidden('*', _))));
        assert_eq!(Namespace::new("a b"), Err(NamespaceError::NotPrintable));
        assert_eq!(Namespace::new("é"), Err(NamespaceError::NotPrintable));
    }

    #[test]
    fn overlap_is_prefix_either_way() {
        let a = Namespace::new("app:").unwrap();
        let b = Namespace::new("app:v2:").unwrap();
        let c = Namespace::new("other:").unwrap();
        assert!(a.overlaps(&b) && b.overlaps(&a));
        assert!(!a.overlaps(&c));
    }
}
