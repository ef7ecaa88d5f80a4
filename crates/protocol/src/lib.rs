//! The pure core of tenantry: RESP requests and replies, Redis's command
//! table, key rewriting and reply stripping. No I/O happens here, so all of it
//! can be property-tested and fuzzed.
#![forbid(unsafe_code)]

pub mod answer;
pub mod classify;
pub mod cluster;
pub mod command;
pub mod encode;
pub mod events;
pub mod glob;
pub mod hits;
pub mod ketama;
pub mod merge;
pub mod namespace;
pub mod num;
pub mod reply;
pub mod request;
pub mod sentinel;
pub mod strip;
pub mod ttl;

pub use classify::{classify, Action, ConnCommand, Rejection};
pub use encode::Protocol;
pub use namespace::{Namespace, NamespaceError};
pub use request::{Args, Limits, ParseError, Request, RequestParser};
pub use strip::ReplyKeys;
