//! ICE tests: RFC 5769 vectors, `IceClient` ↔ `IceLite` in virtual time,
//! what the server refuses, and an independent STUN implementation.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rice_stun_types::attribute::{IceControlled, IceControlling, Priority, UseCandidate};
use stun_types::attribute::{ErrorCode, Username, XorMappedAddress};
use stun_types::message::{
    BINDING, IntegrityAlgorithm, Message, MessageClass, MessageIntegrityCredentials, MessageType,
    MessageWrite, MessageWriteExt, MessageWriteVec, ShortTermCredentials, TransactionId,
};

use super::*;

const SERVER: &str = "192.0.2.10:3478";
const CLIENT: &str = "198.51.100.7:50000";
const S_UFRAG: &str = "srvU";
const S_PWD: &str = "server-password-0123456789";
const C_UFRAG: &str = "cliU";
const C_PWD: &str = "client-password-0123456789";

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

// ---- RFC 5769 -----------------------------------------------------------

/// RFC 5769 §2.1: a request with short-term credentials (username
/// "evtj:h6vY", password "VOkJxbRl1RmTxUk/WvJxBt").
const RFC5769_REQUEST: [u8; 108] = [
    0x00, 0x01, 0x00, 0x58, 0x21, 0x12, 0xa4, 0x42, 0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86,
    0xfa, 0x87, 0xdf, 0xae, 0x80, 0x22, 0x00, 0x10, 0x53, 0x54, 0x55, 0x4e, 0x20, 0x74, 0x65, 0x73,
    0x74, 0x20, 0x63, 0x6c, 0x69, 0x65, 0x6e, 0x74, 0x00, 0x24, 0x00, 0x04, 0x6e, 0x00, 0x01, 0xff,
    0x80, 0x29, 0x00, 0x08, 0x93, 0x2f, 0xf9, 0xb1, 0x51, 0x26, 0x3b, 0x36, 0x00, 0x06, 0x00, 0x09,
    0x65, 0x76, 0x74, 0x6a, 0x3a, 0x68, 0x36, 0x76, 0x59, 0x20, 0x20, 0x20, 0x00, 0x08, 0x00, 0x14,
    0x9a, 0xea, 0xa7, 0x0c, 0xbf, 0xd8, 0xcb, 0x56, 0x78, 0x1e, 0xf2, 0xb5, 0xb2, 0xd3, 0xf2, 0x49,
    0xc1, 0xb5, 0x71, 0xa2, 0x80, 0x28, 0x00, 0x04, 0xe5, 0x7a, 0x3b, 0xcf,
];
const RFC5769_PASSWORD: &str = "VOkJxbRl1RmTxUk/WvJxBt";

/// RFC 5769 §2.2: the IPv4 response (mapped 192.0.2.1:32853).
const RFC5769_RESPONSE_V4: [u8; 80] = [
    0x01, 0x01, 0x00, 0x3c, 0x21, 0x12, 0xa4, 0x42, 0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86,
    0xfa, 0x87, 0xdf, 0xae, 0x80, 0x22, 0x00, 0x0b, 0x74, 0x65, 0x73, 0x74, 0x20, 0x76, 0x65, 0x63,
    0x74, 0x6f, 0x72, 0x20, 0x00, 0x20, 0x00, 0x08, 0x00, 0x01, 0xa1, 0x47, 0xe1, 0x12, 0xa6, 0x43,
    0x00, 0x08, 0x00, 0x14, 0x2b, 0x91, 0xf5, 0x99, 0xfd, 0x9e, 0x90, 0xc3, 0x8c, 0x74, 0x89, 0xf9,
    0x2a, 0xf9, 0xba, 0x53, 0xf0, 0x6b, 0xe7, 0xd7, 0x80, 0x28, 0x00, 0x04, 0xc0, 0x7d, 0x4c, 0x96,
];

/// RFC 5769 §2.3: the IPv6 response (mapped
/// [2001:db8:1234:5678:11:2233:4455:6677]:32853).
const RFC5769_RESPONSE_V6: [u8; 92] = [
    0x01, 0x01, 0x00, 0x48, 0x21, 0x12, 0xa4, 0x42, 0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86,
    0xfa, 0x87, 0xdf, 0xae, 0x80, 0x22, 0x00, 0x0b, 0x74, 0x65, 0x73, 0x74, 0x20, 0x76, 0x65, 0x63,
    0x74, 0x6f, 0x72, 0x20, 0x00, 0x20, 0x00, 0x14, 0x00, 0x02, 0xa1, 0x47, 0x01, 0x13, 0xa9, 0xfa,
    0xa5, 0xd3, 0xf1, 0x79, 0xbc, 0x25, 0xf4, 0xb5, 0xbe, 0xd2, 0xb9, 0xd9, 0x00, 0x08, 0x00, 0x14,
    0xa3, 0x82, 0x95, 0x4e, 0x4b, 0xe6, 0x7b, 0xf1, 0x17, 0x84, 0xc9, 0x7c, 0x82, 0x92, 0xc2, 0x75,
    0xbf, 0xe3, 0xed, 0x41, 0x80, 0x28, 0x00, 0x04, 0xc8, 0xfb, 0x0b, 0x4c,
];

