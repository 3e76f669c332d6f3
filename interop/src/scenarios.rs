//! The matrix's scenarios, one function per column, each run against one
//! peer (a row). Every wait is bounded ([`LIMIT`]); nothing asserts on
//! timing. A failed check panics with the peer's events, the wire tap and
//! the server's events.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use dcengine::hub::HubEvent;
use dcengine::wire::{
    Batch, Codec, Data, Frame, Join, JoinAccepted, Message, PROTOCOL_VERSION, Priority,
    Reliability, SenderOpened, ShortStr,
};
use dcengine::{Call, DataChannelReceiver, DataChannelReliability, NodeConfig, ParticipantId};

use crate::peer::{Cmd, Ev, LIMIT, Peer};
use crate::server::{CALL, Server};
use crate::tap::{Dir, Tap, chunk};
use crate::usrsctp::Bind;

/// A row of the matrix: which stack, bound how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// usrsctp (C, in a child process), bound as given.
    Usrsctp(Bind),
    /// webrtc-sctp.
    Webrtc,
    /// dcsctp as published.
    Dcsctp,
}

/// The participant id every peer joins as.
pub const WHO: &str = "peer";
/// The channel the peer's senders use.
const CHANNEL: u16 = 7;
/// The channel of the Durable barrier in the Lossy cells.
const BARRIER: u16 = 8;

/// One cell: a server, a tap in front of it and a peer.
pub struct Cell {
    /// The engine.
    pub server: Server,
    /// The wire tap (dropped after the peer).
    pub peer: Peer,
    /// The tap.
    pub tap: Tap,
}

impl Cell {
    /// A fresh server (2 workers), tap and peer of `kind`, connected.
    pub fn new(kind: Kind) -> Cell {
        let bind: SocketAddr = if kind == Kind::Usrsctp(Bind::AnyV6) {
            "[::1]:0".parse().expect("an address")
        } else {
            "127.0.0.1:0".parse().expect("an address")
        };
        let server = Server::start(bind);
        let tap = Tap::start(server.addr);
        let spawn = |tap: &Tap| match kind {
            Kind::Usrsctp(b) => crate::usrsctp::spawn(b, tap.addr()),
            Kind::Webrtc => crate::webrtc::spawn(tap.addr()),
            Kind::Dcsctp => crate::dcsctp::spawn(tap.addr()),
        };
        let peer = spawn(&tap);
        let mut cell = Cell { server, peer, tap };
        // A peer that sent nothing at all in its first seconds never started
        // its transport: the usrsctp puppet's UDP port, found free by the
        // harness, was taken by a parallel cell before usrsctp bound it
        // (usrsctp_init reports no error). Such a start is the harness's
        // race, not an outcome: the peer is started again, twice at most.
        for _ in 0..2 {
            if cell.peer.wait_connected_within(Duration::from_secs(5)) {
                return cell;
            }
            if cell.tap.packets() > 0 {
                break;
            }
            println!(
                "[{}] the peer sent nothing in 5 s: started again",
                cell.peer.name
            );
            cell.peer = spawn(&cell.tap);
        }
        let up = cell.peer.wait_connected();
        cell.check(up, "the association comes up");
        cell
    }

    /// Everything known, for a failure message.
    pub fn explain(&mut self, what: &str) -> String {
        format!(
            "[{}] FAILED: {what}\n{}{}{}",
            self.peer.name,
            self.peer.history_text(),
            self.tap.trace(),
            self.server.events_text()
        )
    }

    /// Panics with [`Cell::explain`] unless `ok`.
    #[track_caller]
    pub fn check(&mut self, ok: bool, what: &str) {
        if !ok {
            let text = self.explain(what);
            panic!("{text}");
        }
    }

    /// Joins [`CALL`] as [`WHO`]; returns the `JoinAccepted`.
    pub fn join(&mut self) -> JoinAccepted {
        let join = Join {
            version: PROTOCOL_VERSION,
            call_id: ShortStr::try_from(CALL.to_owned()).expect("short"),
            participant_id: ShortStr::try_from(WHO.to_owned()).expect("short"),
            token: Server::token(WHO),
        };
        self.peer.send_frame(0, &Message::Frame(Frame::Join(join)));
        let deadline = Instant::now() + LIMIT;
        while let Some((_, frames)) = self
            .peer
            .next_frames(deadline.saturating_duration_since(Instant::now()))
        {
            for f in frames {
                match f {
                    Frame::JoinAccepted(a) => return a,
                    Frame::JoinRejected(r) => {
                        let what = format!("join rejected: {r:?}");
                        self.check(false, &what);
                    }
                    _ => {}
                }
            }
        }
        self.check(false, "JoinAccepted within the limit");
        unreachable!()
    }

