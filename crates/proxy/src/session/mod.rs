//! One client connection: read requests, classify, apply the tenant's policy,
//! rewrite and batch them to the tenant's backend, and write every reply back
//! in request order.
//!
//! Invariants: exactly one reply per request, in request order, whatever mix
//! of backend and local replies; a bad or refused command gets an error and
//! the connection goes on; only a protocol error (a broken frame) closes it,
//! after its error reply, as Redis does.

mod batcher;
mod blocking;
mod client_cmds;
mod config_cmds;
mod connection;
mod functions;
mod keyspace;
mod output;
mod pubsub;
mod replies;
mod sharded;
mod state;
mod tracking;
mod transaction;

pub use pubsub::Patterns;

use crate::backend::BatchReply;
use crate::bufpool;
use crate::out_queue::OutQueue;
use crate::policy::{check_command, check_sizes};
use crate::quota::Admit;
use crate::runtime::{Runtime, TenantRt};
use crate::stop::StopSignal;
use crate::stream::{ReadPart, Stream};
use crate::telemetry::ErrorKind;
use crate::telemetry::{CommandCache, KeyspaceCache};
use arc_swap::ArcSwap;
use batcher::{Batcher, Forward, Queued, Transaction};
use bytes::{Bytes, BytesMut};
use connection::After;
use output::{OutputGuard, OverLimit, Verdict};
use replies::ReplyQueue;
use state::State;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tenantry_config::OnExceed;
use tenantry_protocol::classify::{classify, Action, ConnCommand};
use tenantry_protocol::command::{flags, CommandSpec, KeyArgs, Profile, Special};
use tenantry_protocol::encode::Reply;
use tenantry_protocol::{hits, ttl, Request, RequestParser};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// While a blocking command waits, the client is still read up to this, so
/// its going away is noticed and the command released.
const BLOCKED_READ_AHEAD: usize = 1024 * 1024;
const NOAUTH: &str = "NOAUTH Authentication required.";
/// How long a write waits for eviction to bring its tenant back under quota
/// (with an evicting policy) before it gets -OOM, and how often it looks.
const QUOTA_MAX_WAIT: Duration = Duration::from_millis(250);
const QUOTA_RETRY: Duration = Duration::from_millis(2);