fn short_term(password: &str) -> MessageIntegrityCredentials {
    ShortTermCredentials::new(password.to_owned()).into()
}

/// FINGERPRINT by hand (RFC 8489 §14.7): CRC-32 of everything before the
/// attribute, XOR 0x5354554e; independent of the codec.
fn fingerprint_by_hand(message: &[u8]) -> u32 {
    const CRC32: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);
    CRC32.checksum(&message[..message.len() - 8]) ^ 0x5354_554e
}

fn last_u32(message: &[u8]) -> u32 {
    u32::from_be_bytes(message[message.len() - 4..].try_into().unwrap())
}

#[test]
fn rfc5769_request_integrity_and_fingerprint() {
    let msg = parse(&RFC5769_REQUEST).expect("the vector parses, its FINGERPRINT holds");
    assert!(msg.has_class(MessageClass::Request) && msg.has_method(BINDING));
    assert!(has_fingerprint(&msg) && has_integrity(&msg));
    assert_eq!(fingerprint_by_hand(&RFC5769_REQUEST), 0xe57a_3bcf);
    assert_eq!(last_u32(&RFC5769_REQUEST), 0xe57a_3bcf);
    assert_eq!(
        msg.validate_integrity(&short_term(RFC5769_PASSWORD)).unwrap(),
        IntegrityAlgorithm::Sha1
    );
    assert!(msg.validate_integrity(&short_term("VOkJxbRl1RmTxUk/WvJxBu")).is_err());
    assert_eq!(msg.attribute::<Username>().unwrap().username(), "evtj:h6vY");
    assert_eq!(msg.attribute::<Priority>().unwrap().priority(), 0x6e00_01ff);
    assert_eq!(
        msg.attribute::<IceControlled>().unwrap().tie_breaker(),
        0x932f_f9b1_5126_3b36
    );

    // Every single-bit flip is refused: by FINGERPRINT, or (where the codec
    // cannot tell) as not STUN at all.
    for i in 0..RFC5769_REQUEST.len() {
        let mut bad = RFC5769_REQUEST;
        bad[i] ^= 0x01;
        let accepted = parse(&bad).is_some_and(|m| {
            has_fingerprint(&m) && m.validate_integrity(&short_term(RFC5769_PASSWORD)).is_ok()
        });
        assert!(!accepted, "a flip at byte {i} went through");
    }
}

#[test]
fn rfc5769_responses_integrity_fingerprint_and_address() {
    for (bytes, mapped, fp) in [
        (&RFC5769_RESPONSE_V4[..], "192.0.2.1:32853", 0xc07d_4c96),
        (
            &RFC5769_RESPONSE_V6[..],
            "[2001:db8:1234:5678:11:2233:4455:6677]:32853",
            0xc8fb_0b4c,
        ),
    ] {
        let msg = parse(bytes).unwrap();
        assert!(msg.has_class(MessageClass::Success));
        assert_eq!(fingerprint_by_hand(bytes), fp);
        assert!(msg.validate_integrity(&short_term(RFC5769_PASSWORD)).is_ok());
        let xor = msg.attribute::<XorMappedAddress>().unwrap();
        assert_eq!(xor.addr(msg.transaction_id()), addr(mapped));
    }
}

#[test]
fn rfc5769_request_into_ice_lite_is_a_role_conflict() {
    // The vector carries ICE-CONTROLLED: authenticated, so a 487 with
    // MESSAGE-INTEGRITY, and no state.
    let now = Instant::now();
    let mut lite = IceLite::new(IceLiteConfig::default());
    let s = lite.add_session("evtj", RFC5769_PASSWORD, "h6vY", now).unwrap();
    assert_eq!(lite.handle_stun(now, addr(CLIENT), &RFC5769_REQUEST), None);
    assert_eq!(lite.stats().role_conflict, 1);
    let t = lite.poll_transmit().unwrap();
    assert_eq!(t.destination, addr(CLIENT));
    let resp = parse(&t.payload).unwrap();
    assert!(resp.has_class(MessageClass::Error));
    assert_eq!(resp.transaction_id(), 0xb7e7_a701_bc34_d686_fa87_dfae.into());
    assert_eq!(resp.attribute::<ErrorCode>().unwrap().code(), 487);
    assert!(resp.validate_integrity(&short_term(RFC5769_PASSWORD)).is_ok());
    assert_eq!(fingerprint_by_hand(&t.payload), last_u32(&t.payload));
    assert!(lite.addresses(s).is_empty() && lite.poll_event().is_none());
}

