//! Waiting for the handles' futures from a plain thread: the blocking
//! forms (`Call::wait_ready`, `DataChannelFeature::next_receiver_timeout`,
//! `DataChannelReceiver::recv_timeout`) for applications without an async
//! runtime.
#![forbid(unsafe_code)]

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread::Thread;
use std::time::{Duration, Instant};

/// Wakes the thread that waits.
struct Unpark(Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

/// Polls `future` on this thread until it is ready (`Some`) or `timeout`
/// has passed (`None`), parking the thread in between. Never call it from
/// an async task: it blocks the thread.
pub(super) fn block_on_timeout<F: Future>(future: F, timeout: Duration) -> Option<F::Output> {
    let deadline = Instant::now().checked_add(timeout);
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut future = pin!(future);
    loop {
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return Some(out);
        }
        match deadline {
            Some(deadline) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return None;
                }
                std::thread::park_timeout(left);
            }
            None => std::thread::park(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_futures_return_and_pending_ones_time_out() {
        assert_eq!(block_on_timeout(async { 7 }, Duration::ZERO), Some(7));
        assert_eq!(
            block_on_timeout(std::future::pending::<()>(), Duration::from_millis(1)),
            None
        );
    }

    #[test]
    fn a_wake_from_another_thread_ends_the_wait() {
        use std::sync::atomic::{AtomicBool, Ordering};
        let done = Arc::new(AtomicBool::new(false));
        let (tx, rx) = std::sync::mpsc::channel::<Waker>();
        let flag = done.clone();
        let helper = std::thread::spawn(move || {
            if let Ok(w) = rx.recv() {
                flag.store(true, Ordering::SeqCst);
                w.wake();
            }
        });
        let mut sent = false;
        let got = block_on_timeout(
            std::future::poll_fn(|cx| {
                if done.load(Ordering::SeqCst) {
                    return Poll::Ready("woken");
                }
                if !std::mem::replace(&mut sent, true) {
                    let _ = tx.send(cx.waker().clone());
                }
                Poll::Pending
            }),
            Duration::from_secs(60),
        );
        assert_eq!(got, Some("woken"));
        helper.join().expect("helper");
    }
}
