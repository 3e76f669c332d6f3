//! sctp-proto (the vendored 0.10.8 + `Endpoint::connect_at`), driven as the
//! engine's node drives it (src/proto/node.rs): one `Endpoint` per side
//! shared by all its associations, `Association`s owned by the caller,
//! datagrams routed by the endpoint, the two engine streams opened on
//! `Connected` on both sides.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use sctp_proto::{
    Association, AssociationHandle, ClientConfig, DatagramEvent, Endpoint, EndpointConfig, Event,
    Payload, PayloadProtocolIdentifier, ReliabilityType, ServerConfig, StreamEvent,
    TransportConfig,
};

use crate::net::{Mode, Net, Settings, To, VTime};

/// The server's address, as the clients see it.
const SERVER: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 255, 255, 254)), 5000);

/// The address of client `i` (distinct per pair, as distinct peers are).
pub fn client_addr(i: usize) -> SocketAddr {
    let i = i as u32;
    SocketAddr::new(
        IpAddr::V4(Ipv4Addr::new(10, (i >> 16) as u8, (i >> 8) as u8, i as u8)),
        5000,
    )
}

/// The transport settings, as the engine's `NodeConfig::transport` builds
/// them (RTOs, buffer, message size, streams; unlimited DATA retransmits).
pub fn transport(s: &Settings) -> Arc<TransportConfig> {
    let ms = |d: std::time::Duration| d.as_millis() as u64;
    Arc::new(
        TransportConfig::default()
            .with_max_receive_buffer_size(s.receive_buffer)
            .with_max_send_message_size(s.max_message)
            .with_max_receive_message_size(s.max_message)
            .with_max_num_inbound_streams(s.streams)
            .with_max_num_outbound_streams(s.streams)
            .with_rto_initial_ms(ms(s.rto.0))
            .with_rto_min_ms(ms(s.rto.1))
            .with_rto_max_ms(ms(s.rto.2))
            .with_max_data_retransmits(None),
    )
}

/// The endpoint settings: the MTU is the largest DATA payload plus the
/// common and DATA chunk headers (sctp-proto derives it that way).
pub fn endpoint_config(s: &Settings) -> Arc<EndpointConfig> {
    let mut c = EndpointConfig::new();
    c.max_payload_size(s.mtu as u32 - 12 - 16);
    Arc::new(c)
}

/// A server endpoint with the engine's transport settings.
pub fn server_endpoint(s: &Settings) -> Endpoint {
    let mut sc = ServerConfig::new();
    sc.transport = transport(s);
    Endpoint::new(endpoint_config(s), Some(Arc::new(sc)))
}

/// One side of a pair.
pub struct Side {
    handle: AssociationHandle,
    assoc: Association,
    connected: bool,
    failure: Option<String>,
    readable: Vec<u16>,
}

impl Side {
    fn new(handle: AssociationHandle, assoc: Association) -> Self {
        Self {
            handle,
            assoc,
            connected: false,
            failure: None,
            readable: Vec::new(),
        }
    }

    /// Collects the association's events, as the node's `drive` does.
    fn drive(&mut self) {
        while let Some(event) = self.assoc.poll() {
            match event {
                Event::Connected => {
                    self.connected = true;
                    open_streams(&mut self.assoc);
                }
                Event::HandshakeFailed { reason } | Event::AssociationLost { reason } => {
                    self.failure.get_or_insert_with(|| reason.to_string());
                }
                Event::Stream(StreamEvent::Readable { id }) if !self.readable.contains(&id) => {
                    self.readable.push(id);
                }
                Event::Stream(StreamEvent::Opened { .. }) => {
                    while self.assoc.accept_stream().is_some() {}
                }
                _ => {}
            }
        }
        // The node discards these too (it reports "drained" itself).
        while self.assoc.poll_endpoint_event().is_some() {}
    }
}

/// The engine's two streams: 0 reliable ordered, 1 unordered with no
/// retransmission (PR-SCTP "rexmit" 0; the engine itself uses a 250 ms
/// lifetime for Lossy, see the README).
fn open_streams(a: &mut Association) {
    for (sid, unordered, rel) in [
        (0, false, ReliabilityType::Reliable),
        (1, true, ReliabilityType::Rexmit),
    ] {
        let stream = match a.stream(sid) {
            Ok(s) => Ok(s),
            Err(_) => a.open_stream(sid, PayloadProtocolIdentifier::Binary),
        };
        let mut s = stream.expect("open the stream");
        s.set_default_payload_type(PayloadProtocolIdentifier::Binary)
            .expect("ppi");
        s.set_reliability_params(unordered, rel, 0)
            .expect("reliability");
    }
}

struct Pair {
    addr: SocketAddr,
    client: Option<Box<Side>>,
    server: Option<Box<Side>>,
}

/// sctp-proto association pairs.
pub struct ProtoNet {
    t0: Instant,
    settings: Settings,
    client_ep: Endpoint,
    server_ep: Endpoint,
    pairs: Vec<Pair>,
    buf: Vec<u8>,
    /// Datagrams an endpoint (not an association) sent: counted, dropped.
    pub endpoint_transmits: u64,
}

impl ProtoNet {
    fn at(&self, now: VTime) -> Instant {
        self.t0 + now
    }
}

