//! Waiting for shutdown beside every read without paying for it per read.
//!
//! A tokio connection awaits its socket and the shutdown token together. A
//! [`WaitForCancellationFutureOwned`] polled at every read locks the token
//! and the waiter list each time (about 300 instructions per request on
//! the one-in-flight path), although it can only become ready once. A
//! [`ShutdownWait`] polls it only when it has woken us: it hands the token
//! a waker of its own that notes the wake-up before passing it on to the
//! task, so any other poll is a pointer comparison and an atomic load.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

/// What the token's future wakes: notes the wake-up, then wakes the task.
struct Signal {
    woken: AtomicBool,
    task: Mutex<Option<Waker>>,
}

impl Wake for Signal {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        let task = self
            .task
            .lock()
            .expect("shutdown waker lock poisoned")
            .clone();
        if let Some(task) = task {
            task.wake();
        }
    }
}

/// Ready once `token` is cancelled; see the module documentation.
pub(super) struct ShutdownWait {
    inner: Pin<Box<WaitForCancellationFutureOwned>>,
    signal: Arc<Signal>,
    /// The signal's waker, made once.
    own: Waker,
    /// The task waker the signal passes wake-ups on to.
    task: Option<Waker>,
}

impl ShutdownWait {
    pub(super) fn new(token: CancellationToken) -> Self {
        let signal = Arc::new(Signal {
            // The first poll registers with the token.
            woken: AtomicBool::new(true),
            task: Mutex::new(None),
        });
        ShutdownWait {
            inner: Box::pin(token.cancelled_owned()),
            own: Waker::from(signal.clone()),
            signal,
            task: None,
        }
    }
}

impl Future for ShutdownWait {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        if !this.task.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            let waker = cx.waker().clone();
            *this
                .signal
                .task
                .lock()
                .expect("shutdown waker lock poisoned") = Some(waker.clone());
            this.task = Some(waker);
        }
        if !this.signal.woken.load(Ordering::Acquire) {
            return Poll::Pending;
        }
        // Cleared before the poll: a wake-up during it is seen next time.
        this.signal.woken.store(false, Ordering::Relaxed);
        let mut own = Context::from_waker(&this.own);
        this.inner.as_mut().poll(&mut own)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// Counts its wake-ups.
    #[derive(Default)]
    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn poll(wait: &mut ShutdownWait, waker: &Waker) -> Poll<()> {
        Pin::new(wait).poll(&mut Context::from_waker(waker))
    }

    #[test]
    fn cancelled_after_waiting_wakes_the_task_and_is_ready() {
        let token = CancellationToken::new();
        let mut wait = ShutdownWait::new(token.child_token());
        let count = Arc::new(Count::default());
        let waker = Waker::from(count.clone());
        assert!(poll(&mut wait, &waker).is_pending());
        assert!(poll(&mut wait, &waker).is_pending());
        assert_eq!(count.0.load(Ordering::Relaxed), 0);
        token.cancel();
        assert_eq!(count.0.load(Ordering::Relaxed), 1);
        assert!(poll(&mut wait, &waker).is_ready());
    }

    #[test]
    fn cancelled_before_the_first_poll_is_ready_at_once() {
        let token = CancellationToken::new();
        let mut wait = ShutdownWait::new(token.clone());
        token.cancel();
        let waker = Waker::from(Arc::new(Count::default()));
        assert!(poll(&mut wait, &waker).is_ready());
    }

    #[test]
    fn a_new_task_waker_is_the_one_woken() {
        let token = CancellationToken::new();
        let mut wait = ShutdownWait::new(token.clone());
        let (first, second) = (Arc::new(Count::default()), Arc::new(Count::default()));
        assert!(poll(&mut wait, &Waker::from(first.clone())).is_pending());
        assert!(poll(&mut wait, &Waker::from(second.clone())).is_pending());
        token.cancel();
        assert_eq!(first.0.load(Ordering::Relaxed), 0);
        assert_eq!(second.0.load(Ordering::Relaxed), 1);
        assert!(poll(&mut wait, &Waker::from(second)).is_ready());
    }
}
