//! The proxy: client sessions, tenant identification, backend pools.
#![forbid(unsafe_code)]

mod admin;
pub mod backend;
mod out_queue;
mod policy;
mod runtime;
mod server;
mod session;

pub use runtime::{Runtime, TenantRt};
pub use server::Proxy;