fn push_transmit(t: sctp_proto::Transmit, to: To, out: &mut Vec<(To, Bytes)>) {
    if let Payload::RawEncode(datagrams) = t.payload {
        out.extend(datagrams.into_iter().map(|d| (to, d)));
    }
}

impl Net for ProtoNet {
    const NAME: &'static str = "sctp-proto";

    fn new(settings: &Settings) -> Self {
        Self {
            t0: Instant::now(),
            settings: settings.clone(),
            client_ep: Endpoint::new(endpoint_config(settings), None),
            server_ep: server_endpoint(settings),
            pairs: Vec::new(),
            buf: Vec::new(),
            endpoint_transmits: 0,
        }
    }

    fn reserve(&mut self, n: usize) {
        self.pairs.reserve(n);
    }

    fn add_pair(&mut self, now: VTime) -> usize {
        let i = self.pairs.len();
        let mut cc = ClientConfig::new();
        cc.transport = transport(&self.settings);
        let at = self.at(now);
        let (handle, assoc) = self.client_ep.connect_at(cc, SERVER, at).expect("connect");
        self.pairs.push(Pair {
            addr: client_addr(i),
            client: Some(Box::new(Side::new(handle, assoc))),
            server: None,
        });
        i
    }

    fn input(&mut self, now: VTime, pair: usize, to: To, packet: Bytes) {
        let at = self.at(now);
        let p = &mut self.pairs[pair];
        let (ep, remote, slot) = match to {
            To::Server => (&mut self.server_ep, p.addr, &mut p.server),
            To::Client => (&mut self.client_ep, SERVER, &mut p.client),
        };
        match ep.handle(at, remote, None, None, packet) {
            None => {}
            Some((handle, DatagramEvent::NewAssociation(assoc))) => {
                assert!(slot.is_none(), "a second association for one pair");
                *slot = Some(Box::new(Side::new(handle, assoc)));
            }
            Some((handle, DatagramEvent::AssociationEvent(event))) => {
                let side = slot.as_mut().expect("an event for a pair's association");
                assert_eq!(side.handle, handle, "routed to another association");
                side.assoc.handle_event(event);
            }
        }
        if let Some(side) = slot.as_mut() {
            side.drive();
        }
    }

    fn output(&mut self, now: VTime, pair: usize, out: &mut Vec<(To, Bytes)>) {
        let at = self.at(now);
        let p = &mut self.pairs[pair];
        for (slot, to) in [(&mut p.client, To::Server), (&mut p.server, To::Client)] {
            if let Some(side) = slot.as_mut() {
                while let Some(t) = side.assoc.poll_transmit(at) {
                    push_transmit(t, to, out);
                }
                side.drive();
            }
        }
        for ep in [&mut self.client_ep, &mut self.server_ep] {
            while ep.poll_transmit().is_some() {
                self.endpoint_transmits += 1;
            }
        }
    }

    fn next_timeout(&self, pair: usize) -> Option<VTime> {
        let p = &self.pairs[pair];
        [&p.client, &p.server]
            .into_iter()
            .flatten()
            .filter_map(|s| s.assoc.poll_timeout())
            .min()
            .map(|t| t.saturating_duration_since(self.t0))
    }

    fn timeout(&mut self, now: VTime, pair: usize) {
        let at = self.at(now);
        let p = &mut self.pairs[pair];
        for side in [&mut p.client, &mut p.server].into_iter().flatten() {
            side.assoc.handle_timeout(at);
            side.drive();
        }
    }

    fn connected(&self, pair: usize) -> bool {
        let p = &self.pairs[pair];
        p.client.as_ref().is_some_and(|s| s.connected)
            && p.server.as_ref().is_some_and(|s| s.connected)
    }

    fn failure(&self, pair: usize) -> Option<String> {
        let p = &self.pairs[pair];
        [&p.client, &p.server]
            .into_iter()
            .flatten()
            .find_map(|s| s.failure.clone())
    }

    fn send(&mut self, _now: VTime, pair: usize, messages: Vec<Vec<u8>>, mode: Mode) -> usize {
        let side = self.pairs[pair].client.as_mut().expect("client");
        let sid = match mode {
            Mode::Reliable => 0,
            Mode::Lossy => 1,
        };
        let mut stream = side.assoc.stream(sid).expect("stream");
        let mut accepted = 0;
        for m in messages {
            if stream
                .write_sctp(&Bytes::from(m), PayloadProtocolIdentifier::Binary)
                .is_err()
            {
                break;
            }
            accepted += 1;
        }
        accepted
    }

    fn recv(&mut self, _now: VTime, pair: usize, f: &mut dyn FnMut(&[u8])) {
        let Some(side) = self.pairs[pair].server.as_mut() else {
            return;
        };
        let buf = &mut self.buf;
        for sid in std::mem::take(&mut side.readable) {
            let Ok(mut stream) = side.assoc.stream(sid) else {
                continue;
            };
            while let Ok(Some(chunks)) = stream.read_sctp() {
                buf.resize(chunks.len(), 0);
                let n = chunks.read(buf).expect("read a message");
                f(&buf[..n]);
            }
        }
        side.drive();
    }

    fn drop_clients(&mut self) {
        for p in &mut self.pairs {
            p.client = None;
        }
        self.client_ep = Endpoint::new(endpoint_config(&self.settings), None);
    }
}