    /// Opens a sender session on [`CHANNEL`] from the peer.
    pub fn open(&self, session: u32, reliability: Reliability) {
        self.open_on(CHANNEL, session, reliability);
    }

    /// Opens a sender session on `channel` from the peer.
    pub fn open_on(&self, channel: u16, session: u32, reliability: Reliability) {
        let f = Frame::SenderOpened(SenderOpened {
            channel,
            session,
            reliability,
            priority: Priority::Normal,
            bitrate_kbps: 0,
            origin: None,
        });
        self.peer.send_frame(0, &Message::Frame(f));
    }

    /// One Data frame of session `session` (epoch 0 when Lossy).
    pub fn data(session: u32, seq: u32, lossy: bool, payload: Bytes) -> Data {
        Data {
            channel: CHANNEL,
            session,
            seq,
            origin: None,
            epoch: lossy.then_some(0),
            payload,
        }
    }

    /// Sends one Data frame as its own message: Durable on stream 0,
    /// Lossy on stream 1 (unordered).
    pub fn send_data(&self, session: u32, seq: u32, lossy: bool, payload: Bytes) {
        let m = Message::Frame(Frame::Data(Self::data(session, seq, lossy, payload)));
        self.peer.send_frame(if lossy { 1 } else { 0 }, &m);
    }

    /// The next receiver on `host`'s data channel.
    pub fn receiver(&mut self, host: &Call) -> DataChannelReceiver {
        let r = host.data_channel().next_receiver_timeout(LIMIT);
        match r {
            Some(r) => r,
            None => {
                self.check(false, "the host gets a receiver for the peer's sender");
                unreachable!()
            }
        }
    }

    /// Asserts the association is still up (no end seen).
    pub fn still_up(&mut self, what: &str) {
        let end = self.peer.ended();
        let ok = end.is_none();
        self.check(
            ok,
            &format!("{what}: the association is still up (saw {end:?})"),
        );
    }

    /// Waits for the end and asserts it was graceful: the peer says so
    /// (or cannot say), the wire shows SHUTDOWN-COMPLETE and no ABORT.
    pub fn expect_graceful_end(&mut self, what: &str) {
        let end = self.peer.wait_end(LIMIT);
        let ok = matches!(end, Some(Ev::Closed | Ev::Ended));
        self.check(ok, &format!("{what}: a graceful end (got {end:?})"));
        self.wait_wire(chunk::SHUTDOWN_COMPLETE);
        let complete = self.tap.count(Dir::ToEngine, chunk::SHUTDOWN_COMPLETE)
            + self.tap.count(Dir::ToPeer, chunk::SHUTDOWN_COMPLETE);
        let aborts =
            self.tap.count(Dir::ToEngine, chunk::ABORT) + self.tap.count(Dir::ToPeer, chunk::ABORT);
        self.check(
            complete >= 1 && aborts == 0,
            &format!("{what}: SHUTDOWN-COMPLETE on the wire ({complete}) and no ABORT ({aborts})"),
        );
    }

    /// Waits (bounded) until the tap saw chunk type `t` either way.
    pub fn wait_wire(&self, t: u8) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.tap.count(Dir::ToEngine, t) + self.tap.count(Dir::ToPeer, t) > 0 {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }

    /// Waits until the server reports [`WHO`] left.
    pub fn expect_left(&mut self, what: &str) {
        let left = self.server.wait_left(WHO, LIMIT);
        self.check(left, &format!("{what}: the server reports the member left"));
    }
}

fn payload(i: u32, len: usize) -> Bytes {
    let mut b = BytesMut::from(format!("message {i:05} ").as_bytes());
    while b.len() < len {
        b.extend_from_slice(&[(i as u8).wrapping_add(b.len() as u8)]);
    }
    b.truncate(len.max(14));
    b.freeze()
}

