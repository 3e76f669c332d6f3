//! A handshake flood against a dcengine server over loopback UDP, with a
//! legitimate participant joining in the middle of it (issues 14 and 15:
//! "100,000 handshakes a second for 5 s; RSS flat; the join under 100 ms").
//!
//! ```text
//! flood [sctp|dtls] [RATE] [SECONDS] [SOCKETS]
//! ```
//!
//! - `sctp`: a plain SCTP server (`--insecure-plaintext`'s transport);
//!   the flood is SCTP INITs (a real one, taken from a client node), each
//!   answered statelessly with an INIT-ACK.
//! - `dtls`: the default server (ICE-lite + DTLS); the flood is half DTLS
//!   ClientHellos (a real one) and half STUN Binding requests with made-up
//!   credentials, neither of which may create state.
//!
//! The flood comes from SOCKETS sockets (their source ports) round robin;
//! the server runs in this process (2 workers), so RSS is this process's
//! (`/proc/self/status`), sampled every 100 ms. Prints one JSON object.

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use dcengine::dtls::{DtlsRole, DtlsSession, config};
use dcengine::proto::{Node, NodeConfig};
use dcengine::{Certificate, Engine, HmacVerifier, HubConfig, WallClock, mint_token};

const SECRET: &[u8] = b"flood secret";

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn unix_now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

/// A real SCTP INIT, as a client node sends it.
fn sctp_init(server: SocketAddr) -> Bytes {
    let mut node = Node::new(NodeConfig::client());
    let now = Instant::now();
    node.connect(now, server).expect("connect");
    node.poll_transmit().expect("an INIT").payload
}

/// A real DTLS ClientHello.
fn client_hello() -> Bytes {
    let (c, s) = (
        Certificate::generate().expect("a certificate"),
        Certificate::generate().expect("a certificate"),
    );
    let cfg = config(1400, false, 1).expect("config");
    let now = Instant::now();
    let mut session = DtlsSession::new(&cfg, &c, DtlsRole::Client, s.fingerprint(), now);
    // dimpl sends its first flight from its timer.
    for _ in 0..10 {
        if let Some(hello) = session.poll_transmit() {
            return hello;
        }
        let at = session.poll_timeout().unwrap_or(now);
        session.handle_timeout(at);
    }
    panic!("no ClientHello")
}

/// A STUN Binding request with a USERNAME nobody signalled.
fn stun_check() -> Bytes {
    let mut m = vec![0x00, 0x01, 0x00, 0x08, 0x21, 0x12, 0xa4, 0x42];
    m.extend_from_slice(&[9; 12]);
    m.extend_from_slice(&[0x00, 0x06, 0x00, 0x04, b'a', b'b', b'c', b'd']);
    Bytes::from(m)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let dtls = args.get(1).is_some_and(|m| m == "dtls");
    let rate: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(100_000);
    let seconds: f64 = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(5.0);
    let sockets: usize = args.get(4).and_then(|s| s.parse().ok()).unwrap_or(256);

    let verifier = HmacVerifier::new(SECRET, WallClock::new(Instant::now(), unix_now()))?;
    let mut hub = HubConfig::server(Arc::new(verifier));
    if dtls {
        hub = hub.dtls(Certificate::generate()?);
    }
    let server = Arc::new(Engine::builder().workers(2).hub(hub).start()?);
    let addr = server.local_addr();
    let packets: Vec<Bytes> = if dtls {
        vec![client_hello(), stun_check()]
    } else {
        vec![sctp_init(addr)]
    };
    let senders: Vec<UdpSocket> = (0..sockets)
        .map(|_| UdpSocket::bind("127.0.0.1:0"))
        .collect::<Result<_, _>>()?;
    // Make sure the flood's own buffers and the server's warm-up are in
    // the baseline.
    std::thread::sleep(Duration::from_millis(300));
    let rss_before = rss_kib();
    let peak = Arc::new(AtomicU64::new(rss_before));
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, stop) = (peak.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                peak.fetch_max(rss_kib(), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    let sent = Arc::new(AtomicU64::new(0));
    let flood = {
        let (stop, sent) = (stop.clone(), sent.clone());
        std::thread::spawn(move || {
            let start = Instant::now();
            let mut n: u64 = 0;
            while start.elapsed().as_secs_f64() < seconds && !stop.load(Ordering::Relaxed) {
                // Paced in 1 ms slices.
                let due = (start.elapsed().as_secs_f64() * rate as f64) as u64;
                while n < due {
                    let s = &senders[(n as usize) % senders.len()];
                    let p = &packets[(n as usize) % packets.len()];
                    let _ = s.send_to(p, addr);
                    n += 1;
                }
                sent.store(n, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(1));
            }
            n
        })
    };
    // The legitimate participant joins a second into the flood.
    std::thread::sleep(Duration::from_secs(1));
    let mut client_hub = HubConfig::client();
    if dtls {
        client_hub = client_hub.dtls(Certificate::generate()?);
    }
    let client = Engine::builder().hub(client_hub).start()?;
    let token = mint_token(SECRET, "flood", "alice", unix_now().as_secs() + 600)?;
    let join_start = Instant::now();
    let call = if dtls {
        let t = token.clone();
        let s = server.clone();
        client.join_signalled("flood", "alice", token, |offer| {
            s.accept_offer(offer, "flood", "alice", &t)
        })?
    } else {
        client.join_remote(addr, "flood", "alice", token)?
    };
    let joined = call.wait_ready(Duration::from_secs(10));
    let join_ms = join_start.elapsed().as_secs_f64() * 1e3;
    let flooded = flood.join().unwrap_or(0);
    let stats = server.stats()?;
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::Relaxed);
    let _ = sampler.join();
    let rss_after = rss_kib();
    println!(
        "{{\"mode\": \"{}\", \"rate_per_s\": {rate}, \"seconds\": {seconds}, \"sockets\": {sockets}, \"flood_sent\": {flooded}, \"joined\": {joined}, \"join_ms\": {join_ms:.1}, \"rss_kib_before\": {rss_before}, \"rss_kib_peak\": {}, \"rss_kib_after\": {rss_after}, \"server_associations\": {}, \"inits_answered\": {}, \"dtls_handshakes\": {}, \"dtls_dropped\": {}}}",
        if dtls { "dtls" } else { "sctp" },
        peak.load(Ordering::Relaxed),
        stats.joins_accepted,
        stats.inits_answered,
        stats.dtls_handshakes,
        stats.dtls_dropped,
    );
    let _ = sent;
    Ok(())
}