/// Serves one client until it disconnects, sends QUIT, breaks the protocol,
/// or `shutdown` fires; replies already owed are delivered first. One task
/// does everything for the connection, so a request costs no task switch
/// on the client side.
/// `identities` are what the client's certificate (TLS with client
/// certificates) names: one may choose its tenant.
pub async fn serve(
    mut stream: Stream,
    identities: Vec<tenantry_config::CertIdentity>,
    runtime: Arc<ArcSwap<Runtime>>,
    shutdown: CancellationToken,
    stops: Arc<crate::stop::Stops>,
) {
    let tcp = stream.tcp();
    let _ = tcp.set_nodelay(true);
    let (state, admitted) = State::new(runtime, tcp.peer_addr().ok(), tcp.local_addr().ok(), &identities);
    // One wait for both CLIENT KILL and shutdown, checked at every turn for
    // an atomic load.
    let mut stop = StopSignal::follow(state.id, state.client.kill.clone(), stops);
    let mut s = Session {
        batcher: Batcher::new(state.id),
        parser: RequestParser::new(state.limits.protocol),
        state,
        keys: Vec::new(),
        replies: ReplyQueue::default(),
        out: OutQueue::default(),
        delayed: None,
        tx: None,
        waiting: None,
        blocked: None,
        pubsub: None,
        watch: transaction::Watch::None,
        watch_place: None,
        wrote_to: Vec::new(),
        tracking: false,
        redirect: None,
        pushes: None,
        read_at: Instant::now(),
        keyspace_cache: KeyspaceCache::default(),
        command_cache: CommandCache::default(),
        guard: OutputGuard::default(),
        incomplete: false,
        incomplete_since: None,
    };
    // Lent by the pool only while it holds bytes (see `bufpool`).
    let mut inbuf = BytesMut::new();
    let (mut closing, mut eof) = (false, false);
    // Shutting down: requests already received are answered, nothing more
    // is read, and the connection closes between requests.
    let mut draining = false;
    if let Err(msg) = admitted {
        // Like Redis at maxclients: say why, then close.
        s.batcher.local(&mut s.replies, |out| Reply { out, proto: s.state.proto }.error(&msg));
        closing = true;
    }
    // `read_buf` on the read half (not `try_read` on the stream) so a short
    // read clears readiness: no extra read that only returns EAGAIN.
    let (mut rd, mut wr) = stream.split();
    // Over the soft output limit: requests and messages wait until the client reads.
    let mut backpressured = false;
    loop {
        let mut wait_until = None;
        if s.waiting
            .as_mut()
            .is_some_and(|f| !matches!(f.try_recv(), Err(tokio::sync::oneshot::error::TryRecvError::Empty)))
        {
            s.waiting = None;
            s.blocked = None;
        }
        // (Nothing buffered and nothing delayed: nothing to handle, as on a turn woken by a reply.)
        let has_work = !inbuf.is_empty() || s.delayed.is_some();
        if has_work && !closing && !backpressured && s.waiting.is_none() {
            match s.handle_buffered(&mut inbuf) {
                Flow::Continue => {}
                Flow::Close => closing = true,
                Flow::Wait(until) => wait_until = Some(until),
            }
        }
        s.batcher.flush(&mut s.replies);
        s.batcher.release_idle();
        if inbuf.is_empty() {
            bufpool::give(bufpool::Class::Read, &mut inbuf);
        }
        s.replies.drain_ready(&mut s.out, None);
        s.unpin_when_idle();
        if wr.try_send(&mut s.out).is_err() {
            return;
        }
        let limits = s.state.output_limits();
        match s.guard.check(s.out.len(), &limits, Instant::now) {
            Verdict::Disconnect(which) => return s.over_limit(which, &limits),
            v => backpressured = v == Verdict::Backpressure,
        }
        let idle = s.replies.is_empty() && !wr.owes(&s.out) && s.delayed.is_none();
        if (closing || eof) && idle {
            return;
        }
        // Draining, a connection closes once nothing is owed and no whole
        // request waits (a request cut short cannot be answered); a blocking
        // command has been given up, and answers what its timeout would.
        if draining && idle && s.waiting.is_none() && (inbuf.is_empty() || s.incomplete) {
            return;
        }
        // Backpressure: a client at its requests in flight (`max_pipeline`,
        // in count, bytes, or expected reply bytes), over its soft output
        // limit, or whose request waits on its rate limit, is not read.
        // While a blocking command waits, the client is still read (up to a
        // bound), so its going away is noticed and the command released.
        let can_read = !closing
            && !draining
            && !eof
            && s.delayed.is_none()
            && (s.waiting.is_none() || (s.blocked.is_some() && inbuf.len() < BLOCKED_READ_AHEAD))
            && s.room_in_flight()
            && !backpressured;
        // The request-read timeout runs only while the client is read: a
        // request that waits because tenantry holds the client back is not
        // the client's delay.
        let read_deadline = if can_read {
            s.read_deadline()
        } else {
            s.incomplete_since = None;
            None
        };
        if read_deadline.is_some_and(|at| at <= Instant::now()) {
            s.read_timed_out();
            closing = true;
            continue;
        }
        let want_write = wr.owes(&s.out);
        // One timer for whichever comes first: a delayed request's retry,
        // the soft limit's time, the request-read timeout.
        let wake_at = [wait_until, s.guard.deadline(&limits), read_deadline].into_iter().flatten().min();
        let take_more = !backpressured && !closing && !draining;
        let event = {
            let head = s.replies.head_rx();
            let has_head = head.is_some();
            let until = wake_at.unwrap_or_else(Instant::now);
            let waiting = s.waiting.as_mut();
            let is_waiting = waiting.is_some();
            // A client that does not read its messages stops their intake.
            let messages = s.pubsub.as_mut().filter(|_| take_more).map(|p| &mut p.messages);
            let has_messages = messages.is_some();
            let pushes = s.pushes.as_mut().filter(|_| take_more).map(|p| &mut p.rx);
            let has_pushes = pushes.is_some();
            // Biased: no random draw per turn. Every branch ready in a turn
            // is taken within the next turns (each is bounded), so the order
            // only decides which goes first: replies before more requests.
            tokio::select! {
                biased;
                // Shutting down, the session closes once its replies are out.
                _ = stop.stopped(), if !(draining || (closing && shutdown.is_cancelled())) => if shutdown.is_cancelled() { Event::Shutdown } else { Event::Killed },
                r = async { head.expect("guarded").await }, if has_head => Event::Reply(r.map_err(|_| ())),
                r = wr.send(&mut s.out), if want_write => Event::Writable(r.is_ok()),
                p = async { pushes.expect("guarded").recv().await }, if has_pushes => Event::Push(p),
                m = async { messages.expect("guarded").recv().await }, if has_messages => Event::Message(m),
                _ = async { waiting.expect("guarded").await }, if is_waiting => Event::Wake,
                r = read_into(&mut rd, &mut inbuf), if can_read => Event::Read(r),
                _ = tokio::time::sleep_until(until), if wake_at.is_some() => Event::Wake,
            }
        };
        match event {
            // Redis drops a client's blocked command when the client goes away.
            Event::Read(Ok(0)) if s.blocked.is_some() => return,
            Event::Read(Ok(0)) => eof = true,
            Event::Read(Ok(_)) => {
                s.read_at = Instant::now();
                s.state.client.touch(s.read_at.into_std());
            }
            // CLIENT KILL from another connection: gone at once, as in Redis.
            Event::Killed => return,
            Event::Writable(true) | Event::Wake => {}
            Event::Read(Err(_)) | Event::Writable(false) => return,
            Event::Reply(r) => s.replies.drain_ready(&mut s.out, Some(r)),
            Event::Message(m) => {
                if !s.pubsub_message(m) {
                    closing = true;
                }
            }
            Event::Push(p) => {
                if !s.tracking_push(p) {
                    closing = true;
                }
            }
            Event::Shutdown => {
                draining = true;
                if let Some(own) = s.blocked.as_mut() {
                    own.give_up();
                }
            }
        }
    }
}