/// Handshake, then `Join` answered by `JoinAccepted`.
pub fn handshake_join(kind: Kind) {
    let mut c = Cell::new(kind);
    let a = c.join();
    c.check(
        a.version == PROTOCOL_VERSION,
        "JoinAccepted speaks our version",
    );
    let joined = c.server.wait_event(LIMIT, |e| {
        matches!(e, HubEvent::ParticipantJoined { participant_id, .. } if participant_id.as_str() == WHO)
    });
    c.check(joined, "the server reports the participant joined");
    c.still_up("after the join");
}

/// 200 Durable messages peer → the server's own participant: all, in
/// order, intact.
pub fn durable_to_engine(kind: Kind) {
    let mut c = Cell::new(kind);
    let host = c.server.host();
    c.join();
    c.open(1, Reliability::Durable);
    for i in 1..=200 {
        c.send_data(1, i, false, payload(i, 100 + (i as usize % 50) * 20));
    }
    let r = c.receiver(&host);
    c.check(
        r.reliability() == DataChannelReliability::Durable
            && r.sender_id() == &ParticipantId::from(WHO),
        "a Durable receiver of the peer",
    );
    for i in 1..=200u32 {
        let m = r.recv_timeout(LIMIT);
        let ok = m.as_ref().is_some_and(|m| {
            m.sequence_number == i && m.data == payload(i, 100 + (i as usize % 50) * 20)
        });
        c.check(
            ok,
            &format!(
                "message {i} of 200 in order and intact (got {:?})",
                m.map(|m| m.sequence_number)
            ),
        );
    }
    c.still_up("after 200 Durable messages");
}

