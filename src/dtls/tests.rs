use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::*;

/// Two certificates, generated once for all tests (key generation is the
/// slow part).
fn certs() -> &'static (Certificate, Certificate) {
    static CERTS: OnceLock<(Certificate, Certificate)> = OnceLock::new();
    CERTS.get_or_init(|| {
        (
            Certificate::generate().expect("a certificate"),
            Certificate::generate().expect("another certificate"),
        )
    })
}

fn cfg(seed: u64) -> Arc<dimpl::Config> {
    config(1300, false, seed).expect("config")
}

struct Pair {
    client: DtlsSession,
    server: DtlsSession,
    now: Instant,
    client_events: Vec<SessionEvent>,
    server_events: Vec<SessionEvent>,
    to_server: Vec<Bytes>,
    to_client: Vec<Bytes>,
}

impl Pair {
    fn new(server_expects: Fingerprint) -> Self {
        let (c, s) = certs();
        let now = Instant::now();
        Self {
            client: DtlsSession::new(&cfg(1), c, DtlsRole::Client, s.fingerprint(), now),
            server: DtlsSession::new(&cfg(2), s, DtlsRole::Server, server_expects, now),
            now,
            client_events: Vec::new(),
            server_events: Vec::new(),
            to_server: Vec::new(),
            to_client: Vec::new(),
        }
    }

    fn good() -> Self {
        Self::new(certs().0.fingerprint())
    }

    /// Moves datagrams both ways (dropping those `lose` picks) until both
    /// sides are quiet; then jumps to the next timeout, up to `rounds`.
    fn run(&mut self, rounds: usize, mut lose: impl FnMut(usize) -> bool) {
        let mut n = 0;
        for _ in 0..rounds {
            let mut moved = true;
            while moved {
                moved = false;
                while let Some(d) = self.client.poll_transmit() {
                    moved = true;
                    n += 1;
                    if !lose(n) {
                        self.to_server.push(d.clone());
                        self.server.handle_datagram(self.now, &d);
                    }
                }
                while let Some(d) = self.server.poll_transmit() {
                    moved = true;
                    n += 1;
                    if !lose(n) {
                        self.to_client.push(d.clone());
                        self.client.handle_datagram(self.now, &d);
                    }
                }
                while let Some(e) = self.client.poll_event() {
                    self.client_events.push(e);
                }
                while let Some(e) = self.server.poll_event() {
                    self.server_events.push(e);
                }
            }
            let next = [self.client.poll_timeout(), self.server.poll_timeout()]
                .into_iter()
                .flatten()
                .min();
            let Some(next) = next else { break };
            if self.client.is_connected() && self.server.is_connected() {
                break;
            }
            self.now = self.now.max(next);
            self.client.handle_timeout(self.now);
            self.server.handle_timeout(self.now);
        }
    }
}

#[test]
fn a_handshake_connects_both_ends_and_data_flows_both_ways_encrypted() {
    let mut p = Pair::good();
    // Sent before the handshake: it waits, then goes first.
    p.client
        .send(Bytes::from_static(b"early secret"))
        .expect("queued");
    p.run(20, |_| false);
    assert_eq!(p.client_events, [SessionEvent::Connected]);
    assert_eq!(p.server_events, [SessionEvent::Connected]);
    for i in 0..100u32 {
        p.client.send(Bytes::from(format!("up {i} secret"))).expect("send");
        p.server.send(Bytes::from(format!("down {i} secret"))).expect("send");
    }
    p.run(1, |_| false);
    let up: Vec<Bytes> = std::iter::from_fn(|| p.server.poll_plaintext()).collect();
    let down: Vec<Bytes> = std::iter::from_fn(|| p.client.poll_plaintext()).collect();
    assert_eq!(up.len(), 101);
    assert_eq!(up[0], "early secret");
    assert_eq!(up[100], "up 99 secret");
    assert_eq!(down.len(), 100);
    assert_eq!(down[7], "down 7 secret");
    // Nothing on the wire shows the plaintext.
    for d in p.to_server.iter().chain(&p.to_client) {
        assert!(
            !d.windows(6).any(|w| w == b"secret"),
            "plaintext on the wire"
        );
        assert!((20..=63).contains(&d[0]), "a DTLS record (RFC 7983)");
    }
}

