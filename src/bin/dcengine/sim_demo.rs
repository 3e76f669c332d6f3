//! `dcengine demo --simulated`: a server and a few clients, all in memory,
//! connected through the deterministic network harness with latency and
//! loss. The clients join a call with real tokens, chat on channel 10000
//! like the ACS sample, stream cursor positions (Lossy, High priority) and
//! telemetry (Durable), and a summary of what flowed is printed at the end.
//! It shows how the engine behaves on a bad network; `dcengine demo` (the
//! default) runs the same kind of job over real UDP.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use dcengine::sim::{LinkConfig, Network};
use dcengine::{
    Call, DataChannelPriority, DataChannelReceiver, DataChannelReliability, DataChannelSender,
    DataChannelSenderOptions, HmacVerifier, Hub, HubConfig, WallClock, mint_token,
};
use hdrhistogram::Histogram;

/// Options of `dcengine demo --simulated` only.
#[derive(Debug, clap::Args)]
pub(crate) struct SimArgs {
    /// With --simulated: telemetry messages each participant sends (Durable, 50 per second).
    #[arg(long, requires = "simulated", default_value_t = 1_000)]
    messages: u32,
    /// With --simulated: telemetry payload size in bytes.
    #[arg(long, requires = "simulated", default_value_t = 100)]
    size: usize,
    /// With --simulated: datagram loss probability on every link.
    #[arg(long, requires = "simulated", default_value_t = 0.02)]
    loss: f64,
    /// With --simulated: one-way latency in milliseconds.
    #[arg(long, requires = "simulated", default_value_t = 20)]
    latency_ms: u64,
    /// With --simulated: seed of the simulated network.
    #[arg(long, requires = "simulated", default_value_t = 1)]
    seed: u64,
}

const SECRET: &[u8] = b"demo secret";
const UNIX_START: u64 = 1_800_000_000;
const NAMES: [&str; 8] = [
    "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi",
];

struct Person {
    name: &'static str,
    call: Call,
    chat: DataChannelSender,
    cursor: DataChannelSender,
    telemetry: DataChannelSender,
    receivers: Vec<DataChannelReceiver>,
    /// Last telemetry sequence number seen per receiver (order check).
    last_seq: Vec<u32>,
    telemetry_sent: u32,
}

#[derive(Default)]
struct Flow {
    sent: u64,
    delivered: u64,
}