/// Waits until `host` sees [`WHO`] in the call.
fn host_sees_peer(c: &mut Cell, host: &Call) {
    let deadline = Instant::now() + LIMIT;
    while !host.participants().contains(&ParticipantId::from(WHO)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let ok = host.participants().contains(&ParticipantId::from(WHO));
    c.check(ok, "the host sees the peer in the call");
}

/// Collects the Data frames of the host's session from the peer's
/// messages until `n` or the limit; returns (stream, seq, payload).
fn collect_data(c: &mut Cell, n: usize, limit: Duration) -> (bool, Vec<(u16, u32, Bytes)>) {
    let deadline = Instant::now() + limit;
    let mut opened = false;
    let mut got = Vec::new();
    while got.len() < n {
        let left = deadline.saturating_duration_since(Instant::now());
        let Some((stream, frames)) = c.peer.next_frames(left) else {
            break;
        };
        for f in frames {
            match f {
                Frame::SenderOpened(o) if o.origin.is_some() => opened = true,
                Frame::Data(d) if d.origin.is_some() => got.push((stream, d.seq, d.payload)),
                _ => {}
            }
        }
    }
    (opened, got)
}

/// 200 Durable messages from the server's own participant → peer: a
/// `SenderOpened` first, then all, in order, intact, on stream 0.
pub fn durable_from_engine(kind: Kind) {
    let mut c = Cell::new(kind);
    let host = c.server.host();
    c.join();
    host_sees_peer(&mut c, &host);
    let sender = crate::pc::host_sender(&host, 9, DataChannelReliability::Durable);
    for i in 1..=200u32 {
        sender
            .send(payload(i, 100 + (i as usize % 50) * 20))
            .expect("send");
    }
    let (opened, got) = collect_data(&mut c, 200, LIMIT);
    c.check(opened, "a SenderOpened (with origin) before the data");
    c.check(
        got.len() == 200,
        &format!("200 messages (got {})", got.len()),
    );
    for (k, (stream, seq, p)) in got.iter().enumerate() {
        let i = k as u32 + 1;
        let ok = *stream == 0 && *seq == i && *p == payload(i, 100 + (i as usize % 50) * 20);
        c.check(
            ok,
            &format!("message {i}: on stream 0, in order, intact (got seq {seq} on {stream})"),
        );
    }
    c.still_up("after 200 Durable messages");
}

/// Lossy peer → engine on stream 1 (unordered), once the session is open:
/// every message is delivered once and intact, or counted as dropped by
/// the engine (Lossy may drop, but not uncounted); at least one arrives.
pub fn lossy_to_engine(kind: Kind) {
    let mut c = Cell::new(kind);
    let host = c.server.host();
    c.join();
    c.open(1, Reliability::Lossy);
    // A barrier: a Durable message on another channel, after the open on
    // the same ordered stream. Once the host has it, the open was
    // processed and Lossy data sent from now on has a route. (The server
    // announces a receiver only with its first data, so the host's
    // receiver of the Lossy session cannot be the barrier.)
    c.open_on(BARRIER, 1, Reliability::Durable);
    let barrier = Message::Frame(Frame::Data(Data {
        channel: BARRIER,
        ..Cell::data(1, 1, false, payload(0, 20))
    }));
    c.peer.send_frame(0, &barrier);
    let b = c.receiver(&host);
    let got_barrier = b.channel_id() == BARRIER && b.recv_timeout(LIMIT).is_some();
    c.check(got_barrier, "the barrier message on the Durable channel");
    let n = 50u32;
    let before = c.server.stats();
    for i in 1..=n {
        c.send_data(1, i, true, payload(i, 200));
    }
    let r = c.receiver(&host);
    c.check(
        r.reliability() == DataChannelReliability::Lossy,
        "a Lossy receiver",
    );
    let mut got = BTreeMap::new();
    let deadline = Instant::now() + LIMIT;
    let mut dropped = 0;
    while Instant::now() < deadline {
        while let Some(m) = r.recv_timeout(Duration::from_millis(100)) {
            let dup = got.insert(m.sequence_number, m.data.clone()).is_some();
            c.check(
                !dup,
                &format!("message {} delivered once", m.sequence_number),
            );
            c.check(m.data == payload(m.sequence_number, 200), "intact");
        }
        let now = c.server.stats();
        dropped = r.dropped_messages()
            + (now.lossy_dropped_slow - before.lossy_dropped_slow)
            + (now.policed - before.policed)
            + (now.messages_stale - before.messages_stale);
        if got.len() as u64 + dropped >= n as u64 {
            break;
        }
    }
    if dropped > 0 {
        println!(
            "[{}] Lossy peer → engine: {dropped} of {n} dropped by the engine (counted)",
            c.peer.name
        );
    }
    c.check(
        got.len() as u64 + dropped == n as u64 && !got.is_empty(),
        &format!(
            "every Lossy message delivered or counted as dropped ({} delivered + {dropped} dropped of {n})",
            got.len()
        ),
    );
    let unordered_on_1 = c.tap.count(Dir::ToEngine, chunk::DATA) + c.tap.count(Dir::ToEngine, 64);
    c.check(unordered_on_1 > 0, "data on the wire");
    c.still_up("after the Lossy messages");
}

/// Lossy data sent right after its `SenderOpened`, without waiting: the
/// unordered data may overtake the ordered open. Documented (protocol.md,
/// Sessions): data naming a session that is not the route's current one
/// is dropped as stale, and Lossy may drop. So: every message is either
/// delivered (once, intact) or counted in `HubStats::messages_stale`;
/// nothing vanishes uncounted. Prints how many overtook.
pub fn lossy_right_after_open(kind: Kind) {
    let mut c = Cell::new(kind);
    let host = c.server.host();
    c.join();
    let stale_before = c.server.stats().messages_stale;
    c.open(1, Reliability::Lossy);
    let n = 20u32;
    for i in 1..=n {
        c.send_data(1, i, true, payload(i, 200));
    }
    // Wait until every Lossy message is accounted for: delivered to the
    // host, or counted stale by the server.
    let mut r = None;
    let mut got = BTreeMap::new();
    let deadline = Instant::now() + LIMIT;
    let mut stale = 0;
    while Instant::now() < deadline {
        if r.is_none() {
            r = host.data_channel().try_next_receiver();
        }
        if let Some(r) = &r {
            while let Some(m) = r.recv_timeout(Duration::from_millis(100)) {
                let dup = got.insert(m.sequence_number, m.data.clone()).is_some();
                c.check(
                    !dup,
                    &format!("message {} delivered once", m.sequence_number),
                );
                c.check(m.data == payload(m.sequence_number, 200), "intact");
            }
        }
        stale = c.server.stats().messages_stale - stale_before;
        if got.len() as u64 + stale >= n as u64 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    println!(
        "[{}] lossy right after open: {} of {n} delivered, {stale} overtook the SenderOpened and were dropped as stale",
        c.peer.name,
        got.len()
    );
    c.check(
        got.len() as u64 + stale == n as u64,
        &format!(
            "every Lossy message delivered or counted stale ({} delivered + {stale} stale of {n})",
            got.len()
        ),
    );
    // The server holds Lossy data that overtook its SenderOpened (up to 64
    // frames, 32 KiB, 250 ms per member) and forwards it when the open
    // comes: none of these 20 is lost to the race.
    c.check(
        stale == 0,
        &format!("no Lossy message dropped for overtaking its SenderOpened ({stale} were)"),
    );
    c.still_up("after the Lossy messages");
}

/// The payload sizes of a batch of two Data frames whose encoding is
/// exactly `total` bytes.
fn batch_of(total: usize) -> Bytes {
    // Batch: type + count (1 byte for 2) + two Data frames, each 12 bytes
    // + a 4-byte length varint + payload.
    let payloads = total - 2 - 2 * 16;
    let p1 = payloads / 2;
    let p2 = payloads - p1;
    let b = Batch {
        frames: vec![
            Frame::Data(Cell::data(1, 1, false, payload(1, p1))),
            Frame::Data(Cell::data(1, 2, false, payload(2, p2))),
        ],
    };
    let bytes = Message::Batch(b).to_bytes();
    assert_eq!(bytes.len(), total, "the batch is exactly {total} bytes");
    bytes
}

/// The engine's SCTP message limit.
pub fn limit() -> usize {
    NodeConfig::default().max_sctp_message_size as usize
}

/// A message exactly at `max_sctp_message_size` (a batch of two Data
/// frames, 257 KiB in all) is delivered.
pub fn max_size_delivered(kind: Kind) {
    let mut c = Cell::new(kind);
    let host = c.server.host();
    c.join();
    c.open(1, Reliability::Durable);
    let big = batch_of(limit());
    c.peer.send(0, false, big);
    let r = c.receiver(&host);
    for i in 1..=2u32 {
        let m = r.recv_timeout(LIMIT);
        let ok = m
            .as_ref()
            .is_some_and(|m| m.sequence_number == i && m.data.len() > 100_000);
        c.check(
            ok,
            &format!("half {i} of the {}-byte message delivered", limit()),
        );
    }
    c.still_up("after a message at the limit");
}

/// A message one byte over `max_sctp_message_size`: the engine ABORTs,
/// with a User-Initiated Abort cause that says why, counts it
/// (`HubStats::oversize_messages`) and removes the member.
pub fn over_max_size_aborted(kind: Kind) {
    let mut c = Cell::new(kind);
    c.join();
    c.open(1, Reliability::Durable);
    let size = limit() + 1;
    c.peer.send(0, false, batch_of(size));
    let end = c.peer.wait_end(LIMIT);
    c.check(
        matches!(end, Some(Ev::Aborted(_) | Ev::Ended)),
        &format!("the association ends with an ABORT (got {end:?})"),
    );
    c.wait_wire(chunk::ABORT);
    let aborts = c.tap.aborts(Dir::ToPeer);
    let why = format!("{size} bytes");
    let ok = aborts.iter().any(|a| {
        a.contains("User-Initiated Abort") && a.contains(&why) && a.contains("over the limit")
    });
    c.check(ok, &format!("an ABORT from the engine whose cause says the message of {why} is over the limit (saw {aborts:?})"));
    let oversize = c.server.stats().oversize_messages;
    c.check(
        oversize == 1,
        &format!("HubStats::oversize_messages is 1 (got {oversize})"),
    );
    c.expect_left("after the ABORT");
}

/// The peer shuts down gracefully, once it has SACKed what the engine
/// sent: SHUTDOWN, SHUTDOWN-ACK, SHUTDOWN-COMPLETE; the member leaves.
pub fn peer_shutdown(kind: Kind) {
    let mut c = Cell::new(kind);
    c.join();
    let deadline = Instant::now() + LIMIT;
    while c.tap.count(Dir::ToEngine, chunk::SACK) == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    c.peer.cmd(Cmd::Shutdown);
    c.expect_graceful_end("peer SHUTDOWN");
    let acked = c.tap.count(Dir::ToPeer, chunk::SHUTDOWN_ACK) > 0;
    c.check(acked, "the engine answers SHUTDOWN-ACK");
    c.expect_left("after the peer's SHUTDOWN");
}

/// The peer shuts down while the engine's last DATA is acknowledged only
/// by the SHUTDOWN's Cumulative TSN Ack (the peer's SACK of it was lost:
/// the tap drops SACK-only packets from the peer from the join on).
/// RFC 9260 §9.2: the SHUTDOWN's Cumulative TSN Ack acknowledges that
/// DATA, and a SHUTDOWN-SENT peer answers a retransmitted DATA with
/// another SHUTDOWN; the engine must still complete with SHUTDOWN-ACK.
pub fn peer_shutdown_sack_lost(kind: Kind) {
    let mut c = Cell::new(kind);
    c.tap.drop_sacks(true);
    c.join();
    c.peer.cmd(Cmd::Shutdown);
    // Only the SACKs before the SHUTDOWN are lost.
    let deadline = Instant::now() + LIMIT;
    while c.tap.count(Dir::ToEngine, chunk::SHUTDOWN) == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    c.tap.drop_sacks(false);
    if std::env::var_os("INTEROP_TRACE").is_some() {
        // Wait for the end (or the limit) and show the wire either way.
        let _ = c.peer.wait_end(LIMIT);
        println!(
            "[{}] SACK lost before SHUTDOWN:\n{}",
            c.peer.name,
            c.tap.trace()
        );
    }
    c.expect_graceful_end("peer SHUTDOWN");
    let acked = c.tap.count(Dir::ToPeer, chunk::SHUTDOWN_ACK) > 0;
    c.check(acked, "the engine answers SHUTDOWN-ACK");
    c.expect_left("after the peer's SHUTDOWN");
}

/// The engine shuts down: each association ends with SHUTDOWN →
/// SHUTDOWN-COMPLETE, never an ABORT. `times` rounds, a fresh server each.
pub fn engine_shutdown(kind: Kind, times: usize) {
    for round in 1..=times {
        let mut c = Cell::new(kind);
        c.join();
        c.server.shutdown(Duration::from_secs(10));
        c.expect_graceful_end(&format!("engine shutdown, round {round} of {times}"));
        let from_engine = c.tap.count(Dir::ToPeer, chunk::SHUTDOWN) > 0;
        c.check(
            from_engine,
            &format!("round {round}: the engine sent the SHUTDOWN"),
        );
    }
}

/// The peer ABORTs; the member is removed.
pub fn peer_abort(kind: Kind) {
    let mut c = Cell::new(kind);
    c.join();
    c.peer.cmd(Cmd::Abort);
    let sent = c.wait_wire(chunk::ABORT) && c.tap.count(Dir::ToEngine, chunk::ABORT) > 0;
    c.check(sent, "the peer's ABORT on the wire");
    c.expect_left("after the peer's ABORT");
}

/// The peer resets its outgoing stream 0 after 20 Durable messages:
/// documented (protocol.md, Transport), the engine delivers what came
/// before, then closes gracefully (SHUTDOWN).
pub fn reset_stream_0(kind: Kind) {
    let mut c = Cell::new(kind);
    let host = c.server.host();
    c.join();
    c.open(1, Reliability::Durable);
    for i in 1..=20 {
        c.send_data(1, i, false, payload(i, 300));
    }
    c.peer.cmd(Cmd::Reset(0));
    let r = c.receiver(&host);
    for i in 1..=20u32 {
        let m = r.recv_timeout(LIMIT);
        let ok = m
            .as_ref()
            .is_some_and(|m| m.sequence_number == i && m.data == payload(i, 300));
        c.check(
            ok,
            &format!("message {i} of 20 sent before the reset delivered"),
        );
    }
    c.expect_graceful_end("after the reset of stream 0");
    let from_engine = c.tap.count(Dir::ToPeer, chunk::SHUTDOWN) > 0;
    c.check(from_engine, "the engine sent the SHUTDOWN");
    c.expect_left("after the reset of stream 0");
}

/// The peer resets its outgoing stream 1: documented, nothing changes;
/// Durable data still flows and the association stays up.
pub fn reset_stream_1(kind: Kind) {
    let mut c = Cell::new(kind);
    let host = c.server.host();
    c.join();
    c.peer.cmd(Cmd::Reset(1));
    let reconf = c.wait_wire(chunk::RE_CONFIG) && {
        // The engine's answer (a RE-CONFIG back).
        let deadline = Instant::now() + Duration::from_secs(10);
        while c.tap.count(Dir::ToPeer, chunk::RE_CONFIG) == 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        c.tap.count(Dir::ToPeer, chunk::RE_CONFIG) > 0
    };
    c.check(
        reconf,
        "the reset request and the engine's RE-CONFIG answer on the wire",
    );
    c.open(1, Reliability::Durable);
    for i in 1..=10 {
        c.send_data(1, i, false, payload(i, 300));
    }
    let r = c.receiver(&host);
    for i in 1..=10u32 {
        let m = r.recv_timeout(LIMIT);
        let ok = m.as_ref().is_some_and(|m| m.sequence_number == i);
        c.check(
            ok,
            &format!("message {i} of 10 after the reset of stream 1 delivered"),
        );
    }
    // Give a wrong close a moment to show.
    std::thread::sleep(Duration::from_millis(500));
    c.still_up("after the reset of stream 1");
    let left = c.server.left(WHO);
    c.check(!left, "the member is still in the call");
}

/// 40 s idle: the association survives on heartbeats and the engine's
/// keep-alives (the engine closes one silent for 15 s); heartbeats the
/// peer sends are answered; data flows afterwards.
pub fn idle(kind: Kind, idle: Duration) {
    let mut c = Cell::new(kind);
    let host = c.server.host();
    c.join();
    let deadline = Instant::now() + idle;
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(500));
        c.still_up("while idle");
    }
    let hb = c.tap.count(Dir::ToEngine, chunk::HEARTBEAT);
    let ack = c.tap.count(Dir::ToPeer, chunk::HEARTBEAT_ACK);
    println!(
        "[{}] idle {idle:?}: peer HEARTBEATs {hb}, engine HEARTBEAT-ACKs {ack}",
        c.peer.name
    );
    c.check(
        hb == 0 || ack + 1 >= hb,
        &format!("the engine answers HEARTBEATs ({hb} sent, {ack} answered)"),
    );
    c.open(1, Reliability::Durable);
    c.send_data(1, 1, false, payload(1, 100));
    let r = c.receiver(&host);
    let m = r.recv_timeout(LIMIT);
    c.check(m.is_some(), "a message after the idle period is delivered");
    let left = c.server.left(WHO);
    c.check(!left, "the member is still in the call");
}

