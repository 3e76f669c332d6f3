//! The `dcengine` command.
//!
//! Today it runs one job, the embedded default: an in-memory server and
//! client, connected through the deterministic network harness with loss,
//! exchanging engine frames both ways, then a summary of what flowed.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use dcengine::proto::{AssocId, Delivery, Event, Node, NodeConfig};
use dcengine::sim::{HostId, LinkConfig, Network};
use dcengine::wire::{
    Frame, Join, JoinAccepted, MemberId, Message, PROTOCOL_VERSION, Priority, Reliability,
    SenderOpened,
};

/// dcengine: a data-channel engine for media servers.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Durable messages the client sends (the server echoes each one back).
    #[arg(long, default_value_t = 20_000)]
    messages: u32,
    /// Lossy messages the client sends (not echoed).
    #[arg(long, default_value_t = 2_000)]
    lossy: u32,
    /// Payload size in bytes.
    #[arg(long, default_value_t = 100)]
    size: usize,
    /// Datagram loss probability on each direction of the link.
    #[arg(long, default_value_t = 0.02)]
    loss: f64,
    /// One-way latency in milliseconds.
    #[arg(long, default_value_t = 20)]
    latency_ms: u64,
    /// Seed of the simulated network.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

const CHANNEL: u16 = 10_000;
const WINDOW: usize = 64 * 1024;

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dcengine: {e}");
            ExitCode::FAILURE
        }
    }
}

#[derive(Default)]
struct Tally {
    durable_sent: u32,
    lossy_sent: u32,
    durable_at_server: u32,
    lossy_at_server: u32,
    echoes_at_client: u32,
    bytes_at_server: usize,
}

fn run(args: &Args) -> Result<(), String> {
    let started = Instant::now();
    let link = LinkConfig {
        latency: Duration::from_millis(args.latency_ms),
        jitter: Duration::from_millis(args.latency_ms / 4),
        loss: args.loss,
        ..LinkConfig::default()
    };
    let mut net = Network::new(args.seed, link);
    let server = net.add_host(Node::new(NodeConfig::server()));
    let client = net.add_host(Node::new(NodeConfig::client()));
    println!(
        "dcengine demo: in-memory server {} and client {}, {} ms latency, {:.1} % loss each way",
        net.addr(server),
        net.addr(client),
        args.latency_ms,
        args.loss * 100.0
    );

    let (now, to) = (net.now(), net.addr(server));
    let c = net
        .host_mut(client)
        .connect(now, to)
        .map_err(|e| e.to_string())?;
    let s = handshake(&mut net, server, client)?;
    let t0 = net.now();

    // Join, accept, open a sender: the control frames of a real session.
    let join = Join {
        version: PROTOCOL_VERSION,
        call_id: "demo-call".try_into().map_err(|e| format!("{e}"))?,
        participant_id: "8:demo:alice".try_into().map_err(|e| format!("{e}"))?,
        token: Bytes::from_static(b"demo"),
    };
    send(&mut net, client, c, Delivery::Reliable, join.into())?;
    let opened = SenderOpened {
        channel: CHANNEL,
        session: 1,
        reliability: Reliability::Durable,
        priority: Priority::Normal,
        bitrate_kbps: 32,
        origin: None,
    };
    send(&mut net, client, c, Delivery::Reliable, opened.into())?;

    let mut tally = Tally::default();
    let payload = Bytes::from(vec![0x42; args.size]);
    let total_expected = args.messages;
    let finished = net.run_until(Duration::from_secs(3600), |net| {
        pump_client(net, client, c, args, &payload, &mut tally);
        serve(net, server, s, &mut tally);
        for e in std::iter::from_fn(|| net.host_mut(client).poll_event()) {
            if let Event::Frame {
                frame: Frame::Data(d),
                ..
            } = e
                && d.origin == Some(MemberId(1))
            {
                tally.echoes_at_client += 1;
            }
        }
        tally.durable_sent == args.messages
            && tally.lossy_sent == args.lossy
            && tally.echoes_at_client == total_expected
    });
    if !finished {
        return Err("the exchange did not finish within an hour of virtual time".into());
    }
    let virtual_time = net.now() - t0;
    let stats = net.total_stats();
    println!("handshake and join: done");
    println!(
        "client -> server: {} Durable messages delivered of {} sent (in order, exactly once), {} of {} Lossy",
        tally.durable_at_server, tally.durable_sent, tally.lossy_at_server, tally.lossy_sent
    );
    println!(
        "server -> client: {} echoes delivered, {} payload bytes received by the server",
        tally.echoes_at_client, tally.bytes_at_server
    );
    println!(
        "network: {} datagrams sent, {} lost, {} delivered",
        stats.sent, stats.lost, stats.delivered
    );
    println!(
        "time: {:.2} s virtual, {:.2} s real ({:.0} messages/s of simulation)",
        virtual_time.as_secs_f64(),
        started.elapsed().as_secs_f64(),
        f64::from(tally.durable_sent + tally.lossy_sent + tally.echoes_at_client)
            / started.elapsed().as_secs_f64()
    );
    if tally.durable_at_server != args.messages {
        return Err("Durable messages were lost".into());
    }
    Ok(())
}

