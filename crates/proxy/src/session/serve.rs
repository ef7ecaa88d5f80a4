//! The connection's I/O loop: reads what the client sends, hands whole
//! requests to the session, writes replies as they are ready, and waits for
//! whichever comes first (a reply, the socket, a message, a timer, a stop).
//! What a request does is the session's business; this file only decides
//! when to read, when to write and when the connection is done.

use super::output::{OverLimit, Verdict};
use super::{Flow, Session};
use crate::backend::BatchReply;
use crate::bufpool;
use crate::runtime::Runtime;
use crate::stop::StopSignal;
use crate::stream::{ReadPart, Stream, WritePart};
use crate::telemetry::ErrorKind;
use arc_swap::ArcSwap;
use bytes::{Bytes, BytesMut};
use std::sync::Arc;
use tenantry_protocol::encode::Reply;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// While a blocking command waits, the client is still read up to this, so
/// its going away is noticed and the command released.
const BLOCKED_READ_AHEAD: usize = 1024 * 1024;

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

/// The loop's own state, beside the session's.
#[derive(Default)]
struct Driver {
    /// Lent by the pool only while it holds bytes (see `bufpool`).
    inbuf: BytesMut,
    closing: bool,
    eof: bool,
    /// Shutting down: requests already received are answered, nothing more
    /// is read, and the connection closes between requests.
    draining: bool,
    /// Over the soft output limit: requests and messages wait until the client reads.
    backpressured: bool,
}

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
    let (state, admitted) = super::State::new(runtime, tcp.peer_addr().ok(), tcp.local_addr().ok(), &identities);
    // One wait for both CLIENT KILL and shutdown, checked at every turn for
    // an atomic load.
    let mut stop = StopSignal::follow(state.id, state.client.kill.clone(), stops);
    let mut s = Session::new(state);
    let mut d = Driver::default();
    if let Err(e) = admitted {
        // Like Redis at maxclients: say why, then close.
        s.batcher.local(&mut s.replies, |out| Reply { out, proto: s.state.proto }.error(&e.resp()));
        d.closing = true;
    }
    // `read_buf` on the read half (not `try_read` on the stream) so a short
    // read clears readiness: no extra read that only returns EAGAIN.
    let (mut rd, mut wr) = stream.split();
    loop {
        let Some(wait_until) = turn(&mut s, &mut d, &mut wr) else { return };
        let Some((can_read, wake_at)) = wakes(&mut s, &mut d, wait_until) else { continue };
        // Inline, not in a function of its own: this future is made anew
        // every turn, and one nested in another costs a move of its state.
        let want_write = wr.owes(&s.out);
        let take_more = !d.backpressured && !d.closing && !d.draining;
        let listen_stop = !(d.draining || (d.closing && shutdown.is_cancelled()));
        let event = {
            let head = s.replies.head_rx();
            let has_head = head.is_some();
            // Without a wake-up time the sleep is never polled: any instant
            // will do, and one at hand costs no clock read per turn.
            let until = wake_at.unwrap_or(s.read_at);
            let waiting = s.waiting.as_mut().map(|w| &mut w.done);
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
                _ = stop.stopped(), if listen_stop => if shutdown.is_cancelled() { Event::Shutdown } else { Event::Killed },
                r = async { head.expect("guarded").await }, if has_head => Event::Reply(r.map_err(|_| ())),
                r = wr.send(&mut s.out), if want_write => Event::Writable(r.is_ok()),
                p = async { pushes.expect("guarded").recv().await }, if has_pushes => Event::Push(p),
                m = async { messages.expect("guarded").recv().await }, if has_messages => Event::Message(m),
                _ = async { waiting.expect("guarded").await }, if is_waiting => Event::Wake,
                r = read_into(&mut rd, &mut d.inbuf), if can_read => Event::Read(r),
                _ = tokio::time::sleep_until(until), if wake_at.is_some() => Event::Wake,
            }
        };
        if !on_event(&mut s, &mut d, event) {
            return;
        }
    }
}

/// Whether to read the client, and when to wake with nothing else to do
/// (a delayed request's retry, the soft limit's time, the request-read
/// timeout); `None` when the request-read timeout has passed.
fn wakes(s: &mut Session, d: &mut Driver, wait_until: Option<Instant>) -> Option<(bool, Option<Instant>)> {
    let can_read = can_read(s, d);
    // The request-read timeout runs only while the client is read: a
    // request that waits because tenantry holds the client back is not the
    // client's delay.
    let read_deadline = if can_read {
        s.read_deadline()
    } else {
        s.incomplete_since = None;
        None
    };
    if read_deadline.is_some_and(|at| at <= Instant::now()) {
        s.read_timed_out();
        d.closing = true;
        return None;
    }
    let limits = s.state.output_limits();
    Some((can_read, [wait_until, s.guard.deadline(&limits), read_deadline].into_iter().flatten().min()))
}