// ---- Requests built by hand -------------------------------------------------

#[derive(Clone, Copy)]
struct Req<'a> {
    username: Option<&'a str>,
    password: Option<&'a str>,
    priority: bool,
    controlling: bool,
    controlled: bool,
    use_candidate: bool,
    fingerprint: bool,
    class: MessageClass,
    extra: Option<u16>,
}

impl Default for Req<'_> {
    fn default() -> Self {
        Req {
            username: Some("srvU:cliU"),
            password: Some(S_PWD),
            priority: true,
            controlling: true,
            controlled: false,
            use_candidate: true,
            fingerprint: true,
            class: MessageClass::Request,
            extra: None,
        }
    }
}

fn build(r: Req<'_>, id: u128) -> Vec<u8> {
    let mtype = MessageType::from_class_method(r.class, BINDING);
    let mut m = Message::builder(mtype, TransactionId::from(id), MessageWriteVec::new());
    if let Some(u) = r.username {
        m.add_attribute(&Username::new(u).unwrap()).unwrap();
    }
    if r.priority {
        m.add_attribute(&Priority::new(PRFLX_PRIORITY)).unwrap();
    }
    if r.controlling {
        m.add_attribute(&IceControlling::new(7)).unwrap();
    }
    if r.controlled {
        m.add_attribute(&IceControlled::new(7)).unwrap();
    }
    if r.use_candidate {
        m.add_attribute(&UseCandidate::new()).unwrap();
    }
    if let Some(t) = r.extra {
        let raw = stun_types::attribute::RawAttribute::new(t.into(), &[1, 2, 3, 4]);
        m.add_attribute(&raw).unwrap();
    }
    if let Some(p) = r.password {
        m.add_message_integrity(&short_term(p), IntegrityAlgorithm::Sha1)
            .unwrap();
    }
    if r.fingerprint {
        m.add_fingerprint().unwrap();
    }
    m.finish()
}

fn lite_with_session(now: Instant) -> (IceLite, SessionId) {
    let mut lite = IceLite::new(IceLiteConfig::default());
    let s = lite.add_session(S_UFRAG, S_PWD, C_UFRAG, now).unwrap();
    (lite, s)
}

/// The one response `lite` queued: its error code (None for a success) and
/// whether it carries valid integrity under the server's password.
fn response(lite: &mut IceLite) -> (Option<u16>, bool) {
    let t = lite.poll_transmit().expect("a response");
    assert!(lite.poll_transmit().is_none());
    let msg = parse(&t.payload).unwrap();
    assert_eq!(fingerprint_by_hand(&t.payload), last_u32(&t.payload));
    let code = msg.attribute::<ErrorCode>().ok().map(|e| e.code());
    let signed = has_integrity(&msg) && msg.validate_integrity(&short_term(S_PWD)).is_ok();
    (code, signed)
}

#[test]
fn every_refusal_is_counted_and_creates_no_state() {
    let now = Instant::now();
    let from = addr(CLIENT);
    // (request, expected answer: None = dropped, Some((code, signed)))
    type Case<'a> = (&'a str, Req<'a>, Option<(u16, bool)>);
    let cases: Vec<Case<'_>> = vec![
        ("no USERNAME", Req { username: None, ..Req::default() }, Some((400, false))),
        ("no MESSAGE-INTEGRITY", Req { password: None, ..Req::default() }, Some((400, false))),
        ("unknown ufrag", Req { username: Some("nope:cliU"), ..Req::default() }, Some((401, false))),
        ("wrong remote ufrag", Req { username: Some("srvU:other"), ..Req::default() }, Some((401, false))),
        ("no colon", Req { username: Some("srvU"), ..Req::default() }, Some((401, false))),
        ("wrong password", Req { password: Some("guess"), ..Req::default() }, Some((401, false))),
        ("no PRIORITY", Req { priority: false, ..Req::default() }, Some((400, true))),
        ("no role", Req { controlling: false, ..Req::default() }, Some((400, true))),
        ("both roles", Req { controlled: true, ..Req::default() }, Some((400, true))),
        (
            "ICE-CONTROLLED",
            Req { controlling: false, controlled: true, ..Req::default() },
            Some((487, true)),
        ),
        ("unknown attribute", Req { extra: Some(0x0077), ..Req::default() }, Some((420, true))),
        ("no FINGERPRINT", Req { fingerprint: false, ..Req::default() }, None),
        ("indication", Req { class: MessageClass::Indication, ..Req::default() }, None),
        ("success response", Req { class: MessageClass::Success, ..Req::default() }, None),
    ];
    for (i, (what, req, want)) in cases.into_iter().enumerate() {
        let (mut lite, s) = lite_with_session(now);
        let bytes = build(req, 1000 + i as u128);
        assert_eq!(lite.handle_stun(now, from, &bytes), None, "{what}");
        match want {
            Some((code, signed)) => assert_eq!(response(&mut lite), (Some(code), signed), "{what}"),
            None => assert!(lite.poll_transmit().is_none(), "{what}"),
        }
        assert!(lite.addresses(s).is_empty(), "{what}: an address was learnt");
        assert!(lite.poll_event().is_none(), "{what}: an event");
        assert_eq!(lite.session_count(), 1);
        let st = *lite.stats();
        let counted = st.bad_request
            + st.unknown_ufrag
            + st.bad_integrity
            + st.role_conflict
            + st.unknown_attribute
            + st.no_fingerprint
            + st.not_request;
        assert_eq!((counted, st.checks_answered), (1, 0), "{what}: {st:?}");
    }

    // An unknown comprehension-optional attribute is fine.
    let (mut lite, s) = lite_with_session(now);
    let bytes = build(Req { extra: Some(0x8077), ..Req::default() }, 1);
    assert_eq!(lite.handle_stun(now, from, &bytes), Some(s));
    assert_eq!(response(&mut lite), (None, true));
}