/// Reads what the client sent into `buf`, which is given room (from the
/// pool if it has none) only once the socket is readable: an idle client
/// holds no read buffer. The read goes through `poll_read_buf` so a short
/// read clears readiness (no further read that would only find EAGAIN).
async fn read_into(rd: &mut ReadPart<'_>, buf: &mut BytesMut) -> std::io::Result<usize> {
    std::future::poll_fn(|cx| {
        if buf.capacity() - buf.len() < 4096 {
            std::task::ready!(rd.poll_ready(cx))?;
            if buf.capacity() == 0 {
                *buf = bufpool::take(bufpool::Class::Read);
            } else {
                buf.reserve(16 * 1024);
            }
        }
        let read = rd.poll_read_buf(cx, buf);
        // tokio takes a new socket to be readable until a read says
        // otherwise: a buffer lent for a read that found nothing goes back.
        if read.is_pending() && buf.is_empty() {
            bufpool::give(bufpool::Class::Read, buf);
        }
        read
    })
    .await
}

enum Event {
    Read(std::io::Result<usize>),
    Message(Option<Bytes>),
    Push(Option<Bytes>),
    Reply(Result<BatchReply, ()>),
    Writable(bool),
    Wake,
    Shutdown,
    Killed,
}

enum Flow {
    Continue,
    Close,
    /// A request waits on its rate limit until then.
    Wait(Instant),
}

