//! Node pair throughput in memory: a client node sends small Data frames to
//! a server node through a direct datagram shuttle (no loss, no latency),
//! both on one thread, with the in-flight data capped at 64 KiB (the
//! reference measurements compare designs at the same cap).
//!
//! Ways to carry 100-byte messages: one SCTP message per application
//! message (no coalescing), 32 frames packed into one `Batch` per SCTP
//! message, or as many frames as fit a byte cap per `Batch` (what the hub
//! does with frames queued in the same turn): one packet
//! (`MAX_PACKET_MESSAGE`, 1,200 B: 10 frames) or 16 KiB (143 frames); and
//! one packet with an immediate SACK asked for every packet (as the hub's
//! budgeted associations do).

use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use dcengine::proto::{AssocId, Delivery, Event, MAX_PACKET_MESSAGE, Node, NodeConfig};
use dcengine::wire::{Batch, Codec, Data, Frame, Message};

const MESSAGES: u32 = 20_000;
const WINDOW: usize = 64 * 1024;
const SERVER: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 1);
const CLIENT: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 2);

struct Pair {
    now: Instant,
    client: Node,
    server: Node,
    assoc: AssocId,
}

impl Pair {
    fn new() -> Self {
        let now = Instant::now();
        let mut client = Node::new(NodeConfig::client());
        let server = Node::new(NodeConfig::server());
        let assoc = client.connect(now, SERVER).expect("connect");
        let mut pair = Self {
            now,
            client,
            server,
            assoc,
        };
        while !pair.client.is_connected(assoc) {
            pair.shuttle();
        }
        pair
    }

    /// Moves every pending datagram both ways; returns frames the server got.
    fn shuttle(&mut self) -> u32 {
        let mut frames = 0;
        while let Some(t) = self.client.poll_transmit() {
            let _ = self.server.handle_datagram(self.now, CLIENT, t.payload);
        }
        while let Some(e) = self.server.poll_event() {
            if let Event::Frame { .. } = e {
                frames += 1;
            }
        }
        while let Some(t) = self.server.poll_transmit() {
            let _ = self.client.handle_datagram(self.now, SERVER, t.payload);
        }
        while self.client.poll_event().is_some() {}
        // Time passes a little so delayed acknowledgements go out.
        self.now += std::time::Duration::from_millis(1);
        self.client.handle_timeout(self.now);
        self.server.handle_timeout(self.now);
        frames
    }
}

fn data(seq: u32, payload: &Bytes) -> Frame {
    Frame::Data(Data {
        channel: 1,
        session: 1,
        seq,
        origin: None,
        epoch: None,
        payload: payload.clone(),
    })
}

/// Sends `MESSAGES` 100-byte messages, `per_message` frames per SCTP message.
fn run(pair: &mut Pair, per_message: u32) {
    let payload = Bytes::from(vec![0x42u8; 100]);
    let (mut sent, mut received) = (0u32, 0u32);
    while received < MESSAGES {
        while sent < MESSAGES && pair.client.queued_bytes(pair.assoc) < WINDOW {
            let n = per_message.min(MESSAGES - sent);
            let message = if n == 1 {
                Message::Frame(data(sent, &payload))
            } else {
                Message::Batch(Batch {
                    frames: (sent..sent + n).map(|s| data(s, &payload)).collect(),
                })
            };
            pair.client
                .send(pair.now, pair.assoc, Delivery::Reliable, &message)
                .expect("send");
            sent += n;
        }
        received += pair.shuttle();
    }
}

/// How many 100-byte Data frames fit a batch of at most `cap` bytes.
fn frames_within(cap: usize) -> u32 {
    let payload = Bytes::from(vec![0x42u8; 100]);
    let frame_len = data(u32::MAX, &payload).encoded_len();
    let mut n = 1;
    while Batch::len_with(n + 1, (n + 1) * frame_len) <= cap {
        n += 1;
    }
    n as u32
}

fn node_pair(c: &mut Criterion) {
    let mut group = c.benchmark_group("node_pair_100B");
    group.throughput(Throughput::Elements(u64::from(MESSAGES)));
    group.sample_size(10);
    let one_packet = frames_within(MAX_PACKET_MESSAGE);
    let sixteen_k = frames_within(16 * 1024);
    eprintln!("frames per batch: one packet {one_packet}, 16 KiB {sixteen_k}");
    for (name, per_message) in [
        ("one_message_each", 1),
        ("batched_32", 32),
        ("batched_one_packet", one_packet),
        ("batched_16KiB", sixteen_k),
    ] {
        group.bench_function(name, |b| {
            b.iter_batched(
                Pair::new,
                |mut pair| run(&mut pair, per_message),
                criterion::BatchSize::LargeInput,
            );
        });
    }
    // The hub asks for an immediate SACK on every DATA packet of the
    // associations it budgets (`Node::set_immediate_acks`): the price of
    // honest round trips, a SACK per packet instead of one per two.
    group.bench_function("batched_one_packet_immediate_acks", |b| {
        b.iter_batched(
            || {
                let mut pair = Pair::new();
                pair.client.set_immediate_acks(pair.assoc, true);
                pair
            },
            |mut pair| run(&mut pair, one_packet),
            criterion::BatchSize::LargeInput,
        );
    });
    group.finish();
}

criterion_group!(benches, node_pair);
criterion_main!(benches);
