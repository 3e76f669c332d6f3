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

/// A slow path on loopback between a client and a server: the client talks
/// to [`SlowPath::addr`]; what it sends reaches `server` at most at
/// `rate_bps` (one FIFO, each datagram leaving once the ones before it have
/// been serialised at that rate, tail drop past `queue_bytes` queued), and
/// what the server sends comes back at once, unless the path has been made
/// deaf ([`SlowPath::deafen`]: from then on the server's datagrams are
/// lost).
pub struct SlowPath {
    addr: std::net::SocketAddr,
    deaf: std::sync::Arc<std::sync::atomic::AtomicBool>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl SlowPath {
    /// Starts the path's thread.
    pub fn start(server: std::net::SocketAddr, rate_bps: u64, queue_bytes: usize) -> SlowPath {
        use std::collections::VecDeque;
        use std::net::UdpSocket;
        use std::sync::Arc;
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::time::Instant;
        let socket = || {
            let s = UdpSocket::bind("127.0.0.1:0").expect("a socket");
            s.set_nonblocking(true).expect("non-blocking");
            s
        };
        let (inner, outer) = (socket(), socket());
        let addr = inner.local_addr().expect("address");
        let deaf = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let (d, s) = (deaf.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut client = None;
            let mut buf = vec![0u8; 65_536];
            // (when it leaves, datagram) in order; `free` is when the link
            // has serialised everything queued so far.
            let mut queue: VecDeque<(Instant, Vec<u8>)> = VecDeque::new();
            let mut queued = 0usize;
            let mut free = Instant::now();
            while !s.load(Ordering::Relaxed) {
                let mut busy = false;
                while let Ok((n, from)) = inner.recv_from(&mut buf) {
                    busy = true;
                    client = Some(from);
                    if queued + n > queue_bytes {
                        continue;
                    }
                    let now = Instant::now();
                    free = free.max(now)
                        + Duration::from_nanos(n as u64 * 8 * 1_000_000_000 / rate_bps);
                    queue.push_back((free, buf[..n].to_vec()));
                    queued += n;
                }
                let now = Instant::now();
                while queue.front().is_some_and(|(at, _)| *at <= now) {
                    let (_, datagram) = queue.pop_front().expect("a front");
                    queued -= datagram.len();
                    let _ = outer.send_to(&datagram, server);
                    busy = true;
                }
                while let Ok((n, _)) = outer.recv_from(&mut buf) {
                    busy = true;
                    if let Some(c) = client
                        && !d.load(Ordering::Relaxed)
                    {
                        let _ = inner.send_to(&buf[..n], c);
                    }
                }
                if !busy {
                    std::thread::sleep(Duration::from_micros(200));
                }
            }
        });
        SlowPath {
            addr,
            deaf,
            stop,
            thread: Some(thread),
        }
    }

    /// Where the client sends to reach the server through the path.
    pub fn addr(&self) -> std::net::SocketAddr {
        self.addr
    }

    /// From now on, nothing the server sends reaches the client.
    pub fn deafen(&self) {
        self.deaf.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Drop for SlowPath {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
