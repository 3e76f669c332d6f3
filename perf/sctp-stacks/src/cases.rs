//! The cases: each run of one case with one stack gives named numbers.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use bytes::Bytes;
use dcsctp::api::{DcSctpSocket, Socket, SocketEvent};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sctp_proto::{DatagramEvent, Endpoint};

use crate::alloc;
use crate::cpu::thread_cpu;
use crate::link::{Spec, establish, transfer};
use crate::net::{Mode, Net, Settings, To, VTime};
use crate::{dc, proto};

/// One run's numbers: (metric, unit, value).
pub type Numbers = Vec<(&'static str, &'static str, f64)>;

/// Messages per second and CPU per message over a lossless zero-latency
/// link (virtual time: timers such as the delayed SACK cost no wall time).
pub fn throughput<N: Net>(s: &Settings, spec: &Spec) -> Numbers {
    let mut net = N::new(s);
    let pair = net.add_pair(VTime::ZERO);
    let now = establish(&mut net, pair, VTime::ZERO);
    let o = transfer(&mut net, pair, now, spec);
    assert!(
        o.completed,
        "{}: {:?} {} B: {} of {} delivered ({:?})",
        N::NAME,
        spec.mode,
        spec.size,
        o.delivered,
        spec.count,
        o.failure
    );
    assert_eq!(o.duplicates, 0, "{}: duplicates", N::NAME);
    if spec.mode == Mode::Reliable {
        assert_eq!(
            o.out_of_order,
            0,
            "{}: reliable ordered out of order",
            N::NAME
        );
    }
    let n = spec.count as f64;
    vec![
        ("msgs_per_s", "msg/s", n / o.wall.as_secs_f64()),
        ("cpu_per_msg", "ns", o.cpu.as_nanos() as f64 / n),
        ("allocs_per_msg", "allocs", o.allocs as f64 / n),
        ("packets_per_msg", "packets", o.packets as f64 / n),
        ("wire_bytes_per_msg", "B", o.link_bytes as f64 / n),
        ("virtual_time", "ms", o.virtual_elapsed.as_secs_f64() * 1e3),
    ]
}

/// Reliable ordered over a lossy link with latency: completion (virtual)
/// time, goodput, whether everything arrived in order.
pub fn lossy_link<N: Net>(s: &Settings, spec: &Spec) -> Numbers {
    let mut net = N::new(s);
    let pair = net.add_pair(VTime::ZERO);
    let now = establish(&mut net, pair, VTime::ZERO);
    let o = transfer(&mut net, pair, now, spec);
    if let Some(f) = &o.failure {
        eprintln!("  {}: loss {}: {f}", N::NAME, spec.loss);
    }
    let secs = o.virtual_elapsed.as_secs_f64();
    vec![
        ("completed", "0/1", f64::from(u8::from(o.completed))),
        ("all_in_order", "0/1", f64::from(u8::from(o.in_order))),
        ("delivered", "msgs", o.delivered as f64),
        ("completion", "s", secs),
        (
            "goodput",
            "Mbit/s",
            (o.delivered * spec.size as u64 * 8) as f64 / secs / 1e6,
        ),
        ("packets_sent", "packets", o.packets as f64),
        ("packets_lost", "packets", o.dropped as f64),
        ("cpu", "ms", o.cpu.as_secs_f64() * 1e3),
    ]
}

/// Heap held per established idle association: `n` pairs established one
/// after the other; live heap with both sides, then with the server sides
/// only.
pub fn idle<N: Net>(s: &Settings, n: usize) -> Numbers {
    let base = alloc::live();
    let mut net = N::new(s);
    net.reserve(n);
    let cpu0 = thread_cpu();
    let mut now = VTime::ZERO;
    for _ in 0..n {
        let pair = net.add_pair(now);
        now = establish(&mut net, pair, now);
        assert!(net.connected(pair));
    }
    let cpu = thread_cpu() - cpu0;
    let both = alloc::live() - base;
    net.drop_clients();
    let server = alloc::live() - base;
    drop(net);
    vec![
        ("server_bytes_per_assoc", "B", server as f64 / n as f64),
        ("pair_bytes", "B", both as f64 / n as f64),
        (
            "cpu_per_handshake",
            "us",
            cpu.as_secs_f64() * 1e6 / n as f64,
        ),
    ]
}