/// A request held back by a rate limit with `on_exceed: delay`.
struct Delayed {
    req: Request,
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
    /// A command later commands wait for (a FLUSHDB, a blocking command), as they would in Redis.
    waiting: Option<tokio::sync::oneshot::Receiver<()>>,
    /// The task serving a blocking command; aborted (closing its backend
    /// connection, which unblocks it there) if the client goes away.
    blocked: Option<blocking::OwnCommand>,
    /// When the last bytes came in: a rate-limit delay is bounded from the
    /// time a request arrived, not from when its turn came in a pipeline.
    read_at: Instant,
    /// The subscriber connection, once the client has used Pub/Sub.
    pubsub: Option<Box<pubsub::PubSub>>,
    watch: transaction::Watch,
    /// Where the watched keys live (a cluster slot).
    watch_place: Option<crate::backend::Place>,
    /// A cluster's masters this client wrote to since its last WAIT.
    wrote_to: Vec<Arc<crate::backend::NodePool>>,
    /// CLIENT TRACKING is on (the client is pinned to its own connection).
    tracking: bool,
    /// The tenantry client id its invalidations are redirected to.
    redirect: Option<i64>,
    /// Pushes (invalidations) from the client's own connection, while pinned.
    pushes: Option<Box<tracking::Pushes>>,
    keyspace_cache: KeyspaceCache,
    command_cache: CommandCache,
    /// The client's unread output against its limits.
    guard: OutputGuard,
    /// The read buffer ends in part of a request...
    incomplete: bool,
    /// ...which began to arrive then.
    incomplete_since: Option<Instant>,
}