#[test]
fn garbage_is_dropped_and_counted() {
    let now = Instant::now();
    let (mut lite, s) = lite_with_session(now);
    let good = build(Req::default(), 1);
    let inputs: Vec<Vec<u8>> = vec![
        vec![],
        vec![0; 19],
        vec![0xff; 40],
        good[..good.len() - 1].to_vec(),
        [&good[..], &[0, 0, 0, 0]].concat(), // trailing bytes
        {
            let mut b = good.clone();
            b[30] ^= 0x40; // FINGERPRINT no longer holds
            b
        },
        {
            let mut b = good.clone();
            b[1] = 0x02; // another method (with a now-wrong FINGERPRINT)
            b
        },
    ];
    for bytes in &inputs {
        assert_eq!(lite.handle_stun(now, addr(CLIENT), bytes), None);
    }
    assert_eq!(lite.stats().malformed, inputs.len() as u64);
    assert!(lite.poll_transmit().is_none() && lite.poll_event().is_none());
    assert!(lite.addresses(s).is_empty());
}

#[test]
fn sessions_and_addresses_are_bounded() {
    let now = Instant::now();
    let mut lite = IceLite::new(IceLiteConfig {
        max_sessions: 2,
        max_addresses_per_session: 3,
        ..IceLiteConfig::default()
    });
    let a = lite.add_session("a", "pa-pa-pa-pa-pa", "x", now).unwrap();
    assert_eq!(
        lite.add_session("a", "pb-pb-pb-pb-pb", "x", now),
        Err(AddSessionError::DuplicateUfrag)
    );
    for (u, p, r) in [("", "p", "r"), ("u:v", "p", "r"), ("u", "", "r"), ("u", "p", "r:")] {
        assert_eq!(lite.add_session(u, p, r, now), Err(AddSessionError::InvalidCredentials));
    }
    lite.add_session("b", "pb-pb-pb-pb-pb", "x", now).unwrap();
    assert_eq!(lite.add_session("c", "pc", "x", now), Err(AddSessionError::Full(2)));

    // Six addresses check session `a`: three are remembered, and the
    // selected one (the first, nominated) is never the one forgotten.
    // Each check its own transaction (a repeated one changes nothing).
    let req = |use_candidate, tx: u128| {
        build(
            Req {
                username: Some("a:x"),
                password: Some("pa-pa-pa-pa-pa"),
                use_candidate,
                ..Req::default()
            },
            tx,
        )
    };
    let first = addr("203.0.113.1:1000");
    assert_eq!(lite.handle_stun(now, first, &req(true, 9)), Some(a));
    for port in 1001..1006 {
        let t = now + Duration::from_millis(u64::from(port));
        let from = SocketAddr::from(([203, 0, 113, 1], port));
        assert_eq!(lite.handle_stun(t, from, &req(false, u128::from(port))), Some(a));
    }
    let addrs = lite.addresses(a);
    assert_eq!(addrs.len(), 3);
    assert!(addrs.contains(&first));
    assert_eq!(lite.selected(a), Some(first));
    assert_eq!(lite.stats().addresses_evicted, 3);

    // With room for one address, a new one replaces even the selected one
    // in the list (the selection itself stays until a nomination moves it).
    let mut one = IceLite::new(IceLiteConfig {
        max_addresses_per_session: 1,
        ..IceLiteConfig::default()
    });
    let x = one.add_session("a", "pa-pa-pa-pa-pa", "x", now).unwrap();
    let second = addr("203.0.113.2:2000");
    assert_eq!(one.handle_stun(now, first, &req(true, 20)), Some(x));
    assert_eq!(one.handle_stun(now, second, &req(false, 21)), Some(x));
    assert_eq!(one.addresses(x), vec![second]);
    assert_eq!(one.selected(x), Some(first));

    assert!(lite.remove_session(a));
    assert!(!lite.remove_session(a));
    assert_eq!(lite.session_count(), 1);
    let c = lite.add_session("c", "pc", "x", now).unwrap();
    assert!(c.get() > a.get(), "ids are never reused");
}