/// Lossy from the server's own participant → peer: `n` messages after a
/// `SenderOpened`; returns what arrived as (stream, seq).
fn lossy_from_host(c: &mut Cell, n: u32) -> Vec<(u16, u32)> {
    let host = c.server.host();
    c.join();
    host_sees_peer(c, &host);
    let sender = crate::pc::host_sender(&host, 11, DataChannelReliability::Lossy);
    let before = c.server.stats();
    for i in 1..=n {
        sender.send(payload(i, 200)).expect("send");
    }
    let mut got = Vec::new();
    let mut opened = false;
    let deadline = Instant::now() + LIMIT;
    let mut dropped = 0;
    while Instant::now() < deadline {
        let (o, more) = collect_data(c, n as usize - got.len(), Duration::from_millis(200));
        opened |= o;
        got.extend(more);
        let now = c.server.stats();
        dropped = sender.dropped_messages()
            + (now.lossy_dropped_slow - before.lossy_dropped_slow)
            + (now.policed - before.policed)
            + (now.messages_stale - before.messages_stale);
        if got.len() as u64 + dropped >= n as u64 {
            break;
        }
    }
    c.check(opened, "a SenderOpened (with origin) before the data");
    let mut seen = BTreeMap::new();
    for (_, seq, p) in &got {
        let ok = *p == payload(*seq, 200) && seen.insert(*seq, ()).is_none();
        c.check(ok, &format!("message {seq}: once, intact"));
    }
    if dropped > 0 {
        let now = c.server.stats();
        println!(
            "[{}] Lossy engine → peer: {} delivered, {dropped} of {n} dropped by the engine (counted: sender {}, slow {}, policed {}, stale {})",
            c.peer.name,
            got.len(),
            sender.dropped_messages(),
            now.lossy_dropped_slow - before.lossy_dropped_slow,
            now.policed - before.policed,
            now.messages_stale - before.messages_stale
        );
    }
    c.check(
        got.len() as u64 + dropped == n as u64 && !got.is_empty(),
        &format!(
            "every Lossy message delivered or counted as dropped by the engine ({} delivered + {dropped} dropped of {n})",
            got.len()
        ),
    );
    c.still_up("after the Lossy messages");
    drop(host);
    got.into_iter().map(|(st, seq, _)| (st, seq)).collect()
}

