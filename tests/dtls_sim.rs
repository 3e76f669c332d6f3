//! Calls over DTLS (RFC 8261) in the simulator: every association of the
//! hubs runs inside a DTLS session whose peer certificate is checked
//! against the fingerprint given for it, and the server keeps no state for
//! addresses it was not told to expect.

#[path = "common/mod.rs"]
mod common;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::{EPOCH, SECRET};
use dcengine::hub::{HubCluster, HubConfig};
use dcengine::proto::Transmit;
use dcengine::sim::{Host, HostId, LinkConfig, Network};
use dcengine::{
    Call, CallState, Certificate, ChannelConfig, DataChannelSenderOptions, HmacVerifier,
    TrafficPolicy, WallClock, mint_token,
};
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Instant;

/// A hub cluster that keeps a copy of every datagram it sends.
struct Tapped {
    hubs: HubCluster,
    sent: Vec<Bytes>,
    /// Drops the STUN it sends (RFC 7983: first byte 0..=3), as a peer
    /// that stopped its ICE consent checks.
    mute_stun: bool,
}

impl Host for Tapped {
    fn handle_datagram(&mut self, now: Instant, from: SocketAddr, datagram: Bytes) {
        self.hubs.handle_datagram(now, from, datagram);
    }
    fn handle_timeout(&mut self, now: Instant) {
        self.hubs.handle_timeout(now);
    }
    fn use_clock(&mut self, clock: &dcengine::Clock) {
        self.hubs.use_clock(clock);
    }
    fn poll_transmit(&mut self) -> Option<Transmit> {
        loop {
            let t = self.hubs.poll_transmit()?;
            if self.mute_stun && t.payload.first().is_some_and(|b| *b <= 3) {
                continue;
            }
            self.sent.push(t.payload.clone());
            return Some(t);
        }
    }
    fn poll_timeout(&self) -> Option<Instant> {
        self.hubs.poll_timeout()
    }
}

/// Certificates for the server and three clients, made once (key
/// generation is the slow part).
fn certs() -> &'static [Certificate; 4] {
    static C: OnceLock<[Certificate; 4]> = OnceLock::new();
    C.get_or_init(|| std::array::from_fn(|_| Certificate::generate().expect("a certificate")))
}

struct World {
    net: Network<Tapped>,
    server: HostId,
}

impl World {
    fn new(seed: u64, link: LinkConfig, workers: usize) -> Self {
        let mut net = Network::new(seed, link);
        let clock = WallClock::new(net.now(), Duration::from_secs(EPOCH));
        let config = HubConfig::server(Arc::new(
            HmacVerifier::new(SECRET, clock).expect("a secret"),
        ))
        .seed(seed)
        .dtls(certs()[0].clone())
        .channel(ChannelConfig::default().traffic(TrafficPolicy::unlimited()));
        let server = net.add_host(Tapped {
            hubs: HubCluster::new(config, workers),
            sent: Vec::new(),
            mute_stun: false,
        });
        Self { net, server }
    }

    /// A client with certificate `cert` joining `call` as `who`; the server
    /// is told to expect `allowed` (a certificate's index) from its address.
    /// A client host running DTLS with certificate `cert`.
    fn client(&mut self, cert: usize) -> HostId {
        let config = HubConfig::client()
            .seed(self.net.host_count() as u64)
            .dtls(certs()[cert].clone())
            .channel(ChannelConfig::default().traffic(TrafficPolicy::unlimited()));
        self.net.add_host(Tapped {
            hubs: HubCluster::new(config, 1),
            sent: Vec::new(),
            mute_stun: false,
        })
    }

