//! tenantry's errors: a kind (what a client is told, and the metric it
//! counts as), a message, and the error underneath, if any. The RESP text is
//! made only where a reply is written ([`Error::resp`]); everywhere else an
//! error keeps its kind and its source. A leaf: the errors of other
//! modules convert into it where they are defined.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use tenantry_protocol::answer::AnswerError;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, as a client and the metrics see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The tenant may not do it (commands.allow/deny, scripts, other databases).
    NoPerm,
    /// Over one of the tenant's limits (connections, sizes).
    Limit,
    /// AUTH with a user or password no tenant has.
    WrongPass,
    /// The keys of one command or transaction are in several slots.
    CrossSlot,
    /// A read for replicas only, and no replica of its slot is up.
    NoReplica,
    /// The backend could not be reached, or its connection was lost.
    Backend,
    /// The backend answered with an error: its text is passed on as it came.
    Refused,
    /// The backend answered, but not in the shape tenantry asked for.
    BadReply,
    /// The client's arguments.
    Invalid,
    /// tenantry's own setup (tracing, exporters).
    Setup,
    /// tenantry is shutting down.
    Shutdown,
}

impl Kind {
    /// The code the reply's text starts with (`None`: the message has its own).
    fn code(self) -> Option<&'static str> {
        match self {
            Kind::NoPerm => Some("NOPERM"),
            Kind::CrossSlot => Some("CROSSSLOT"),
            Kind::WrongPass => Some("WRONGPASS"),
            Kind::Refused => None,
            Kind::Limit
            | Kind::NoReplica
            | Kind::Backend
            | Kind::BadReply
            | Kind::Invalid
            | Kind::Setup
            | Kind::Shutdown => Some("ERR"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Error {
    kind: Kind,
    /// What was being done: `"FUNCTION LOAD"`.
    context: Option<Cow<'static, str>>,
    message: Cow<'static, str>,
    source: Option<Arc<dyn std::error::Error + Send + Sync>>,
}

impl Error {
    pub fn new(kind: Kind, message: impl Into<Cow<'static, str>>) -> Error {
        Error { kind, context: None, message: message.into(), source: None }
    }

    /// An error caused by `source`, whose text follows the message.
    pub fn caused(
        kind: Kind,
        message: impl Into<Cow<'static, str>>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Error {
        Error { kind, context: None, message: message.into(), source: Some(Arc::new(source)) }
    }

    /// A backend's error reply (`-CODE text\r\n`, or its text alone).
    pub fn refused(reply: &[u8]) -> Error {
        let text = reply.strip_prefix(b"-").unwrap_or(reply);
        let text = text.strip_suffix(b"\r\n").unwrap_or(text);
        Error::new(Kind::Refused, String::from_utf8_lossy(text).into_owned())
    }

    /// A connection of tenantry's own to a backend broke.
    pub fn io(e: std::io::Error) -> Error {
        Error::caused(Kind::Backend, "backend connection", e)
    }

    /// A reply tenantry could not read.
    pub fn bad_reply(e: impl fmt::Display) -> Error {
        Error::new(Kind::BadReply, format!("invalid reply: {e}"))
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The same error, said of what was being done: `"SCAN: " + self`.
    pub fn context(mut self, what: impl Into<Cow<'static, str>>) -> Error {
        let what = what.into();
        self.context = Some(match self.context.take() {
            Some(inner) => format!("{what}: {inner}").into(),
            None => what,
        });
        self
    }

    /// The error reply's text (without `-` and CRLF): the code, the
    /// message, and what caused it. A backend's refusal keeps its own code
    /// in front, unless a context comes first.
    pub fn resp(&self) -> String {
        match (self.kind.code(), &self.context) {
            (Some(code), _) => format!("{code} {self}"),
            (None, Some(_)) => format!("ERR {self}"),
            (None, None) => self.to_string(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(context) = &self.context {
            write!(f, "{context}: ")?;
        }
        f.write_str(&self.message)?;
        if let Some(source) = &self.source {
            write!(f, ": {source}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_deref().map(|s| s as &(dyn std::error::Error + 'static))
    }
}

impl From<AnswerError> for Error {
    fn from(e: AnswerError) -> Error {
        match e {
            AnswerError::Refused(text) => Error::new(Kind::Refused, text),
            other => Error::new(Kind::BadReply, other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reply_text_has_the_code_and_the_cause() {
        let e = Error::new(Kind::NoPerm, "tenant 'a' may not run 'flushall'");
        assert_eq!(e.resp(), "NOPERM tenant 'a' may not run 'flushall'");
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let e = Error::caused(Kind::Backend, "connecting to 127.0.0.1:1", io).context("FUNCTION LOAD");
        assert_eq!(e.resp(), "ERR FUNCTION LOAD: connecting to 127.0.0.1:1: refused");
        assert!(std::error::Error::source(&e).is_some());
    }

    #[test]
    fn a_backends_refusal_passes_as_it_came() {
        let e = Error::refused(b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n");
        assert_eq!(e.resp(), "WRONGTYPE Operation against a key holding the wrong kind of value");
        assert_eq!(Error::from(AnswerError::Refused("ERR no".into())).resp(), "ERR no");
        let e = Error::refused(b"-WRONGTYPE wrong kind\r\n").context("FUNCTION failed");
        assert_eq!(e.resp(), "ERR FUNCTION failed: WRONGTYPE wrong kind");
    }
}