/// Lossy from the server's own participant → peer: each message once and
/// intact, or counted as dropped by the engine; at least one arrives.
pub fn lossy_from_engine(kind: Kind) {
    let mut c = Cell::new(kind);
    lossy_from_host(&mut c, 50);
}

/// Lossy from the server → peer travels on stream 1, as protocol.md §1
/// documents ("1: Lossy data; keep-alives").
pub fn lossy_from_engine_on_stream_1(kind: Kind) {
    let mut c = Cell::new(kind);
    let got = lossy_from_host(&mut c, 50);
    // protocol.md: the first Lossy Data of a session to a new receiver goes
    // ordered on stream 0, right behind its SenderOpened (unordered, it
    // could overtake the open); every later one on stream 1.
    let first = got.iter().map(|(_, s)| *s).min();
    let off: Vec<u32> = got
        .iter()
        .filter(|(st, s)| *st != 1 && Some(*s) != first)
        .map(|(_, s)| *s)
        .collect();
    c.check(
        off.is_empty(),
        &format!(
            "every Lossy Data but a session's first on stream 1 (these came on stream 0: {off:?})"
        ),
    );
}

/// The peer resets its outgoing stream 0 while the engine is sending it
/// Durable data: documented, the association closes gracefully
/// (SHUTDOWN, never ABORT); what the peer got is an in-order prefix of
/// what was sent.
pub fn reset_stream_0_while_receiving(kind: Kind) {
    let mut c = Cell::new(kind);
    let host = c.server.host();
    c.join();
    host_sees_peer(&mut c, &host);
    let sender = crate::pc::host_sender(&host, 9, DataChannelReliability::Durable);
    let n = 100u32;
    for i in 1..=n {
        sender.send(payload(i, 500)).expect("send");
    }
    let (_, first) = collect_data(&mut c, 1, LIMIT);
    c.check(!first.is_empty(), "the first message");
    c.peer.cmd(Cmd::Reset(0));
    let (_, rest) = collect_data(&mut c, n as usize - 1, Duration::from_secs(10));
    let got: Vec<u32> = first.iter().chain(&rest).map(|(_, s, _)| *s).collect();
    let prefix = got.iter().enumerate().all(|(k, &s)| s == k as u32 + 1);
    println!(
        "[{}] reset of stream 0 while receiving: {} of {n} delivered before the close",
        c.peer.name,
        got.len()
    );
    c.check(prefix, &format!("an in-order prefix (got {got:?})"));
    c.expect_graceful_end("after the reset of stream 0");
    c.expect_left("after the reset of stream 0");
}

