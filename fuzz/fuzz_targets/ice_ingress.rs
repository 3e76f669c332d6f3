//! Arbitrary datagrams and addresses into an ICE-lite agent with sessions
//! present (and the server's answers, mutated, into an ICE client): nothing
//! may panic, and state must stay bounded.
//!
//! Besides raw bytes, an input can replay a real client's Binding requests
//! (right or wrong password, from any of a few addresses) with a byte
//! changed and the FINGERPRINT re-computed, so mutations get past the CRC and
//! reach the credential and attribute checks; and it can move time, add and
//! remove sessions.
#![no_main]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use dcengine::ice::{IceClient, IceClientConfig, IceLite, IceLiteConfig};
use libfuzzer_sys::fuzz_target;

const MAX_SESSIONS: usize = 3;
const MAX_ADDRESSES: usize = 2;
const CRC32: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);

#[derive(Debug, Arbitrary)]
enum Op {
    /// Raw bytes from one of a few addresses.
    Raw { from: u8, bytes: Vec<u8> },
    /// A fresh client's first request (seeded), for session `session`, with
    /// the right password or not.
    Check {
        from: u8,
        session: u8,
        seed: u64,
        right_pwd: bool,
    },
    /// Replay the `index`th captured request with a byte changed.
    Mutate {
        from: u8,
        index: u8,
        at: u16,
        xor: u8,
        patch_fingerprint: bool,
    },
    /// Replay a captured request cut short.
    Truncate { from: u8, index: u8, len: u16 },
    /// The server's `index`th answer, mutated, into the long-lived client.
    Answer {
        index: u8,
        at: u16,
        xor: u8,
        patch_fingerprint: bool,
    },
    /// Time passes.
    Advance { ms: u16 },
    /// Add session `n` (fails when full or present).
    Add { n: u8 },
    /// Remove session `n`.
    Remove { n: u8 },
}

fn addr(n: u8) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, 1 + n % 4], 4000 + u16::from(n % 3)))
}

fn ufrag(n: u8) -> String {
    format!("srv{}", n % 4)
}

fn pwd(n: u8) -> String {
    format!("server-password-{}-xxxxxxxx", n % 4)
}

/// Re-computes a trailing FINGERPRINT so mutations get past it.
fn patch(bytes: &mut [u8]) {
    let n = bytes.len();
    if n >= 28 && bytes[n - 8..n - 4] == [0x80, 0x28, 0x00, 0x04] {
        let fp = CRC32.checksum(&bytes[..n - 8]) ^ 0x5354_554e;
        bytes[n - 4..].copy_from_slice(&fp.to_be_bytes());
    }
}

fn mutate(mut bytes: Vec<u8>, at: u16, xor: u8, patch_fingerprint: bool) -> Vec<u8> {
    if !bytes.is_empty() {
        let i = usize::from(at) % bytes.len();
        bytes[i] ^= xor;
    }
    if patch_fingerprint {
        patch(&mut bytes);
    }
    bytes
}

fuzz_target!(|ops: Vec<Op>| {
    let mut now = Instant::now();
    let mut lite = IceLite::new({
        let mut c = IceLiteConfig::default();
        c.max_sessions = MAX_SESSIONS;
        c.max_addresses_per_session = MAX_ADDRESSES;
        c
    });
    let mut ids = Vec::new();
    for n in 0..2 {
        ids.push(
            lite.add_session(&ufrag(n), &pwd(n), "cli", now)
                .expect("room"),
        );
    }
    let server = SocketAddr::from(([10, 0, 0, 100], 3478));
    let mut client = IceClient::new(
        IceClientConfig::new("cli", "cpwd", ufrag(0), pwd(0), server),
        now,
    );
    let mut requests: Vec<Vec<u8>> = Vec::new();
    let mut answers: Vec<Vec<u8>> = Vec::new();

    for op in ops.into_iter().take(256) {
        match op {
            Op::Raw { from, bytes } => {
                lite.handle_stun(now, addr(from), &bytes);
            }
            Op::Check {
                from,
                session,
                seed,
                right_pwd,
            } => {
                let p = if right_pwd {
                    pwd(session)
                } else {
                    "wrong".to_owned()
                };
                let mut config = IceClientConfig::new("cli", "cpwd", ufrag(session), p, server);
                config.seed = seed;
                let mut c = IceClient::new(config, now);
                if let Some(t) = c.poll_transmit() {
                    lite.handle_stun(now, addr(from), &t.payload);
                    if requests.len() < 64 {
                        requests.push(t.payload.to_vec());
                    }
                }
            }
            Op::Mutate {
                from,
                index,
                at,
                xor,
                patch_fingerprint,
            } => {
                if !requests.is_empty() {
                    let bytes = requests[usize::from(index) % requests.len()].clone();
                    let bytes = mutate(bytes, at, xor, patch_fingerprint);
                    lite.handle_stun(now, addr(from), &bytes);
                }
            }
            Op::Truncate { from, index, len } => {
                if !requests.is_empty() {
                    let mut bytes = requests[usize::from(index) % requests.len()].clone();
                    bytes.truncate(usize::from(len));
                    lite.handle_stun(now, addr(from), &bytes);
                }
            }
            Op::Answer {
                index,
                at,
                xor,
                patch_fingerprint,
            } => {
                if !answers.is_empty() {
                    let bytes = answers[usize::from(index) % answers.len()].clone();
                    let bytes = mutate(bytes, at, xor, patch_fingerprint);
                    client.handle_stun(now, server, &bytes);
                }
            }
            Op::Advance { ms } => {
                now += Duration::from_millis(u64::from(ms) * 16);
                lite.handle_timeout(now);
                client.handle_timeout(now);
            }
            Op::Add { n } => {
                if let Ok(id) = lite.add_session(&ufrag(n), &pwd(n), "cli", now) {
                    ids.push(id);
                }
            }
            Op::Remove { n } => {
                if !ids.is_empty() {
                    let id = ids.swap_remove(usize::from(n) % ids.len());
                    lite.remove_session(id);
                }
            }
        }
        // The long-lived client talks to the server as it would.
        while let Some(t) = client.poll_transmit() {
            lite.handle_stun(now, addr(0), &t.payload);
        }
        while let Some(t) = lite.poll_transmit() {
            if t.destination == addr(0) {
                client.handle_stun(now, server, &t.payload);
            }
            if answers.len() < 64 {
                answers.push(t.payload.to_vec());
            }
        }
        while lite.poll_event().is_some() {}
        while client.poll_event().is_some() {}
        assert!(lite.session_count() <= MAX_SESSIONS);
        for &id in &ids {
            assert!(lite.addresses(id).len() <= MAX_ADDRESSES);
        }
        if let Some(at) = lite.poll_timeout() {
            assert!(at <= now + Duration::from_secs(31));
        }
    }
});