#[test]
fn a_certificate_other_than_the_announced_one_fails_the_handshake() {
    // The server expects the wrong fingerprint for the client.
    let mut p = Pair::new(Fingerprint([7; 32]));
    p.client.send(Bytes::from_static(b"never")).expect("queued");
    p.run(20, |_| false);
    assert!(
        matches!(
            p.server_events.first(),
            Some(SessionEvent::Failed(DtlsError::FingerprintMismatch { got, .. }))
                if *got == certs().0.fingerprint()
        ),
        "{:?}",
        p.server_events
    );
    assert!(!p.server.is_connected());
    assert!(p.server.poll_plaintext().is_none());
    assert_eq!(p.server.send(Bytes::from_static(b"x")), Err(DtlsError::Closed));
}

#[test]
fn the_client_checks_the_server_too() {
    let (c, s) = certs();
    let now = Instant::now();
    let mut p = Pair::good();
    // A client that expects its own fingerprint from the server.
    p.client = DtlsSession::new(&cfg(3), c, DtlsRole::Client, c.fingerprint(), now);
    p.server = DtlsSession::new(&cfg(4), s, DtlsRole::Server, c.fingerprint(), now);
    p.run(20, |_| false);
    assert!(matches!(
        p.client_events.first(),
        Some(SessionEvent::Failed(DtlsError::FingerprintMismatch { .. }))
    ));
}

#[test]
fn a_handshake_completes_through_loss() {
    for seed in 0..6 {
        let mut p = Pair::good();
        // Every third datagram lost, shifted by the seed.
        p.run(40, |n| (n + seed) % 3 == 0);
        assert!(
            p.client.is_connected() && p.server.is_connected(),
            "seed {seed}: {:?} {:?}",
            p.client_events,
            p.server_events
        );
    }
}

#[test]
fn a_silent_peer_times_the_handshake_out() {
    let (c, s) = certs();
    let start = Instant::now();
    let mut client = DtlsSession::new(&cfg(5), c, DtlsRole::Client, s.fingerprint(), start);
    let mut now = start;
    let mut sent = 0;
    let mut failed = None;
    for _ in 0..100 {
        while client.poll_transmit().is_some() {
            sent += 1;
        }
        if let Some(e) = client.poll_event() {
            failed = Some(e);
            break;
        }
        let Some(at) = client.poll_timeout() else { break };
        now = at;
        client.handle_timeout(now);
    }
    assert!(sent >= 2, "the ClientHello is retransmitted");
    assert!(
        matches!(failed, Some(SessionEvent::Failed(_))),
        "{failed:?}"
    );
    assert!(now - start <= Duration::from_secs(60));
}

#[test]
fn close_notify_reaches_the_peer() {
    let mut p = Pair::good();
    p.run(20, |_| false);
    p.client.close();
    p.run(1, |_| false);
    assert_eq!(p.server_events.last(), Some(&SessionEvent::PeerClosed));
    assert!(p.server.is_dead());
}

#[test]
fn plaintext_before_the_handshake_is_bounded() {
    let (c, s) = certs();
    let mut client =
        DtlsSession::new(&cfg(6), c, DtlsRole::Client, s.fingerprint(), Instant::now());
    let packet = Bytes::from(vec![0u8; 1200]);
    for _ in 0..100 {
        client.send(packet.clone()).expect("taken or dropped");
    }
    assert_eq!(client.dropped_pending(), 100 - (PENDING_LIMIT / 1200) as u64);
}

#[test]
fn garbage_from_the_peer_harms_nothing() {
    let mut p = Pair::good();
    p.run(20, |_| false);
    for junk in [&[][..], &[22], &[23, 254, 253, 0, 1], &[0xff; 300], &[20; 13]] {
        p.server.handle_datagram(p.now, junk);
    }
    p.client.send(Bytes::from_static(b"still fine")).expect("send");
    p.run(1, |_| false);
    assert_eq!(p.server.poll_plaintext().as_deref(), Some(&b"still fine"[..]));
}

#[test]
fn fingerprints_read_and_write_the_sdp_form() {
    let f = Fingerprint([0xab; 32]);
    let text = f.to_string();
    assert_eq!(text.len(), 32 * 3 - 1);
    assert!(text.starts_with("AB:AB:"));
    assert_eq!(text.parse::<Fingerprint>(), Ok(f));
    assert_eq!(text.to_lowercase().parse::<Fingerprint>(), Ok(f));
    for bad in ["", "AB", &text[..text.len() - 3], &format!("{text}:00"), &text.replace(':', "-")] {
        assert!(bad.parse::<Fingerprint>().is_err(), "{bad}");
    }
    let c = &certs().0;
    assert_eq!(c.fingerprint(), Fingerprint::of(c.der()));
}