impl Session {
    /// Handles every complete request in `inbuf` while fewer than
    /// `max_pipeline` are in flight.
    fn handle_buffered(&mut self, inbuf: &mut BytesMut) -> Flow {
        self.state.refresh();
        self.parser.set_limits(self.state.limits.protocol);
        if let Some(d) = self.delayed.take() {
            if Instant::now() < d.retry_at {
                let at = d.retry_at;
                self.delayed = Some(d);
                return Flow::Wait(at);
            }
            match self.handle(d.req, Some(d.deadline)) {
                After::Continue => {}
                After::Close => return Flow::Close,
            }
            if let Some(d) = &self.delayed {
                return Flow::Wait(d.retry_at);
            }
        }
        // The limits hold for this pass: replies, which change the window,
        // are taken between passes.
        let limits = self.in_flight_limits();
        while self.has_room(limits) {
            match self.parser.parse(inbuf) {
                Ok(Some(req)) => {
                    self.incomplete = false;
                    if self.handle(req, None) == After::Close {
                        return Flow::Close;
                    }
                    if let Some(d) = &self.delayed {
                        return Flow::Wait(d.retry_at);
                    }
                    if self.waiting.is_some() {
                        // Later commands wait until the FLUSHDB or blocking command is done.
                        return Flow::Continue;
                    }
                }
                Ok(None) => {
                    self.incomplete = !inbuf.is_empty();
                    return Flow::Continue;
                }
                Err(e) => {
                    self.error(&e.to_string());
                    return Flow::Close;
                }
            }
        }
        Flow::Continue
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

    /// A client past an output limit: dropped with what it has not read.
    fn over_limit(&self, which: OverLimit, limits: &tenantry_config::OutputLimits) {
        let tenant = self.state.tenant.as_ref();
        tracing::warn!(
            client = self.state.id,
            tenant = tenant.map(|t| t.id.as_str()),
            limit = which.label(),
            unread_bytes = self.out.len(),
            output_soft = limits.soft,
            output_soft_seconds = limits.soft_for.as_secs(),
            output_hard = limits.hard,
            "client disconnected: it did not read its replies (output limit)"
        );
        if let Some(t) = tenant {
            t.metrics.output_limit_disconnect(which.label());
        }
    }

    /// When the request the client has begun to send must be whole.
    fn read_deadline(&mut self) -> Option<Instant> {
        if !self.incomplete {
            self.incomplete_since = None;
            return None;
        }
        let since = *self.incomplete_since.get_or_insert_with(Instant::now);
        Some(since + self.state.limits.request_read_timeout)
    }

    /// A request that did not arrive whole in time (a client trickling its
    /// bytes in, as slowloris does): an error, then the connection closes.
    fn read_timed_out(&mut self) {
        let timeout = self.state.limits.request_read_timeout;
        tracing::info!(client = self.state.id, ?timeout, "client closed: request not received whole in time");
        if let Some(t) = &self.state.tenant {
            t.metrics.error(ErrorKind::Timeout, 1);
        }
        self.incomplete = false;
        self.error(&format!(
            "ERR Protocol error: request not received whole within {}s (limits.request_read_timeout)",
            timeout.as_secs_f64()
        ));
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

    /// `deadline`: set when retrying a request delayed by its rate limit.
    fn handle(&mut self, req: Request, deadline: Option<Instant>) -> After {
        let action = classify(&req, &mut self.keys);
        if self.subscribed_resp2() {
            match &action {
                Action::PubSub { .. } | Action::Connection(ConnCommand::Quit | ConnCommand::Reset) => {}
                Action::Forward { profile, .. } if profile.special == Special::Ping => {
                    self.subscribed_ping(&req);
                    return After::Continue;
                }
                Action::Forward { spec, .. } => {
                    self.error(&format!(
                        "ERR Can't execute '{}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context",
                        spec.name
                    ));
                    return After::Continue;
                }
                Action::Connection(_) => {
                    let name = String::from_utf8_lossy(&req.args[0]).to_ascii_lowercase();
                    self.error(&format!(
                        "ERR Can't execute '{name}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context"
                    ));
                    return After::Continue;
                }
                Action::Reject(_) => {}
            }
        }
        match action {
            Action::Forward { spec, profile, match_all, blocking } => match self.state.tenant.clone() {
                Some(tenant) if profile.script && !tenant.config.scripts => {
                    tenant.metrics.error(ErrorKind::NoPerm, 1);
                    self.refuse(&format!(
                        "NOPERM tenant '{}' may not run scripts: a script can reach keys it was not given (set scripts: true to allow them)",
                        tenant.id
                    ));
                }
                Some(_) if profile.special == Special::GetRedir && self.getredir() => {}
                Some(tenant) => {
                    if profile.special == Special::Watch {
                        let keys = self.keys.clone();
                        if let Err(msg) = self.before_watch(&tenant, &req.args, &keys) {
                            // Redis answers it without dooming the transaction.
                            self.error(msg);
                            return After::Continue;
                        }
                    }
                    let mut req = req;
                    if match_all && deadline.is_none() {
                        if profile.keys == KeyArgs::ScanMatch {
                            req.args.push(Bytes::from_static(b"MATCH"));
                        }
                        req.args.push(Bytes::from_static(b"*"));
                        self.keys.push(req.args.len() - 1);
                    }
                    self.forward(tenant, spec, profile, req, deadline, blocking)
                }
                None => self.error(NOAUTH),
            },
            Action::PubSub { spec, kind, subscribe } => match self.state.tenant.clone() {
                Some(tenant) => self.subscription(tenant, spec, kind, subscribe, &req),
                None => self.error(NOAUTH),
            },
            Action::Connection(cmd) => {
                if self.state.tenant.is_none() && !cmd.allowed_before_auth() {
                    self.error(NOAUTH);
                    return After::Continue;
                }
                if cmd == ConnCommand::Reset {
                    self.drop_pubsub();
                    self.tracking = false;
                    self.state.client.tracking.store(false, std::sync::atomic::Ordering::Relaxed);
                }
                if cmd == ConnCommand::Wait && self.tx.is_none() {
                    if let Some(tenant) = self.state.tenant.clone() {
                        self.wait_replicas(&tenant, req);
                    }
                    return After::Continue;
                }
                if cmd == ConnCommand::ClientTracking {
                    if let Some(tenant) = self.state.tenant.clone() {
                        self.client_tracking(tenant, &req);
                    }
                    return After::Continue;
                }
                if let Some(handled) = self.transaction_command(cmd) {
                    return handled;
                }
                if let Some(handled) = self.keyspace_command(cmd, &req) {
                    return handled;
                }
                if let Some(handled) = self.config_command(cmd, &req) {
                    return handled;
                }
                if let ConnCommand::Function(op) = cmd {
                    if let Some(handled) = self.function_command(op, &req) {
                        return handled;
                    }
                }
                let state = &mut self.state;
                let mut after = After::Continue;
                self.batcher.local(&mut self.replies, |out| after = connection::handle(state, cmd, &req, out));
                return after;
            }
            Action::Reject(why) => match &self.state.tenant {
                Some(t) => {
                    t.metrics.error(ErrorKind::of_rejection(&why), 1);
                    self.refuse(&why.to_string());
                }
                None => self.error(NOAUTH),
            },
        }
        After::Continue
    }

    fn forward(
        &mut self,
        tenant: Arc<TenantRt>,
        spec: &'static CommandSpec,
        profile: &'static Profile,
        req: Request,
        deadline: Option<Instant>,
        blocking: bool,
    ) {
        let reply = profile.reply;
        let metrics = &tenant.metrics;
        if deadline.is_none() {
            metrics.command_cached(spec.name, &mut self.command_cache);
            self.state.client.ran(spec);
        }
        if let Err(msg) = check_command(&tenant.id, &tenant.config.commands, spec) {
            metrics.error(ErrorKind::NoPerm, 1);
            return self.refuse(&msg);
        }
        if let Err(msg) = check_sizes(&tenant.id, &tenant.config.limits, spec, &req.args, &self.keys) {
            metrics.error(ErrorKind::TooLarge, 1);
            return self.refuse(&msg);
        }
        // Before the rate limit: a write held back by the quota is retried
        // through here, and must not take rate-limit tokens twice.
        let grows = spec.has_flag(flags::DENYOOM);
        if let (Some(quota), true) = (&tenant.config.memory, grows) {
            let admit = tenant.quota.admit(quota);
            let deadline = match admit {
                Admit::Yes => None,
                Admit::Wait if self.tx.is_none() => Some(deadline.unwrap_or(self.read_at + QUOTA_MAX_WAIT)),
                _ => Some(Instant::now()),
            };
            if let Some(deadline) = deadline {
                let now = Instant::now();
                if now + QUOTA_RETRY <= deadline {
                    self.delayed = Some(Box::new(Delayed { req, retry_at: now + QUOTA_RETRY, deadline }));
                } else {
                    metrics.error(ErrorKind::Oom, 1);
                    metrics.quota_refused.inc();
                    self.refuse(&format!(
                        "OOM command not allowed when used memory > tenant '{}' memory_quota ({} > {} bytes, {})",
                        tenant.id,
                        tenant.quota.used(),
                        quota.bytes,
                        quota.eviction.name()
                    ));
                }
                return;
            }
        }
        let bytes: usize = req.args.iter().map(|a| a.len()).sum();
        if let Some(limiter) = &tenant.limiter {
            if let Err(wait) = limiter.check(bytes, self.state.conn_limiter.as_ref()) {
                let now = Instant::now();
                let deadline = match limiter.config.on_exceed {
                    // Inside MULTI a command is refused rather than delayed.
                    OnExceed::Delay(max) if self.tx.is_none() => Some(deadline.unwrap_or(self.read_at + max)),
                    _ => None,
                };
                match deadline {
                    Some(deadline) if now + wait <= deadline => {
                        // Whole milliseconds, so the retry does not come a hair too early.
                        let retry_at = now + wait.max(Duration::from_millis(1));
                        self.delayed = Some(Box::new(Delayed { req, retry_at, deadline }));
                    }
                    _ => {
                        metrics.error(ErrorKind::RateLimited, 1);
                        self.refuse(&format!(
                            "ERR rate limit exceeded for tenant '{}' ({})",
                            tenant.id,
                            limiter.describe()
                        ))
                    }
                }
                return;
            }
        }
        let policy = &tenant.config.ttl;
        let ttl = (!policy.is_noop()).then(|| {
            let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
            ttl::rewrite(spec, &req.args, &self.keys, |k| policy.rule_for(k), now_ms, fastrand::f64)
        });
        // Lent out (not copied) while `place` borrows the session.
        let keys = std::mem::take(&mut self.keys);
        let cmd = sharded::Command { spec, profile, args: &req.args, keys: &keys, ttl: ttl.as_ref() };
        let node = self.place(&tenant, cmd, blocking, bytes);
        self.keys = keys;
        let Some(node) = node else { return };
        if grows && tenant.config.memory.is_some() {
            // On the node it goes to: that node's next measuring pass counts it.
            tenant.quota.add_on(node.addr(), crate::quota::write_cost(&req.args, &self.keys));
        }
        if blocking && self.tx.is_none() {
            metrics.bytes_in.inc_by(bytes as u64);
            // Blocking commands set no TTLs; the keys they create (BLMOVE's
            // destination) still get the default.
            let defaults = ttl.map(|rw| rw.default_for).unwrap_or_default();
            let timed_out = tenantry_protocol::classify::timed_out_reply(profile, self.state.proto);
            return self.blocking(&tenant, node, &req, reply, &defaults, timed_out);
        }
        if let Some(tx) = &mut self.tx {
            metrics.bytes_in.inc_by(bytes as u64);
            tx.queued.push(Queued { args: req.args, keys: self.keys.clone(), ttl, reply });
            self.state.client.multi.store(tx.queued.len() as i64, std::sync::atomic::Ordering::Relaxed);
            let proto = self.state.proto;
            self.batcher.local(&mut self.replies, |out| Reply { out, proto }.simple("QUEUED"));
            return;
        }
        metrics.bytes_in.inc_by(bytes as u64);
        let mut tally = None;
        if let Some(&first) = self.keys.first() {
            let key = &req.args[first];
            metrics.touch(key);
            let t = hits::tally(profile, req.args.len());
            let big = self.state.big_value_bytes;
            let has_big = spec.has_flag(flags::DENYOOM)
                && req.args.iter().enumerate().skip(1).any(|(i, a)| a.len() > big && !self.keys.contains(&i));
            if t.is_some() || has_big {
                let counters = metrics.keyspace_cached(key, &mut self.keyspace_cache);
                if has_big {
                    counters.big_values.inc();
                }
                tally = t.map(|t| (t, counters));
            }
        }
        let span = crate::telemetry::tracing_setup::sample().then(|| {
            let keyspace =
                self.keys.first().map(|&k| String::from_utf8_lossy(crate::telemetry::keyspace_of(&req.args[k])).into_owned());
            tracing::info_span!(target: "tenantry::command", "command", tenant = %tenant.id, command = spec.name, keyspace)
        });
        let freed = (tenant.config.memory.is_some() && profile.frees).then(|| tenant.quota.clone());
        let f = Forward {
            tenant: &tenant,
            node,
            proto: self.state.proto,
            args: &req.args,
            keys: &self.keys,
            reply,
            ttl,
            tally,
            freed,
            span,
        };
        self.batcher.forward(&mut self.replies, f);
    }
}
