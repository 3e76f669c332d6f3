//! `wan-bridge`: a userspace WAN path between two TAP devices, for
//! perf/run.sh's `wan` scenario on a kernel without `sch_netem`.
//!
//! It creates two TAP devices (`--tap-a`, `--tap-b`; IFF_TAP | IFF_NO_PI,
//! not persistent: they vanish when it exits) and forwards every Ethernet
//! frame read from one to the other, each direction on its own thread,
//! through the same model of a path:
//!
//! 1. loss: each frame is dropped with probability `--loss` (seeded:
//!    `--seed`, one generator per direction, so a run is repeatable given
//!    the same frames);
//! 2. the bottleneck: a link of `--rate-mbit` that serialises frames one
//!    after another (a frame leaves at `max(now, previous departure) +
//!    len × 8 / rate`: a token bucket one frame deep), behind a FIFO of at
//!    most `--queue-bytes` (tail drop; default twice the bandwidth-delay
//!    product at 2 × `--delay-ms`, at least 256 KiB);
//! 3. propagation: each frame is written out `--delay-ms` after it left
//!    the bottleneck. The delay is constant, so release times are in FIFO
//!    order and one queue per direction is the whole timer wheel.
//!
//! The devices can be moved into network namespaces once they exist
//! (`ip link set NAME netns NS`): the file descriptors stay attached.
//! SIGINT/SIGTERM or `--max-seconds` (default 3,600) end it; it then prints
//! one JSON object of per-direction counters on stdout.
//!
//! ```text
//! wan-bridge --tap-a dcwa0 --tap-b dcwb0 [--delay-ms 25] [--loss 0.001]
//!            [--rate-mbit 1000] [--queue-bytes N] [--seed 1] [--max-seconds 3600]
//! ```

use std::collections::VecDeque;
use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

#[derive(Clone, Debug)]
struct Config {
    tap_a: String,
    tap_b: String,
    delay: Duration,
    loss: f64,
    /// Bits per second; 0 is no limit.
    rate: u64,
    queue_bytes: u64,
    seed: u64,
    max_seconds: u64,
}

fn usage() -> ! {
    eprintln!(
        "usage: wan-bridge --tap-a NAME --tap-b NAME [--delay-ms 25] [--loss 0.001] \
         [--rate-mbit 1000] [--queue-bytes N] [--seed 1] [--max-seconds 3600]"
    );
    std::process::exit(2);
}

fn parse_args() -> Config {
    let mut tap_a = None;
    let mut tap_b = None;
    let mut delay_ms = 25.0f64;
    let mut loss = 0.001f64;
    let mut rate_mbit = 1000.0f64;
    let mut queue_bytes = None;
    let mut seed = 1u64;
    let mut max_seconds = 3600u64;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| usage());
        let num = |v: String| -> f64 { v.parse().unwrap_or_else(|_| usage()) };
        match flag.as_str() {
            "--tap-a" => tap_a = Some(value()),
            "--tap-b" => tap_b = Some(value()),
            "--delay-ms" => delay_ms = num(value()),
            "--loss" => loss = num(value()),
            "--rate-mbit" => rate_mbit = num(value()),
            "--queue-bytes" => queue_bytes = Some(num(value()) as u64),
            "--seed" => seed = num(value()) as u64,
            "--max-seconds" => max_seconds = num(value()) as u64,
            _ => usage(),
        }
    }
    let (Some(tap_a), Some(tap_b)) = (tap_a, tap_b) else {
        usage()
    };
    if !(0.0..=1.0).contains(&loss) || delay_ms < 0.0 || rate_mbit < 0.0 {
        usage();
    }
    let rate = (rate_mbit * 1e6) as u64;
    let delay = Duration::from_secs_f64(delay_ms / 1e3);
    // Twice the bandwidth-delay product of the round trip (2 × one-way).
    let bdp = (rate as f64 / 8.0 * 2.0 * delay.as_secs_f64()) as u64;
    Config {
        tap_a,
        tap_b,
        delay,
        loss,
        rate,
        queue_bytes: queue_bytes.unwrap_or((2 * bdp).max(256 * 1024)),
        seed,
        max_seconds,
    }
}

