//! Server hub costs that grow with the size of a call.
//!
//! `ack_among_backlogged`: a call of 1,000 members, one of them sending to
//! everyone while most others' acknowledgements are held back, so 998
//! member egresses are backlogged; the cost of the server handling one
//! datagram (an acknowledgement, replayed) from a member that keeps up. The hub pumps only the
//! egress an input touched, so this stays flat as backlogs grow.
//!
//! Run with `cargo bench --bench hub`.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use dcengine::hub::{Hub, HubConfig};
use dcengine::proto::{AssocId, Delivery, Node, NodeConfig};
use dcengine::wire::{
    Data, Join, Message, PROTOCOL_VERSION, Priority, Reliability, SenderOpened, ShortStr,
};
use dcengine::{ChannelConfig, HmacVerifier, WallClock, mint_token};

const SECRET: &[u8] = b"bench";
const MEMBERS: usize = 1000;
const SERVER: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 1);

fn addr(i: usize) -> SocketAddr {
    SocketAddr::new(
        IpAddr::V4(Ipv4Addr::new(127, 0, (i >> 8) as u8 + 1, i as u8)),
        4000,
    )
}

fn index(a: SocketAddr) -> usize {
    match a.ip() {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            (usize::from(o[2]) - 1) << 8 | usize::from(o[3])
        }
        IpAddr::V6(_) => unreachable!("v4 only"),
    }
}

struct Call {
    now: Instant,
    hub: Hub,
    clients: Vec<(Node, AssocId)>,
    /// The last datagram member 1 sent.
    last_from_1: Option<Bytes>,
}

impl Call {
    /// Moves datagrams for `ms` of time; the server's datagrams to clients
    /// other than 0 and 1 are dropped while `hold` (their acknowledgements
    /// stop).
    fn route(&mut self, ms: u64, hold: bool) {
        for _ in 0..ms {
            self.now += Duration::from_millis(1);
            let now = self.now;
            self.hub.handle_timeout(now);
            for (i, (c, _)) in self.clients.iter_mut().enumerate() {
                c.handle_timeout(now);
                while let Some(t) = c.poll_transmit() {
                    if i == 1 {
                        self.last_from_1 = Some(t.payload.clone());
                    }
                    self.hub.handle_datagram(now, addr(i), t.payload);
                }
            }
            while let Some(t) = self.hub.poll_transmit() {
                let i = index(t.destination);
                if !(hold && i > 1) {
                    let _ = self.clients[i].0.handle_datagram(now, SERVER, t.payload);
                }
            }
            for (c, _) in &mut self.clients {
                while c.poll_event().is_some() {}
            }
        }
    }
}

fn backlogged_call() -> (Call, Bytes) {
    let now = Instant::now();
    let clock = WallClock::new(now, Duration::from_secs(1_700_000_000));
    let config = HubConfig::server(Arc::new(
        HmacVerifier::new(SECRET, clock).expect("a secret"),
    ))
    .node(NodeConfig::server().max_associations(MEMBERS + 10))
    .channel(ChannelConfig::default().traffic(dcengine::sched::TrafficPolicy::unlimited()));
    let mut call = Call {
        now,
        hub: Hub::new(config),
        clients: (0..MEMBERS)
            .map(|_| {
                let mut n = Node::new(NodeConfig::client());
                let a = n.connect(now, SERVER).expect("connect");
                (n, a)
            })
            .collect(),
        last_from_1: None,
    };
    call.route(200, false);
    for (i, (c, a)) in call.clients.iter_mut().enumerate() {
        let who = format!("p{i}");
        let token = mint_token(SECRET, "call", &who, 1_700_003_600).expect("token");
        let join = Join {
            version: PROTOCOL_VERSION,
            call_id: ShortStr::truncated("call"),
            participant_id: ShortStr::truncated(&who),
            token,
        };
        c.send(
            call.now,
            *a,
            Delivery::Reliable,
            &Message::Frame(join.into()),
        )
        .expect("join");
    }
    call.route(500, false);
    let now = call.now;
    let (c0, a0) = &mut call.clients[0];
    let opened = SenderOpened {
        channel: 1,
        session: 1,
        reliability: Reliability::Durable,
        priority: Priority::Normal,
        bitrate_kbps: 0,
        origin: None,
    };
    c0.send(now, *a0, Delivery::Reliable, &Message::Frame(opened.into()))
        .expect("open");
    for seq in 0..40 {
        let d = Data {
            channel: 1,
            session: 1,
            seq,
            origin: None,
            epoch: None,
            payload: Bytes::from(vec![7u8; 1000]),
        };
        c0.send(now, *a0, Delivery::Reliable, &Message::Frame(d.into()))
            .expect("data");
    }
    call.route(100, true);
    // Member 1's last acknowledgement, to replay.
    let ack = call.last_from_1.clone().expect("p1 acknowledged");
    (call, ack)
}

fn ack_among_backlogged(c: &mut Criterion) {
    let (mut call, ack) = backlogged_call();
    let now = call.now;
    c.bench_function("hub/ack_among_998_backlogged", |b| {
        b.iter(|| {
            call.hub
                .handle_datagram(now, addr(1), black_box(ack.clone()))
        });
    });
}

criterion_group!(benches, ack_among_backlogged);
criterion_main!(benches);
