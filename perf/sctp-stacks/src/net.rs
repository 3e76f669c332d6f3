//! What the cases need of a stack: associations between a client and a
//! server side, driven sans-IO, packets handed in and taken out by the
//! caller, time given by the caller (virtual: a `Duration` since the run
//! started).

use std::time::Duration;

use bytes::Bytes;

/// Virtual time: since the start of the run.
pub type VTime = Duration;

/// Which side a packet goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum To {
    /// The side that connected (and sends the messages).
    Client,
    /// The side that accepted (and receives them).
    Server,
}

/// How messages are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Reliable, ordered (the engine's Durable): stream 0.
    Reliable,
    /// Unordered, no retransmission (the engine's Lossy): stream 1.
    Lossy,
}

/// Settings shared by both stacks (what each maps them to is in its module).
#[derive(Debug, Clone)]
pub struct Settings {
    /// Largest SCTP packet, bytes (common header included).
    pub mtu: usize,
    /// Receive buffer (advertised window), bytes.
    pub receive_buffer: u32,
    /// Send buffer limit, bytes (dcsctp only: sctp-proto has none).
    pub send_buffer: usize,
    /// Largest message, bytes.
    pub max_message: u32,
    /// Streams each way.
    pub streams: u16,
    /// RTO initial / min / max.
    pub rto: (Duration, Duration, Duration),
}

impl Default for Settings {
    fn default() -> Self {
        // The engine's NodeConfig defaults (src/proto/config.rs).
        Self {
            mtu: 1228,
            receive_buffer: 512 * 1024,
            send_buffer: 512 * 1024,
            max_message: 256 * 1024 + 1024,
            streams: 16,
            rto: (
                Duration::from_millis(500),
                Duration::from_millis(200),
                Duration::from_secs(5),
            ),
        }
    }
}

/// A set of association pairs of one stack, client side and server side.
pub trait Net {
    /// The stack's name in the output.
    const NAME: &'static str;
    /// An empty set.
    fn new(settings: &Settings) -> Self;
    /// Room for `n` pairs (so that growing the set adds no slack to the
    /// heap a case measures).
    fn reserve(&mut self, n: usize);
    /// A new pair whose client starts its handshake now; its index.
    fn add_pair(&mut self, now: VTime) -> usize;
    /// A packet arrives at `to` of `pair`.
    fn input(&mut self, now: VTime, pair: usize, to: To, packet: Bytes);
    /// Packets `pair` has to send, each with the side it goes to.
    fn output(&mut self, now: VTime, pair: usize, out: &mut Vec<(To, Bytes)>);
    /// When `pair` next needs `timeout`.
    fn next_timeout(&self, pair: usize) -> Option<VTime>;
    /// Time has come to `now` for `pair`.
    fn timeout(&mut self, now: VTime, pair: usize);
    /// Both sides of `pair` are established.
    fn connected(&self, pair: usize) -> bool;
    /// Why `pair` failed, if it did (abort, association lost).
    fn failure(&self, pair: usize) -> Option<String>;
    /// Queues `messages` from the client of `pair`; how many were accepted.
    fn send(&mut self, now: VTime, pair: usize, messages: Vec<Vec<u8>>, mode: Mode) -> usize;
    /// Hands each complete message the server of `pair` has to `f`.
    fn recv(&mut self, now: VTime, pair: usize, f: &mut dyn FnMut(&[u8]));
    /// Drops every client side (what is left is the server side's state).
    fn drop_clients(&mut self);
}