#[test]
fn a_replayed_check_changes_nothing() {
    // Someone who saw a client's nominating check sends a copy from another
    // address: it is answered (as a retransmission would be) but the
    // session's address does not move, so neither do its DTLS session and
    // associations. A fresh check from there (a real move) does.
    let now = Instant::now();
    let mut lite = IceLite::new(IceLiteConfig::default());
    let a = lite.add_session("a", "pa-pa-pa-pa-pa", "x", now).unwrap();
    let check = |tx: u128| {
        build(
            Req {
                username: Some("a:x"),
                password: Some("pa-pa-pa-pa-pa"),
                use_candidate: true,
                ..Req::default()
            },
            tx,
        )
    };
    let client = addr("198.51.100.1:5000");
    let replayer = addr("203.0.113.66:4444");
    let seen = check(1);
    assert_eq!(lite.handle_stun(now, client, &seen), Some(a));
    while lite.poll_event().is_some() {}
    assert_eq!(lite.handle_stun(now, replayer, &seen), Some(a));
    assert_eq!(lite.selected(a), Some(client));
    assert!(lite.poll_event().is_none(), "no AddressChanged for a replay");
    assert_eq!(lite.stats().checks_repeated, 1);
    // A fresh transaction from the new address moves it.
    assert_eq!(lite.handle_stun(now, replayer, &check(2)), Some(a));
    assert_eq!(lite.selected(a), Some(replayer));
    assert!(matches!(
        lite.poll_event(),
        Some(IceEvent::AddressChanged { old, from, .. }) if old == client && from == replayer
    ));
}

// ---- IceClient ↔ IceLite in virtual time -----------------------------------

struct Pair {
    now: Instant,
    lite: IceLite,
    session: SessionId,
    client: IceClient,
    /// Where the client's datagrams appear to come from (its NAT mapping).
    client_addr: SocketAddr,
    lite_events: Vec<(Instant, IceEvent)>,
    client_events: Vec<(Instant, IceClientEvent)>,
    /// Drops a datagram when it returns true: (to the server?, index).
    loss: Box<dyn FnMut(bool, u64) -> bool>,
    sent: u64,
}

impl Pair {
    fn new(client_pwd_for_server: &str, seed: u64) -> Self {
        let now = Instant::now();
        let mut lite = IceLite::new(IceLiteConfig::default());
        let session = lite.add_session(S_UFRAG, S_PWD, C_UFRAG, now).unwrap();
        let mut config = IceClientConfig::new(C_UFRAG, C_PWD, S_UFRAG, client_pwd_for_server, addr(SERVER));
        config.seed = seed;
        Pair {
            now,
            lite,
            session,
            client: IceClient::new(config, now),
            client_addr: addr(CLIENT),
            lite_events: Vec::new(),
            client_events: Vec::new(),
            loss: Box::new(|_, _| false),
            sent: 0,
        }
    }

    /// Delivers everything queued (no latency), then collects events.
    fn exchange(&mut self) {
        loop {
            let mut moved = false;
            while let Some(t) = self.client.poll_transmit() {
                moved = true;
                assert_eq!(t.destination, addr(SERVER));
                self.sent += 1;
                if !(self.loss)(true, self.sent) {
                    self.lite.handle_stun(self.now, self.client_addr, &t.payload);
                }
            }
            while let Some(t) = self.lite.poll_transmit() {
                moved = true;
                self.sent += 1;
                // Only what goes to the client's current address reaches it.
                if t.destination == self.client_addr && !(self.loss)(false, self.sent) {
                    self.client.handle_stun(self.now, addr(SERVER), &t.payload);
                }
            }
            if !moved {
                break;
            }
        }
        while let Some(e) = self.lite.poll_event() {
            self.lite_events.push((self.now, e));
        }
        while let Some(e) = self.client.poll_event() {
            self.client_events.push((self.now, e));
        }
    }

    /// Runs until `until`, jumping to each next timeout.
    fn run_until(&mut self, until: Instant) {
        self.exchange();
        loop {
            let next = [self.lite.poll_timeout(), self.client.poll_timeout()]
                .into_iter()
                .flatten()
                .min();
            match next {
                Some(at) if at <= until => {
                    self.now = self.now.max(at);
                    self.lite.handle_timeout(self.now);
                    self.client.handle_timeout(self.now);
                    self.exchange();
                }
                _ => break,
            }
        }
        self.now = self.now.max(until);
        self.lite.handle_timeout(self.now);
        self.client.handle_timeout(self.now);
        self.exchange();
    }