    fn join(
        &mut self,
        call: &str,
        who: &str,
        cert: usize,
        allowed: Option<usize>,
    ) -> (HostId, Call) {
        let host = self.client(cert);
        let (now, server_addr, me) = (
            self.net.now(),
            self.net.addr(self.server),
            self.net.addr(host),
        );
        if let Some(a) = allowed {
            // What signalling does: the server learns the client's address
            // (an ICE check) and certificate fingerprint (its offer).
            assert!(self.net.host_mut(self.server).hubs.allow_dtls_peer(
                now,
                me,
                certs()[a].fingerprint()
            ));
        }
        let client = &mut self.net.host_mut(host).hubs;
        client.trust_dtls_server(server_addr, certs()[0].fingerprint());
        let token = mint_token(SECRET, call, who, EPOCH + 3600).expect("short ids");
        let c = client
            .join_remote(now, server_addr, call, who, token)
            .expect("join");
        (host, c)
    }

    fn settle_until(&mut self, mut cond: impl FnMut(&mut Self) -> bool) {
        let limit = self.net.now() + Duration::from_secs(60);
        while !cond(self) {
            assert!(
                self.net.step(limit),
                "not reached within 60 s of virtual time"
            );
        }
    }
}

fn durable(channel: u16) -> DataChannelSenderOptions {
    DataChannelSenderOptions {
        channel_id: Some(channel),
        bitrate_kbps: 0,
        ..Default::default()
    }
}

/// Two participants exchange Durable messages through a DTLS server: all
/// arrive in order, and no datagram any hub sent carries the plaintext.
fn a_call_over_dtls(seed: u64, link: LinkConfig, workers: usize) {
    let mut w = World::new(seed, link, workers);
    let (ha, alice) = w.join("call", "alice", 1, Some(1));
    let (hb, bob) = w.join("call", "bob", 2, Some(2));
    w.settle_until(|_| alice.is_joined() && bob.is_joined() && alice.participants().len() == 1);
    let to_bob = alice
        .data_channel()
        .create_sender(durable(7))
        .expect("sender");
    const N: u32 = 300;
    for i in 0..N {
        to_bob
            .send(format!("confidential {i:04}").into_bytes())
            .expect("send");
    }
    let dc = bob.data_channel();
    let mut got = Vec::new();
    let mut rx = None;
    w.settle_until(|_| {
        if rx.is_none() {
            rx = dc.try_next_receiver();
        }
        if let Some(r) = &rx {
            while let Some(m) = r.read_message() {
                got.push(m);
            }
        }
        got.len() == N as usize
    });
    for (i, m) in got.iter().enumerate() {
        assert_eq!(m.sequence_number, i as u32 + 1);
        assert_eq!(m.data, format!("confidential {i:04}").as_bytes());
    }
    for h in [w.server, ha, hb] {
        let sent = &w.net.host(h).sent;
        assert!(!sent.is_empty());
        for d in sent {
            assert!(
                (20..=63).contains(&d[0]),
                "every datagram is DTLS (RFC 7983)"
            );
            for needle in [&b"confidential"[..], b"alice", b"call"] {
                assert!(
                    !d.windows(needle.len()).any(|x| x == needle),
                    "plaintext {:?} on the wire",
                    String::from_utf8_lossy(needle)
                );
            }
        }
    }
    let stats = w.net.host(w.server).hubs.stats();
    assert_eq!(stats.dtls_handshakes, 2);
    assert_eq!(stats.dtls_failures, 0);
    assert_eq!(stats.zero_checksum_associations, 2, "no CRC32c under DTLS");

    // Leaving ends the association and, with it, the DTLS session.
    alice.leave();
    w.settle_until(|w| {
        matches!(alice.state(), CallState::Ended(_))
            && w.net.host(w.server).hubs.dtls_session_count() == 1
            && w.net.host(ha).hubs.dtls_session_count() == 0
    });
}

#[test]
fn a_call_runs_over_dtls_with_nothing_in_the_clear() {
    a_call_over_dtls(1, LinkConfig::default(), 1);
}

