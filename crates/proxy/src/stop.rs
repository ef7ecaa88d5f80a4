//! A session's stop signal (CLIENT KILL or shutdown) that costs an atomic
//! load to check. A session looks at it on every turn of its loop; polling a
//! `CancellationToken`'s future there takes two locks per turn (the token's
//! state and its waiter list), so a relay task waits on the token instead and
//! raises a flag.

use atomic_waker::AtomicWaker;
use std::future::{poll_fn, Future};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use tokio::task::AbortHandle;
use tokio_util::sync::CancellationToken;

#[derive(Default)]
struct Flag {
    stopped: AtomicBool,
    waker: AtomicWaker,
}

/// Fires once its token is cancelled. Dropping it ends its relay task.
pub struct StopSignal {
    flag: Arc<Flag>,
    relay: AbortHandle,
    /// The waker last registered: a task polls with the same waker every
    /// time, so it is registered once, not at every poll.
    registered: Option<Waker>,
}

impl StopSignal {
    /// Follows `token`. Spawns the relay task: call it inside the runtime.
    pub fn follow(token: CancellationToken) -> Self {
        let flag = Arc::new(Flag::default());
        let raised = flag.clone();
        let relay = tokio::spawn(async move {
            token.cancelled().await;
            raised.stopped.store(true, Ordering::Release);
            raised.waker.wake();
        })
        .abort_handle();
        StopSignal { flag, relay, registered: None }
    }

    fn poll_stopped(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.flag.stopped.load(Ordering::Acquire) {
            return Poll::Ready(());
        }
        if self.registered.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            // The relay wakes this waker when it raises the flag.
            return Poll::Pending;
        }
        self.flag.waker.register(cx.waker());
        self.registered = Some(cx.waker().clone());
        // Raised between the load and the registration: seen now.
        if self.flag.stopped.load(Ordering::Acquire) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    /// Completes once the token is cancelled (at once if it already was).
    pub fn stopped(&mut self) -> impl Future<Output = ()> + '_ {
        poll_fn(|cx| self.poll_stopped(cx))
    }
}

impl Drop for StopSignal {
    fn drop(&mut self) {
        self.relay.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::StopSignal;
    use std::time::Duration;
    use tokio_util::sync::CancellationToken;

    #[tokio::test(flavor = "current_thread")]
    async fn fires_when_the_token_or_its_parent_is_cancelled() {
        let parent = CancellationToken::new();
        let child = parent.child_token();
        let mut stop = StopSignal::follow(child.clone());
        let pending = tokio::time::timeout(Duration::from_millis(20), stop.stopped()).await;
        assert!(pending.is_err(), "fired before any cancel");
        parent.cancel();
        tokio::time::timeout(Duration::from_secs(1), stop.stopped()).await.expect("fired after the parent's cancel");
        // Already cancelled: fires at once, every time.
        tokio::time::timeout(Duration::from_millis(1), stop.stopped()).await.expect("still fired");
        let mut late = StopSignal::follow(child);
        tokio::time::timeout(Duration::from_secs(1), late.stopped()).await.expect("follows a cancelled token");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn dropping_it_ends_the_relay() {
        let token = CancellationToken::new();
        let stop = StopSignal::follow(token.clone());
        tokio::task::yield_now().await;
        let relay = stop.relay.clone();
        drop(stop);
        tokio::task::yield_now().await;
        assert!(relay.is_finished(), "the relay task outlived its signal");
    }
}