/// The INIT every flood copies: a dcsctp client's (the stack Chrome's is
/// the C++ original of), with its checksum checked.
pub fn init_template(s: &Settings) -> Vec<u8> {
    let mut c = Socket::new("t", &dc::options(s));
    c.connect();
    let init = loop {
        match c.poll_event() {
            Some(SocketEvent::SendPacket(p)) => break p,
            Some(_) => continue,
            None => panic!("dcsctp sent no INIT"),
        }
    };
    assert_eq!(init[12], 1, "chunk type INIT");
    assert_eq!(
        checksum(&init),
        u32::from_le_bytes(init[8..12].try_into().expect("4"))
    );
    init
}

fn checksum(p: &[u8]) -> u32 {
    const CRC: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI);
    let mut d = CRC.digest();
    d.update(&p[..8]);
    d.update(&[0; 4]);
    d.update(&p[12..]);
    d.finalize()
}

/// The template with a random Initiate Tag and initial TSN, re-signed.
fn forge_init(template: &[u8], rng: &mut ChaCha8Rng) -> Bytes {
    let mut p = template.to_vec();
    p[16..20].copy_from_slice(&rng.random_range(1..=u32::MAX).to_be_bytes());
    p[28..32].copy_from_slice(&rng.random::<u32>().to_be_bytes());
    let c = checksum(&p);
    p[8..12].copy_from_slice(&c.to_le_bytes());
    Bytes::from(p)
}

fn random_remote(rng: &mut ChaCha8Rng) -> SocketAddr {
    SocketAddr::new(
        IpAddr::V4(Ipv4Addr::from(rng.random::<u32>())),
        rng.random_range(1024..=u16::MAX),
    )
}

/// CPU of forging `n` INITs alone (subtracted from the floods' CPU).
fn forge_cost(template: &[u8], n: usize, seed: u64) -> Duration {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let cpu0 = thread_cpu();
    let mut sink = 0u64;
    for _ in 0..n {
        let p = forge_init(template, &mut rng);
        let r = random_remote(&mut rng);
        sink = sink.wrapping_add(u64::from(p[16]) + u64::from(r.port()));
    }
    std::hint::black_box(sink);
    thread_cpu() - cpu0
}

/// `n` INITs from random addresses and tags to one sctp-proto server
/// endpoint, never answered: what it keeps per INIT (the endpoint's maps and
/// the `Association` it hands out, which the caller must hold until its
/// handshake times out: the node does, for 5 s), and its CPU per INIT.
/// Then a legitimate client joins the same endpoint.
pub fn init_flood_proto(s: &Settings, template: &[u8], n: usize, seed: u64) -> Numbers {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut ep = proto::server_endpoint(s);
    let mut held = Vec::with_capacity(n);
    let now = Instant::now();
    let gen_cpu = forge_cost(template, n, seed);
    let base = alloc::live();
    let cpu0 = thread_cpu();
    let (mut init_acks, mut refused) = (0u64, 0u64);
    for _ in 0..n {
        let p = forge_init(template, &mut rng);
        let remote = random_remote(&mut rng);
        match ep.handle(now, remote, None, None, p) {
            Some((_, DatagramEvent::NewAssociation(mut a))) => {
                while let Some(t) = a.poll_transmit(now) {
                    if let sctp_proto::Payload::RawEncode(d) = t.payload {
                        init_acks += d.len() as u64;
                    }
                }
                held.push(Box::new(a));
            }
            _ => refused += 1,
        }
        while ep.poll_transmit().is_some() {}
    }
    let cpu = (thread_cpu() - cpu0).saturating_sub(gen_cpu);
    let retained = alloc::live() - base;
    assert_eq!(init_acks, n as u64, "sctp-proto: an INIT-ACK per INIT");
    let join_ok = proto_join(s, &mut ep, now);
    drop(held);
    vec![
        ("retained_per_init", "B", retained as f64 / n as f64),
        ("cpu_per_init", "ns", cpu.as_nanos() as f64 / n as f64),
        ("init_acks_per_init", "packets", init_acks as f64 / n as f64),
        ("refused", "INITs", refused as f64),
        ("join_after_flood", "0/1", f64::from(u8::from(join_ok))),
    ]
}

