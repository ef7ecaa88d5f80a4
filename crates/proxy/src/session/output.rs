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
//! past the hard limit, or past the soft one for too long, it is
//! disconnected.

use tenantry_config::OutputLimits;
use tokio::time::Instant;

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
/// goes past the soft limit and is reset whenever it falls back under, so a
/// client that reads, however slowly, is never disconnected by it.
#[derive(Debug, Default)]
pub struct OutputGuard {
    over_since: Option<Instant>,
}

impl OutputGuard {
    /// `now` is read only when the client is over its soft limit.
    pub fn check(&mut self, unread: usize, limits: &OutputLimits, now: impl FnOnce() -> Instant) -> Verdict {
        if unread > limits.hard {
            return Verdict::Disconnect(OverLimit::Hard);
        }
        if unread <= limits.soft {
            self.over_since = None;
            return Verdict::Fine;
        }
        let now = now();
        let since = *self.over_since.get_or_insert(now);
        if now.saturating_duration_since(since) >= limits.soft_for {
            Verdict::Disconnect(OverLimit::Soft)
        } else {
            Verdict::Backpressure
        }
    }

    /// When the soft limit's time runs out, while the client is over it.
    pub fn deadline(&self, limits: &OutputLimits) -> Option<Instant> {
        self.over_since.map(|since| since + limits.soft_for)
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
    use std::time::Duration;

    const LIMITS: OutputLimits = OutputLimits { soft: 1000, soft_for: Duration::from_secs(10), hard: 5000 };

    #[test]
    fn over_the_hard_limit_is_a_disconnect_at_once() {
        let mut g = OutputGuard::default();
        assert_eq!(g.check(5001, &LIMITS, Instant::now), Verdict::Disconnect(OverLimit::Hard));
        assert_eq!(g.check(5000, &LIMITS, Instant::now), Verdict::Backpressure);
    }

    #[test]
    fn the_soft_limit_disconnects_only_after_its_time_over_it() {
        let mut g = OutputGuard::default();
        let t0 = Instant::now();
        assert_eq!(g.check(1000, &LIMITS, || t0), Verdict::Fine);
        assert_eq!(g.deadline(&LIMITS), None);
        assert_eq!(g.check(1001, &LIMITS, || t0), Verdict::Backpressure);
        assert_eq!(g.deadline(&LIMITS), Some(t0 + LIMITS.soft_for));
        assert_eq!(g.check(4000, &LIMITS, || t0 + Duration::from_secs(9)), Verdict::Backpressure);
        assert_eq!(g.check(4000, &LIMITS, || t0 + Duration::from_secs(10)), Verdict::Disconnect(OverLimit::Soft));
    }

    #[test]
    fn reading_back_under_the_soft_limit_resets_its_clock() {
        let mut g = OutputGuard::default();
        let t0 = Instant::now();
        g.check(2000, &LIMITS, || t0);
        assert_eq!(g.check(999, &LIMITS, || t0 + Duration::from_secs(9)), Verdict::Fine);
        assert_eq!(g.check(2000, &LIMITS, || t0 + Duration::from_secs(12)), Verdict::Backpressure);
        assert_eq!(g.deadline(&LIMITS), Some(t0 + Duration::from_secs(22)));
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