#[test]
fn a_call_runs_over_dtls_through_loss_reordering_and_duplication() {
    for seed in 2..5 {
        let link = LinkConfig {
            latency: Duration::from_millis(20),
            jitter: Duration::from_millis(5),
            loss: 0.05,
            duplicate: 0.02,
            reorder: 0.02,
            ..LinkConfig::default()
        };
        a_call_over_dtls(seed, link, 1);
    }
}

#[test]
fn a_call_runs_over_dtls_on_a_server_with_three_workers() {
    a_call_over_dtls(5, LinkConfig::default(), 3);
}

#[test]
fn a_client_with_another_certificate_than_announced_cannot_join() {
    let mut w = World::new(6, LinkConfig::default(), 1);
    // The server expects certificate 2 from this address; the client has 1.
    let (_h, mallory) = w.join("call", "mallory", 1, Some(2));
    w.settle_until(|_| matches!(mallory.state(), CallState::Ended(_)));
    let server = &w.net.host(w.server).hubs;
    assert_eq!(server.stats().dtls_failures, 1);
    assert_eq!(server.stats().joins_accepted, 0);
    assert_eq!(server.association_count(), 0);
    assert_eq!(server.dtls_session_count(), 0);
}

#[test]
fn a_server_keeps_no_state_for_an_address_it_was_not_told_to_expect() {
    let mut w = World::new(7, LinkConfig::default(), 1);
    let (_h, stranger) = w.join("call", "stranger", 1, None);
    // The client retransmits its ClientHello until its handshake gives up.
    w.settle_until(|_| matches!(stranger.state(), CallState::Ended(_)));
    let server = &w.net.host(w.server).hubs;
    assert!(server.stats().dtls_dropped >= 2, "{:?}", server.stats());
    assert_eq!(server.dtls_session_count(), 0);
    assert_eq!(server.association_count(), 0);
    assert!(w.net.host(w.server).sent.is_empty(), "nothing answered");
}

#[test]
fn a_client_checks_the_servers_certificate() {
    let mut w = World::new(8, LinkConfig::default(), 1);
    let host = w.client(1);
    let (now, server_addr, me) = (w.net.now(), w.net.addr(w.server), w.net.addr(host));
    w.net
        .host_mut(w.server)
        .hubs
        .allow_dtls_peer(now, me, certs()[1].fingerprint());
    let client = &mut w.net.host_mut(host).hubs;
    // The client was told another certificate for the server.
    client.trust_dtls_server(server_addr, certs()[3].fingerprint());
    let token = mint_token(SECRET, "call", "eve", EPOCH + 3600).expect("short ids");
    let call = client
        .join_remote(now, server_addr, "call", "eve", token.clone())
        .expect("join starts");
    w.settle_until(|_| matches!(call.state(), CallState::Ended(_)));
    assert_eq!(w.net.host(host).hubs.stats().dtls_failures, 1);
    assert_eq!(w.net.host(w.server).hubs.stats().joins_accepted, 0);

    // And a client told nothing about the server does not start at all.
    let other: SocketAddr = "10.9.9.9:5000".parse().expect("an address");
    let err = w
        .net
        .host_mut(host)
        .hubs
        .join_remote(now, other, "call", "eve", token)
        .expect_err("no fingerprint for that server");
    assert!(err.to_string().contains("fingerprint"), "{err}");
}

#[test]
fn a_flood_of_client_hellos_from_unexpected_addresses_holds_no_state() {
    let mut w = World::new(9, LinkConfig::default(), 1);
    // A real ClientHello, as a client sends it.
    let (hc, _c) = w.join("call", "x", 1, None);
    w.net.run_for(Duration::from_millis(1));
    let hello = w.net.host(hc).sent.first().cloned().expect("a ClientHello");
    assert_eq!(hello[0], 22, "a handshake record");
    let now = w.net.now();
    let server = &mut w.net.host_mut(w.server).hubs;
    for port in 0..20_000u16 {
        let from = SocketAddr::from(([192, 0, 2, (port % 200) as u8], 1024 + port));
        server.handle_datagram(now, from, hello.clone());
    }
    assert_eq!(server.dtls_session_count(), 0);
    assert_eq!(server.association_count(), 0);
    assert!(server.poll_transmit().is_none(), "nothing answered");
    assert!(server.stats().dtls_dropped >= 20_000);
}

