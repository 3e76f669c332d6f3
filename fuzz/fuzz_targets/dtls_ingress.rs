//! Arbitrary datagrams into a server's DTLS layer: from an address it
//! expects (a session is created and handshakes with a real client), from
//! addresses it does not expect, and mutations of the real client's
//! records, handshake and application data alike. Nothing may panic, no
//! session may appear for an unexpected address, and at most one exists
//! per expected one.
#![no_main]

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use bytes::Bytes;
use dcengine::Certificate;
use dcengine::dtls::{DtlsLayer, DtlsRole, DtlsSession, config};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
enum Op {
    /// Raw bytes from the expected client (`from_client`) or a stranger.
    Raw { from_client: bool, bytes: Vec<u8> },
    /// The `index`th record the real client sent, one byte changed.
    Mutate { index: u8, at: u16, xor: u8 },
    /// The `index`th record the real client sent, cut short.
    Truncate { index: u8, len: u16 },
    /// The real client's records so far, delivered (handshake progress).
    Deliver,
    /// The real client protects these bytes as one SCTP packet.
    Send { bytes: Vec<u8> },
    /// Time passes.
    Wait { millis: u16 },
}

fn certs() -> &'static (Certificate, Certificate) {
    static C: OnceLock<(Certificate, Certificate)> = OnceLock::new();
    C.get_or_init(|| {
        (
            Certificate::generate().expect("a certificate"),
            Certificate::generate().expect("a certificate"),
        )
    })
}

fuzz_target!(|ops: Vec<Op>| {
    let (server_cert, client_cert) = certs();
    let client_addr: SocketAddr = ([192, 0, 2, 1], 5000).into();
    let stranger: SocketAddr = ([198, 51, 100, 7], 6000).into();
    let mut now = Instant::now();
    let mut layer = DtlsLayer::new(server_cert.clone(), 1400, 4, 1);
    layer.allow(now, client_addr, client_cert.fingerprint());
    let cfg = config(1400, false, 2).expect("config");
    let mut client = DtlsSession::new(
        &cfg,
        client_cert,
        DtlsRole::Client,
        server_cert.fingerprint(),
        now,
    );
    let mut sent: Vec<Bytes> = Vec::new();
    let mut undelivered = 0;
    for op in ops.into_iter().take(64) {
        while let Some(d) = client.poll_transmit() {
            sent.push(d);
        }
        match op {
            Op::Raw { from_client, bytes } => {
                let from = if from_client { client_addr } else { stranger };
                let _ = layer.handle_datagram(now, from, &bytes);
            }
            Op::Mutate { index, at, xor } => {
                if let Some(d) = sent.get(usize::from(index) % sent.len().max(1)) {
                    let mut d = d.to_vec();
                    if !d.is_empty() {
                        let i = usize::from(at) % d.len();
                        d[i] ^= xor;
                    }
                    let _ = layer.handle_datagram(now, client_addr, &d);
                }
            }
            Op::Truncate { index, len } => {
                if let Some(d) = sent.get(usize::from(index) % sent.len().max(1)) {
                    let cut = &d[..usize::from(len).min(d.len())];
                    let _ = layer.handle_datagram(now, client_addr, cut);
                }
            }
            Op::Deliver => {
                for d in &sent[undelivered..] {
                    let _ = layer.handle_datagram(now, client_addr, d);
                }
                undelivered = sent.len();
                while let Some((to, d)) = layer.poll_transmit() {
                    assert_eq!(to, client_addr, "only the expected client is answered");
                    client.handle_datagram(now, &d);
                }
            }
            Op::Send { bytes } => {
                let _ = client.send(Bytes::from(bytes));
            }
            Op::Wait { millis } => {
                now += Duration::from_millis(u64::from(millis));
                layer.handle_timeout(now);
                client.handle_timeout(now);
            }
        }
        while let Some((to, _)) = layer.poll_transmit() {
            assert_eq!(to, client_addr, "only the expected client is answered");
        }
        while layer.poll_inbound().is_some() {}
        while layer.poll_event().is_some() {}
        assert!(layer.session_count() <= 1);
    }
});
