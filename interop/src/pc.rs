//! Full WebRTC peer connections join a call: webrtc-rs and str0m each act
//! as a participant. The stack makes an offer with two data channels
//! negotiated out of band (ids 0: ordered, reliable; 1: unordered,
//! maxRetransmits 0), the test hands it to the DTLS server engine's
//! [`Engine::accept_offer`](dcengine::Engine::accept_offer) (in-process, as
//! signalling would) and gives the stack the answer; ICE, DTLS and SCTP
//! come up over loopback UDP, and the stack sends `Join` on channel 0.
//!
//! One function per scenario, run against one stack. Every wait is
//! bounded ([`LIMIT`]); nothing asserts on timing. A failed check panics
//! with the peer's events, the offer and answer, the server's counters
//! and events.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::mpsc::{Receiver, Sender};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use dcengine::hub::HubEvent;
use dcengine::wire::{
    Codec, Data, Frame, Join, JoinAccepted, Leave, Message, PROTOCOL_VERSION, Priority,
    Reliability, SenderOpened, ShortStr,
};
use dcengine::{
    Call, Certificate, DataChannelReceiver, DataChannelReliability, DataChannelSender,
    DataChannelSenderOptions, ErrorCode, ParticipantId,
};

use crate::peer::{Cmd, Ev, LIMIT, Peer};
use crate::server::{CALL, Server};

/// Which WebRTC stack plays the participant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stack {
    /// webrtc-rs (crate `webrtc` 0.21).
    WebrtcRs,
    /// str0m (sans-IO, crate `str0m` 0.24).
    Str0m,
}

/// The participant id every peer joins as.
pub const WHO: &str = "peer";
/// The channel the peer's senders use.
const CHANNEL: u16 = 7;
/// The channel of the Durable barrier in the Lossy scenario.
const BARRIER: u16 = 8;

/// The stack's end of the signalling: gives its offer, gets the answer.
pub struct Signal {
    offers: Sender<String>,
    answers: Receiver<Option<String>>,
}

impl Signal {
    /// Sends `offer` (SDP) and waits for the answer (SDP); `None` if the
    /// test gave none.
    pub fn exchange(&self, offer: String) -> Option<String> {
        self.offers.send(offer).ok()?;
        self.answers.recv_timeout(LIMIT).ok().flatten()
    }
}

/// What to change in the signalling, to test refusals.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tamper {
    /// The offer the engine is given names another certificate than the
    /// one the stack presents.
    pub offer_fingerprint: bool,
    /// The answer the stack is given has another ICE password than the
    /// one the engine expects.
    pub answer_ice_pwd: bool,
    /// The answer the stack is given says this `a=max-message-size`
    /// instead of the engine's: a stack that ignores the engine's limit.
    pub answer_max_message_size: Option<usize>,
}

/// One scenario's world: a DTLS server engine and a peer connection.
pub struct PcCell {
    /// The engine.
    pub server: Server,
    /// The peer.
    pub peer: Peer,
    /// The offer the engine was given.
    pub offer: String,
    /// The answer the stack was given.
    pub answer: String,
    /// The answer the engine gave (before any [`Tamper`]).
    pub engine_answer: String,
}