// ---- Offer/answer, ICE, DTLS: the WebRTC way in --------------------------

impl World {
    /// A client with certificate `cert` that joins `call` as `who` through
    /// offer/answer: its offer goes to the server (as signalling would
    /// carry it), the answer comes back, then ICE checks, DTLS and the
    /// join.
    fn join_signalled(&mut self, call: &str, who: &str, cert: usize) -> (HostId, Call) {
        let host = self.client(cert);
        (host, self.signal(host, call, who))
    }

    /// The server's answer to offer `sdp` from `who` for `call` (with a
    /// valid token), as signalling would carry it.
    fn answer(
        &mut self,
        sdp: &str,
        call: &str,
        who: &str,
    ) -> Result<String, dcengine::SignalError> {
        let (now, server_addr) = (self.net.now(), self.net.addr(self.server));
        let token = mint_token(SECRET, call, who, EPOCH + 3600).expect("short ids");
        let join = dcengine::JoinRequest {
            call_id: call,
            participant_id: who,
            token: &token,
        };
        self.net
            .host_mut(self.server)
            .hubs
            .accept_offer(now, sdp, &[server_addr], &join)
    }

    /// `host` joins `call` as `who` by offer and answer.
    fn signal(&mut self, host: HostId, call: &str, who: &str) -> Call {
        let offer = self.net.host_mut(host).hubs.offer().expect("an offer");
        assert!(offer.sdp().contains("a=setup:actpass"));
        let answer = self.answer(offer.sdp(), call, who).expect("an answer");
        assert!(answer.contains("a=ice-lite") && answer.contains("a=setup:passive"));
        self.join_with_answer(host, &offer, &answer, call, who)
    }

    /// `host` starts its join of `call` as `who` with `answer` to `offer`.
    fn join_with_answer(
        &mut self,
        host: HostId,
        offer: &dcengine::PendingOffer,
        answer: &str,
        call: &str,
        who: &str,
    ) -> Call {
        let now = self.net.now();
        let token = mint_token(SECRET, call, who, EPOCH + 3600).expect("short ids");
        self.net
            .host_mut(host)
            .hubs
            .join_answered(now, offer, answer, call, who, token)
            .expect("join starts")
    }
}

/// Runs the scenario; returns how long the joins took.
fn a_signalled_call(seed: u64, link: LinkConfig, workers: usize) -> Duration {
    let mut w = World::new(seed, link, workers);
    let start = w.net.now();
    let (ha, alice) = w.join_signalled("call", "alice", 1);
    let (_hb, bob) = w.join_signalled("call", "bob", 2);
    w.settle_until(|_| alice.is_joined() && bob.is_joined() && alice.participants().len() == 1);
    let joined_in = w.net.now() - start;
    let to_bob = alice
        .data_channel()
        .create_sender(durable(7))
        .expect("sender");
    for i in 0..200u32 {
        to_bob
            .send(format!("secret {i}").into_bytes())
            .expect("send");
    }
    let dc = bob.data_channel();
    let mut got = 0u32;
    let mut rx = None;
    w.settle_until(|_| {
        if rx.is_none() {
            rx = dc.try_next_receiver();
        }
        if let Some(r) = &rx {
            while let Some(m) = r.read_message() {
                got += 1;
                assert_eq!(m.sequence_number, got);
            }
        }
        got == 200
    });
    // Past the consent timeout the calls hold: the client's consent checks
    // keep its ICE session alive.
    w.net.run_for(Duration::from_secs(45));
    assert!(alice.is_joined() && bob.is_joined());
    for d in &w.net.host(ha).sent {
        assert!(
            d[0] <= 3 || (20..=63).contains(&d[0]),
            "STUN or DTLS only (RFC 7983)"
        );
        assert!(!d.windows(6).any(|x| x == b"secret"));
    }
    let stats = w.net.host(w.server).hubs.stats();
    assert_eq!(stats.dtls_handshakes, 2);
    assert_eq!(stats.joins_accepted, 2);
    assert_eq!(stats.ice_consent_expired, 0, "{stats:?}");
    assert_eq!(stats.ice_checks_refused, 0, "{stats:?}");
    joined_in
}

