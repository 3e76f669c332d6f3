//! Congestion control on a long path, in virtual time: Durable bulk over
//! one node pair through a rate-limited link with a tail-drop queue, with
//! and without random loss, one association or two sharing the bottleneck, a round trip stretched
//! once in slow start.
//! The loss-tolerant control (the node's default, vendored dcsctp change
//! 11) against RFC 9260's Reno (`CongestionControl::Standard`).

use std::time::{Duration, Instant};

use bytes::Bytes;
use dcengine::CongestionControl;
use dcengine::proto::{AssocId, Delivery, Event, Node, NodeConfig};
use dcengine::sim::{HostId, LinkConfig};
use dcengine::wire::{Data, Frame, Message};

type Network = dcengine::sim::Network<Node>;

/// The bottleneck: 20 Mbit/s, 50 ms one way (a round trip of 100 ms: a
/// bandwidth-delay product of 250 kB, about 220 packets).
const RATE_BPS: u64 = 20_000_000;
const ONE_WAY: Duration = Duration::from_millis(50);
const BDP: usize = (RATE_BPS as usize / 8) / 10;
/// Payload bytes per message (one message a packet).
const PAYLOAD: usize = 1_100;
/// What the sender keeps queued in SCTP: always more than the path takes.
const BACKLOG: usize = 2 * 1024 * 1024;

struct Path {
    loss: f64,
    queue_bytes: usize,
    /// From `.0` on, for one round trip, the SACKs' way takes `.1` longer
    /// (a busy host, a delayed SACK); the client then asks for a SACK per
    /// packet, as the hub's budgeted associations do (so that a round of a
    /// few packets has HyStart++'s 8 samples).
    stretch: Option<(Duration, Duration)>,
}

/// What one association delivered from `measure_from` on.
#[derive(Debug, Default, Clone)]
struct Flow {
    bytes: u64,
}

impl Report {
    /// The bottleneck's queueing delay at percentile `p`.
    fn queue(&self, p: f64) -> Duration {
        self.backlog[((self.backlog.len() - 1) as f64 * p) as usize]
    }
}

impl Flow {
    /// Goodput as a share of the bottleneck's rate.
    fn share(&self, over: Duration) -> f64 {
        self.bytes as f64 * 8.0 / over.as_secs_f64() / RATE_BPS as f64
    }
}

#[derive(Clone)]
struct Report {
    flows: Vec<Flow>,
    /// The bottleneck's queueing delay, sampled at every step from
    /// `measure_from` on.
    backlog: Vec<Duration>,
    over: Duration,
    queue_dropped: u64,
    sent: u64,
}

fn events(net: &mut Network, id: HostId) -> Vec<Event> {
    std::iter::from_fn(|| net.host_mut(id).poll_event()).collect()
}

/// Bulk from the client to the server over `path` for `run`, one
/// association per entry of `starts` (each begins sending that long after
/// the first); what arrives from `measure_from` on is counted.
fn bulk(
    seed: u64,
    cc: CongestionControl,
    path: Path,
    starts: &[Duration],
    run: Duration,
    measure_from: Duration,
) -> Report {
    let node = |c: NodeConfig| {
        // A receive window well over the path's product plus its queue: the
        // congestion control, not the window, is what is measured.
        Node::new(c.congestion_control(cc).receive_buffer(16 * 1024 * 1024))
    };
    let mut net = Network::new(seed, LinkConfig::with_latency(ONE_WAY));
    let server = net.add_host(node(NodeConfig::server()));
    let client = net.add_host(node(NodeConfig::client()));
    let forward = LinkConfig {
        loss: path.loss,
        rate_bps: Some(RATE_BPS),
        queue_bytes: path.queue_bytes,
        ..LinkConfig::with_latency(ONE_WAY)
    };
    net.set_link(client, server, forward);
    let back = |extra: Duration| LinkConfig {
        loss: path.loss,
        ..LinkConfig::with_latency(ONE_WAY + extra)
    };
    net.set_link(server, client, back(Duration::ZERO));
    let mut stretched = (false, false);
    let to = net.addr(server);
    let assocs: Vec<AssocId> = starts
        .iter()
        .map(|_| {
            let now = net.now();
            net.host_mut(client).connect(now, to).expect("connect")
        })
        .collect();
    if path.stretch.is_some() {
        for &a in &assocs {
            net.host_mut(client).set_immediate_acks(a, true);
        }
    }
    let t0: Instant = net.now();
    let mut flows = vec![Flow::default(); starts.len()];
    let mut seq = vec![0u32; starts.len()];
    let mut expected = vec![1u32; starts.len()];
    let mut backlog = Vec::new();
    net.run_until(run, |net| {
        let now = net.now();
        let since = now - t0;
        if since >= measure_from {
            backlog.push(net.link_backlog(client, server));
        }
        if let Some((at, extra)) = path.stretch {
            if since >= at && !stretched.0 {
                stretched.0 = true;
                net.set_link(server, client, back(extra));
            } else if since >= at + 2 * ONE_WAY && !stretched.1 {
                stretched.1 = true;
                net.set_link(server, client, back(Duration::ZERO));
            }
        }
        let node = net.host_mut(client);
        for (i, &assoc) in assocs.iter().enumerate() {
            if since < starts[i] || !node.is_connected(assoc) {
                continue;
            }
            while node.queued_bytes(assoc) < BACKLOG {
                seq[i] += 1;
                let payload = vec![0u8; PAYLOAD];
                let data = Data {
                    channel: 1000,
                    session: i as u32,
                    seq: seq[i],
                    origin: None,
                    epoch: None,
                    payload: Bytes::from(payload),
                };
                node.send(
                    now,
                    assoc,
                    Delivery::Reliable,
                    &Message::Frame(Frame::Data(data)),
                )
                .expect("send");
            }
        }
        for e in events(net, server) {
            match e {
                Event::Frame {
                    frame: Frame::Data(d),
                    ..
                } => {
                    let i = d.session as usize;
                    assert_eq!(d.seq, expected[i], "Durable: in order, once");
                    expected[i] += 1;
                    if since >= measure_from {
                        flows[i].bytes += d.payload.len() as u64;
                    }
                }
                Event::Closed { reason, .. } => panic!("association closed: {reason}"),
                _ => {}
            }
        }
        false
    });
    let stats = net.link_stats(client, server);
    backlog.sort();
    Report {
        flows,
        backlog,
        over: run - measure_from,
        queue_dropped: stats.queue_dropped,
        sent: stats.sent,
    }
}