impl PcCell {
    /// A fresh server and a peer of `stack` that signalled (with `tamper`
    /// applied), not waiting for the connection.
    pub fn start(stack: Stack, tamper: Tamper) -> PcCell {
        let bind: SocketAddr = "127.0.0.1:0".parse().expect("an address");
        let cert = Certificate::generate().expect("a certificate");
        let server = Server::start_with(bind, Some(cert));
        let (offers_tx, offers) = std::sync::mpsc::channel();
        let (answers, answers_rx) = std::sync::mpsc::channel();
        let signal = Signal {
            offers: offers_tx,
            answers: answers_rx,
        };
        let peer = match stack {
            Stack::WebrtcRs => crate::pc_webrtc::spawn(signal),
            Stack::Str0m => crate::pc_str0m::spawn(signal),
        };
        let mut cell = PcCell {
            server,
            peer,
            offer: String::new(),
            answer: String::new(),
            engine_answer: String::new(),
        };
        let offer = cell.peer_offer(&offers);
        cell.offer = if tamper.offer_fingerprint {
            other_fingerprint(&offer)
        } else {
            offer
        };
        let token = Server::token(WHO);
        let answer = cell
            .server
            .engine()
            .accept_offer(&cell.offer, CALL, WHO, &token);
        let answer = match answer {
            Ok(a) => a,
            Err(e) => {
                let what = format!("the engine answers the offer (got {e})");
                cell.check(false, &what);
                unreachable!()
            }
        };
        cell.engine_answer = answer.clone();
        cell.answer = if tamper.answer_ice_pwd {
            other_ice_pwd(&answer)
        } else {
            answer
        };
        if let Some(size) = tamper.answer_max_message_size {
            cell.answer = with_max_message_size(&cell.answer, size);
        }
        let _ = answers.send(Some(cell.answer.clone()));
        cell
    }

    fn peer_offer(&mut self, offers: &Receiver<String>) -> String {
        let deadline = Instant::now() + LIMIT;
        loop {
            if let Ok(o) = offers.recv_timeout(Duration::from_millis(50)) {
                return o;
            }
            if let Some(Ev::Error(e)) = self
                .peer
                .wait_for(Duration::from_millis(1), |e| matches!(e, Ev::Error(_)))
            {
                self.check(false, &format!("the stack makes an offer (error: {e})"));
            }
            if Instant::now() > deadline {
                self.check(false, "the stack makes an offer within the limit");
            }
        }
    }

    /// A fresh server and a peer of `stack`, its two channels open.
    pub fn new(stack: Stack) -> PcCell {
        let mut cell = Self::start(stack, Tamper::default());
        let up = cell.peer.wait_connected();
        cell.check(up, "ICE, DTLS and SCTP come up and both data channels open");
        cell
    }

    /// Everything known, for a failure message.
    pub fn explain(&mut self, what: &str) -> String {
        // Record what the stack reported and the test did not read yet.
        let _ = self.peer.ended();
        let stats = self
            .server
            .engine_opt()
            .and_then(|e| e.stats().ok())
            .map(|s| format!("{s:?}"))
            .unwrap_or_else(|| "(stopped)".into());
        format!(
            "[{}] FAILED: {what}\n{}offer given to the engine:\n{}answer given to the stack:\n{}server stats: {stats}\n{}",
            self.peer.name,
            self.peer.history_text(),
            indent(&self.offer),
            indent(&self.answer),
            self.server.events_text()
        )
    }

    /// Panics with [`PcCell::explain`] unless `ok`.
    #[track_caller]
    pub fn check(&mut self, ok: bool, what: &str) {
        if !ok {
            let text = self.explain(what);
            panic!("{text}");
        }
    }