#[test]
fn a_call_joined_by_offer_and_answer_runs_over_ice_and_dtls() {
    // 10 ms each way: ICE (one round trip), DTLS (two), SCTP (two) and the
    // join (one): six round trips, nothing waits for a retransmission.
    let joined_in = a_signalled_call(20, LinkConfig::default(), 1);
    assert!(joined_in <= Duration::from_millis(140), "{joined_in:?}");
}

#[test]
fn offer_and_answer_through_loss_and_on_three_workers() {
    let link = LinkConfig {
        latency: Duration::from_millis(20),
        jitter: Duration::from_millis(5),
        loss: 0.05,
        duplicate: 0.02,
        reorder: 0.02,
        ..LinkConfig::default()
    };
    a_signalled_call(21, link.clone(), 1);
    a_signalled_call(22, link, 3);
}

#[test]
fn an_offer_with_a_bad_token_or_no_data_channel_is_refused() {
    let mut w = World::new(23, LinkConfig::default(), 1);
    let host = w.client(1);
    let offer = w.net.host_mut(host).hubs.offer().expect("an offer");
    let (now, server_addr) = (w.net.now(), w.net.addr(w.server));
    let server = &mut w.net.host_mut(w.server).hubs;
    let bad = dcengine::JoinRequest {
        call_id: "call",
        participant_id: "mallory",
        token: b"forged",
    };
    let err = server
        .accept_offer(now, offer.sdp(), &[server_addr], &bad)
        .expect_err("a forged token");
    assert!(matches!(err, dcengine::SignalError::Refused(_)), "{err}");
    let token = mint_token(SECRET, "call", "mallory", EPOCH + 3600).expect("short ids");
    let good = dcengine::JoinRequest {
        call_id: "call",
        participant_id: "mallory",
        token: &token,
    };
    let audio_only = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=rtpmap:111 opus/48000/2\r\n";
    let err = server
        .accept_offer(now, audio_only, &[server_addr], &good)
        .expect_err("no data channel");
    assert!(matches!(err, dcengine::SignalError::Sdp(_)), "{err}");
    // Checks from a stranger with made-up credentials create nothing.
    let stun = {
        let mut m = vec![0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42];
        m.extend_from_slice(&[7; 12]);
        m
    };
    for port in 0..1000u16 {
        let from = SocketAddr::from(([192, 0, 2, 9], 2000 + port));
        server.handle_datagram(now, from, Bytes::from(stun.clone()));
    }
    assert_eq!(server.dtls_session_count(), 0);
    assert_eq!(server.association_count(), 0);
}

#[test]
fn two_calls_of_one_client_share_its_ice_and_dtls_path() {
    let mut w = World::new(24, LinkConfig::default(), 1);
    let host = w.client(1);
    let start = w.net.now();
    let mut calls = Vec::new();
    for call in ["one", "two"] {
        calls.push(w.signal(host, call, "alice"));
    }
    w.settle_until(|_| calls.iter().all(Call::is_joined));
    assert!(
        w.net.now() - start <= Duration::from_millis(140),
        "no retransmission waited for"
    );
    let server = &w.net.host(w.server).hubs;
    assert_eq!(
        server.stats().dtls_handshakes,
        1,
        "one DTLS session carries both"
    );
    assert_eq!(server.association_count(), 2);
}