    fn secs(&self, s: f64) -> Instant {
        self.now + Duration::from_secs_f64(s)
    }
}

#[test]
fn connects_and_keeps_consent() {
    let mut p = Pair::new(S_PWD, 1);
    let start = p.now;
    p.exchange();
    assert_eq!(
        p.client_events,
        vec![(
            start,
            IceClientEvent::Connected { remote: addr(SERVER), mapped: Some(addr(CLIENT)) }
        )]
    );
    assert_eq!(
        p.lite_events,
        vec![(start, IceEvent::Checked { session: p.session, from: addr(CLIENT), nominated: true })]
    );
    assert_eq!(p.lite.selected(p.session), Some(addr(CLIENT)));

    // Two minutes: consent checks every 4..6 s keep both sides up.
    p.run_until(p.secs(120.0));
    assert!(p.client.is_connected());
    assert!(p.lite.contains(p.session));
    assert_eq!(p.client_events.len(), 1);
    assert_eq!(p.lite_events.len(), 1);
    let checks = p.client.stats().requests;
    assert!((21..=31).contains(&checks), "{checks} checks in 120 s");
    assert_eq!(p.client.stats().retransmissions, 0);
    assert_eq!(p.lite.stats().checks_answered, checks);
}

#[test]
fn connects_through_loss() {
    // The first three requests are lost: RTO 500 ms, 1 s, 2 s.
    let mut p = Pair::new(S_PWD, 2);
    p.loss = Box::new(|to_server, n| to_server && n <= 3);
    let start = p.now;
    p.run_until(p.secs(10.0));
    let (at, event) = p.client_events[0];
    assert!(matches!(event, IceClientEvent::Connected { .. }));
    assert_eq!(at - start, Duration::from_millis(500 + 1000 + 2000));
    assert_eq!(p.client.stats().retransmissions, 3);

    // 30 % loss both ways for ten minutes: consent never expires.
    let mut p = Pair::new(S_PWD, 3);
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    p.loss = Box::new(move |_, _| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % 10 < 3
    });
    p.run_until(p.secs(600.0));
    assert!(p.client.is_connected(), "{:?}", p.client_events);
    assert!(p.lite.contains(p.session));
    assert!(p.client.stats().retransmissions > 0);
}

#[test]
fn wrong_password_is_rejected_without_state() {
    let mut p = Pair::new("not-the-server-password", 4);
    p.run_until(p.secs(29.0));
    assert!(p.client_events.is_empty());
    assert!(p.lite_events.is_empty());
    assert!(p.lite.addresses(p.session).is_empty());
    assert!(p.lite.stats().bad_integrity > 0);
    assert_eq!(p.lite.stats().checks_answered, 0);
    // The 401s carry no integrity: the client drops them and goes on.
    assert!(p.client.stats().dropped > 0);
    p.run_until(p.secs(2.0));
    assert_eq!(p.client_events.last().map(|e| e.1), Some(IceClientEvent::Failed));
    // Never nominated: the server's session expires too.
    assert_eq!(
        p.lite_events,
        vec![(p.lite_events[0].0, IceEvent::ConsentExpired { session: p.session, selected: None })]
    );
    assert_eq!(p.client.poll_timeout(), None);
}

#[test]
fn unknown_ufrag_is_rejected_without_state() {
    let now = Instant::now();
    let mut lite = IceLite::new(IceLiteConfig::default());
    let mut client = IceClient::new(IceClientConfig::new("c", "cp", "nobody", S_PWD, addr(SERVER)), now);
    let t = client.poll_transmit().unwrap();
    assert_eq!(lite.handle_stun(now, addr(CLIENT), &t.payload), None);
    assert_eq!(lite.stats().unknown_ufrag, 1);
    assert_eq!(lite.session_count(), 0);
    assert_eq!(lite.poll_timeout(), None);
    let (code, signed) = response(&mut lite);
    assert_eq!((code, signed), (Some(401), false));
}

#[test]
fn follows_the_clients_new_address() {
    let mut p = Pair::new(S_PWD, 5);
    p.exchange();
    p.run_until(p.secs(12.0));
    // The client's NAT rebinds: its next check comes from a new port.
    let moved = addr("198.51.100.7:50001");
    p.client_addr = moved;
    p.run_until(p.secs(8.0));
    assert!(
        p.lite_events
            .iter()
            .any(|&(_, e)| matches!(e, IceEvent::AddressChanged { session, from, .. } if session == p.session && from == moved)),
        "{:?}",
        p.lite_events
    );
    assert_eq!(p.lite.selected(p.session), Some(moved));
    assert_eq!(p.lite.addresses(p.session), vec![addr(CLIENT), moved]);
    // Responses now go to the new address, so consent holds.
    p.run_until(p.secs(60.0));
    assert!(p.client.is_connected());
    assert!(p.lite.contains(p.session));
}

