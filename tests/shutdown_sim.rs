//! Graceful close in the deterministic harness: whichever end closes first,
//! both at once, or with the peer gone, every association is removed on
//! both nodes within a bounded virtual time, and data queued before the
//! close still arrives when the peer is alive.

use std::time::Duration;

use bytes::Bytes;
use dcengine::proto::{AssocId, CloseReason, Delivery, Event, Node, NodeConfig};
use dcengine::sim::{HostId, LinkConfig, Network};
use dcengine::wire::{Data, Frame, Message};

/// One-way latency of every link here.
const LATENCY: Duration = Duration::from_millis(10);

fn events(net: &mut Network, id: HostId) -> Vec<Event> {
    std::iter::from_fn(|| net.host_mut(id).poll_event()).collect()
}

fn connected_pair_with(
    seed: u64,
    server_config: NodeConfig,
    client_config: NodeConfig,
) -> (Network, HostId, HostId, AssocId, AssocId) {
    let mut net = Network::new(seed, LinkConfig::with_latency(LATENCY));
    let server = net.add_host(Node::new(server_config));
    let client = net.add_host(Node::new(client_config));
    let (now, to) = (net.now(), net.addr(server));
    let c = net.host_mut(client).connect(now, to).expect("connect");
    let mut s = None;
    assert!(net.run_until(Duration::from_secs(5), |net| {
        for e in events(net, server) {
            if let Event::Connected { assoc, .. } = e {
                s = Some(assoc);
            }
        }
        s.is_some() && net.host(client).is_connected(c)
    }));
    events(&mut net, client);
    // Let the handshake's acknowledgements settle: no delayed SACK pending.
    net.run_for(Duration::from_millis(500));
    (net, server, client, s.expect("server side"), c)
}

fn data(seq: u32, payload: &'static str) -> Message {
    Message::Frame(Frame::Data(Data {
        channel: 1,
        session: 1,
        seq,
        origin: None,
        epoch: None,
        payload: Bytes::from_static(payload.as_bytes()),
    }))
}

/// A close may outlast the keep-alive interval (here the close timeout is
/// longer than it, and the peer is gone with data queued to it): the node
/// sends no keep-alive while closing, and must not spin on that deadline
/// either. Run on a thread with a time limit, so a spin fails the test.
#[test]
fn a_close_longer_than_the_keepalive_interval_ends_without_spinning() {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut config = NodeConfig::client();
        config.close_timeout = Duration::from_secs(60);
        let (mut net, server, client, _s, c) =
            connected_pair_with(46, NodeConfig::server(), config.clone());
        net.set_up(server, false);
        let start = net.now();
        net.host_mut(client)
            .send(start, c, Delivery::Reliable, &data(1, "never arrives"))
            .expect("send");
        net.host_mut(client).close(start, c);
        let mut reason = None;
        net.run_until(Duration::from_secs(120), |net| {
            for e in events(net, client) {
                if let Event::Closed { reason: r, .. } = e {
                    reason = Some(r);
                }
            }
            reason.is_some()
        });
        let _ = tx.send((net.now() - start, reason, config));
    });
    let (took, reason, config) = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the node spun instead of closing");
    assert!(config.keepalive_interval < config.idle_timeout);
    // Nothing was received since before the close: the idle timeout ends it.
    assert_eq!(reason, Some(CloseReason::TimedOut));
    assert!(took <= config.idle_timeout, "took {took:?}");
}
