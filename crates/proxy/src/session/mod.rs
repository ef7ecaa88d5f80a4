//! One client connection: read requests, classify, apply the tenant's policy,
//! rewrite and batch them to the tenant's backend, and write every reply back
//! in request order.
//!
//! Invariants: exactly one reply per request, in request order, whatever mix
//! of backend and local replies; a bad or refused command gets an error and
//! the connection goes on; only a protocol error (a broken frame) closes it,
//! after its error reply, as Redis does.
//!
//! The files, in the order a request meets them: `serve.rs` (the I/O loop)
//! → `dispatch.rs` (which part answers it; `modes.rs`: what the modes
//! allow) → `forward.rs` (the request path to the backend: policy →
//! `admit.rs` → TTL rewrite → `sharded.rs` (route, split) → `coalesce.rs`
//! (the near-cache, or an identical read in flight) → `batcher.rs`)
//! → `replies.rs` (order, strip, merge, redirects, accounting) →
//! `output.rs` (the client's output limits). The connection's own
//! commands: `connection.rs`, `client_cmds.rs`, `config_cmds.rs`,
//! `keyspace.rs`, `functions.rs`; its modes: `transaction.rs`, `pubsub.rs`,
//! `blocking.rs`, `tracking.rs`, `reply_mode.rs` (CLIENT REPLY).

mod admit;
mod batcher;
mod blocking;
mod client_cmds;
mod coalesce;
mod config_cmds;
mod connection;
mod dispatch;
mod forward;
mod function_dump;
mod functions;
mod info;
mod keyspace;
mod migrating;
mod modes;
#[cfg(any(test, feature = "fuzzing"))]
pub mod order_check;
mod output;
mod pubsub;
mod replies;
mod reply_mode;
mod scripts;
mod serve;
mod sharded;
mod state;
mod tracking;
mod tracking_opts;
mod transaction;

pub use serve::serve;

use crate::out_queue::OutQueue;
use crate::telemetry::{CommandCache, KeyspaceCache};
use batcher::{Batcher, Transaction};
use output::OutputGuard;
use replies::ReplyQueue;
use state::State;
use std::sync::Arc;
use tenantry_protocol::encode::Reply;
use tenantry_protocol::{Request, RequestParser};
use tokio::time::Instant;

const NOAUTH: &str = "NOAUTH Authentication required.";

/// What the I/O loop does after the session has handled what was buffered.
enum Flow {
    Continue,
    Close,
    /// A request waits on its rate limit until then.
    Wait(Instant),
}

/// What later requests wait for, until `done` fires.
struct Waiting {
    done: tokio::sync::oneshot::Receiver<()>,
    /// A blocking command: the task serving it on a connection of its own,
    /// aborted (closing that connection, which unblocks it there) if the
    /// client goes away.
    blocked: Option<blocking::OwnCommand>,
}

impl Waiting {
    fn on(done: tokio::sync::oneshot::Receiver<()>) -> Waiting {
        Waiting { done, blocked: None }
    }
}

/// A request held back by a rate limit with `on_exceed: delay`.
struct Delayed {
    req: Request,
    /// Its reply is not to be sent (CLIENT REPLY OFF or SKIP).
    muted: bool,
    retry_at: Instant,
    /// After this it is rejected instead.
    deadline: Instant,
}

struct Session {
    state: State,
    parser: RequestParser,
    /// Scratch for key positions, reused across requests.
    keys: Vec<usize>,
    batcher: Batcher,
    replies: ReplyQueue,
    out: OutQueue,
    // The rarely used modes below are boxed: an idle connection carries a
    // pointer for each, not their state.
    delayed: Option<Box<Delayed>>,
    /// Commands queued since MULTI.
    tx: Option<Box<Transaction>>,
    /// A command later commands wait for (a FLUSHDB, a FUNCTION LOAD, a
    /// blocking command), as they would in Redis.
    waiting: Option<Waiting>,
    /// When the last bytes came in: a rate-limit delay is bounded from the
    /// time a request arrived, not from when its turn came in a pipeline.
    read_at: Instant,
    /// The subscriber connection, once the client has used Pub/Sub.
    pubsub: Option<Box<pubsub::PubSub>>,
    watch: transaction::Watch,
    /// A cluster's masters this client wrote to since its last WAIT.
    wrote_to: Vec<Arc<crate::backend::NodePool>>,
    /// CLIENT TRACKING is on (the client is pinned to its own connection).
    tracking: Option<tracking::Tracking>,
    /// Pushes (invalidations) from the client's own connection, while pinned.
    pushes: Option<Box<tracking::Pushes>>,
    keyspace_cache: KeyspaceCache,
    command_cache: CommandCache,
    /// The client's unread output against its limits.
    guard: OutputGuard,
    /// Its writes not yet answered, for the flights its reads may join.
    own_writes: coalesce::OwnWrites,
    /// CLIENT REPLY: whether its replies are sent.
    reply_mode: reply_mode::ReplyMode,
    /// The marks of the write being forwarded, while its tenant migrates.
    write_mark: Option<crate::tenant::migration::WriteMark>,
    /// When the request now held at a migration's cut-over was first held.
    held_since: Option<Instant>,
    /// The read buffer ends in part of a request...
    incomplete: bool,
    /// ...which began to arrive then.
    incomplete_since: Option<Instant>,
}

impl Session {
    fn new(state: State) -> Session {
        Session {
            batcher: Batcher::new(state.id),
            parser: RequestParser::new(state.limits.protocol),
            state,
            keys: Vec::new(),
            replies: ReplyQueue::default(),
            out: OutQueue::default(),
            delayed: None,
            tx: None,
            waiting: None,
            pubsub: None,
            watch: transaction::Watch::None,
            wrote_to: Vec::new(),
            tracking: None,
            pushes: None,
            read_at: Instant::now(),
            keyspace_cache: KeyspaceCache::default(),
            command_cache: CommandCache::default(),
            guard: OutputGuard::default(),
            own_writes: coalesce::OwnWrites::default(),
            reply_mode: reply_mode::ReplyMode::On,
            write_mark: None,
            held_since: None,
            incomplete: false,
            incomplete_since: None,
        }
    }

    /// Whether another request may go out: the client is under its limits
    /// of requests in flight in count (`max_pipeline`, lowered by the
    /// weight of its replies) and in bytes (one request always may).
    fn room_in_flight(&self) -> bool {
        self.has_room(self.in_flight_limits())
    }

    /// (requests, bytes) the client may have in flight now.
    fn in_flight_limits(&self) -> (usize, usize) {
        let window = self.replies.window.requests(&self.state.output_limits());
        (self.state.max_pipeline().min(window), self.state.max_pipeline_bytes())
    }

    fn has_room(&self, (requests, bytes): (usize, usize)) -> bool {
        let count = self.replies.in_flight + self.batcher.pending();
        count < requests && (count == 0 || self.replies.in_flight_bytes + self.batcher.pending_bytes() < bytes)
    }

    fn error(&mut self, msg: &str) {
        let proto = self.state.proto;
        self.batcher.local(&mut self.replies, |out| Reply { out, proto }.error(msg));
    }

    /// An error for a command that will not run; inside MULTI it also
    /// dooms the transaction (EXEC answers EXECABORT), as in Redis.
    fn refuse(&mut self, msg: &str) {
        if let Some(tx) = &mut self.tx {
            tx.dirty = true;
        }
        self.error(msg);
    }
}