/// Handles what can be handled, sends what is ready, and checks whether the
/// connection is done (`None`). `Some`: when a delayed request is due.
fn turn(s: &mut Session, d: &mut Driver, wr: &mut WritePart<'_>) -> Option<Option<Instant>> {
    let mut wait_until = None;
    if s.waiting
        .as_mut()
        .is_some_and(|w| !matches!(w.done.try_recv(), Err(tokio::sync::oneshot::error::TryRecvError::Empty)))
    {
        s.waiting = None;
    }
    // (Nothing buffered and nothing delayed: nothing to handle, as on a turn woken by a reply.)
    let has_work = !d.inbuf.is_empty() || s.delayed.is_some();
    if has_work && !d.closing && !d.backpressured && s.waiting.is_none() {
        match s.handle_buffered(&mut d.inbuf) {
            Flow::Continue => {}
            Flow::Close => d.closing = true,
            Flow::Wait(until) => wait_until = Some(until),
        }
    }
    s.batcher.flush(&mut s.replies);
    s.batcher.release_idle();
    if d.inbuf.is_empty() {
        bufpool::give(bufpool::Class::Read, &mut d.inbuf);
    }
    s.replies.drain_ready(&mut s.out, None);
    s.unpin_when_idle();
    s.note_answered();
    wr.try_send(&mut s.out).ok()?;
    let limits = s.state.output_limits();
    match s.guard.check(s.out.len(), s.out.taken(), &limits, Instant::now) {
        Verdict::Disconnect(which) => {
            s.over_limit(which, &limits);
            return None;
        }
        v => d.backpressured = v == Verdict::Backpressure,
    }
    let idle = s.replies.is_empty() && !wr.owes(&s.out) && s.delayed.is_none();
    if (d.closing || d.eof) && idle {
        return None;
    }
    // Draining, a connection closes once nothing is owed and no whole
    // request waits (a request cut short cannot be answered); a blocking
    // command has been given up, and answers what its timeout would.
    if d.draining && idle && s.waiting.is_none() && (d.inbuf.is_empty() || s.incomplete) {
        return None;
    }
    Some(wait_until)
}

/// Backpressure: a client at its requests in flight (`max_pipeline`, in
/// count, bytes, or expected reply bytes), over its soft output limit, or
/// whose request waits on its rate limit, is not read. While a blocking
/// command waits, the client is still read (up to a bound), so its going
/// away is noticed and the command released.
fn can_read(s: &Session, d: &Driver) -> bool {
    !d.closing
        && !d.draining
        && !d.eof
        && s.delayed.is_none()
        && s.waiting.as_ref().is_none_or(|w| w.blocked.is_some() && d.inbuf.len() < BLOCKED_READ_AHEAD)
        && s.room_in_flight()
        && !d.backpressured
}

/// Applies what happened; `false` when the connection is done.
fn on_event(s: &mut Session, d: &mut Driver, event: Event) -> bool {
    match event {
        // Redis drops a client's blocked command when the client goes away.
        Event::Read(Ok(0)) if s.waiting.as_ref().is_some_and(|w| w.blocked.is_some()) => return false,
        Event::Read(Ok(0)) => d.eof = true,
        Event::Read(Ok(_)) => {
            s.read_at = Instant::now();
            s.state.client.touch(s.read_at.into_std());
        }
        // CLIENT KILL from another connection: gone at once, as in Redis.
        Event::Killed => return false,
        Event::Writable(true) | Event::Wake => {}
        Event::Read(Err(_)) | Event::Writable(false) => return false,
        Event::Reply(r) => s.replies.drain_ready(&mut s.out, Some(r)),
        Event::Message(m) => d.closing |= !s.pubsub_message(m),
        Event::Push(p) => d.closing |= !s.tracking_push(p),
        Event::Shutdown => {
            d.draining = true;
            if let Some(own) = s.waiting.as_mut().and_then(|w| w.blocked.as_mut()) {
                own.give_up();
            }
        }
    }
    true
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

impl Session {
    /// When the request the client has begun to send must be whole.
    pub(super) fn read_deadline(&mut self) -> Option<Instant> {
        if !self.incomplete {
            self.incomplete_since = None;
            return None;
        }
        let since = *self.incomplete_since.get_or_insert_with(Instant::now);
        Some(since + self.state.limits.request_read_timeout)
    }

    /// A request that did not arrive whole in time (a client trickling its
    /// bytes in, as slowloris does): an error, then the connection closes.
    pub(super) fn read_timed_out(&mut self) {
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

    /// A client past an output limit: dropped with what it has not read.
    pub(super) fn over_limit(&self, which: OverLimit, limits: &tenantry_config::OutputLimits) {
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
}