/// Creates (or attaches to) TAP device `name`, non-blocking.
fn open_tap(name: &str) -> io::Result<OwnedFd> {
    let path = CString::new("/dev/net/tun").expect("no NUL");
    // SAFETY: `path` is a valid NUL-terminated string; open has no other
    // preconditions.
    let fd = unsafe {
        libc::open(
            path.as_ptr(),
            libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by open and is owned by nothing else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: ifreq is plain old data (arrays, integers and a union of
    // them), for which all-zero bytes are a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    if name.is_empty() || name.len() >= req.ifr_name.len() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "bad interface name",
        ));
    }
    for (dst, src) in req.ifr_name.iter_mut().zip(name.bytes()) {
        *dst = src as libc::c_char;
    }
    req.ifr_ifru.ifru_flags = (libc::IFF_TAP | libc::IFF_NO_PI) as libc::c_short;
    // SAFETY: TUNSETIFF reads (and writes back the name into) one struct
    // ifreq, which `req` is, alive and exclusively borrowed for the call;
    // `fd` is an open /dev/net/tun descriptor.
    let rc = unsafe {
        libc::ioctl(
            fd.as_raw_fd(),
            libc::TUNSETIFF,
            &mut req as *mut libc::ifreq,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fd)
}

#[derive(Default, Debug)]
struct Stats {
    read_frames: u64,
    read_bytes: u64,
    forwarded_frames: u64,
    forwarded_bytes: u64,
    dropped_loss: u64,
    dropped_queue: u64,
    write_errors: u64,
    max_backlog_bytes: u64,
    first_forward: Option<Instant>,
    last_forward: Option<Instant>,
}

impl Stats {
    fn json(&self, name: &str) -> String {
        let secs = match (self.first_forward, self.last_forward) {
            (Some(a), Some(b)) => (b - a).as_secs_f64(),
            _ => 0.0,
        };
        let rate = if secs > 0.0 {
            self.forwarded_bytes as f64 * 8.0 / secs
        } else {
            0.0
        };
        format!(
            "\"{name}\":{{\"read_frames\":{},\"read_bytes\":{},\"forwarded_frames\":{},\
             \"forwarded_bytes\":{},\"dropped_loss\":{},\"dropped_queue\":{},\"write_errors\":{},\
             \"max_backlog_bytes\":{},\"active_s\":{secs:.3},\"achieved_bits_per_s\":{rate:.0}}}",
            self.read_frames,
            self.read_bytes,
            self.forwarded_frames,
            self.forwarded_bytes,
            self.dropped_loss,
            self.dropped_queue,
            self.write_errors,
            self.max_backlog_bytes,
        )
    }
}

/// A frame in the path: when it is written out, and its bytes.
struct Frame {
    release: Instant,
    data: Vec<u8>,
}

/// One direction of the path: frames read from `input` reach `output`.
struct Direction {
    input: RawFd,
    output: RawFd,
    cfg: Config,
    rng: fastrand::Rng,
    /// When the bottleneck finishes sending what it holds.
    busy_until: Instant,
    queue: VecDeque<Frame>,
    free: Vec<Vec<u8>>,
    stats: Stats,
}

const MAX_FRAME: usize = 65_536;
/// Frames read per wake-up before releasing what is due again.
const READ_BATCH: usize = 64;
/// The longest sleep, so a stop is seen promptly.
const MAX_WAIT: Duration = Duration::from_millis(50);

impl Direction {
    fn run(&mut self, deadline: Instant) {
        let mut buf = vec![0u8; MAX_FRAME];
        while !STOP.load(Ordering::Relaxed) {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            self.release(now);
            let wait = self
                .queue
                .front()
                .map_or(MAX_WAIT, |f| f.release.saturating_duration_since(now))
                .min(MAX_WAIT);
            if !wait.is_zero() && !self.poll_input(wait) {
                continue;
            }
            for _ in 0..READ_BATCH {
                // SAFETY: `buf` is valid for writes of `buf.len()` bytes for
                // the call; `input` is an open descriptor owned by main,
                // which outlives this thread.
                let n = unsafe { libc::read(self.input, buf.as_mut_ptr().cast(), buf.len()) };
                if n <= 0 {
                    break;
                }
                self.enqueue(&buf[..n as usize]);
            }
        }
    }

    /// Waits up to `wait` for the input to be readable.
    fn poll_input(&self, wait: Duration) -> bool {
        let mut pfd = libc::pollfd {
            fd: self.input,
            events: libc::POLLIN,
            revents: 0,
        };
        let ts = libc::timespec {
            tv_sec: wait.as_secs() as libc::time_t,
            tv_nsec: wait.subsec_nanos() as libc::c_long,
        };
        // SAFETY: one valid pollfd and a valid timespec, both alive for the
        // call; a null signal mask leaves the thread's mask as it is.
        let rc = unsafe { libc::ppoll(&mut pfd, 1, &ts, std::ptr::null()) };
        rc > 0
    }

    fn enqueue(&mut self, frame: &[u8]) {
        let now = Instant::now();
        self.stats.read_frames += 1;
        self.stats.read_bytes += frame.len() as u64;
        if self.cfg.loss > 0.0 && self.rng.f64() < self.cfg.loss {
            self.stats.dropped_loss += 1;
            return;
        }
        let start = self.busy_until.max(now);
        let departs = if self.cfg.rate == 0 {
            now
        } else {
            let backlog =
                ((start - now).as_nanos() * self.cfg.rate as u128 / 8 / 1_000_000_000) as u64;
            if backlog + frame.len() as u64 > self.cfg.queue_bytes {
                self.stats.dropped_queue += 1;
                return;
            }
            self.stats.max_backlog_bytes = self.stats.max_backlog_bytes.max(backlog);
            let ns = frame.len() as u64 * 8 * 1_000_000_000 / self.cfg.rate;
            self.busy_until = start + Duration::from_nanos(ns);
            self.busy_until
        };
        let mut data = self.free.pop().unwrap_or_default();
        data.clear();
        data.extend_from_slice(frame);
        self.queue.push_back(Frame {
            release: departs + self.cfg.delay,
            data,
        });
    }

    fn release(&mut self, now: Instant) {
        while self.queue.front().is_some_and(|f| f.release <= now) {
            let f = self.queue.pop_front().expect("front checked");
            // SAFETY: `f.data` is valid for reads of its length for the
            // call; `output` is an open descriptor owned by main.
            let n = unsafe { libc::write(self.output, f.data.as_ptr().cast(), f.data.len()) };
            if n == f.data.len() as isize {
                self.stats.forwarded_frames += 1;
                self.stats.forwarded_bytes += f.data.len() as u64;
                self.stats.first_forward.get_or_insert(now);
                self.stats.last_forward = Some(now);
            } else {
                self.stats.write_errors += 1;
            }
            if self.free.len() < 4096 {
                self.free.push(f.data);
            }
        }
    }
}

fn main() {
    let cfg = parse_args();
    let a = open_tap(&cfg.tap_a).unwrap_or_else(|e| {
        eprintln!("wan-bridge: {}: {e}", cfg.tap_a);
        std::process::exit(1)
    });
    let b = open_tap(&cfg.tap_b).unwrap_or_else(|e| {
        eprintln!("wan-bridge: {}: {e}", cfg.tap_b);
        std::process::exit(1)
    });
    // SAFETY: `on_signal` only stores to an atomic, which is
    // async-signal-safe; the handler is a valid extern "C" fn.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
    eprintln!(
        "wan-bridge: {} <-> {}: delay {:?} each way, loss {}, rate {} Mbit/s, queue {} bytes, seed {}",
        cfg.tap_a,
        cfg.tap_b,
        cfg.delay,
        cfg.loss,
        cfg.rate as f64 / 1e6,
        cfg.queue_bytes,
        cfg.seed
    );
    let deadline = Instant::now() + Duration::from_secs(cfg.max_seconds);
    let fds = Arc::new((a, b));
    let spawn = |name: &'static str, input: RawFd, output: RawFd, seed: u64| {
        let cfg = cfg.clone();
        let fds = Arc::clone(&fds);
        std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                let _keep = fds;
                let mut d = Direction {
                    input,
                    output,
                    cfg: cfg.clone(),
                    rng: fastrand::Rng::with_seed(seed),
                    busy_until: Instant::now(),
                    queue: VecDeque::new(),
                    free: Vec::new(),
                    stats: Stats::default(),
                };
                d.run(deadline);
                d.stats
            })
            .expect("spawn")
    };
    let (fa, fb) = (fds.0.as_raw_fd(), fds.1.as_raw_fd());
    let ab = spawn("a->b", fa, fb, cfg.seed.wrapping_mul(2));
    let ba = spawn("b->a", fb, fa, cfg.seed.wrapping_mul(2) + 1);
    let ab = ab.join().expect("a->b thread");
    let ba = ba.join().expect("b->a thread");
    println!(
        "{{\"tool\":\"wan-bridge\",\"delay_ms\":{},\"loss\":{},\"rate_bits_per_s\":{},\"queue_bytes\":{},\"seed\":{},{},{}}}",
        cfg.delay.as_secs_f64() * 1e3,
        cfg.loss,
        cfg.rate,
        cfg.queue_bytes,
        cfg.seed,
        ab.json("a_to_b"),
        ba.json("b_to_a"),
    );
}
