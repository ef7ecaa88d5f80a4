//! A session's stop signal (CLIENT KILL, or shutdown) that costs an atomic
//! load to check. A session looks at it on every turn of its loop; polling a
//! `CancellationToken`'s future there takes two locks per turn (the token's
//! state and its waiter list), and a relay task per session to turn the
//! token into a flag cost every idle connection a task. Instead each session
//! has a flag, raised by CLIENT KILL directly, and the proxy keeps every
//! live session's flag (`Stops`) to raise them all at shutdown.

use atomic_waker::AtomicWaker;
use std::collections::HashMap;
use std::future::{poll_fn, Future};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll, Waker};

/// Raised once; wakes the session that waits on it.
#[derive(Debug, Default)]
pub struct Flag {
    stopped: AtomicBool,
    waker: AtomicWaker,
}

impl Flag {
    pub fn raise(&self) {
        self.stopped.store(true, Ordering::Release);
        self.waker.wake();
    }

    pub fn is_raised(&self) -> bool {
        self.stopped.load(Ordering::Acquire)
    }
}

/// Every live session's flag, raised together at shutdown.
#[derive(Debug, Default)]
pub struct Stops {
    shut: AtomicBool,
    flags: Mutex<HashMap<u64, Weak<Flag>>>,
}

impl Stops {
    /// Raises every session's flag, and the flag of any session that joins later.
    pub fn shutdown(&self) {
        self.shut.store(true, Ordering::Release);
        let flags: Vec<Weak<Flag>> = self.flags.lock().expect("not poisoned").values().cloned().collect();
        for flag in flags.iter().filter_map(Weak::upgrade) {
            flag.raise();
        }
    }
}

/// Fires once its flag is raised. Dropping it takes it off the proxy's list.
pub struct StopSignal {
    flag: Arc<Flag>,
    stops: Arc<Stops>,
    id: u64,
    /// The waker last registered: a task polls with the same waker every
    /// time, so it is registered once, not at every poll.
    registered: Option<Waker>,
}

impl StopSignal {
    /// Follows `flag` (the client's, which CLIENT KILL raises) and the proxy's shutdown.
    pub fn follow(id: u64, flag: Arc<Flag>, stops: Arc<Stops>) -> Self {
        stops.flags.lock().expect("not poisoned").insert(id, Arc::downgrade(&flag));
        // Shut down between the session's start and its joining the list.
        if stops.shut.load(Ordering::Acquire) {
            flag.raise();
        }
        StopSignal { flag, stops, id, registered: None }
    }

    fn poll_stopped(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.flag.is_raised() {
            return Poll::Ready(());
        }
        if self.registered.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            // Whoever raises the flag wakes this waker.
            return Poll::Pending;
        }
        self.flag.waker.register(cx.waker());
        self.registered = Some(cx.waker().clone());
        // Raised between the load and the registration: seen now.
        if self.flag.is_raised() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    /// Completes once the flag is raised (at once if it already was).
    pub fn stopped(&mut self) -> impl Future<Output = ()> + '_ {
        poll_fn(|cx| self.poll_stopped(cx))
    }
}

impl Drop for StopSignal {
    fn drop(&mut self) {
        self.stops.flags.lock().expect("not poisoned").remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(flavor = "current_thread")]
    async fn fires_when_its_flag_is_raised_or_at_shutdown() {
        let stops = Arc::new(Stops::default());
        let (a, b) = (Arc::new(Flag::default()), Arc::new(Flag::default()));
        let mut stop_a = StopSignal::follow(1, a.clone(), stops.clone());
        let mut stop_b = StopSignal::follow(2, b.clone(), stops.clone());
        let pending = tokio::time::timeout(Duration::from_millis(20), stop_a.stopped()).await;
        assert!(pending.is_err(), "fired before anything was raised");
        a.raise();
        tokio::time::timeout(Duration::from_secs(1), stop_a.stopped()).await.expect("fired after its raise");
        assert!(!b.is_raised(), "a kill stops one session only");
        // A session waiting in another task is woken by the shutdown.
        let waiting = tokio::spawn(async move { stop_b.stopped().await });
        tokio::task::yield_now().await;
        stops.shutdown();
        tokio::time::timeout(Duration::from_secs(1), waiting).await.expect("woken").unwrap();
        // Already raised: fires at once, every time.
        tokio::time::timeout(Duration::from_millis(1), stop_a.stopped()).await.expect("still fired");
        // A session that starts after the shutdown stops at once.
        let mut late = StopSignal::follow(3, Arc::new(Flag::default()), stops.clone());
        tokio::time::timeout(Duration::from_millis(1), late.stopped()).await.expect("stopped at once");
    }

    #[test]
    fn a_dropped_signal_leaves_the_list() {
        let stops = Arc::new(Stops::default());
        let stop = StopSignal::follow(7, Arc::new(Flag::default()), stops.clone());
        assert_eq!(stops.flags.lock().unwrap().len(), 1);
        drop(stop);
        assert!(stops.flags.lock().unwrap().is_empty());
    }
}
