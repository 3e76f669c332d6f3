//! Shared scenario helpers: a server hub and client hubs on the simulated
//! network, joined to calls with real tokens.
#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;
use std::time::Duration;

use dcengine::hub::{HubCluster, HubConfig};
use dcengine::sim::{HostId, LinkConfig, Network};
use dcengine::{
    Call, ChannelConfig, DataChannelReceiver, DataChannelSender, HmacVerifier, TrafficPolicy,
    WallClock, mint_token,
};

pub const SECRET: &[u8] = b"test secret";
/// The Unix time the simulation starts at.
pub const EPOCH: u64 = 1_700_000_000;

/// How many workers the simulated server runs. The `workers` test binary
/// compiles the DataChannel suite again with a 3-worker server (calls
/// homed on one worker, members spread over all three, relays between
/// them); everywhere else the server is one hub.
pub fn server_workers() -> usize {
    if env!("CARGO_CRATE_NAME") == "workers" {
        3
    } else {
        1
    }
}

pub struct World {
    pub net: Network<HubCluster>,
    pub server: HostId,
}

impl World {
    pub fn new(seed: u64, link: LinkConfig) -> Self {
        Self::with_server(seed, link, |_| {})
    }

    pub fn with_server(seed: u64, link: LinkConfig, tweak: impl FnOnce(&mut HubConfig)) -> Self {
        let mut net = Network::new(seed, link);
        let clock = WallClock::new(net.now(), Duration::from_secs(EPOCH));
        // Scenarios about semantics run without the traffic rules; the
        // rules' own tests turn them on.
        let mut config = HubConfig::server(Arc::new(
            HmacVerifier::new(SECRET, clock).expect("a secret"),
        ))
        .seed(seed)
        .channel(ChannelConfig::default().traffic(TrafficPolicy::unlimited()));
        tweak(&mut config);
        let server = net.add_host(HubCluster::new(config, server_workers()));
        Self { net, server }
    }

    /// A client hub (configured by `tweak`) that joins `call` as `who`.
    pub fn join_with(
        &mut self,
        call: &str,
        who: &str,
        tweak: impl FnOnce(&mut HubConfig),
    ) -> (HostId, Call) {
        let mut config = HubConfig::client()
            .seed(self.net.host_count() as u64)
            .channel(ChannelConfig::default().traffic(TrafficPolicy::unlimited()));
        tweak(&mut config);
        let host = self.net.add_host(HubCluster::new(config, 1));
        let token = mint_token(SECRET, call, who, EPOCH + 3600).expect("short ids");
        let (now, to) = (self.net.now(), self.net.addr(self.server));
        let c = self
            .net
            .host_mut(host)
            .join_remote(now, to, call, who, token)
            .expect("join");
        (host, c)
    }

    pub fn join(&mut self, call: &str, who: &str) -> (HostId, Call) {
        self.join_with(call, who, |_| {})
    }

    /// Joins each name to `call` and waits until all are joined and see
    /// each other.
    /// Members already in the call count too.
    pub fn call_of(&mut self, call: &str, names: &[&str]) -> Vec<Call> {
        let before = self.net.host(self.server).members(call).len();
        let calls: Vec<Call> = names.iter().map(|n| self.join(call, n).1).collect();
        let others = before + names.len() - 1;
        self.settle_until(|_| {
            calls
                .iter()
                .all(|c| c.is_joined() && c.participants().len() == others)
        });
        calls
    }

    /// Runs until `cond` holds; panics after a minute of virtual time.
    pub fn settle_until(&mut self, mut cond: impl FnMut(&mut Self) -> bool) {
        let limit = self.net.now() + Duration::from_secs(60);
        while !cond(self) {
            assert!(
                self.net.step(limit),
                "condition not reached within 60 s of virtual time"
            );
        }
    }

    pub fn run_for(&mut self, d: Duration) {
        self.net.run_for(d);
    }
}

/// Waits for `n` new receivers on `call`.
pub fn receivers(world: &mut World, call: &Call, n: usize) -> Vec<DataChannelReceiver> {
    let dc = call.data_channel();
    let mut got = Vec::new();
    world.settle_until(|_| {
        while let Some(r) = dc.try_next_receiver() {
            got.push(r);
        }
        got.len() >= n
    });
    got
}

/// Every message currently readable, as (seq, bytes).
pub fn drain(r: &DataChannelReceiver) -> Vec<(u32, Vec<u8>)> {
    std::iter::from_fn(|| r.read_message())
        .map(|m| (m.sequence_number, m.data.to_vec()))
        .collect()
}

pub fn send_all(sender: &DataChannelSender, msgs: impl IntoIterator<Item = Vec<u8>>) {
    for m in msgs {
        sender.send(m).expect("send");
    }
}
