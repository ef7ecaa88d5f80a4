//! What one client may make tenantry hold for it, so that a client that does
//! not read its replies (or reads them slowly) is the only one to wait.
//!
//! Two bounds work together. Before a request goes out, the client's
//! requests in flight are bounded by the reply bytes they are expected to
//! bring back (`ReplyWindow`): replies on a shared backend connection come
//! back in order, so everything one client has in flight there is read
//! before the replies of whoever sent next. After replies arrive, the
//! client's unread output is held against Redis-style limits
//! (`OutputGuard`): past the soft limit its requests stop being forwarded,
//! past the hard limit with no byte read for `HARD_STALL`, or past the soft
//! one for too long without reading a soft limit's worth, it is
//! disconnected. A client that keeps reading is never disconnected,
//! whatever the size or number of the replies it asked for (Redis sets no
//! output limit for normal clients): what it holds here is bounded by the
//! soft limit plus the replies of the requests it had in flight when it went
//! over (no request is forwarded while it is over).

use std::time::Duration;
use tenantry_config::OutputLimits;
use tokio::time::Instant;

/// How long a client over its hard limit may take no byte of its output
/// before it is disconnected.
pub const HARD_STALL: Duration = Duration::from_secs(2);

/// The share of the soft output limit one client may have on its way back
/// from backends: with the default 8 MiB soft limit, 1 MiB, which a
/// loopback or in-zone link carries in about a millisecond.
const WINDOW_SHARE: usize = 8;
/// Requests a client may always have in flight, whatever their replies weigh.
const MIN_WINDOW: usize = 8;
/// Before any reply is seen, the window allows this many requests.
const FIRST_WINDOW: usize = 16;

/// Which output limit a client went past.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverLimit {
    Hard,
    /// Past the soft limit for longer than `soft_for`.
    Soft,
}

impl OverLimit {
    pub fn label(self) -> &'static str {
        match self {
            OverLimit::Hard => "hard",
            OverLimit::Soft => "soft",
        }
    }
}

/// What a client's unread output allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Under the soft limit: its requests are forwarded.
    Fine,
    /// Over the soft limit: its requests wait until it reads.
    Backpressure,
    Disconnect(OverLimit),
}

/// The soft limit's clock, as Redis keeps it: it starts when the output
/// goes past the soft limit and is reset whenever it falls back under, or
/// when the client has read a soft limit's worth since it started; and the
/// hard limit's, which runs only while the client reads nothing.
#[derive(Debug, Default)]
pub struct OutputGuard {
    /// When the output went over the soft limit, and the bytes the client
    /// had taken then.
    over_since: Option<(Instant, u64)>,
    /// Over the hard limit: the bytes the client had taken, and since when
    /// that figure has not moved.
    stalled: Option<(u64, Instant)>,
}

impl OutputGuard {
    /// `unread`: output not yet written; `taken`: every byte written so far.
    /// `now` is read only when the client is over its soft limit.
    pub fn check(
        &mut self,
        unread: usize,
        taken: u64,
        limits: &OutputLimits,
        now: impl FnOnce() -> Instant,
    ) -> Verdict {
        if unread <= limits.soft {
            self.over_since = None;
            self.stalled = None;
            return Verdict::Fine;
        }
        let now = now();
        let (mut since, mark) = *self.over_since.get_or_insert((now, taken));
        if taken.saturating_sub(mark) >= limits.soft as u64 {
            // Reading, if slowly: the soft limit's time starts again.
            self.over_since = Some((now, taken));
            since = now;
        }
        if unread > limits.hard {
            let stalled = match self.stalled {
                Some((t, at)) if t == taken => at,
                _ => now,
            };
            self.stalled = Some((taken, stalled));
            if now.saturating_duration_since(stalled) >= HARD_STALL {
                return Verdict::Disconnect(OverLimit::Hard);
            }
        } else {
            self.stalled = None;
        }
        if now.saturating_duration_since(since) >= limits.soft_for {
            Verdict::Disconnect(OverLimit::Soft)
        } else {
            Verdict::Backpressure
        }
    }

    /// When a limit's time runs out, while the client is over it.
    pub fn deadline(&self, limits: &OutputLimits) -> Option<Instant> {
        let soft = self.over_since.map(|(since, _)| since + limits.soft_for);
        let hard = self.stalled.map(|(_, at)| at + HARD_STALL);
        soft.into_iter().chain(hard).min()
    }
}

/// A running mean of the reply bytes per request a client receives, which
/// turns a byte budget into a number of requests in flight.
#[derive(Debug, Default)]
pub struct ReplyWindow {
    /// Bytes per reply, times 8 (an exponential mean, one eighth per batch).
    mean_x8: usize,
    seen: bool,
}