#[test]
fn a_join_during_a_flood_of_checks_and_client_hellos_is_as_fast_as_without() {
    // 5 ms each way: six round trips are 60 ms.
    let link = LinkConfig {
        latency: Duration::from_millis(5),
        ..LinkConfig::default()
    };
    let quiet = {
        let mut w = World::new(30, link.clone(), 1);
        let start = w.net.now();
        let (_h, c) = w.join_signalled("call", "alice", 1);
        w.settle_until(|_| c.is_joined());
        w.net.now() - start
    };
    let mut w = World::new(30, link, 1);
    // A real ClientHello and a STUN Binding request with made-up
    // credentials, as a flood would send them from random ports.
    let (hc, _c) = w.join("call", "x", 2, None);
    w.net.run_for(Duration::from_millis(1));
    let hello = w.net.host(hc).sent.first().cloned().expect("a ClientHello");
    let mut check = vec![0x00, 0x01, 0x00, 0x08, 0x21, 0x12, 0xa4, 0x42];
    check.extend_from_slice(&[9; 12]);
    check.extend_from_slice(&[0x00, 0x06, 0x00, 0x04, b'a', b'b', b'c', b'd']);
    let check = Bytes::from(check);
    let start = w.net.now();
    let (_h, alice) = w.join_signalled("call", "alice", 1);
    // 100,000 datagrams a second (one every 10 µs of virtual time) until
    // the join completes, half ClientHellos, half checks.
    let mut n = 0u32;
    while !alice.is_joined() {
        assert!(
            w.net.now() - start < Duration::from_secs(5),
            "joined during the flood"
        );
        let now = w.net.now();
        for _ in 0..100 {
            n += 1;
            let from =
                SocketAddr::from(([203, 0, 113, (n % 250) as u8], 1024 + (n % 60_000) as u16));
            let d = if n.is_multiple_of(2) {
                hello.clone()
            } else {
                check.clone()
            };
            w.net.host_mut(w.server).handle_datagram(now, from, d);
        }
        // What the flood got back is dropped here (it went to spoofed
        // addresses): only the real peers' traffic moves.
        let limit = now + Duration::from_millis(1);
        while w.net.step(limit) {}
    }
    let flooded = w.net.now() - start;
    let server = &w.net.host(w.server).hubs;
    assert!(n >= 5_000, "{n} datagrams of flood");
    assert_eq!(server.dtls_session_count(), 1, "only alice's");
    assert!(
        flooded <= quiet + Duration::from_millis(2),
        "joined in {flooded:?} during the flood, {quiet:?} without"
    );
    assert!(flooded < Duration::from_millis(100), "{flooded:?}");
}

/// The server's `ParticipantLeft` events so far: (who, why).
fn left(w: &mut World) -> Vec<(String, String)> {
    std::iter::from_fn(|| w.net.host_mut(w.server).hubs.poll_event())
        .filter_map(|e| match e {
            dcengine::HubEvent::ParticipantLeft {
                participant_id,
                reason,
                ..
            } => Some((participant_id.to_string(), reason)),
            _ => None,
        })
        .collect()
}

#[test]
fn the_server_says_why_each_participant_left() {
    let mut w = World::new(31, LinkConfig::default(), 1);
    let (_ha, alice) = w.join_signalled("call", "alice", 1);
    let (hb, bob) = w.join_signalled("call", "bob", 2);
    w.settle_until(|_| alice.is_joined() && bob.is_joined());
    alice.leave();
    w.net.run_for(Duration::from_secs(2));
    assert_eq!(left(&mut w), [("alice".to_owned(), "left".to_owned())]);
    // Bob's path goes silent: his association ends (idle, or ICE consent).
    w.net.set_up(hb, false);
    w.net.run_for(Duration::from_secs(40));
    let gone = left(&mut w);
    assert_eq!(gone.len(), 1, "{gone:?}");
    assert_eq!(gone[0].0, "bob");
    assert!(gone[0].1.starts_with("its association ended: "), "{gone:?}");
}