#[test]
fn consent_expires_on_both_sides() {
    let mut p = Pair::new(S_PWD, 6);
    p.run_until(p.secs(20.0));
    // Cut the path both ways.
    p.loss = Box::new(|_, _| true);
    let cut = p.now;
    p.run_until(p.secs(60.0));
    let client_expiry = p
        .client_events
        .iter()
        .find(|(_, e)| *e == IceClientEvent::ConsentExpired)
        .expect("the client's consent expired")
        .0;
    let lite_expiry = p
        .lite_events
        .iter()
        .find(|(_, e)| matches!(e, IceEvent::ConsentExpired { session, .. } if *session == p.session))
        .expect("the server's consent expired")
        .0;
    // 30 s after the last answered check, which was at most 6 s before the
    // cut.
    for at in [client_expiry, lite_expiry] {
        let after_cut = at - cut;
        assert!(
            (Duration::from_secs(24)..=Duration::from_secs(30)).contains(&after_cut),
            "{after_cut:?}"
        );
    }
    assert!(!p.lite.contains(p.session));
    assert!(!p.client.is_connected());
    assert_eq!(p.lite.stats().consent_expired, 1);
    // Nothing more is sent or scheduled.
    assert_eq!(p.client.poll_timeout(), None);
    assert_eq!(p.lite.poll_timeout(), None);
}

#[test]
fn ipv6_client_gets_its_mapped_address() {
    let now = Instant::now();
    let (mut lite, s) = lite_with_session(now);
    let from = addr("[2001:db8:1234:5678:11:2233:4455:6677]:32853");
    assert_eq!(lite.handle_stun(now, from, &build(Req::default(), 77)), Some(s));
    let t = lite.poll_transmit().unwrap();
    assert_eq!(t.destination, from);
    let msg = parse(&t.payload).unwrap();
    assert!(msg.validate_integrity(&short_term(S_PWD)).is_ok());
    let xor = msg.attribute::<XorMappedAddress>().unwrap();
    assert_eq!(xor.addr(msg.transaction_id()), from);
    assert_eq!(lite.selected(s), Some(from));
}

#[test]
fn removed_session_expires_silently() {
    let now = Instant::now();
    let (mut lite, s) = lite_with_session(now);
    assert!(lite.remove_session(s));
    lite.handle_timeout(now + Duration::from_secs(31));
    assert!(lite.poll_event().is_none());
    assert_eq!(lite.poll_timeout(), None);
}

#[test]
fn client_drops_forged_and_stray_responses() {
    let now = Instant::now();
    let mut client = IceClient::new(
        IceClientConfig::new(C_UFRAG, C_PWD, S_UFRAG, S_PWD, addr(SERVER)),
        now,
    );
    let req = client.poll_transmit().unwrap().payload;
    let id = parse(&req).unwrap().transaction_id();
    let resp = |pwd: &str, id: TransactionId| {
        let mtype = MessageType::from_class_method(MessageClass::Success, BINDING);
        let mut m = Message::builder(mtype, id, MessageWriteVec::new());
        m.add_attribute(&XorMappedAddress::new(addr(CLIENT), id)).unwrap();
        m.add_message_integrity(&short_term(pwd), IntegrityAlgorithm::Sha1)
            .unwrap();
        m.add_fingerprint().unwrap();
        m.finish()
    };
    // Wrong password, unknown transaction, another source: dropped.
    assert!(!client.handle_stun(now, addr(SERVER), &resp("wrong", id)));
    assert!(!client.handle_stun(now, addr(SERVER), &resp(S_PWD, TransactionId::from(5))));
    assert!(!client.handle_stun(now, addr(CLIENT), &resp(S_PWD, id)));
    assert!(!client.handle_stun(now, addr(SERVER), &req));
    assert_eq!(client.stats().dropped, 4);
    assert!(client.poll_event().is_none());
    assert!(client.handle_stun(now, addr(SERVER), &resp(S_PWD, id)));
    assert!(client.is_connected());
}

