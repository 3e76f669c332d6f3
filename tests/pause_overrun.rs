//! A paused Durable sender's overrun, on the simulated network (virtual
//! time: deterministic). A server closes a paused session that sends more
//! than `pause_overrun` past its pause; an engine client honouring its
//! pauses must never get there, however fast it sends, whichever worker
//! of the server owns its association, and however late the workers take
//! each other's relays.
//!
//! The worst case found (perf/README.md, P4): the sender's association on
//! one worker, its call homed on another. The owner acknowledges the
//! sender's data at once and relays it to the home, so the sender keeps
//! sending at full speed while the pause crosses the workers twice (the
//! receiver's pressure to the home, the pause back to the owner): with a
//! worker that takes its inbox late, that was megabytes, all counted as
//! overrun.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{EPOCH, SECRET, drain};
use dcengine::hub::{HubCluster, HubConfig, home_worker};
use dcengine::sim::{HostId, LinkConfig, Network};
use dcengine::{
    Call, ChannelConfig, DataChannelError, DataChannelReceiver, DataChannelReliability,
    DataChannelSender, DataChannelSenderOptions, HmacVerifier, NodeConfig, TrafficPolicy,
    WallClock, mint_token,
};

/// How late each relay batch reaches its worker: a worker busy or
/// descheduled for that long (2 cores shared by 5 busy threads in the perf
/// run).
const RELAY_DELAY: Duration = Duration::from_millis(20);

/// A server of `workers` workers (relays `RELAY_DELAY` late; a paused sender
/// may send `allowance` bytes past its pause), alice and bob
/// joined to a call homed on the worker that does not own alice's
/// association; bob's downlink is 80 Mbit/s, alice's uplink unlimited
/// (1 ms each way): alice outruns bob, and is paused.
struct Setup {
    net: Network<HubCluster>,
    server: HostId,
    alice: Call,
    bob: Call,
}

fn client(net: &mut Network<HubCluster>) -> HostId {
    let config = HubConfig::client()
        .seed(net.host_count() as u64)
        .channel(ChannelConfig::default().traffic(TrafficPolicy::unlimited()));
    net.add_host(HubCluster::new(config, 1))
}

fn setup(seed: u64, allowance: usize, workers: usize) -> Setup {
    setup_with(seed, workers, RELAY_DELAY, |c| c.pause_overrun(allowance))
}

/// [`setup`] with relays `relay_delay` late and the server's configuration
/// changed by `tweak`.
fn setup_with(
    seed: u64,
    workers: usize,
    relay_delay: Duration,
    tweak: impl FnOnce(HubConfig) -> HubConfig,
) -> Setup {
    let mut net = Network::new(seed, LinkConfig::with_latency(Duration::from_millis(1)));
    let clock = WallClock::new(net.now(), Duration::from_secs(EPOCH));
    let config = tweak(
        HubConfig::server(Arc::new(
            HmacVerifier::new(SECRET, clock).expect("a secret"),
        ))
        .seed(seed)
        .channel(ChannelConfig::default().traffic(TrafficPolicy::unlimited())),
    );
    let mut cluster = HubCluster::new(config, workers);
    cluster.set_relay_delay(relay_delay);
    let server = net.add_host(cluster);
    let alice_host = client(&mut net);
    let bob_host = client(&mut net);
    let owner = net.host(server).worker_for(net.addr(alice_host));
    let call = (0..)
        .map(|i| format!("call-{i}"))
        .find(|c| workers == 1 || home_worker(c, workers) != owner)
        .expect("a call homed on the other worker");
    let to = net.addr(server);
    let join = |net: &mut Network<HubCluster>, host: HostId, who: &str| {
        let token = mint_token(SECRET, &call, who, EPOCH + 3600).expect("short ids");
        let now = net.now();
        net.host_mut(host)
            .join_remote(now, to, &call, who, token)
            .expect("join")
    };
    let alice = join(&mut net, alice_host, "alice");
    let bob = join(&mut net, bob_host, "bob");
    let joined = net.run_until(Duration::from_secs(10), |_| {
        alice.is_joined() && bob.is_joined() && alice.participants().len() == 1
    });
    assert!(joined, "both joined");
    net.set_link(
        server,
        bob_host,
        LinkConfig {
            rate_bps: Some(80_000_000),
            queue_bytes: 512 * 1024,
            ..LinkConfig::with_latency(Duration::from_millis(1))
        },
    );
    Setup {
        net,
        server,
        alice,
        bob,
    }
}

fn durable(call: &Call) -> DataChannelSender {
    call.data_channel()
        .create_sender(DataChannelSenderOptions {
            channel_id: Some(1),
            reliability: DataChannelReliability::Durable,
            bitrate_kbps: 0,
            ..DataChannelSenderOptions::default()
        })
        .expect("sender")
}

/// Alice sends `n` messages of 1,000 bytes at full speed (whenever her
/// queue takes one, as awaiting `writable()` does); bob reads everything.
/// Returns the sequence numbers bob got, in order. Any send error but a
/// full queue fails the test: a closed sender is what must not happen.
fn full_speed(s: &mut Setup, sender: &DataChannelSender, n: u32) -> Vec<u32> {
    full_speed_then(s, sender, n, false).0
}