#[test]
fn a_peer_that_stops_its_consent_checks_is_closed_within_the_consent_timeout() {
    for workers in [1, 3] {
        let mut w = World::new(33, LinkConfig::default(), workers);
        let (_ha, alice) = w.join_signalled("call", "alice", 1);
        let (hb, bob) = w.join_signalled("call", "bob", 2);
        w.settle_until(|_| alice.is_joined() && bob.is_joined());
        // Bob's SCTP and DTLS go on (keep-alives both ways), but his ICE
        // agent no longer checks: RFC 7675 consent ends within 30 s.
        w.net.host_mut(hb).mute_stun = true;
        let muted = w.net.now();
        w.net.run_for(Duration::from_secs(29));
        assert!(
            left(&mut w).is_empty(),
            "{workers} workers: no one left yet"
        );
        w.net.run_for(Duration::from_secs(8));
        let gone = left(&mut w);
        assert_eq!(gone.len(), 1, "{workers} workers: {gone:?}");
        assert_eq!(gone[0].0, "bob");
        assert!(gone[0].1.contains("ICE consent expired"), "{gone:?}");
        let stats = w.net.host(w.server).hubs.stats();
        assert_eq!(stats.ice_consent_expired, 1, "{workers} workers: {stats:?}");
        assert!(w.net.now() - muted < Duration::from_secs(40));
        assert!(alice.is_joined());
    }
}

#[test]
fn checks_signed_with_a_wrong_password_are_refused_and_counted() {
    let mut w = World::new(34, LinkConfig::default(), 1);
    let host = w.client(1);
    let offer = w.net.host_mut(host).hubs.offer().expect("an offer");
    let answer = w.answer(offer.sdp(), "call", "eve").expect("an answer");
    let pwd = answer
        .lines()
        .find(|l| l.starts_with("a=ice-pwd:"))
        .expect("a password")
        .to_owned();
    // The client is given another password than the server's: its checks
    // fail MESSAGE-INTEGRITY.
    let wrong = answer.replace(&pwd, "a=ice-pwd:0123456789abcdefghijklmn");
    let call = w.join_with_answer(host, &offer, &wrong, "call", "eve");
    w.net.run_for(Duration::from_secs(10));
    assert!(!call.is_joined());
    let stats = w.net.host(w.server).hubs.stats();
    assert!(stats.ice_checks_refused >= 3, "{stats:?}");
    assert_eq!(stats.dtls_handshakes, 0, "{stats:?}");
    assert_eq!(w.net.host(w.server).hubs.dtls_session_count(), 0);
}

#[test]
fn an_offer_that_cannot_take_the_calls_largest_message_is_refused() {
    let mut w = World::new(32, LinkConfig::default(), 1);
    let host = w.client(1);
    let offer = w.net.host_mut(host).hubs.offer().expect("an offer");
    let line = offer
        .sdp()
        .lines()
        .find(|l| l.starts_with("a=max-message-size:"))
        .expect("the offer says its limit")
        .to_owned();
    // A peer that takes 1,000-byte messages only: the server's 32 KiB
    // messages could not reach it.
    let small = offer.sdp().replace(&line, "a=max-message-size:1000");
    let err = w.answer(&small, "call", "tiny").expect_err("refused");
    assert!(
        matches!(
            err,
            dcengine::SignalError::MessageSizeTooSmall { offered: 1000, needed } if needed > 32 * 1024
        ),
        "{err}"
    );
    // Its own limit (the node's) is taken.
    assert!(w.answer(offer.sdp(), "call", "tiny").is_ok());
}

