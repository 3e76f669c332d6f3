//! A wire tap: a UDP relay between a peer and the server that records the
//! SCTP chunk types of every packet, both directions, and the causes of
//! every ABORT, so a failing cell explains itself.

use std::fmt::Write as _;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

/// Which way a packet went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    /// Peer → engine.
    ToEngine,
    /// Engine → peer.
    ToPeer,
}

impl Dir {
    fn arrow(self) -> &'static str {
        match self {
            Dir::ToEngine => "→",
            Dir::ToPeer => "←",
        }
    }
}

/// SCTP chunk type numbers the tests look for.
pub mod chunk {
    /// DATA.
    pub const DATA: u8 = 0;
    /// INIT.
    pub const INIT: u8 = 1;
    /// SACK.
    pub const SACK: u8 = 3;
    /// HEARTBEAT.
    pub const HEARTBEAT: u8 = 4;
    /// HEARTBEAT-ACK.
    pub const HEARTBEAT_ACK: u8 = 5;
    /// ABORT.
    pub const ABORT: u8 = 6;
    /// SHUTDOWN.
    pub const SHUTDOWN: u8 = 7;
    /// SHUTDOWN-ACK.
    pub const SHUTDOWN_ACK: u8 = 8;
    /// SHUTDOWN-COMPLETE.
    pub const SHUTDOWN_COMPLETE: u8 = 14;
    /// RE-CONFIG (RFC 6525).
    pub const RE_CONFIG: u8 = 130;
}

/// The name of SCTP chunk type `t`.
pub fn chunk_name(t: u8) -> String {
    match t {
        0 => "DATA".into(),
        1 => "INIT".into(),
        2 => "INIT-ACK".into(),
        3 => "SACK".into(),
        4 => "HEARTBEAT".into(),
        5 => "HEARTBEAT-ACK".into(),
        6 => "ABORT".into(),
        7 => "SHUTDOWN".into(),
        8 => "SHUTDOWN-ACK".into(),
        9 => "ERROR".into(),
        10 => "COOKIE-ECHO".into(),
        11 => "COOKIE-ACK".into(),
        14 => "SHUTDOWN-COMPLETE".into(),
        15 => "AUTH".into(),
        64 => "I-DATA".into(),
        128 => "ASCONF-ACK".into(),
        130 => "RE-CONFIG".into(),
        132 => "PAD".into(),
        192 => "FORWARD-TSN".into(),
        193 => "ASCONF".into(),
        194 => "I-FORWARD-TSN".into(),
        t => format!("0x{t:02x}"),
    }
}

/// One packet seen.
#[derive(Debug, Clone)]
pub struct Packet {
    /// Which way.
    pub dir: Dir,
    /// Its chunk types, in order.
    pub chunks: Vec<u8>,
    /// Dropped by the tap (see [`Tap::drop_sacks`]).
    pub dropped: bool,
    /// The chunks for people: names, with the TSN of DATA and the
    /// Cumulative TSN Ack of SACK and SHUTDOWN.
    pub labels: Vec<String>,
}

#[derive(Default)]
struct Record {
    packets: Vec<Packet>,
    /// Each ABORT's causes, decoded (direction, text).
    aborts: Vec<(Dir, String)>,
}