/// [`full_speed`]; with `leave`, alice leaves the call as soon as her last
/// message is accepted, and bob reads until his receiver closes (which it
/// returns).
fn full_speed_then(
    s: &mut Setup,
    sender: &DataChannelSender,
    n: u32,
    leave: bool,
) -> (Vec<u32>, Option<DataChannelReceiver>) {
    let mut rx: Option<DataChannelReceiver> = None;
    let mut got = Vec::new();
    let mut sent = 0u32;
    let mut left = false;
    let end = s.net.now() + Duration::from_secs(60);
    while s.net.now() < end
        && (got.len() < n as usize || (leave && !rx.as_ref().is_some_and(|r| r.is_closed())))
    {
        if leave && sent == n && !left {
            s.alice.leave();
            left = true;
        }
        while sent < n {
            let mut m = vec![0x5a; 1000];
            m[..4].copy_from_slice(&(sent + 1).to_be_bytes());
            match sender.send(m) {
                Ok(()) => sent += 1,
                Err(DataChannelError::MessageFailureForBandwidth) => break,
                Err(e) => {
                    let stats = s.net.host(s.server).stats();
                    panic!("send {} of {n}: {e} (server: {stats:?})", sent + 1);
                }
            }
        }
        s.net.run_for(Duration::from_millis(1));
        if rx.is_none() {
            rx = s.bob.data_channel().try_next_receiver();
        }
        if let Some(r) = &rx {
            got.extend(drain(r).into_iter().map(|(seq, data)| {
                let at = u32::from_be_bytes([data[0], data[1], data[2], data[3]]);
                assert_eq!(at, seq, "the payload is the one sent as that message");
                seq
            }));
        }
    }
    (got, rx)
}

/// The fast honest sender is paused and never closed, and bob gets every
/// message, in order. (Before the overrun counted from the pause's
/// hand-over to alice's association, she was closed at message 6,331.)
#[test]
fn a_fast_sender_relayed_between_late_workers_is_paused_never_closed() {
    let mut s = setup(91, HubConfig::client().pause_overrun, 2);
    let sender = durable(&s.alice);
    let n = 12_000;
    let got = full_speed(&mut s, &sender, n);
    assert_eq!(got, (1..=n).collect::<Vec<_>>(), "bob got all, in order");
    let stats = s.net.host(s.server).stats();
    assert!(stats.senders_paused >= 1, "alice was paused: {stats:?}");
    assert_eq!(stats.policed, 0, "nothing policed: {stats:?}");
    assert_eq!(stats.slow_consumers, 0, "{stats:?}");
}

/// The bound itself: what alice sends past a pause is what she had handed
/// SCTP unacknowledged when it reached her, at most her `uplink_buffer`,
/// plus what the server's SCTP receive buffer held unread when the pause
/// was handed over (data behind a loss; none here on one worker; relayed,
/// what the owner held while the call's worker was behind:
/// `HubConfig::relay_backlog`). An allowance of that plus 64 KiB holds, on
/// one worker and relayed.
#[test]
fn what_an_honest_sender_sends_past_its_pause_is_within_its_uplink_buffer() {
    let uplink = HubConfig::client().uplink_buffer;
    let held = NodeConfig::server().receive_buffer as usize;
    for workers in [1, 2] {
        let allowance = uplink + 64 * 1024 + if workers > 1 { held } else { 0 };
        let mut s = setup(92, allowance, workers);
        let sender = durable(&s.alice);
        let n = 12_000;
        let got = full_speed(&mut s, &sender, n);
        assert_eq!(got, (1..=n).collect::<Vec<_>>(), "bob got all, in order");
        let stats = s.net.host(s.server).stats();
        assert!(stats.senders_paused >= 1, "{workers}: paused: {stats:?}");
        assert_eq!(stats.policed, 0, "{workers}: nothing policed: {stats:?}");
    }
}

/// A worker far behind (relays 300 ms late: a worker descheduled that long
/// on a loaded machine): the owner of alice's association holds her reads
/// once 512 KiB of her frames wait for the call's worker
/// (`HubConfig::relay_backlog`), so her transport and sender slow down
/// and bob, an honest receiver, is never cut as a slow consumer; every
/// message arrives, in order. (Before, the owner relayed whatever alice
/// sent, tens of megabytes in 300 ms, and the burst passed bob's hard bound
/// (8 MiB then) at the call's worker: bob was cut, `slow_consumers` 1.)
#[test]
fn a_worker_far_behind_slows_the_sender_not_cuts_the_receiver() {
    let mut s = setup_with(93, 2, Duration::from_millis(300), |c| c);
    let sender = durable(&s.alice);
    let n = 12_000;
    let got = full_speed(&mut s, &sender, n);
    let stats = s.net.host(s.server).stats();
    assert_eq!(stats.slow_consumers, 0, "bob kept: {stats:?}");
    assert_eq!(got, (1..=n).collect::<Vec<_>>(), "bob got all, in order");
    assert!(stats.relay_holds >= 1, "alice's reads were held: {stats:?}");
    assert_eq!(stats.policed, 0, "nothing policed: {stats:?}");
}

/// A leave while the owner holds alice's reads (the call's worker 300 ms
/// behind): what she sent before it, waiting unread in the server's SCTP
/// receive buffer, is still read and delivered, and then bob's receiver
/// closes because she left. (Before, her SHUTDOWN-COMPLETE took the unread
/// messages with the association: bob got a prefix and `SenderLost`.)
#[test]
fn a_leave_while_reads_are_held_delivers_everything() {
    let mut s = setup_with(94, 2, Duration::from_millis(300), |c| c);
    let sender = durable(&s.alice);
    let n = 3_000;
    let (got, rx) = full_speed_then(&mut s, &sender, n, true);
    let stats = s.net.host(s.server).stats();
    assert!(stats.relay_holds >= 1, "alice's reads were held: {stats:?}");
    assert_eq!(got.len(), n as usize, "bob got all");
    assert!(got == (1..=n).collect::<Vec<_>>(), "in order");
    let rx = rx.expect("a receiver");
    assert_eq!(
        rx.close_reason(),
        Some(dcengine::ReceiverCloseReason::SenderLeft),
        "{stats:?}"
    );
}