#[test]
fn client_paces_and_retransmits_per_rfc() {
    let start = Instant::now();
    let config = IceClientConfig::new(C_UFRAG, C_PWD, S_UFRAG, S_PWD, addr(SERVER));
    let mut client = IceClient::new(config, start);
    let first = client.poll_transmit().unwrap().payload;
    let msg = parse(&first).unwrap();
    assert_eq!(msg.attribute::<Username>().unwrap().username(), "srvU:cliU");
    assert_eq!(msg.attribute::<Priority>().unwrap().priority(), PRFLX_PRIORITY);
    assert_eq!(
        msg.attribute::<IceControlling>().unwrap().tie_breaker(),
        client.tie_breaker()
    );
    assert!(msg.has_attribute(UseCandidate::TYPE));
    assert!(msg.validate_integrity(&short_term(S_PWD)).is_ok());
    // Retransmissions of the same bytes at 0.5, 1.5, 3.5, 7.5, 15.5, 31.5 s
    // — but the connect deadline (30 s) comes first.
    let mut at = Vec::new();
    while let Some(t) = client.poll_timeout() {
        client.handle_timeout(t);
        while let Some(x) = client.poll_transmit() {
            assert_eq!(x.payload, first);
            at.push((t - start).as_millis());
        }
    }
    assert_eq!(at, vec![500, 1500, 3500, 7500, 15500]);
    assert_eq!(client.poll_event(), Some(IceClientEvent::Failed));
    // The same seed gives the same tie-breaker and transaction ids.
    let again = IceClient::new(
        IceClientConfig::new(C_UFRAG, C_PWD, S_UFRAG, S_PWD, addr(SERVER)),
        start,
    )
    .poll_transmit()
    .unwrap()
    .payload;
    assert_eq!(again, first);
}

// ---- An independent STUN implementation: stun_codec ----------------------------

mod independent {
    use bytecodec::{DecodeExt, EncodeExt};
    use stun_codec::rfc5245::attributes as ice;
    use stun_codec::rfc5389::attributes as base;
    use stun_codec::{MessageDecoder, MessageEncoder};

    use super::*;

    stun_codec::define_attribute_enums!(
        Attr,
        AttrDecoder,
        AttrEncoder,
        [
            Username,
            MessageIntegrity,
            Fingerprint,
            XorMappedAddress,
            ErrorCode,
            Priority,
            UseCandidate,
            IceControlling,
            IceControlled
        ]
    );
    use base::{ErrorCode, Fingerprint, MessageIntegrity, Username, XorMappedAddress};
    use ice::{IceControlled, IceControlling, Priority, UseCandidate};

    #[test]
    fn stun_codec_request_is_accepted_and_our_response_verifies() {
        let now = Instant::now();
        let (mut lite, s) = lite_with_session(now);
        let tid = stun_codec::TransactionId::new([7; 12]);
        let mut m = stun_codec::Message::<Attr>::new(
            stun_codec::MessageClass::Request,
            stun_codec::rfc5389::methods::BINDING,
            tid,
        );
        m.add_attribute(Username::new("srvU:cliU".to_owned()).unwrap());
        m.add_attribute(Priority::new(PRFLX_PRIORITY));
        m.add_attribute(IceControlling::new(42));
        m.add_attribute(UseCandidate::new());
        let mi = MessageIntegrity::new_short_term_credential(&m, S_PWD).unwrap();
        m.add_attribute(mi);
        let fp = Fingerprint::new(&m).unwrap();
        m.add_attribute(fp);
        let bytes = MessageEncoder::new().encode_into_bytes(m).unwrap();

        assert_eq!(lite.handle_stun(now, addr(CLIENT), &bytes), Some(s));
        assert_eq!(lite.selected(s), Some(addr(CLIENT)));
        let t = lite.poll_transmit().unwrap();

        // stun_codec checks the FINGERPRINT while decoding.
        let resp = MessageDecoder::<Attr>::new()
            .decode_from_bytes(&t.payload)
            .unwrap()
            .unwrap();
        assert_eq!(resp.class(), stun_codec::MessageClass::SuccessResponse);
        assert_eq!(resp.transaction_id(), tid);
        let mapped = resp.get_attribute::<XorMappedAddress>().unwrap().address();
        assert_eq!(mapped, addr(CLIENT));
        let mi = resp.get_attribute::<MessageIntegrity>().unwrap();
        mi.check_short_term_credential(S_PWD).unwrap();
        assert!(mi.check_short_term_credential("wrong").is_err());
    }

    #[test]
    fn our_client_request_verifies_in_stun_codec() {
        let now = Instant::now();
        let mut config = IceClientConfig::new(C_UFRAG, C_PWD, S_UFRAG, S_PWD, addr(SERVER));
        config.seed = 99;
        let mut client = IceClient::new(config, now);
        let request = client.poll_transmit().unwrap().payload;
        let m = MessageDecoder::<Attr>::new()
            .decode_from_bytes(&request)
            .unwrap()
            .unwrap();
        assert_eq!(m.class(), stun_codec::MessageClass::Request);
        assert_eq!(m.get_attribute::<Username>().unwrap().name(), "srvU:cliU");
        assert_eq!(m.get_attribute::<Priority>().unwrap().prio(), PRFLX_PRIORITY);
        assert_eq!(
            m.get_attribute::<IceControlling>().unwrap().prio(),
            client.tie_breaker()
        );
        assert!(m.get_attribute::<UseCandidate>().is_some());
        let mi = m.get_attribute::<MessageIntegrity>().unwrap();
        mi.check_short_term_credential(S_PWD).unwrap();
    }
}