/// A client handshake with `server` (an endpoint that may hold a flood).
fn proto_join(s: &Settings, server: &mut Endpoint, now: Instant) -> bool {
    let mut client_ep = Endpoint::new(proto::endpoint_config(s), None);
    let mut cc = sctp_proto::ClientConfig::new();
    cc.transport = proto::transport(s);
    let server_addr: SocketAddr = "10.255.255.254:5000".parse().expect("addr");
    let me = proto::client_addr(0xFF_FF_FF);
    let (_, mut c) = client_ep.connect_at(cc, server_addr, now).expect("connect");
    let mut srv: Option<sctp_proto::Association> = None;
    let (mut c_up, mut s_up) = (false, false);
    for _ in 0..20 {
        let mut to_server = Vec::new();
        while let Some(t) = c.poll_transmit(now) {
            if let sctp_proto::Payload::RawEncode(d) = t.payload {
                to_server.extend(d);
            }
        }
        for p in to_server {
            match server.handle(now, me, None, None, p) {
                Some((_, DatagramEvent::NewAssociation(a))) => srv = Some(a),
                Some((_, DatagramEvent::AssociationEvent(e))) => {
                    if let Some(a) = srv.as_mut() {
                        a.handle_event(e);
                    }
                }
                None => {}
            }
        }
        let mut to_client = Vec::new();
        if let Some(a) = srv.as_mut() {
            while let Some(ev) = a.poll() {
                s_up |= matches!(ev, sctp_proto::Event::Connected);
            }
            while let Some(t) = a.poll_transmit(now) {
                if let sctp_proto::Payload::RawEncode(d) = t.payload {
                    to_client.extend(d);
                }
            }
        }
        for p in to_client {
            if let Some((_, DatagramEvent::AssociationEvent(e))) =
                client_ep.handle(now, server_addr, None, None, p)
            {
                c.handle_event(e);
            }
        }
        while let Some(ev) = c.poll() {
            c_up |= matches!(ev, sctp_proto::Event::Connected);
        }
        if c_up && s_up {
            return true;
        }
    }
    false
}

/// `n` INITs to one dcsctp socket in its closed state (a "listener"),
/// never answered: what it keeps per INIT and its CPU per INIT. Then a
/// legitimate client's INIT goes to the same listener and its COOKIE-ECHO
/// to a fresh socket, which must establish from the cookie alone.
pub fn init_flood_dc(s: &Settings, template: &[u8], n: usize, seed: u64) -> Numbers {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let options = dc::options(s);
    let mut listener = Socket::new("l", &options);
    let gen_cpu = forge_cost(template, n, seed);
    let base = alloc::live();
    let cpu0 = thread_cpu();
    let mut init_acks = 0u64;
    let mut errors = 0u64;
    for _ in 0..n {
        let p = forge_init(template, &mut rng);
        // The remote address plays no part: dcsctp never sees addresses.
        let _ = random_remote(&mut rng);
        listener.handle_input(&p);
        while let Some(ev) = listener.poll_event() {
            match ev {
                SocketEvent::SendPacket(_) => init_acks += 1,
                SocketEvent::OnError(..) => errors += 1,
                _ => {}
            }
        }
    }
    let cpu = (thread_cpu() - cpu0).saturating_sub(gen_cpu);
    let retained = alloc::live() - base;
    assert_eq!(init_acks, n as u64, "dcsctp: an INIT-ACK per INIT");
    let join_ok = dc_join(&options, &mut listener);
    let forged = dc_forged_cookie(&options);
    vec![
        ("retained_per_init", "B", retained as f64 / n as f64),
        ("cpu_per_init", "ns", cpu.as_nanos() as f64 / n as f64),
        ("init_acks_per_init", "packets", init_acks as f64 / n as f64),
        ("refused", "INITs", errors as f64),
        ("join_after_flood", "0/1", f64::from(u8::from(join_ok))),
        (
            "forged_cookie_establishes",
            "0/1",
            f64::from(u8::from(forged)),
        ),
    ]
}