fn handshake(net: &mut Network, server: HostId, client: HostId) -> Result<AssocId, String> {
    let mut s = None;
    let mut c_up = false;
    net.run_until(Duration::from_secs(30), |net| {
        for e in std::iter::from_fn(|| net.host_mut(server).poll_event()) {
            if let Event::Connected { assoc, .. } = e {
                s = Some(assoc);
            }
        }
        for e in std::iter::from_fn(|| net.host_mut(client).poll_event()) {
            c_up |= matches!(e, Event::Connected { .. });
        }
        c_up && s.is_some()
    });
    s.filter(|_| c_up)
        .ok_or_else(|| "handshake did not complete".to_string())
}

fn send(
    net: &mut Network,
    host: HostId,
    assoc: AssocId,
    d: Delivery,
    f: Frame,
) -> Result<(), String> {
    let now = net.now();
    net.host_mut(host)
        .send(now, assoc, d, &Message::Frame(f))
        .map_err(|e| e.to_string())
}

/// Sends as much as the window allows.
fn pump_client(
    net: &mut Network,
    client: HostId,
    c: AssocId,
    args: &Args,
    payload: &Bytes,
    t: &mut Tally,
) {
    let now = net.now();
    let node = net.host_mut(client);
    while t.durable_sent < args.messages && node.buffered_amount(c, Delivery::Reliable) < WINDOW {
        t.durable_sent += 1;
        let d = data(t.durable_sent, None, payload.clone());
        if node.send(now, c, Delivery::Reliable, &d).is_err() {
            t.durable_sent -= 1;
            break;
        }
    }
    while t.lossy_sent < args.lossy && node.buffered_amount(c, Delivery::Lossy) < WINDOW {
        t.lossy_sent += 1;
        let d = data(t.lossy_sent, None, payload.clone());
        if node.send(now, c, Delivery::Lossy, &d).is_err() {
            t.lossy_sent -= 1;
            break;
        }
    }
}

/// The server side: accept the join, count data, echo Durable data back
/// stamped with the sender's member id.
fn serve(net: &mut Network, server: HostId, s: AssocId, t: &mut Tally) {
    let now = net.now();
    let node = net.host_mut(server);
    while let Some(e) = node.poll_event() {
        let Event::Frame {
            frame, delivery, ..
        } = e
        else {
            continue;
        };
        match frame {
            Frame::Join(j) => {
                println!("server: {} joins {}", j.participant_id, j.call_id);
                let accepted = JoinAccepted {
                    version: PROTOCOL_VERSION,
                    member: MemberId(1),
                    max_message_size: 32 * 1024,
                    idle_timeout_ms: 120_000,
                };
                let _ = node.send(now, s, Delivery::Reliable, &Message::Frame(accepted.into()));
            }
            Frame::SenderOpened(o) => println!("server: sender opened on channel {}", o.channel),
            Frame::Data(d) if delivery == Delivery::Reliable => {
                t.durable_at_server += 1;
                t.bytes_at_server += d.payload.len();
                assert_eq!(d.seq, t.durable_at_server, "Durable order");
                let echo = data(d.seq, Some(MemberId(1)), d.payload);
                let _ = node.send(now, s, Delivery::Reliable, &echo);
            }
            Frame::Data(d) => {
                t.lossy_at_server += 1;
                t.bytes_at_server += d.payload.len();
            }
            _ => {}
        }
    }
}

fn data(seq: u32, origin: Option<MemberId>, payload: Bytes) -> Message {
    Message::Frame(Frame::Data(dcengine::wire::Data {
        channel: CHANNEL,
        session: 1,
        seq,
        origin,
        epoch: None,
        payload,
    }))
}