const RUN: Duration = Duration::from_secs(40);
const WARMUP: Duration = Duration::from_secs(10);

fn lossy() -> Path {
    // 0.1 % random loss each way, a tail-drop queue of twice the product.
    Path {
        loss: 0.001,
        queue_bytes: 2 * BDP,
        stretch: None,
    }
}

#[test]
fn random_loss_on_a_long_path_keeps_the_rate_near_the_bottleneck() {
    let one = [Duration::ZERO];
    let tolerant = bulk(
        1,
        CongestionControl::LossTolerant,
        lossy(),
        &one,
        RUN,
        WARMUP,
    );
    let reno = bulk(1, CongestionControl::Standard, lossy(), &one, RUN, WARMUP);
    let (t, r) = (
        tolerant.flows[0].share(tolerant.over),
        reno.flows[0].share(reno.over),
    );
    eprintln!("0.1 % loss: loss-tolerant {t:.3}, Reno {r:.3} of the bottleneck");
    // Payload is ~95 % of what crosses the link.
    assert!(t > 0.80, "loss-tolerant: {t:.3} of the bottleneck");
    // Mathis: 1.22 × 1,200 B ÷ (100 ms × √0.001) ≈ 3.7 Mbit/s, 19 %.
    assert!(r < 0.40, "Reno: {r:.3}");
}

#[test]
fn a_deep_bottleneck_queue_is_not_filled() {
    // No random loss, a tail-drop queue of eight products (800 ms): Reno
    // fills it until it overflows; the loss-tolerant control backs off on
    // the round trip (a standing queue of half the base) first.
    let deep = || Path {
        loss: 0.0,
        queue_bytes: 8 * BDP,
        stretch: None,
    };
    let one = [Duration::ZERO];
    let tolerant = bulk(
        2,
        CongestionControl::LossTolerant,
        deep(),
        &one,
        RUN,
        WARMUP,
    );
    let reno = bulk(2, CongestionControl::Standard, deep(), &one, RUN, WARMUP);
    let (t, r) = (&tolerant.flows[0], &reno.flows[0]);
    let (t90, r90) = (tolerant.queue(0.9), reno.queue(0.9));
    eprintln!(
        "deep queue: loss-tolerant {:.3}, queue p50 {:?} p90 {t90:?}, drops {}; Reno {:.3}, queue p50 {:?} p90 {r90:?}, drops {}",
        t.share(tolerant.over),
        tolerant.queue(0.5),
        tolerant.queue_dropped,
        r.share(reno.over),
        reno.queue(0.5),
        reno.queue_dropped
    );
    assert!(t.share(tolerant.over) > 0.85, "the bottleneck stays busy");
    // About half a round trip of queue, a little more as the window grows
    // back: far from the 800 ms the queue holds.
    assert!(t90 < 2 * ONE_WAY, "p90 {t90:?}");
    assert!(r90 > 4 * t90, "Reno queues more: {r90:?}");
}