    /// Sends `Join` on channel 0; returns the `JoinAccepted`.
    pub fn join(&mut self) -> JoinAccepted {
        let join = Join {
            version: PROTOCOL_VERSION,
            call_id: ShortStr::try_from(CALL.to_owned()).expect("short"),
            participant_id: ShortStr::try_from(WHO.to_owned()).expect("short"),
            token: Server::token(WHO),
        };
        self.peer.send_frame(0, &Message::Frame(Frame::Join(join)));
        let deadline = Instant::now() + LIMIT;
        while let Some((stream, frames)) = self
            .peer
            .next_frames(deadline.saturating_duration_since(Instant::now()))
        {
            for f in frames {
                match f {
                    Frame::JoinAccepted(a) => {
                        self.check(stream == 0, "JoinAccepted on channel 0");
                        return a;
                    }
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

    /// Opens a sender session on `channel` from the peer (on channel 0).
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

    /// Sends one Data frame of session `session` on [`CHANNEL`]: Durable
    /// on data channel 0, Lossy (epoch 0) on data channel 1.
    pub fn send_data(&self, session: u32, seq: u32, lossy: bool, payload: Bytes) {
        let m = Message::Frame(Frame::Data(data(session, seq, lossy, payload)));
        self.peer.send_frame(if lossy { 1 } else { 0 }, &m);
    }

    /// The next receiver on `host`'s data channel.
    pub fn receiver(&mut self, host: &Call) -> DataChannelReceiver {
        match host.data_channel().next_receiver_timeout(LIMIT) {
            Some(r) => r,
            None => {
                self.check(false, "the host gets a receiver for the peer's sender");
                unreachable!()
            }
        }
    }

    /// Asserts the connection is still up (no end seen).
    pub fn still_up(&mut self, what: &str) {
        let end = self.peer.ended();
        self.check(
            end.is_none(),
            &format!("{what}: the connection is still up (saw {end:?})"),
        );
    }

    /// Waits until `host` sees [`WHO`] in the call.
    fn host_sees_peer(&mut self, host: &Call) {
        let deadline = Instant::now() + LIMIT;
        while !host.participants().contains(&ParticipantId::from(WHO)) && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(10));
        }
        let ok = host.participants().contains(&ParticipantId::from(WHO));
        self.check(ok, "the host sees the peer in the call");
    }

    /// Collects the Data frames of the host's sessions from the peer's
    /// messages until `n` or `limit`: (whether a `SenderOpened` with origin
    /// came, (channel, seq, payload) of each Data).
    fn collect_data(&mut self, n: usize, limit: Duration) -> (bool, Vec<(u16, u32, Bytes)>) {
        let deadline = Instant::now() + limit;
        let mut opened = false;
        let mut got = Vec::new();
        while got.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            let Some((stream, frames)) = self.peer.next_frames(left) else {
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
}

/// A sender of the host's on `channel`.
pub(crate) fn host_sender(
    host: &Call,
    channel: u16,
    reliability: DataChannelReliability,
) -> DataChannelSender {
    host.data_channel()
        .create_sender(DataChannelSenderOptions {
            channel_id: Some(channel),
            reliability,
            ..Default::default()
        })
        .expect("a sender")
}

fn indent(s: &str) -> String {
    s.lines().map(|l| format!("    {l}\n")).collect()
}

/// One Data frame on [`CHANNEL`] (epoch 0 when Lossy).
fn data(session: u32, seq: u32, lossy: bool, payload: Bytes) -> Data {
    Data {
        channel: CHANNEL,
        session,
        seq,
        origin: None,
        epoch: lossy.then_some(0),
        payload,
    }
}

/// A recognisable payload of `len` bytes (at least 14).
pub fn payload(i: u32, len: usize) -> Bytes {
    let mut b = BytesMut::from(format!("message {i:05} ").as_bytes());
    while b.len() < len {
        b.extend_from_slice(&[(i as u8).wrapping_add(b.len() as u8)]);
    }
    b.truncate(len.max(14));
    b.freeze()
}

/// `sdp` with every `a=fingerprint` changed in its first byte: another
/// certificate than the one the stack presents.
pub fn other_fingerprint(sdp: &str) -> String {
    let mut out = String::new();
    for line in sdp.split_inclusive('\n') {
        if let Some(rest) = line.strip_prefix("a=fingerprint:")
            && let Some((alg, hex)) = rest.split_once(' ')
            && hex.len() >= 2
        {
            let first = if hex[..2].eq_ignore_ascii_case("00") {
                "01"
            } else {
                "00"
            };
            out.push_str(&format!("a=fingerprint:{alg} {first}{}", &hex[2..]));
        } else {
            out.push_str(line);
        }
    }
    assert_ne!(out, sdp, "the offer has a fingerprint to change");
    out
}

/// `sdp` with every `a=ice-pwd` changed in its first character.
pub fn other_ice_pwd(sdp: &str) -> String {
    let mut out = String::new();
    for line in sdp.split_inclusive('\n') {
        if let Some(pwd) = line.strip_prefix("a=ice-pwd:")
            && !pwd.is_empty()
        {
            let first = if pwd.starts_with('x') { 'y' } else { 'x' };
            out.push_str(&format!("a=ice-pwd:{first}{}", &pwd[1..]));
        } else {
            out.push_str(line);
        }
    }
    assert_ne!(out, sdp, "the answer has an ICE password to change");
    out
}

/// `sdp` with its `a=max-message-size` set to `size`.
pub fn with_max_message_size(sdp: &str, size: usize) -> String {
    let mut out = String::new();
    for line in sdp.split_inclusive('\n') {
        if line.starts_with("a=max-message-size:") {
            out.push_str(&format!("a=max-message-size:{size}\r\n"));
        } else {
            out.push_str(line);
        }
    }
    assert_ne!(out, sdp, "the answer has an a=max-message-size to change");
    out
}

/// The `a=max-message-size` of an SDP.
pub fn sdp_max_message_size(sdp: &str) -> Option<usize> {
    sdp.lines()
        .find_map(|l| l.trim().strip_prefix("a=max-message-size:"))
        .and_then(|v| v.trim().parse().ok())
}

/// Scenario 1: offer/answer, ICE, DTLS, SCTP; `Join` → `JoinAccepted`.
pub fn join_accepted(stack: Stack) {
    let mut c = PcCell::new(stack);
    let a = c.join();
    c.check(
        a.version == PROTOCOL_VERSION,
        "JoinAccepted speaks our version",
    );
    let joined = c.server.wait_event(LIMIT, |e| {
        matches!(e, HubEvent::ParticipantJoined { participant_id, .. } if participant_id.as_str() == WHO)
    });
    c.check(joined, "the server reports the participant joined");
    let s = c.server.stats();
    c.check(
        s.dtls_handshakes == 1 && s.dtls_failures == 0 && s.joins_accepted == 1,
        "one DTLS handshake, no failure, one join",
    );
    println!(
        "[{}] joined; zero checksum negotiated: {}",
        c.peer.name,
        s.zero_checksum_associations == 1
    );
    c.still_up("after the join");
}

/// Scenario 2: Durable both ways, 100 messages each, in order, intact:
/// peer → the server's own participant ("host", `Engine::join_local`),
/// and host → peer (a `SenderOpened` first, all on channel 0).
pub fn durable_both_ways(stack: Stack) {
    let mut c = PcCell::new(stack);
    let host = c.server.host();
    c.join();
    let len = |i: u32| 100 + (i as usize % 50) * 20;
    c.open_on(CHANNEL, 1, Reliability::Durable);
    for i in 1..=100 {
        c.send_data(1, i, false, payload(i, len(i)));
    }
    let r = c.receiver(&host);
    c.check(
        r.reliability() == DataChannelReliability::Durable
            && r.sender_id() == &ParticipantId::from(WHO),
        "a Durable receiver of the peer",
    );
    for i in 1..=100u32 {
        let m = r.recv_timeout(LIMIT);
        let ok = m
            .as_ref()
            .is_some_and(|m| m.sequence_number == i && m.data == payload(i, len(i)));
        c.check(
            ok,
            &format!(
                "peer → host: message {i} of 100 in order and intact (got {:?})",
                m.map(|m| m.sequence_number)
            ),
        );
    }
    c.host_sees_peer(&host);
    let sender = host_sender(&host, 9, DataChannelReliability::Durable);
    for i in 1..=100u32 {
        sender.send(payload(i, len(i))).expect("send");
    }
    let (opened, got) = c.collect_data(100, LIMIT);
    c.check(opened, "host → peer: a SenderOpened (with origin) first");
    c.check(
        got.len() == 100,
        &format!("host → peer: 100 messages (got {})", got.len()),
    );
    for (k, (stream, seq, p)) in got.iter().enumerate() {
        let i = k as u32 + 1;
        let ok = *stream == 0 && *seq == i && *p == payload(i, len(i));
        c.check(
            ok,
            &format!(
                "host → peer: message {i} on channel 0, in order, intact (got seq {seq} on {stream})"
            ),
        );
    }
    c.still_up("after 100 Durable messages each way");
}

/// Scenario 3: Lossy both ways, 50 messages each, on channel 1
/// (unordered, maxRetransmits 0): each delivered once and intact or
/// counted by the engine (`HubStats` slow, policed, stale counters; the
/// sender's and receiver's dropped counts); at least one arrives.
pub fn lossy_both_ways(stack: Stack) {
    let mut c = PcCell::new(stack);
    let host = c.server.host();
    c.join();
    // peer → host. A Durable barrier on another channel after the open, on
    // the same ordered channel 0: once the host has it, the open was
    // processed and Lossy data sent from now on has a route.
    c.open_on(CHANNEL, 1, Reliability::Lossy);
    c.open_on(BARRIER, 1, Reliability::Durable);
    let barrier = Message::Frame(Frame::Data(Data {
        channel: BARRIER,
        ..data(1, 1, false, payload(0, 20))
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
            let dup = got.insert(m.sequence_number, ()).is_some();
            c.check(
                !dup && m.data == payload(m.sequence_number, 200),
                &format!("peer → host: message {} once, intact", m.sequence_number),
            );
        }
        let now = c.server.stats();
        dropped = r.dropped_messages()
            + (now.lossy_dropped_slow - before.lossy_dropped_slow)
            + (now.policed - before.policed)
            + (now.messages_stale - before.messages_stale);
        if got.len() as u64 + dropped >= u64::from(n) {
            break;
        }
    }
    println!(
        "[{}] Lossy peer → host: {} delivered, {dropped} counted as dropped, of {n}",
        c.peer.name,
        got.len()
    );
    c.check(
        got.len() as u64 + dropped == u64::from(n) && !got.is_empty(),
        &format!(
            "peer → host: every Lossy message delivered or counted ({} delivered + {dropped} dropped of {n})",
            got.len()
        ),
    );
    // host → peer.
    c.host_sees_peer(&host);
    let sender = host_sender(&host, 11, DataChannelReliability::Lossy);
    let before = c.server.stats();
    for i in 1..=n {
        sender.send(payload(i, 200)).expect("send");
    }
    let mut got = Vec::new();
    let mut opened = false;
    let deadline = Instant::now() + LIMIT;
    let mut dropped = 0;
    while Instant::now() < deadline {
        let (o, more) = c.collect_data(n as usize - got.len(), Duration::from_millis(200));
        opened |= o;
        got.extend(more);
        let now = c.server.stats();
        dropped = sender.dropped_messages()
            + (now.lossy_dropped_slow - before.lossy_dropped_slow)
            + (now.policed - before.policed)
            + (now.messages_stale - before.messages_stale);
        if got.len() as u64 + dropped >= u64::from(n) {
            break;
        }
    }
    c.check(opened, "host → peer: a SenderOpened (with origin) first");
    let mut seen = BTreeMap::new();
    for (_, seq, p) in &got {
        let ok = *p == payload(*seq, 200) && seen.insert(*seq, ()).is_none();
        c.check(ok, &format!("host → peer: message {seq} once, intact"));
    }
    let on_1 = got.iter().filter(|(s, _, _)| *s == 1).count();
    println!(
        "[{}] Lossy host → peer: {} delivered ({on_1} on channel 1), {dropped} counted as dropped, of {n}",
        c.peer.name,
        got.len()
    );
    c.check(
        got.len() as u64 + dropped == u64::from(n) && !got.is_empty(),
        &format!(
            "host → peer: every Lossy message delivered or counted ({} delivered + {dropped} dropped of {n})",
            got.len()
        ),
    );
    c.still_up("after the Lossy messages");
}

/// Sends one Durable `Data` whose payload is `len` bytes and checks the
/// host gets it whole.
fn deliver_one(c: &mut PcCell, host: &Call, len: usize, what: &str) {
    c.open_on(CHANNEL, 1, Reliability::Durable);
    let m = Message::Frame(Frame::Data(data(1, 1, false, payload(1, len))));
    let size = m.to_bytes().len();
    c.peer.send_frame(0, &m);
    let r = c.receiver(host);
    let got = r.recv_timeout(LIMIT);
    let ok = got
        .as_ref()
        .is_some_and(|m| m.sequence_number == 1 && m.data == payload(1, len));
    let errors: Vec<String> = c
        .peer
        .history
        .iter()
        .filter(|h| h.starts_with("Error"))
        .cloned()
        .collect();
    c.check(
        ok,
        &format!(
            "{what}: a Data of {len} payload bytes ({size} bytes on the wire) delivered whole (got {:?} bytes; the stack's errors: {errors:?})",
            got.map(|m| m.data.len())
        ),
    );
}

/// Scenario 4: a `Data` whose payload is exactly `JoinAccepted`'s
/// `max_message_size` (the engine's documented limit) is delivered.
pub fn max_message_delivered(stack: Stack) {
    let mut c = PcCell::new(stack);
    let host = c.server.host();
    let a = c.join();
    let limit = a.max_message_size as usize;
    deliver_one(&mut c, &host, limit, "the JoinAccepted max_message_size");
    c.still_up("after a message at the limit");
}

/// Scenario 4, the other way: the host sends a message whose payload is
/// `JoinAccepted`'s `max_message_size`; the peer gets it whole.
pub fn max_message_to_peer(stack: Stack) {
    let mut c = PcCell::new(stack);
    let host = c.server.host();
    let a = c.join();
    let limit = a.max_message_size as usize;
    c.host_sees_peer(&host);
    let sender = host_sender(&host, 9, DataChannelReliability::Durable);
    sender.send(payload(1, limit)).expect("send");
    let (opened, got) = c.collect_data(1, LIMIT);
    let offered = sdp_max_message_size(&c.offer);
    let ok = opened && got.len() == 1 && got[0].2 == payload(1, limit);
    c.check(
        ok,
        &format!(
            "the peer gets a Data of {limit} payload bytes whole (the stack's offer said a=max-message-size {offered:?}; got {} Data)",
            got.len()
        ),
    );
    c.still_up("after a message at the limit");
}

/// Scenario 4b: the answer's `a=max-message-size` (the node's SCTP limit)
/// takes the largest message a peer may send: a `Data` frame with a
/// payload of `JoinAccepted`'s `max_message_size` and its header; a
/// message of that size is delivered. (The answer's limit is larger than
/// any valid engine message: a message of exactly that size cannot be a
/// frame.)
pub fn sdp_max_message_delivered(stack: Stack) {
    let mut c = PcCell::new(stack);
    let host = c.server.host();
    let a = c.join();
    let Some(sdp_max) = sdp_max_message_size(&c.answer) else {
        c.check(false, "the answer has an a=max-message-size");
        unreachable!()
    };
    let limit = a.max_message_size as usize;
    let largest = Message::Frame(Frame::Data(data(1, 1, false, payload(1, limit))))
        .to_bytes()
        .len();
    c.check(
        sdp_max >= largest,
        &format!(
            "the answer's a=max-message-size {sdp_max} takes the largest Data, {largest} bytes"
        ),
    );
    deliver_one(&mut c, &host, limit, "the largest Data the answer allows");
    c.still_up("after a message at the SDP limit");
}

/// Scenario 5a: the peer leaves gracefully (`Leave`, then it closes its
/// peer connection): the server reports the member left.
pub fn peer_closes(stack: Stack) {
    let mut c = PcCell::new(stack);
    c.join();
    let leave = Frame::Leave(Leave {
        code: ErrorCode::NONE,
        reason: ShortStr::try_from("bye".to_owned()).expect("short"),
    });
    c.peer.send_frame(0, &Message::Frame(leave));
    c.peer.cmd(Cmd::Shutdown);
    closed_seen_by_server(&mut c);
}

/// Scenario 5a': the peer closes its peer connection without `Leave`: the
/// server reports the member left.
pub fn peer_closes_without_leave(stack: Stack) {
    let mut c = PcCell::new(stack);
    c.join();
    c.peer.cmd(Cmd::Shutdown);
    closed_seen_by_server(&mut c);
}

/// After the peer's close: the server reports the member left; prints
/// after how long, how the stack saw its own close, and the DTLS
/// counters. Returns the reason the server's event gives.
fn closed_seen_by_server(c: &mut PcCell) -> String {
    let start = Instant::now();
    let left = c.server.wait_left(WHO, LIMIT);
    let took = start.elapsed();
    c.check(left, "the server reports the member left");
    let reason = c.server.left_reason(WHO).unwrap_or_default();
    // What the stack says of its own close is for the log, not a check.
    let end = c.peer.wait_end(Duration::from_secs(3));
    let s = c.server.stats();
    println!(
        "[{}] the server saw the member leave {took:?} after the close ({reason}); the stack reports {end:?}; dtls_failures {}",
        c.peer.name, s.dtls_failures
    );
    reason
}

/// Scenario 5d: the stack aborts its association (webrtc-rs: closing a
/// peer connection sends an SCTP ABORT, as W3C `close()` says): the
/// server reports the member left, and why: aborted by the peer.
pub fn peer_aborts(stack: Stack) {
    let mut c = PcCell::new(stack);
    c.join();
    c.peer.cmd(Cmd::Shutdown);
    let reason = closed_seen_by_server(&mut c);
    c.check(
        reason.contains("aborted by the peer"),
        &format!("the server says the peer aborted (it says: {reason})"),
    );
    let s = c.server.stats();
    c.check(
        s.dtls_failures == 0,
        "no DTLS failure (the DTLS session ends with the association)",
    );
}

/// Scenario 5e: the engine ABORTs. The stack is given an answer whose
/// `a=max-message-size` is 1 MiB (a stack that ignores the engine's
/// limit), and sends a message one byte over the engine's SCTP limit (the
/// engine's own `a=max-message-size`): the engine ABORTs the association
/// with the reason (`HubStats::oversize_messages`), the member leaves,
/// and the stack sees its association end (not a hang).
pub fn engine_aborts(stack: Stack) {
    let mut c = PcCell::start(
        stack,
        Tamper {
            answer_max_message_size: Some(1 << 20),
            ..Tamper::default()
        },
    );
    let up = c.peer.wait_connected();
    c.check(up, "ICE, DTLS and SCTP come up and both data channels open");
    c.join();
    let Some(engine_max) = sdp_max_message_size(&c.engine_answer) else {
        c.check(false, "the engine's answer has an a=max-message-size");
        unreachable!()
    };
    c.open_on(CHANNEL, 1, Reliability::Durable);
    // Not a frame: the engine ABORTs before it reads a byte of it.
    let over = Bytes::from(vec![0x5a; engine_max + 1]);
    c.peer.send(0, false, over);
    let start = Instant::now();
    let left = c.server.wait_left(WHO, LIMIT);
    c.check(left, "the server reports the member left");
    let reason = c.server.left_reason(WHO).unwrap_or_default();
    let s = c.server.stats();
    c.check(
        s.oversize_messages == 1,
        &format!(
            "HubStats::oversize_messages is 1 (got {}); the member left: {reason}",
            s.oversize_messages
        ),
    );
    let end = c.peer.wait_end(LIMIT);
    println!(
        "[{}] the engine's ABORT ({reason}) after {:?}; the stack reports {end:?}",
        c.peer.name,
        start.elapsed()
    );
    c.check(
        end.is_some(),
        "the stack sees its association or connection end",
    );
}

/// Scenario 7: a call longer than ICE consent's 30 s (RFC 7675): the
/// stack's consent checks keep the engine's ICE session alive, and 40 s
/// in, Durable messages still go both ways.
pub fn holds_past_consent_timeout(stack: Stack) {
    let mut c = PcCell::new(stack);
    let host = c.server.host();
    c.join();
    c.host_sees_peer(&host);
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(40) {
        std::thread::sleep(Duration::from_millis(500));
        let gone = c.server.left(WHO);
        c.check(
            !gone,
            &format!("the member is still in the call {:?} in", start.elapsed()),
        );
        c.still_up("during a 40 s call");
    }
    c.open_on(CHANNEL, 1, Reliability::Durable);
    c.send_data(1, 1, false, payload(1, 300));
    let r = c.receiver(&host);
    let m = r.recv_timeout(LIMIT);
    let ok = m
        .as_ref()
        .is_some_and(|m| m.sequence_number == 1 && m.data == payload(1, 300));
    c.check(ok, "40 s in: peer → host, one Durable message");
    let sender = host_sender(&host, 9, DataChannelReliability::Durable);
    sender.send(payload(2, 300)).expect("send");
    let (opened, got) = c.collect_data(1, LIMIT);
    c.check(
        opened && got.len() == 1 && got[0].2 == payload(2, 300),
        &format!(
            "40 s in: host → peer, one Durable message (got {})",
            got.len()
        ),
    );
    let s = c.server.stats();
    c.check(
        s.ice_consent_expired == 0 && s.ice_checks_refused == 0,
        &format!(
            "no consent expired, no check refused (ice_consent_expired {}, ice_checks_refused {})",
            s.ice_consent_expired, s.ice_checks_refused
        ),
    );
}

/// Scenario 5b: the engine shuts down gracefully: the peer sees its
/// channel 0 close or the connection close, not fail.
pub fn engine_shutdown(stack: Stack) {
    let mut c = PcCell::new(stack);
    c.join();
    c.server.shutdown(Duration::from_secs(10));
    let end = c.peer.wait_end(LIMIT);
    println!(
        "[{}] after the engine's shutdown the stack reports {end:?}",
        c.peer.name
    );
    c.check(
        matches!(end, Some(Ev::Closed | Ev::Ended)),
        &format!("the peer sees a graceful end (got {end:?})"),
    );
}

/// Scenario 6a: the offer names another certificate than the one the
/// stack presents: the engine refuses the DTLS handshake (counted in
/// `HubStats::dtls_failures`), no channel opens, no join.
pub fn wrong_certificate_refused(stack: Stack) {
    let mut c = PcCell::start(
        stack,
        Tamper {
            offer_fingerprint: true,
            ..Tamper::default()
        },
    );
    let deadline = Instant::now() + LIMIT;
    while c.server.stats().dtls_failures == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let s = c.server.stats();
    c.check(
        s.dtls_failures >= 1,
        "the engine counts a failed DTLS session",
    );
    let connected = c
        .peer
        .wait_for(Duration::from_secs(2), |e| matches!(e, Ev::Connected))
        .is_some();
    let s = c.server.stats();
    c.check(
        !connected && s.dtls_handshakes == 0 && s.joins_accepted == 0,
        &format!("no handshake completes, no channel opens (connected: {connected})"),
    );
}

/// Scenario 6b: the stack is given a wrong ICE password for the engine:
/// the engine answers none of its checks and never starts DTLS.
pub fn wrong_ice_password_no_dtls(stack: Stack) {
    let mut c = PcCell::start(
        stack,
        Tamper {
            answer_ice_pwd: true,
            ..Tamper::default()
        },
    );
    // The checks reach the engine and are refused (401: MESSAGE-INTEGRITY
    // fails under the engine's password)...
    let reached = |s: &dcengine::HubStats| s.ice_checks_refused;
    let deadline = Instant::now() + LIMIT;
    while reached(&c.server.stats()) < 3 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let s = c.server.stats();
    c.check(
        reached(&s) >= 3,
        "the stack's ICE checks reach the engine and are refused (HubStats::ice_checks_refused)",
    );
    // ...and for a few seconds more, with the stack retrying, nothing
    // starts.
    let connected = c
        .peer
        .wait_for(Duration::from_secs(5), |e| matches!(e, Ev::Connected))
        .is_some();
    let s = c.server.stats();
    println!(
        "[{}] wrong ICE password: {} checks refused, {} datagrams received, {} sent, DTLS dropped {}",
        c.peer.name, s.ice_checks_refused, s.datagrams_received, s.datagrams_sent, s.dtls_dropped
    );
    c.check(
        !connected && s.dtls_handshakes == 0 && s.dtls_failures == 0 && s.joins_accepted == 0,
        &format!("no DTLS state, no channel (connected: {connected})"),
    );
}