impl ReplyWindow {
    pub fn observe(&mut self, bytes: usize, replies: usize) {
        if replies == 0 {
            return;
        }
        let per = bytes / replies;
        if self.seen {
            self.mean_x8 = self.mean_x8 - self.mean_x8 / 8 + per;
        } else {
            self.mean_x8 = per * 8;
            self.seen = true;
        }
    }

    /// Requests the client may have in flight for its expected replies to
    /// fit in its share of `limits.soft`.
    pub fn requests(&self, limits: &OutputLimits) -> usize {
        if !self.seen {
            return FIRST_WINDOW;
        }
        let budget = limits.soft / WINDOW_SHARE;
        let mean = (self.mean_x8 / 8).max(1);
        (budget / mean).max(MIN_WINDOW)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: OutputLimits = OutputLimits { soft: 1000, soft_for: Duration::from_secs(10), hard: 5000 };

    #[test]
    fn over_the_hard_limit_a_client_that_reads_nothing_is_disconnected() {
        let mut g = OutputGuard::default();
        let t0 = Instant::now();
        assert_eq!(g.check(5001, 0, &LIMITS, || t0), Verdict::Backpressure);
        assert_eq!(g.deadline(&LIMITS), Some(t0 + HARD_STALL));
        let later = t0 + HARD_STALL;
        assert_eq!(g.check(9000, 0, &LIMITS, || later), Verdict::Disconnect(OverLimit::Hard));
    }

    #[test]
    fn over_the_hard_limit_a_client_that_reads_keeps_its_connection() {
        let mut g = OutputGuard::default();
        let t0 = Instant::now();
        // A reply ten times the hard limit, read a little at a time.
        for i in 0..20u64 {
            let now = t0 + HARD_STALL * (i as u32);
            assert_eq!(g.check(50_000 - 2000 * i as usize, 2000 * i, &LIMITS, || now), Verdict::Backpressure, "{i}");
        }
    }

    #[test]
    fn the_soft_limit_disconnects_only_after_its_time_over_it() {
        let mut g = OutputGuard::default();
        let t0 = Instant::now();
        assert_eq!(g.check(1000, 0, &LIMITS, || t0), Verdict::Fine);
        assert_eq!(g.deadline(&LIMITS), None);
        assert_eq!(g.check(1001, 0, &LIMITS, || t0), Verdict::Backpressure);
        assert_eq!(g.deadline(&LIMITS), Some(t0 + LIMITS.soft_for));
        // Under a soft limit's worth read meanwhile: the clock runs on.
        assert_eq!(g.check(4000, 999, &LIMITS, || t0 + Duration::from_secs(9)), Verdict::Backpressure);
        assert_eq!(g.check(4000, 999, &LIMITS, || t0 + Duration::from_secs(10)), Verdict::Disconnect(OverLimit::Soft));
    }

    #[test]
    fn reading_back_under_the_soft_limit_resets_its_clock() {
        let mut g = OutputGuard::default();
        let t0 = Instant::now();
        g.check(2000, 0, &LIMITS, || t0);
        assert_eq!(g.check(999, 0, &LIMITS, || t0 + Duration::from_secs(9)), Verdict::Fine);
        assert_eq!(g.check(2000, 0, &LIMITS, || t0 + Duration::from_secs(12)), Verdict::Backpressure);
        assert_eq!(g.deadline(&LIMITS), Some(t0 + Duration::from_secs(22)));
        // A soft limit's worth read: it starts again.
        assert_eq!(g.check(2000, 1000, &LIMITS, || t0 + Duration::from_secs(20)), Verdict::Backpressure);
        assert_eq!(g.deadline(&LIMITS), Some(t0 + Duration::from_secs(30)));
    }

    #[test]
    fn the_window_follows_the_size_of_replies() {
        let limits = OutputLimits { soft: 8 << 20, ..LIMITS };
        let mut w = ReplyWindow::default();
        assert_eq!(w.requests(&limits), FIRST_WINDOW);
        // 100 kB values: about ten in flight fit in 1 MiB.
        w.observe(64 * 100_000, 64);
        assert_eq!(w.requests(&limits), (1 << 20) / 100_000);
        // Small replies open it up again within a few batches.
        for _ in 0..80 {
            w.observe(16 * 100, 16);
        }
        assert!(w.requests(&limits) > 5_000, "{}", w.requests(&limits));
        // Huge replies never close it below the floor.
        w.observe(50 << 20, 1);
        w.observe(50 << 20, 1);
        assert_eq!(w.requests(&limits), MIN_WINDOW);
    }
}