#[test]
fn an_overflowing_bottleneck_pushes_the_window_down() {
    // A shallow tail-drop queue (a quarter of the product) and no random
    // loss: every loss is the bottleneck overflowing. The window comes down
    // on it: losses stay a small share rather than the window growing into
    // them.
    let shallow = || Path {
        loss: 0.0,
        queue_bytes: BDP / 4,
        stretch: None,
    };
    let one = [Duration::ZERO];
    let t = bulk(
        3,
        CongestionControl::LossTolerant,
        shallow(),
        &one,
        RUN,
        WARMUP,
    );
    let r = bulk(3, CongestionControl::Standard, shallow(), &one, RUN, WARMUP);
    let dropped = |r: &Report| r.queue_dropped as f64 / r.sent as f64;
    eprintln!(
        "shallow queue: loss-tolerant {:.3}, {:.4} dropped; Reno {:.3}, {:.4} dropped",
        t.flows[0].share(t.over),
        dropped(&t),
        r.flows[0].share(r.over),
        dropped(&r)
    );
    assert!(
        dropped(&t) < 0.03,
        "{} of {} dropped",
        t.queue_dropped,
        t.sent
    );
    assert!(t.flows[0].share(t.over) > 0.4);
}

#[test]
fn two_associations_share_a_bottleneck() {
    // The second starts 5 s after the first, through the same queue (one
    // client node, two associations), with 0.1 % random loss. How the share
    // comes out of the second's slow start into the first's standing queue
    // (its base round trip includes that queue) depends on the losses'
    // draw, so four seeds: none is starved in any, and they share fairly at
    // the median. The controller before Conservative Slow Start and the
    // timeout recovery (vendored dcsctp change 15): 0.52/0.41, 0.51/0.41,
    // 0.19/0.74, 0.54/0.37 (together 0.92 at the median, fairness 0.74);
    // with them: 0.42/0.49, 0.45/0.47, 0.27/0.67, 0.49/0.43 (0.92, 0.87).
    let mut together = Vec::new();
    let mut fairness = Vec::new();
    for seed in [4, 14, 24, 34] {
        let r = bulk(
            seed,
            CongestionControl::LossTolerant,
            lossy(),
            &[Duration::ZERO, Duration::from_secs(5)],
            Duration::from_secs(60),
            Duration::from_secs(30),
        );
        let (a, b) = (r.flows[0].share(r.over), r.flows[1].share(r.over));
        eprintln!("two flows, seed {seed}: {a:.3} and {b:.3} of the bottleneck");
        assert!(a + b > 0.75, "seed {seed}: together {:.3}", a + b);
        assert!(a.min(b) > 0.25 * a.max(b), "seed {seed}: {a:.3} vs {b:.3}");
        together.push(a + b);
        fairness.push(a.min(b) / a.max(b));
    }
    together.sort_by(f64::total_cmp);
    fairness.sort_by(f64::total_cmp);
    let median = |v: &[f64]| (v[1] + v[2]) / 2.0;
    assert!(median(&together) > 0.85, "together {together:?}");
    assert!(median(&fairness) > 0.8, "min/max {fairness:?}");
}

#[test]
fn one_stretched_round_trip_early_in_slow_start_does_not_end_it() {
    // No random loss; early in slow start, with the window ten to twenty
    // packets, the SACKs' way takes 15 ms longer for one round trip (over an
    // eighth of it: HyStart++'s threshold), as on the `wan` path when both
    // hosts were busy starting the run. Slow start goes on (HyStart++'s
    // Conservative Slow Start holds the window and sees the round trip fall
    // back) instead of ending there and leaving the window to CUBIC's growth
    // from a twentieth of the path (16 % of the bottleneck before). Stretched
    // at 450 ms instead, slow start also resumes, but with a SACK a packet it
    // doubles the window each round and overshoots twice the product into a
    // timeout (35 % of the bottleneck): a weakness of its own, not this one.
    let at = 300;
    let path = Path {
        loss: 0.0,
        queue_bytes: 2 * BDP,
        stretch: Some((Duration::from_millis(at), Duration::from_millis(15))),
    };
    let r = bulk(
        5,
        CongestionControl::LossTolerant,
        path,
        &[Duration::ZERO],
        Duration::from_secs(6),
        Duration::from_secs(2),
    );
    let share = r.flows[0].share(r.over);
    eprintln!("a round trip stretched at {at} ms in slow start: {share:.3} of the bottleneck");
    assert!(share > 0.8, "stretched at {at} ms: {share:.3}");
}