/// A `Join` with a token for someone else: `JoinRejected` (`BAD_TOKEN`),
/// then the server closes the association (protocol.md, JoinRejected),
/// gracefully: SHUTDOWN from the engine, SHUTDOWN-COMPLETE, no ABORT.
pub fn join_rejected_then_closed(kind: Kind) {
    let mut c = Cell::new(kind);
    let join = Join {
        version: PROTOCOL_VERSION,
        call_id: ShortStr::try_from(CALL.to_owned()).expect("short"),
        participant_id: ShortStr::try_from(WHO.to_owned()).expect("short"),
        token: Server::token("someone else"),
    };
    c.peer.send_frame(0, &Message::Frame(Frame::Join(join)));
    let deadline = Instant::now() + LIMIT;
    let mut rejected = None;
    while rejected.is_none() {
        let left = deadline.saturating_duration_since(Instant::now());
        let Some((_, frames)) = c.peer.next_frames(left) else {
            break;
        };
        rejected = frames.into_iter().find_map(|f| match f {
            Frame::JoinRejected(r) => Some(r),
            _ => None,
        });
    }
    let ok = rejected
        .as_ref()
        .is_some_and(|r| r.code == dcengine::ErrorCode::BAD_TOKEN);
    c.check(
        ok,
        &format!("JoinRejected with BAD_TOKEN (got {rejected:?})"),
    );
    c.expect_graceful_end("after JoinRejected");
    let from_engine = c.tap.count(Dir::ToPeer, chunk::SHUTDOWN) > 0;
    c.check(from_engine, "the engine sent the SHUTDOWN");
}
