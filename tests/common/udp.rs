//! Helpers of the tests over loopback UDP (engines on real sockets).
#![allow(dead_code, unreachable_pub)]

use std::future::Future;
use std::sync::mpsc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How long a wait may take before the test fails: it guards against a
/// hang, not a speed, so it leaves room for a loaded machine (on a 2-core
/// machine with 30 busy processes the 2,000-message burst took over 20 s).
pub const LIMIT: Duration = Duration::from_secs(60);

/// Runs `f` to completion on its own thread; panics if it takes longer than
/// `LIMIT` (a hung test fails instead of hanging CI).
pub fn within<T: Send + 'static>(f: impl Future<Output = T> + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(pollster::block_on(f));
    });
    rx.recv_timeout(LIMIT).expect("did not finish in time")
}

/// Now, as Unix time.
pub fn unix_now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
}