/// The relay. The peer sends to [`Tap::addr`]; the tap forwards to the
/// server from its own socket and back. Stops when dropped.
pub struct Tap {
    addr: SocketAddr,
    record: Arc<Mutex<Record>>,
    stop: Arc<AtomicBool>,
    drop_sacks: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Tap {
    /// A tap in front of `server`, listening on the same loopback address
    /// family.
    pub fn start(server: SocketAddr) -> Tap {
        let local: SocketAddr = if server.is_ipv4() {
            "127.0.0.1:0".parse().expect("an address")
        } else {
            "[::1]:0".parse().expect("an address")
        };
        let front = UdpSocket::bind(local).expect("bind the tap's front");
        let back = UdpSocket::bind(local).expect("bind the tap's back");
        back.connect(server).expect("connect the tap to the server");
        for s in [&front, &back] {
            s.set_read_timeout(Some(Duration::from_millis(50)))
                .expect("a timeout");
        }
        let addr = front.local_addr().expect("an address");
        let record = Arc::new(Mutex::new(Record::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let drop_sacks = Arc::new(AtomicBool::new(false));
        let peer: Arc<Mutex<Option<SocketAddr>>> = Arc::new(Mutex::new(None));
        let mut threads = Vec::new();
        {
            let (front, back) = (
                front.try_clone().expect("clone"),
                back.try_clone().expect("clone"),
            );
            let (record, stop, peer) = (record.clone(), stop.clone(), peer.clone());
            let drop_sacks = drop_sacks.clone();
            threads.push(std::thread::spawn(move || {
                let mut buf = vec![0u8; 65536];
                while !stop.load(Ordering::Relaxed) {
                    if let Ok((n, from)) = front.recv_from(&mut buf) {
                        *peer.lock().unwrap_or_else(PoisonError::into_inner) = Some(from);
                        let drop = drop_sacks.load(Ordering::Relaxed);
                        if !note(&record, Dir::ToEngine, &buf[..n], drop) {
                            let _ = back.send(&buf[..n]);
                        }
                    }
                }
            }));
        }
        {
            let (record, stop) = (record.clone(), stop.clone());
            threads.push(std::thread::spawn(move || {
                let mut buf = vec![0u8; 65536];
                while !stop.load(Ordering::Relaxed) {
                    if let Ok(n) = back.recv(&mut buf) {
                        note(&record, Dir::ToPeer, &buf[..n], false);
                        let to = *peer.lock().unwrap_or_else(PoisonError::into_inner);
                        if let Some(to) = to {
                            let _ = front.send_to(&buf[..n], to);
                        }
                    }
                }
            }));
        }
        Tap {
            addr,
            record,
            stop,
            drop_sacks,
            threads,
        }
    }

    /// While `on`, packets from the peer that hold only SACKs are dropped
    /// (a lost SACK, on demand).
    pub fn drop_sacks(&self, on: bool) {
        self.drop_sacks.store(on, Ordering::Relaxed);
    }

    /// Where the peer sends.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn with<T>(&self, f: impl FnOnce(&Record) -> T) -> T {
        f(&self.record.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// How many chunks of type `t` went `dir`.
    pub fn count(&self, dir: Dir, t: u8) -> usize {
        self.with(|r| {
            r.packets
                .iter()
                .filter(|p| p.dir == dir)
                .map(|p| p.chunks.iter().filter(|&&c| c == t).count())
                .sum()
        })
    }

    /// The causes of the ABORTs that went `dir`.
    pub fn aborts(&self, dir: Dir) -> Vec<String> {
        self.with(|r| {
            r.aborts
                .iter()
                .filter(|(d, _)| *d == dir)
                .map(|(_, s)| s.clone())
                .collect()
        })
    }

    /// How many packets were seen.
    pub fn packets(&self) -> usize {
        self.with(|r| r.packets.len())
    }

    /// The wire, for a failure message: chunk counts per direction, the
    /// first 16 and the last 40 packets, and the ABORT causes.
    pub fn trace(&self) -> String {
        self.with(|r| {
            let mut s = String::from("wire tap (→ peer to engine, ← engine to peer):\n");
            for dir in [Dir::ToEngine, Dir::ToPeer] {
                let mut counts = std::collections::BTreeMap::<u8, usize>::new();
                for p in r.packets.iter().filter(|p| p.dir == dir) {
                    for &c in &p.chunks {
                        *counts.entry(c).or_default() += 1;
                    }
                }
                let list: Vec<String> = counts
                    .iter()
                    .map(|(t, n)| format!("{}×{n}", chunk_name(*t)))
                    .collect();
                let _ = writeln!(s, "  {} chunks: {}", dir.arrow(), list.join(" "));
            }
            let n = r.packets.len();
            let line = |p: &Packet| {
                let names = &p.labels;
                let dropped = if p.dropped {
                    "  (dropped by the tap)"
                } else {
                    ""
                };
                format!("{} {}{dropped}", p.dir.arrow(), names.join(","))
            };
            let mut shown: Vec<String> = Vec::new();
            for (i, p) in r.packets.iter().enumerate() {
                if i < 16 || i + 40 >= n {
                    shown.push(line(p));
                } else if i == 16 {
                    shown.push(format!("… {} packets …", n - 56));
                }
            }
            // Collapse runs of identical lines.
            let mut last: Option<(String, usize)> = None;
            for l in shown {
                match &mut last {
                    Some((prev, k)) if *prev == l => *k += 1,
                    _ => {
                        if let Some((prev, k)) = last.take() {
                            push_run(&mut s, &prev, k);
                        }
                        last = Some((l, 1));
                    }
                }
            }
            if let Some((prev, k)) = last {
                push_run(&mut s, &prev, k);
            }
            for (d, a) in &r.aborts {
                let _ = writeln!(s, "  ABORT {}: {a}", d.arrow());
            }
            s
        })
    }
}

fn push_run(s: &mut String, line: &str, k: usize) {
    if k > 1 {
        let _ = writeln!(s, "    {line}  (×{k})");
    } else {
        let _ = writeln!(s, "    {line}");
    }
}

impl Drop for Tap {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Records `packet`; returns whether it is to be dropped (`drop_sacks` and
/// it holds only SACKs).
fn note(record: &Mutex<Record>, dir: Dir, packet: &[u8], drop_sacks: bool) -> bool {
    let mut chunks = Vec::new();
    let mut labels = Vec::new();
    let mut aborts = Vec::new();
    let mut at = 12;
    while at + 4 <= packet.len() {
        let t = packet[at];
        let len = u16::from_be_bytes([packet[at + 2], packet[at + 3]]) as usize;
        if len < 4 || at + len > packet.len() {
            chunks.push(t);
            labels.push(format!("{} (truncated)", chunk_name(t)));
            break;
        }
        chunks.push(t);
        let field = |at: usize| {
            packet
                .get(at..at + 4)
                .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
                .unwrap_or(0)
        };
        labels.push(match t {
            0 | 64 => format!("{}(tsn {})", chunk_name(t), field(at + 4)),
            3 | 7 => format!("{}(cum {})", chunk_name(t), field(at + 4)),
            t => chunk_name(t),
        });
        if t == chunk::ABORT {
            aborts.push(abort_causes(&packet[at + 4..at + len]));
        }
        at += (len + 3) & !3;
    }
    let dropped = drop_sacks && !chunks.is_empty() && chunks.iter().all(|&c| c == 3);
    let mut r = record.lock().unwrap_or_else(PoisonError::into_inner);
    r.packets.push(Packet {
        dir,
        chunks,
        dropped,
        labels,
    });
    r.aborts.extend(aborts.into_iter().map(|a| (dir, a)));
    dropped
}

/// An ABORT chunk's causes as text: "User-Initiated Abort: <reason>" for
/// cause 12, the code and any printable value otherwise.
pub fn abort_causes(mut body: &[u8]) -> String {
    let mut out = Vec::new();
    while body.len() >= 4 {
        let code = u16::from_be_bytes([body[0], body[1]]);
        let len = (u16::from_be_bytes([body[2], body[3]]) as usize).clamp(4, body.len());
        let value = &body[4..len];
        let text = String::from_utf8_lossy(value).into_owned();
        out.push(match code {
            12 => format!("User-Initiated Abort: {text}"),
            13 => format!("Protocol Violation: {text}"),
            c => format!("cause {c}: {text:?}"),
        });
        body = &body[((len + 3) & !3).min(body.len())..];
    }
    if out.is_empty() {
        "no cause".into()
    } else {
        out.join("; ")
    }
}