/// Alice's NAT rebinds mid-call (her address changes port) while both
/// directions carry Durable messages: her next ICE consent check proves the
/// new address, the server moves her DTLS session and associations there
/// (on whichever worker hosts them, whichever worker the new address's
/// datagrams reach), and every message arrives, in order; she never leaves.
fn address_change(seed: u64, workers: usize, settle: Duration) {
    let mut w = World::new(seed, LinkConfig::default(), workers);
    let (ha, alice) = w.join_signalled("call", "alice", 1);
    let (_hb, bob) = w.join_signalled("call", "bob", 2);
    w.settle_until(|_| alice.is_joined() && bob.is_joined() && alice.participants().len() == 1);
    // Long enough, and the other workers' copies of her ICE session have
    // expired unnominated: a check reaching them is forwarded on its
    // username alone.
    w.net.run_for(settle);
    let old = w.net.addr(ha);
    let server = &w.net.host(w.server).hubs;
    let old_worker = server.worker_for(old);
    // A port whose datagrams reach another worker than the old one's
    // (with several workers), so the move crosses workers.
    let port = (40_000..)
        .find(|&p| workers == 1 || server.worker_for(SocketAddr::new(old.ip(), p)) != old_worker)
        .expect("a port");
    let a_tx = alice
        .data_channel()
        .create_sender(durable(7))
        .expect("sender");
    let b_tx = bob
        .data_channel()
        .create_sender(durable(8))
        .expect("sender");
    let (mut a_rx, mut b_rx) = (None, None);
    let (mut at_bob, mut at_alice) = (0u32, 0u32);
    const N: u32 = 400;
    let mut sent = 0u32;
    let mut moved = false;
    let deadline = w.net.now() + Duration::from_secs(120);
    while at_bob < N || at_alice < N {
        assert!(
            w.net.now() < deadline,
            "{at_bob} at bob, {at_alice} at alice of {N} within 120 s; server {:?}; left {:?}",
            w.net.host(w.server).hubs.stats(),
            left(&mut w),
        );
        // 20 messages each way every 100 ms; the address changes half way.
        if sent < N {
            for _ in 0..20 {
                sent += 1;
                a_tx.send(format!("a{sent}").into_bytes()).expect("send");
                b_tx.send(format!("b{sent}").into_bytes()).expect("send");
            }
        }
        if sent >= N / 2 && !moved {
            moved = true;
            assert_ne!(w.net.rebind(ha, port), old);
        }
        w.net.run_for(Duration::from_millis(100));
        if b_rx.is_none() {
            b_rx = bob.data_channel().try_next_receiver();
        }
        if a_rx.is_none() {
            a_rx = alice.data_channel().try_next_receiver();
        }
        if let Some(r) = &b_rx {
            while let Some(m) = r.read_message() {
                at_bob += 1;
                assert_eq!(m.sequence_number, at_bob);
                assert_eq!(m.data, format!("a{at_bob}").as_bytes());
            }
        }
        if let Some(r) = &a_rx {
            while let Some(m) = r.read_message() {
                at_alice += 1;
                assert_eq!(m.sequence_number, at_alice);
                assert_eq!(m.data, format!("b{at_alice}").as_bytes());
            }
        }
    }
    assert!(alice.is_joined() && bob.is_joined());
    let stats = w.net.host(w.server).hubs.stats();
    assert_eq!(stats.peer_moves, 1, "{stats:?}");
    assert_eq!(stats.dtls_handshakes, 2, "no new handshake: {stats:?}");
    let gone = left(&mut w);
    assert!(gone.is_empty(), "nobody left: {gone:?}");
    // Past the consent timeout the call holds: consent follows the new
    // address (on the worker that hosts the session).
    w.net.run_for(Duration::from_secs(45));
    assert!(alice.is_joined() && bob.is_joined());
}

#[test]
fn a_peer_whose_address_changes_keeps_its_call() {
    address_change(30, 1, Duration::ZERO);
}

#[test]
fn a_peer_whose_address_changes_keeps_its_call_across_workers() {
    address_change(31, 3, Duration::ZERO);
}

#[test]
fn a_peer_whose_address_changes_a_minute_in_keeps_its_call_across_workers() {
    address_change(32, 3, Duration::from_secs(60));
}
