//! Arbitrary datagrams into a server of two workers (a `HubCluster`: two
//! hubs, their nodes, and the relays between them; the fuzzer's call is
//! homed on the worker its association is not on):
//! nothing may panic, and state must stay bounded.
//!
//! Besides raw bytes from made-up remotes, an input can replay and mutate
//! the datagrams of a real client association (so the fuzzer gets past the
//! verification tag), send arbitrary engine messages, typed or raw, over
//! that joined association (so the server's frame handling runs behind real
//! SCTP), and move time. Every injected datagram can get a valid SCTP
//! CRC32c patched in, so mutations get past the checksum.
#![no_main]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use bytes::Bytes;
use dcengine::hub::{HubCluster, HubConfig, home_worker};
use dcengine::proto::{Delivery, Node, NodeConfig};
use dcengine::sim::Host;
use dcengine::wire::{Codec, Join, Message, PROTOCOL_VERSION, ShortStr};
use dcengine::{JoinRejection, JoinRequest, JoinVerifier};
use libfuzzer_sys::fuzz_target;

const MAX_ASSOCIATIONS: usize = 4;
const CRC32C: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI);

/// Admits tokens that say "ok".
struct SaysOk;
impl JoinVerifier for SaysOk {
    fn verify(&self, r: &JoinRequest<'_>, _: Instant) -> Result<(), JoinRejection> {
        if r.token == b"ok" {
            Ok(())
        } else {
            Err(JoinRejection::bad_token())
        }
    }
}

#[derive(Debug, Arbitrary)]
enum Op {
    /// Raw bytes from one of a few remotes.
    Raw {
        remote: u8,
        patch_crc: bool,
        bytes: Vec<u8>,
    },
    /// Replay the `index`th captured client datagram with a byte changed.
    Mutate {
        index: u8,
        at: u16,
        xor: u8,
        patch_crc: bool,
    },
    /// Replay a captured client datagram cut short.
    Truncate {
        index: u8,
        len: u16,
        patch_crc: bool,
    },
    /// The joined client sends these bytes as one engine message.
    SendRaw { lossy: bool, bytes: Vec<u8> },
    /// The joined client sends this engine message.
    Send { lossy: bool, message: Message },
    /// Time passes.
    Advance { ms: u16 },
}

fn patch(mut bytes: Vec<u8>) -> Vec<u8> {
    if bytes.len() >= 12 {
        bytes[8..12].fill(0);
        let sum = CRC32C.checksum(&bytes);
        bytes[8..12].copy_from_slice(&sum.to_le_bytes());
    }
    bytes
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

struct Rig {
    now: Instant,
    server: HubCluster,
    call: String,
    client: Node,
    captured: Vec<Bytes>,
}

const SERVER: u16 = 5000;
const CLIENT: u16 = 6000;

impl Rig {
    /// Moves datagrams between the real client and the server until quiet,
    /// keeping a copy of the client's.
    fn exchange(&mut self) {
        for _ in 0..64 {
            let mut moved = false;
            while let Some(t) = self.client.poll_transmit() {
                if self.captured.len() < 256 {
                    self.captured.push(t.payload.clone());
                }
                self.server
                    .handle_datagram(self.now, addr(CLIENT), t.payload);
                moved = true;
            }
            while let Some(t) = self.server.poll_transmit() {
                if t.destination == addr(CLIENT) {
                    let _ = self
                        .client
                        .handle_datagram(self.now, addr(SERVER), t.payload);
                }
                moved = true;
            }
            while self.client.poll_event().is_some() {}
            while self.server.poll_event().is_some() {}
            if !moved {
                break;
            }
        }
    }

    fn inject(&mut self, from: SocketAddr, bytes: Vec<u8>, patch_crc: bool) {
        let bytes = if patch_crc { patch(bytes) } else { bytes };
        self.server
            .handle_datagram(self.now, from, Bytes::from(bytes));
    }

    fn captured(&self, index: u8) -> Option<Vec<u8>> {
        let n = self.captured.len();
        (n > 0).then(|| self.captured[usize::from(index) % n].to_vec())
    }
}

fuzz_target!(|ops: Vec<Op>| {
    let now = Instant::now();
    let mut config = HubConfig::server(Arc::new(SaysOk));
    config.node.max_associations = MAX_ASSOCIATIONS;
    let mut rig = Rig {
        now,
        // Two workers: the fuzzer's association lives on one, its call on
        // the other, so everything it sends crosses the relays.
        server: HubCluster::new(config, 2),
        client: Node::new(NodeConfig::client()),
        captured: Vec::new(),
        call: String::new(),
    };
    let mine = rig.server.worker_for(addr(CLIENT));
    rig.call = (0..)
        .map(|i| format!("call-{i}"))
        .find(|c| home_worker(c, 2) != mine)
        .expect("some call is homed elsewhere");
    // A hosted participant, so forwarded messages have somewhere to go.
    let local = rig
        .server
        .join_local(now, &rig.call, "host")
        .expect("local");
    let assoc = rig.client.connect(now, addr(SERVER)).expect("connect");
    rig.exchange();
    let join = Join {
        version: PROTOCOL_VERSION,
        call_id: ShortStr::truncated(&rig.call),
        participant_id: ShortStr::truncated("fuzzer"),
        token: Bytes::from_static(b"ok"),
    };
    let _ = rig
        .client
        .send(now, assoc, Delivery::Reliable, &Message::Frame(join.into()));
    rig.exchange();

    for op in ops.into_iter().take(256) {
        match op {
            Op::Raw {
                remote,
                patch_crc,
                bytes,
            } => {
                rig.inject(addr(7000 + u16::from(remote % 8)), bytes, patch_crc);
            }
            Op::Mutate {
                index,
                at,
                xor,
                patch_crc,
            } => {
                if let Some(mut bytes) = rig.captured(index) {
                    if !bytes.is_empty() {
                        let i = usize::from(at) % bytes.len();
                        bytes[i] ^= xor;
                    }
                    rig.inject(addr(CLIENT), bytes, patch_crc);
                }
            }
            Op::Truncate {
                index,
                len,
                patch_crc,
            } => {
                if let Some(mut bytes) = rig.captured(index) {
                    bytes.truncate(usize::from(len));
                    rig.inject(addr(CLIENT), bytes, patch_crc);
                }
            }
            Op::SendRaw { lossy, bytes } => {
                let d = if lossy {
                    Delivery::Lossy
                } else {
                    Delivery::Reliable
                };
                let _ = rig
                    .client
                    .send_encoded(rig.now, assoc, d, Bytes::from(bytes));
            }
            Op::Send { lossy, message } => {
                let d = if lossy {
                    Delivery::Lossy
                } else {
                    Delivery::Reliable
                };
                let _ = rig
                    .client
                    .send_encoded(rig.now, assoc, d, message.to_bytes());
            }
            Op::Advance { ms } => {
                rig.now += Duration::from_millis(u64::from(ms));
                let now = rig.now;
                rig.server.handle_timeout(now);
                rig.client.handle_timeout(now);
            }
        }
        rig.exchange();
        // The hosted participant's application reads what arrives.
        let dc = local.data_channel();
        while let Some(r) = dc.try_next_receiver() {
            while r.read_message().is_some() {}
        }
        assert!(rig.server.association_count() <= 2 * MAX_ASSOCIATIONS);
        assert!(rig.server.members(&rig.call).len() <= 2 * MAX_ASSOCIATIONS + 1);
    }
});