/// A COOKIE-ECHO written from scratch (no INIT, no INIT-ACK: its layout is
/// dcsctp's src/socket/state_cookie.rs, which has no MAC and no timestamp)
/// sent to a fresh socket: does it establish an association?
fn dc_forged_cookie(options: &dcsctp::api::Options) -> bool {
    let (my_tag, peer_tag) = (0x1234_5678u32, 0x0bad_cafe_u32);
    let mut cookie = Vec::with_capacity(48);
    cookie.extend(1684230979u32.to_be_bytes()); // the two magic numbers
    cookie.extend(1414558256u32.to_be_bytes());
    cookie.extend(peer_tag.to_be_bytes());
    cookie.extend(my_tag.to_be_bytes());
    cookie.extend(1000u32.to_be_bytes()); // peer initial TSN
    cookie.extend(2000u32.to_be_bytes()); // my initial TSN
    cookie.extend((512u32 * 1024).to_be_bytes()); // a_rwnd
    cookie.extend(0u64.to_be_bytes()); // tie tag
    cookie.extend([1, 0, 1, 0]); // PR-SCTP, no I-DATA, RE-CONFIG
    cookie.extend(0u32.to_be_bytes()); // no zero checksum
    cookie.extend(16u16.to_be_bytes());
    cookie.extend(16u16.to_be_bytes());
    let mut p = Vec::new();
    p.extend(options.remote_port.to_be_bytes());
    p.extend(options.local_port.to_be_bytes());
    p.extend(my_tag.to_be_bytes());
    p.extend([0; 4]);
    p.extend([10, 0]); // COOKIE-ECHO, no flags
    p.extend((4 + cookie.len() as u16).to_be_bytes());
    p.extend(cookie);
    let c = checksum(&p);
    p[8..12].copy_from_slice(&c.to_le_bytes());
    let mut fresh = dc::Side::new("f", options, VTime::ZERO);
    fresh.sock.handle_input(&p);
    let mut out = Vec::new();
    fresh.drain(To::Client, &mut out);
    fresh.connected
}

/// INIT to `listener`, COOKIE-ECHO to a fresh socket: both ends connect?
fn dc_join(options: &dcsctp::api::Options, listener: &mut Socket) -> bool {
    let mut client = dc::Side::new("c", options, VTime::ZERO);
    let mut server = dc::Side::new("s", options, VTime::ZERO);
    let mut out = Vec::new();
    client.sock.connect();
    client.drain(To::Server, &mut out);
    // INIT -> listener -> INIT-ACK.
    for (_, p) in out.drain(..) {
        listener.handle_input(&p);
    }
    let mut acks = Vec::new();
    while let Some(ev) = listener.poll_event() {
        if let SocketEvent::SendPacket(p) = ev {
            acks.push(p);
        }
    }
    for p in acks {
        client.sock.handle_input(&p);
    }
    // COOKIE-ECHO -> the fresh socket, and on until both are up.
    for _ in 0..10 {
        client.drain(To::Server, &mut out);
        for (_, p) in out.drain(..) {
            server.sock.handle_input(&p);
        }
        server.drain(To::Client, &mut out);
        for (_, p) in out.drain(..) {
            client.sock.handle_input(&p);
        }
        if client.connected && server.connected {
            return true;
        }
    }
    false
}
