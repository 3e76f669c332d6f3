//! The DataChannel suite again, against a server of three workers: each
//! call is homed on one worker and its members' associations are spread
//! over all three (the simulator steers them as the kernel's
//! `SO_REUSEPORT` does), so every semantic crosses the workers' relays;
//! the shutdown scenarios run on it too.
//! See `common::server_workers`.
// Each included suite brings its own copy of the shared helpers.
#![allow(clippy::duplicate_mod)]

#[path = "datachannel.rs"]
mod datachannel;

#[path = "randomized.rs"]
mod randomized;

#[path = "shutdown_sim.rs"]
mod shutdown_sim;

#[path = "backpressure.rs"]
mod backpressure;

#[path = "common/mod.rs"]
mod common;

use common::{World, drain, receivers};
use dcengine::internal::HubInternals as _;
use dcengine::sim::LinkConfig;
use dcengine::{DataChannelReliability, DataChannelSenderOptions};

/// The premise of this suite: a call's members really are spread over the
/// workers, and messages really cross them.
#[test]
fn members_are_spread_over_the_workers_and_messages_cross_them() {
    let mut w = World::new(5, LinkConfig::default());
    let names: Vec<String> = (0..9).map(|i| format!("p{i}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let calls = w.call_of("call", &refs);
    let server = w.net.host(w.server);
    assert_eq!(server.workers(), 3);
    let per_worker: Vec<usize> = (0..3)
        .map(|i| server.hub(i).node().association_count())
        .collect();
    assert_eq!(per_worker.iter().sum::<usize>(), 9);
    assert!(
        per_worker.iter().filter(|&&n| n > 0).count() >= 2,
        "associations per worker: {per_worker:?}"
    );
    // Every member hears every other's Durable messages, in order.
    let senders: Vec<_> = calls
        .iter()
        .map(|c| {
            c.data_channel()
                .create_sender(DataChannelSenderOptions {
                    channel_id: Some(7),
                    reliability: DataChannelReliability::Durable,
                    bitrate_kbps: 0,
                    ..DataChannelSenderOptions::default()
                })
                .expect("sender")
        })
        .collect();
    for s in &senders {
        for k in 0..20u8 {
            s.send(vec![k; 10]).expect("send");
        }
    }
    for c in &calls {
        let rx = receivers(&mut w, c, 8);
        let mut got: Vec<Vec<u8>> = vec![Vec::new(); 8];
        w.settle_until(|_| {
            for (i, r) in rx.iter().enumerate() {
                got[i].extend(drain(r).into_iter().map(|(_, d)| d[0]));
            }
            got.iter().all(|g| g.len() == 20)
        });
        for g in &got {
            assert_eq!(*g, (0..20u8).collect::<Vec<_>>());
        }
    }
    assert_eq!(w.net.host(w.server).stats().messages_forwarded, 9 * 8 * 20);
}