/// Runs the demo.
pub(crate) fn run(args: &SimArgs, clients: usize) -> Result<(), String> {
    let started = Instant::now();
    let clients = clients.clamp(2, NAMES.len());
    let link = LinkConfig {
        latency: Duration::from_millis(args.latency_ms),
        jitter: Duration::from_millis(args.latency_ms / 4),
        loss: args.loss,
        ..LinkConfig::default()
    };
    let mut net: Network<Hub> = Network::new(args.seed, link);
    let t0 = net.now();
    let clock = WallClock::new(t0, Duration::from_secs(UNIX_START));
    let server = net.add_host(Hub::new(HubConfig::server(Arc::new(
        HmacVerifier::new(SECRET, clock).map_err(|e| e.to_string())?,
    ))));
    println!(
        "dcengine demo --simulated: a server and {clients} clients in memory; {} ms latency, {:.1} % loss on every link",
        args.latency_ms,
        args.loss * 100.0
    );

    let calls: Vec<(&'static str, Call)> = NAMES[..clients]
        .iter()
        .map(|&name| {
            let host = net.add_host(Hub::new(HubConfig::client()));
            let token =
                mint_token(SECRET, "demo", name, UNIX_START + 3600).map_err(|e| e.to_string())?;
            let (now, to) = (net.now(), net.addr(server));
            let call = net
                .host_mut(host)
                .join_remote(now, to, "demo", name, token)
                .map_err(|e| e.to_string())?;
            Ok((name, call))
        })
        .collect::<Result<_, String>>()?;
    let joined = net.run_until(Duration::from_secs(30), |_| {
        calls
            .iter()
            .all(|(_, c)| c.participants().len() == clients - 1)
    });
    if !joined {
        return Err("the clients did not all join within 30 s".into());
    }
    println!(
        "joined: {} (after {:.0} ms)",
        NAMES[..clients].join(", "),
        (net.now() - t0).as_secs_f64() * 1e3
    );

    let mut people = Vec::new();
    for (name, call) in calls {
        let dc = call.data_channel();
        let open = |channel: u16, reliability, priority| {
            dc.create_sender(DataChannelSenderOptions {
                channel_id: Some(channel),
                reliability,
                priority,
                ..Default::default()
            })
            .map_err(|e| e.to_string())
        };
        people.push(Person {
            name,
            chat: open(
                10000,
                DataChannelReliability::Durable,
                DataChannelPriority::Normal,
            )?,
            cursor: open(
                2000,
                DataChannelReliability::Lossy,
                DataChannelPriority::High,
            )?,
            telemetry: open(
                3000,
                DataChannelReliability::Durable,
                DataChannelPriority::Normal,
            )?,
            call,
            receivers: Vec::new(),
            last_seq: Vec::new(),
            telemetry_sent: 0,
        });
    }

    // Everyone says hello on the chat channel, as in the ACS sample.
    for p in &people {
        p.chat
            .send(format!("hello from {}", p.name))
            .map_err(|e| e.to_string())?;
    }

    let mut latency =
        Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).map_err(|e| e.to_string())?;
    let (mut chat, mut cursor, mut telemetry) = (Flow::default(), Flow::default(), Flow::default());
    chat.sent = people.len() as u64;
    let stamp =
        |now: Instant| Bytes::copy_from_slice(&((now - t0).as_micros() as u64).to_be_bytes());
    let expected_telemetry =
        u64::from(args.messages) * (people.len() as u64) * (people.len() as u64 - 1);
    // The application's clock: every 5 ms of virtual time, each participant
    // sends what is due (telemetry 50/s, a cursor position 20/s), then reads.
    const SLOT: Duration = Duration::from_millis(5);
    let mut slot = 0u64;
    let limit = t0 + Duration::from_secs(3600);
    let mut done = false;
    while !done && net.now() < limit {
        net.run_for(SLOT);
        slot += 1;
        let now = net.now();
        for p in &mut people {
            let sending = p.telemetry_sent < args.messages;
            if sending && slot.is_multiple_of(4) {
                let mut m = stamp(now).to_vec();
                m.resize(args.size.max(8), 0);
                if p.telemetry.send(m).is_ok() {
                    p.telemetry_sent += 1;
                    telemetry.sent += 1;
                }
            }
            if sending && slot.is_multiple_of(10) && p.cursor.send(stamp(now)).is_ok() {
                cursor.sent += 1;
            }
            let dc = p.call.data_channel();
            p.receivers
                .extend(std::iter::from_fn(|| dc.try_next_receiver()));
            p.last_seq.resize(p.receivers.len(), 0);
            for (i, r) in p.receivers.iter().enumerate() {
                while let Some(m) = r.read_message() {
                    match r.channel_id() {
                        10000 => {
                            chat.delivered += 1;
                            println!(
                                "[chat] {} -> {}: {}",
                                r.sender_id(),
                                p.name,
                                String::from_utf8_lossy(&m.data)
                            );
                        }
                        2000 => cursor.delivered += 1,
                        _ => {
                            if m.sequence_number != p.last_seq[i] + 1 {
                                return Err(format!(
                                    "telemetry from {} out of order: {} after {}",
                                    r.sender_id(),
                                    m.sequence_number,
                                    p.last_seq[i]
                                ));
                            }
                            p.last_seq[i] = m.sequence_number;
                            telemetry.delivered += 1;
                            let sent_us =
                                u64::from_be_bytes(m.data[..8].try_into().unwrap_or_default());
                            let now_us = (now - t0).as_micros() as u64;
                            let _ = latency.record(now_us.saturating_sub(sent_us).max(1));
                        }
                    }
                }
            }
        }
        done = telemetry.delivered == expected_telemetry
            && chat.delivered == chat.sent * (people.len() as u64 - 1);
    }
    if !done {
        return Err("the exchange did not finish within an hour of virtual time".into());
    }
    for p in &people {
        p.call.leave();
    }
    net.run_for(Duration::from_secs(1));

    let virtual_time = net.now() - t0;
    let stats = net.total_stats();
    let hub = net.host(server).stats();
    println!();
    println!(
        "summary ({} participants, {:.2} s of virtual time):",
        people.len(),
        virtual_time.as_secs_f64()
    );
    println!(
        "  chat      ch 10000  Durable Normal: {:>7} sent, {:>8} delivered",
        chat.sent, chat.delivered
    );
    println!(
        "  cursors   ch  2000  Lossy   High  : {:>7} sent, {:>8} delivered ({} fan-out targets each; Lossy may drop)",
        cursor.sent,
        cursor.delivered,
        people.len() - 1
    );
    println!(
        "  telemetry ch  3000  Durable Normal: {:>7} sent, {:>8} delivered (all, in order)",
        telemetry.sent, telemetry.delivered
    );
    println!(
        "  telemetry latency (virtual): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        latency.value_at_quantile(0.50) as f64 / 1e3,
        latency.value_at_quantile(0.99) as f64 / 1e3,
        latency.max() as f64 / 1e3
    );
    println!(
        "  server: {} joins, {} messages forwarded; network: {} datagrams, {} lost",
        hub.joins_accepted, hub.messages_forwarded, stats.sent, stats.lost
    );
    println!(
        "  errors: 0; real time {:.2} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
