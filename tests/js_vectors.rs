//! Golden codec vectors shared with the TypeScript client (`clients/js`).
//!
//! - `clients/js/test/vectors/rust.json`: messages built here (every frame
//!   type and flag combination, batches, edge values), with their encodings.
//!   The TypeScript tests decode each, compare it with its JSON description
//!   and re-encode it byte for byte.
//! - `clients/js/test/vectors/invalid.json`: bad encodings with the
//!   `DecodeError` the Rust decoder gives (its kind and details); the
//!   TypeScript decoder must give the same.
//! - `clients/js/test/vectors/ts.json`: the TypeScript side's own vectors
//!   (`npm run vectors`), which this test decodes and re-encodes.
//!
//! The first two files are generated from this test: run it with
//! `DCENGINE_WRITE_VECTORS=1` to (re)write them. Without it the test fails
//! when a file is missing or differs from what it builds, so the vectors
//! cannot drift from the Rust codec silently.
//!
//! The JSON shape is documented in `clients/js/README.md`: a vector is
//! `{ "name", "hex", "batch", "frames" }`; a frame is an object with a
//! `"type"` (the frame's name) and its fields in camelCase, byte strings as
//! lowercase hex, optional fields absent when their flag is clear.

use std::path::PathBuf;

use bytes::Bytes;
use dcengine::wire::*;
use serde_json::{Map, Value, json};

fn vectors_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("clients/js/test/vectors")
}

fn s(v: &str) -> ShortStr {
    ShortStr::try_from(v).expect("short string")
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    assert!(s.len().is_multiple_of(2), "odd hex length");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex digit"))
        .collect()
}

/// Deterministic bytes (a small LCG), so large payloads are not all one byte.
fn pattern(n: usize, seed: u32) -> Bytes {
    let mut x = seed;
    (0..n)
        .map(|_| {
            x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (x >> 24) as u8
        })
        .collect::<Vec<u8>>()
        .into()
}

// ---- Frames <-> JSON -----------------------------------------------------------

fn with_origin(mut m: Map<String, Value>, origin: Option<MemberId>) -> Value {
    if let Some(o) = origin {
        m.insert("origin".into(), json!(o.0));
    }
    Value::Object(m)
}

fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => unreachable!("json! of an object"),
    }
}

fn frame_to_json(f: &Frame) -> Value {
    match f {
        Frame::Join(j) => json!({
            "type": "Join", "version": j.version, "callId": j.call_id.as_str(),
            "participantId": j.participant_id.as_str(), "token": hex(&j.token),
        }),
        Frame::JoinAccepted(a) => {
            let t = &a.traffic;
            json!({
                "type": "JoinAccepted", "version": a.version, "member": a.member.0,
                "maxMessageSize": a.max_message_size, "idleTimeoutMs": a.idle_timeout_ms,
                "traffic": {
                    "durableKbps": t.durable_kbps, "lossyKbps": t.lossy_kbps,
                    "highLossyKbps": t.high_lossy_kbps,
                    "broadcastPacketsPerSecond": t.broadcast_packets_per_second,
                    "packetBytes": t.packet_bytes, "burstMs": t.burst_ms,
                    "memberKbps": t.member_kbps,
                    "memberMessagesPerSecond": t.member_messages_per_second,
                },
                "maxSenders": a.max_senders,
            })
        }
        Frame::JoinRejected(r) => {
            json!({"type": "JoinRejected", "code": r.code.0, "reason": r.reason.as_str()})
        }
        Frame::Leave(r) => json!({"type": "Leave", "code": r.code.0, "reason": r.reason.as_str()}),
        Frame::Error(r) => json!({"type": "Error", "code": r.code.0, "reason": r.reason.as_str()}),
        Frame::ParticipantJoined(p) => json!({
            "type": "ParticipantJoined", "member": p.member.0,
            "participantId": p.participant_id.as_str(),
        }),
        Frame::ParticipantLeft(p) => json!({"type": "ParticipantLeft", "member": p.member.0}),
        Frame::SenderOpened(o) => with_origin(
            obj(json!({
                "type": "SenderOpened", "channel": o.channel, "session": o.session,
                "reliability": match o.reliability {
                    Reliability::Lossy => "lossy",
                    Reliability::Durable => "durable",
                },
                "priority": match o.priority {
                    Priority::Normal => "normal",
                    Priority::High => "high",
                },
                "bitrateKbps": o.bitrate_kbps,
            })),
            o.origin,
        ),
        Frame::SenderClosed(c) => with_origin(
            obj(json!({
                "type": "SenderClosed", "channel": c.channel, "session": c.session,
                "reason": c.reason.0,
            })),
            c.origin,
        ),
        Frame::SetParticipants(p) => json!({
            "type": "SetParticipants", "channel": p.channel, "epoch": p.epoch,
            "participants": p.participants.ids().iter().map(ShortStr::as_str).collect::<Vec<_>>(),
        }),
        Frame::Data(d) => {
            let mut m = obj(json!({
                "type": "Data", "channel": d.channel, "session": d.session, "seq": d.seq,
                "payload": hex(&d.payload),
            }));
            if let Some(o) = d.origin {
                m.insert("origin".into(), json!(o.0));
            }
            if let Some(e) = d.epoch {
                m.insert("epoch".into(), json!(e));
            }
            Value::Object(m)
        }
        Frame::KeepAlive(k) => with_origin(
            obj(json!({"type": "KeepAlive", "channel": k.channel, "session": k.session})),
            k.origin,
        ),
        Frame::FlowControl(c) => json!({
            "type": "FlowControl", "channel": c.channel, "session": c.session,
            "paused": c.paused,
        }),
    }
}

/// Reads JSON frames; panics (failing the test) on a malformed description.
struct J<'a>(&'a Map<String, Value>);

impl J<'_> {
    fn field(&self, k: &str) -> &Value {
        self.0
            .get(k)
            .unwrap_or_else(|| panic!("missing field {k:?} in {:?}", self.0))
    }
    fn uint<T: TryFrom<u64>>(&self, k: &str) -> T {
        let v = self.field(k).as_u64().expect("an unsigned integer");
        T::try_from(v).unwrap_or_else(|_| panic!("{k} = {v} out of range"))
    }
    fn str(&self, k: &str) -> ShortStr {
        s(self.field(k).as_str().expect("a string"))
    }
    fn bytes(&self, k: &str) -> Bytes {
        unhex(self.field(k).as_str().expect("a hex string")).into()
    }
    fn origin(&self) -> Option<MemberId> {
        self.0
            .contains_key("origin")
            .then(|| MemberId(self.uint("origin")))
    }
}

fn frame_from_json(v: &Value) -> Frame {
    let j = J(v.as_object().expect("a frame object"));
    let ty = j.field("type").as_str().expect("a type name");
    match ty {
        "Join" => Join {
            version: j.uint("version"),
            call_id: j.str("callId"),
            participant_id: j.str("participantId"),
            token: j.bytes("token"),
        }
        .into(),
        "JoinAccepted" => {
            let t = J(j.field("traffic").as_object().expect("traffic object"));
            JoinAccepted {
                version: j.uint("version"),
                member: MemberId(j.uint("member")),
                max_message_size: j.uint("maxMessageSize"),
                idle_timeout_ms: j.uint("idleTimeoutMs"),
                traffic: TrafficRules {
                    durable_kbps: t.uint("durableKbps"),
                    lossy_kbps: t.uint("lossyKbps"),
                    high_lossy_kbps: t.uint("highLossyKbps"),
                    broadcast_packets_per_second: t.uint("broadcastPacketsPerSecond"),
                    packet_bytes: t.uint("packetBytes"),
                    burst_ms: t.uint("burstMs"),
                    member_kbps: t.uint("memberKbps"),
                    member_messages_per_second: t.uint("memberMessagesPerSecond"),
                },
                max_senders: j.uint("maxSenders"),
            }
            .into()
        }
        "JoinRejected" => JoinRejected {
            code: ErrorCode(j.uint("code")),
            reason: j.str("reason"),
        }
        .into(),
        "Leave" => Leave {
            code: ErrorCode(j.uint("code")),
            reason: j.str("reason"),
        }
        .into(),
        "Error" => ErrorFrame {
            code: ErrorCode(j.uint("code")),
            reason: j.str("reason"),
        }
        .into(),
        "ParticipantJoined" => ParticipantJoined {
            member: MemberId(j.uint("member")),
            participant_id: j.str("participantId"),
        }
        .into(),
        "ParticipantLeft" => ParticipantLeft {
            member: MemberId(j.uint("member")),
        }
        .into(),
        "SenderOpened" => SenderOpened {
            channel: j.uint("channel"),
            session: j.uint("session"),
            reliability: match j.field("reliability").as_str() {
                Some("lossy") => Reliability::Lossy,
                Some("durable") => Reliability::Durable,
                other => panic!("bad reliability {other:?}"),
            },
            priority: match j.field("priority").as_str() {
                Some("normal") => Priority::Normal,
                Some("high") => Priority::High,
                other => panic!("bad priority {other:?}"),
            },
            bitrate_kbps: j.uint("bitrateKbps"),
            origin: j.origin(),
        }
        .into(),
        "SenderClosed" => SenderClosed {
            channel: j.uint("channel"),
            session: j.uint("session"),
            reason: CloseReason(j.uint("reason")),
            origin: j.origin(),
        }
        .into(),
        "SetParticipants" => SetParticipants {
            channel: j.uint("channel"),
            epoch: j.uint("epoch"),
            participants: j
                .field("participants")
                .as_array()
                .expect("participants array")
                .iter()
                .map(|p| s(p.as_str().expect("a participant id")))
                .collect::<Vec<_>>()
                .try_into()
                .expect("at most 64 participants"),
        }
        .into(),
        "Data" => Data {
            channel: j.uint("channel"),
            session: j.uint("session"),
            seq: j.uint("seq"),
            origin: j.origin(),
            epoch: j.0.contains_key("epoch").then(|| j.uint("epoch")),
            payload: j.bytes("payload"),
        }
        .into(),
        "KeepAlive" => KeepAlive {
            channel: j.uint("channel"),
            session: j.uint("session"),
            origin: j.origin(),
        }
        .into(),
        "FlowControl" => FlowControl {
            channel: j.uint("channel"),
            session: j.uint("session"),
            paused: j.field("paused").as_bool().expect("paused is a bool"),
        }
        .into(),
        other => panic!("unknown frame type {other:?}"),
    }
}

fn message_parts(m: &Message) -> (bool, Vec<Value>) {
    match m {
        Message::Frame(f) => (false, vec![frame_to_json(f)]),
        Message::Batch(b) => (true, b.frames.iter().map(frame_to_json).collect()),
    }
}

fn message_from_json(v: &Value) -> Message {
    let batch = v["batch"].as_bool().expect("batch is a bool");
    let frames: Vec<Frame> = v["frames"]
        .as_array()
        .expect("frames array")
        .iter()
        .map(frame_from_json)
        .collect();
    if batch {
        Message::Batch(Batch { frames })
    } else {
        let [f]: [Frame; 1] = frames.try_into().expect("a non-batch vector has one frame");
        Message::Frame(f)
    }
}

fn vector(name: &str, m: &Message) -> Value {
    let (batch, frames) = message_parts(m);
    json!({"name": name, "hex": hex(&m.to_bytes()), "batch": batch, "frames": frames})
}

// ---- The Rust vector set -----------------------------------------------------

fn rust_messages() -> Vec<(String, Message)> {
    let mut v: Vec<(String, Frame)> = Vec::new();
    let mut push = |name: &str, f: Frame| v.push((name.to_owned(), f));
    push(
        "join",
        Join {
            version: PROTOCOL_VERSION,
            call_id: s("call-1"),
            participant_id: s("8:acs:alice"),
            token: pattern(45, 1),
        }
        .into(),
    );
    push(
        "join empty strings and token",
        Join {
            version: 0,
            call_id: s(""),
            participant_id: s(""),
            token: Bytes::new(),
        }
        .into(),
    );
    push(
        "join 255-byte ids, max token (2-byte varint)",
        Join {
            version: u16::MAX,
            call_id: s(&"a".repeat(255)),
            participant_id: s(&"é".repeat(127).chain_one('z')),
            token: pattern(MAX_TOKEN_LEN, 2),
        }
        .into(),
    );
    push(
        "join token 63 bytes (largest 1-byte varint)",
        Join {
            version: 4,
            call_id: s("c"),
            participant_id: s("p"),
            token: pattern(63, 3),
        }
        .into(),
    );
    push(
        "join token 64 bytes (smallest 2-byte varint)",
        Join {
            version: 4,
            call_id: s("c"),
            participant_id: s("p"),
            token: pattern(64, 4),
        }
        .into(),
    );
    push(
        "join accepted",
        JoinAccepted {
            version: PROTOCOL_VERSION,
            member: MemberId(7),
            max_message_size: 262_144,
            idle_timeout_ms: 120_000,
            traffic: TrafficRules {
                durable_kbps: 64,
                lossy_kbps: 512,
                high_lossy_kbps: 200,
                broadcast_packets_per_second: 80,
                packet_bytes: 1200,
                burst_ms: 1000,
                member_kbps: 2048,
                member_messages_per_second: 2000,
            },
            max_senders: 1024,
        }
        .into(),
    );
    push(
        "join accepted max values",
        JoinAccepted {
            version: u16::MAX,
            member: MemberId(u32::MAX),
            max_message_size: u32::MAX,
            idle_timeout_ms: u32::MAX,
            traffic: TrafficRules {
                durable_kbps: u32::MAX,
                lossy_kbps: u32::MAX - 1,
                high_lossy_kbps: 0x8000_0000,
                broadcast_packets_per_second: 0x7fff_ffff,
                packet_bytes: 1,
                burst_ms: 0,
                member_kbps: 0x0102_0304,
                member_messages_per_second: 0xfffe_fdfc,
            },
            max_senders: 0,
        }
        .into(),
    );
    for (name, code, reason) in [
        ("join rejected", ErrorCode::BAD_TOKEN, "bad token"),
        (
            "join rejected unknown code, empty reason",
            ErrorCode(0xffff),
            "",
        ),
    ] {
        push(
            name,
            JoinRejected {
                code,
                reason: s(reason),
            }
            .into(),
        );
    }
    push(
        "leave",
        Leave {
            code: ErrorCode::NONE,
            reason: s(""),
        }
        .into(),
    );
    push(
        "leave 255-byte reason (multi-byte UTF-8)",
        Leave {
            code: ErrorCode::SHUTTING_DOWN,
            reason: s(&"日本"
                .repeat(42)
                .chain_one('!')
                .chain_one('!')
                .chain_one('!')),
        }
        .into(),
    );
    push(
        "participant joined",
        ParticipantJoined {
            member: MemberId(9),
            participant_id: s("bob"),
        }
        .into(),
    );
    push(
        "participant joined, BOM and emoji",
        ParticipantJoined {
            member: MemberId(0),
            participant_id: s("\u{feff}\u{1f600}x"),
        }
        .into(),
    );
    push(
        "participant left",
        ParticipantLeft {
            member: MemberId(u32::MAX),
        }
        .into(),
    );
    for reliability in [Reliability::Lossy, Reliability::Durable] {
        for priority in [Priority::Normal, Priority::High] {
            for origin in [None, Some(MemberId(0x1122_3344))] {
                push(
                    &format!(
                        "sender opened {reliability:?} {priority:?}{}",
                        if origin.is_some() { " origin" } else { "" }
                    ),
                    SenderOpened {
                        channel: 10_000,
                        session: 3,
                        reliability,
                        priority,
                        bitrate_kbps: 32,
                        origin,
                    }
                    .into(),
                );
            }
        }
    }
    for (name, reason, origin) in [
        ("sender closed", CloseReason::CLOSED, None),
        (
            "sender closed origin replaced",
            CloseReason::REPLACED,
            Some(MemberId(5)),
        ),
        (
            "sender closed unknown reason",
            CloseReason(0xff),
            Some(MemberId(u32::MAX)),
        ),
    ] {
        push(
            name,
            SenderClosed {
                channel: u16::MAX,
                session: u32::MAX,
                reason,
                origin,
            }
            .into(),
        );
    }
    push(
        "set participants broadcast",
        SetParticipants {
            channel: 1000,
            epoch: 0,
            participants: ParticipantList::default(),
        }
        .into(),
    );
    push(
        "set participants, duplicates and empty",
        SetParticipants {
            channel: 1000,
            epoch: u16::MAX,
            participants: vec![s("alice"), s("bob"), s("alice"), s("")]
                .try_into()
                .expect("≤ 64"),
        }
        .into(),
    );
    push(
        "set participants 64, one of 255 bytes",
        SetParticipants {
            channel: 1,
            epoch: 1,
            participants: (0..MAX_PARTICIPANTS)
                .map(|i| {
                    if i == 63 {
                        s(&"z".repeat(255))
                    } else {
                        s(&format!("participant-{i}"))
                    }
                })
                .collect::<Vec<_>>()
                .try_into()
                .expect("64"),
        }
        .into(),
    );
    for origin in [None, Some(MemberId(0x1122_3344))] {
        for epoch in [None, Some(0x5566)] {
            push(
                &format!(
                    "data{}{}",
                    if origin.is_some() { " origin" } else { "" },
                    if epoch.is_some() { " epoch" } else { "" }
                ),
                Data {
                    channel: 0x1234,
                    session: 0x0102_0304,
                    seq: 0x0a0b_0c0d,
                    origin,
                    epoch,
                    payload: Bytes::from_static(b"hi"),
                }
                .into(),
            );
        }
    }
    for (name, len) in [
        ("data empty payload", 0),
        ("data payload 63 bytes", 63),
        ("data payload 64 bytes", 64),
        ("data payload 16383 bytes (largest 2-byte varint)", 16_383),
        ("data payload 16384 bytes (smallest 4-byte varint)", 16_384),
    ] {
        push(
            name,
            Data {
                channel: 1,
                session: 1,
                seq: u32::MAX,
                origin: None,
                epoch: Some(0),
                payload: pattern(len, len as u32),
            }
            .into(),
        );
    }
    push(
        "error",
        ErrorFrame {
            code: ErrorCode::PROTOCOL_VIOLATION,
            reason: s("undecodable message: unknown frame type 0x7f"),
        }
        .into(),
    );
    push("keepalive association", KeepAlive::ASSOCIATION.into());
    push(
        "keepalive channel origin",
        KeepAlive {
            channel: 12,
            session: 13,
            origin: Some(MemberId(14)),
        }
        .into(),
    );
    for paused in [true, false] {
        push(
            &format!("flow control paused={paused}"),
            FlowControl {
                channel: 7,
                session: 9,
                paused,
            }
            .into(),
        );
    }

    let small: Vec<Frame> = v
        .iter()
        .filter(|(_, f)| f.encoded_len() < 1000)
        .map(|(_, f)| f.clone())
        .collect();
    let mut out: Vec<(String, Message)> =
        v.into_iter().map(|(n, f)| (n, Message::Frame(f))).collect();
    out.push(("batch empty".into(), Message::Batch(Batch::default())));
    out.push((
        "batch one frame".into(),
        Message::Batch(Batch {
            frames: vec![KeepAlive::ASSOCIATION.into()],
        }),
    ));
    out.push((
        "batch of every small frame above".into(),
        Message::Batch(Batch { frames: small }),
    ));
    out.push((
        "batch of 64 shortest frames (2-byte count)".into(),
        Message::Batch(Batch {
            frames: vec![
                ErrorFrame {
                    code: ErrorCode::NONE,
                    reason: s("")
                }
                .into();
                64
            ],
        }),
    ));
    out
}

/// `str::chain_one`: appends a char (for building exact byte lengths).
trait ChainOne {
    fn chain_one(self, c: char) -> String;
}

impl ChainOne for String {
    fn chain_one(mut self, c: char) -> String {
        self.push(c);
        self
    }
}

// ---- The invalid set -----------------------------------------------------------

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// Data header without flags' optional fields: type, flags, channel 1,
/// session 1, seq 1.
fn data_head(flags: u8) -> Vec<u8> {
    vec![0x0a, flags, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1]
}

fn invalid_cases() -> Vec<(String, Vec<u8>, DecodeError)> {
    use DecodeError as E;
    let too_long = |what, len, max| E::TooLong { what, len, max };
    let v: Vec<(&str, Vec<u8>, DecodeError)> = vec![
        ("empty message", vec![], E::UnexpectedEnd),
        ("type 0x00", vec![0x00, 0, 0, 0], E::UnknownFrameType(0x00)),
        ("type 0x0e", vec![0x0e], E::UnknownFrameType(0x0e)),
        ("type 0x10", vec![0x10, 0, 0, 0], E::UnknownFrameType(0x10)),
        ("type 0xff", vec![0xff], E::UnknownFrameType(0xff)),
        (
            "keepalive, 1 trailing byte",
            cat(&[&[0x0c, 0, 0, 0, 0, 0, 0, 0], &[0]]),
            E::TrailingBytes(1),
        ),
        (
            "batch, 3 trailing bytes",
            vec![0x0f, 0, 1, 2, 3],
            E::TrailingBytes(3),
        ),
        (
            "nested batch",
            vec![0x0f, 1, 0x0f, 0, 0, 0, 0, 0],
            E::NestedBatch,
        ),
        (
            "batch count over remaining / 4",
            vec![0x0f, 2, 0x0b, 0, 0, 0, 0, 0, 0],
            too_long("batch count", 2, 1),
        ),
        (
            "batch count 63, nothing follows",
            vec![0x0f, 0x3f],
            too_long("batch count", 63, 0),
        ),
        (
            "batch count, max 8-byte varint",
            vec![
                0x0f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0,
            ],
            too_long("batch count", (1 << 62) - 1, 1),
        ),
        (
            "batch count non-minimal (1 in 2 bytes)",
            vec![0x0f, 0x40, 0x01, 0x0b, 0, 0, 0],
            E::NonMinimalVarint,
        ),
        ("batch count truncated", vec![0x0f, 0x40], E::UnexpectedEnd),
        (
            "batch whose second frame is truncated",
            vec![0x0f, 2, 0x06, 0, 0, 0, 1, 0x06, 0, 0, 0],
            E::UnexpectedEnd,
        ),
        (
            "batch holding a bad frame",
            vec![0x0f, 2, 0x06, 0, 0, 0, 1, 0x0c, 0x02, 0, 0, 0, 0, 0, 0],
            E::ReservedFlags(0x02),
        ),
        (
            "join token length 4097",
            vec![0x01, 0, 4, 0, 0, 0x50, 0x01],
            too_long("token length", 4097, 4096),
        ),
        (
            "join token length non-minimal (0 in 2 bytes)",
            vec![0x01, 0, 4, 0, 0, 0x40, 0x00],
            E::NonMinimalVarint,
        ),
        (
            "join token length 8-byte, small value",
            vec![0x01, 0, 4, 0, 0, 0xc0, 0, 0, 0, 0, 0, 0, 1, 0xaa],
            E::NonMinimalVarint,
        ),
        (
            "join token shorter than its length",
            vec![0x01, 0, 4, 0, 0, 3, 0xaa, 0xbb],
            E::UnexpectedEnd,
        ),
        (
            "join call id invalid UTF-8",
            vec![0x01, 0, 4, 2, 0xff, 0xfe, 0, 0],
            E::InvalidUtf8,
        ),
        (
            "join participant id overlong UTF-8",
            vec![0x01, 0, 4, 0, 2, 0xc0, 0xaf, 0],
            E::InvalidUtf8,
        ),
        (
            "join call id longer than the input",
            vec![0x01, 0, 4, 5, b'a', b'b'],
            E::UnexpectedEnd,
        ),
        (
            "error reason UTF-16 surrogate",
            vec![0x0b, 0, 5, 3, 0xed, 0xa0, 0x80],
            E::InvalidUtf8,
        ),
        (
            "join rejected reason truncated UTF-8",
            vec![0x03, 0, 2, 1, 0xe6],
            E::InvalidUtf8,
        ),
        (
            "leave reason code point above U+10FFFF",
            vec![0x04, 0, 0, 4, 0xf4, 0x90, 0x80, 0x80],
            E::InvalidUtf8,
        ),
        (
            "participant joined id invalid UTF-8",
            vec![0x05, 0, 0, 0, 1, 1, 0x80],
            E::InvalidUtf8,
        ),
        (
            "sender opened reserved flag 0x02",
            vec![0x07, 0x02, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0],
            E::ReservedFlags(0x02),
        ),
        (
            "sender opened reserved flags 0xff",
            vec![0x07, 0xff, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            E::ReservedFlags(0xfe),
        ),
        (
            "sender opened reliability 2",
            vec![0x07, 0, 0, 1, 0, 0, 0, 1, 2, 0, 0, 0, 0, 0],
            E::InvalidValue {
                what: "reliability",
                value: 2,
            },
        ),
        (
            "sender opened priority 255",
            vec![0x07, 0, 0, 1, 0, 0, 0, 1, 1, 0xff, 0, 0, 0, 0],
            E::InvalidValue {
                what: "priority",
                value: 255,
            },
        ),
        (
            "sender opened bad reliability before truncated bitrate",
            vec![0x07, 0, 0, 1, 0, 0, 0, 1, 9],
            E::InvalidValue {
                what: "reliability",
                value: 9,
            },
        ),
        (
            "sender opened origin flag, origin missing",
            vec![0x07, 1, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0],
            E::UnexpectedEnd,
        ),
        (
            "sender closed reserved flag 0x80",
            vec![0x08, 0x80, 0, 1, 0, 0, 0, 1, 0],
            E::ReservedFlags(0x80),
        ),
        (
            "set participants count 65, nothing follows",
            vec![0x09, 0, 1, 0, 0, 65],
            too_long("participant count", 65, 64),
        ),
        (
            "set participants count 255",
            cat(&[&[0x09, 0, 1, 0, 0, 255], &[0; 255]]),
            too_long("participant count", 255, 64),
        ),
        (
            "set participants count 3, 2 bytes left",
            vec![0x09, 0, 1, 0, 0, 3, 0, 0],
            E::UnexpectedEnd,
        ),
        (
            "set participants id invalid UTF-8",
            vec![0x09, 0, 1, 0, 0, 2, 0, 1, 0xc3],
            E::InvalidUtf8,
        ),
        (
            "data flags 0x83",
            cat(&[&data_head(0x83), &[0x11, 0x22, 0x33, 0x44, 0, 1, 0]]),
            E::ReservedFlags(0x80),
        ),
        (
            "data flag 0x04",
            cat(&[&data_head(0x04), &[0]]),
            E::ReservedFlags(0x04),
        ),
        (
            "data payload length 262145",
            cat(&[&data_head(0), &[0x80, 0x04, 0x00, 0x01]]),
            too_long("payload length", 262_145, 262_144),
        ),
        (
            "data payload length, max 8-byte varint",
            cat(&[&data_head(0), &[0xff; 8]]),
            too_long("payload length", (1 << 62) - 1, 262_144),
        ),
        (
            "data payload length non-minimal (5 in 4 bytes)",
            cat(&[&data_head(0), &[0x80, 0, 0, 5], b"hello"]),
            E::NonMinimalVarint,
        ),
        (
            "data payload length non-minimal (63 in 2 bytes)",
            cat(&[&data_head(0), &[0x40, 0x3f], &[0; 63]]),
            E::NonMinimalVarint,
        ),
        (
            "data payload length truncated varint",
            cat(&[&data_head(0), &[0x80, 0]]),
            E::UnexpectedEnd,
        ),
        (
            "data payload shorter than its length",
            cat(&[&data_head(0), &[5, 1]]),
            E::UnexpectedEnd,
        ),
        (
            "data epoch flag, epoch truncated",
            cat(&[&data_head(0x02), &[0x55]]),
            E::UnexpectedEnd,
        ),
        (
            "keepalive reserved flag 0x80",
            vec![0x0c, 0x80, 0, 0, 0, 0, 0, 0],
            E::ReservedFlags(0x80),
        ),
        (
            "keepalive epoch flag (Data only)",
            vec![0x0c, 0x02, 0, 0, 0, 0, 0, 0],
            E::ReservedFlags(0x02),
        ),
        (
            "flow control reserved flag 0x02",
            vec![0x0d, 0x03, 0, 7, 0, 0, 0, 9],
            E::ReservedFlags(0x02),
        ),
    ];
    // Every single frame of the valid set, one byte short.
    let truncated: Vec<(String, Vec<u8>, DecodeError)> = rust_messages()
        .into_iter()
        .filter(|(_, m)| matches!(m, Message::Frame(_)) && m.encoded_len() < 1000)
        .map(|(n, m)| {
            let b = m.to_bytes();
            (
                format!("{n}, last byte cut"),
                b[..b.len() - 1].to_vec(),
                DecodeError::UnexpectedEnd,
            )
        })
        .collect();
    let mut out: Vec<(String, Vec<u8>, DecodeError)> = v
        .into_iter()
        .map(|(n, b, e)| (n.to_owned(), b, e))
        .collect();
    out.extend(truncated);
    out
}

/// An error as `invalid.json` gives it: its kind, and its details (`len` as a
/// decimal string: it may exceed 2^53, which a JSON number in JS cannot hold).
fn error_json(e: &DecodeError) -> Map<String, Value> {
    obj(match e {
        DecodeError::UnexpectedEnd => json!({"kind": "UnexpectedEnd"}),
        DecodeError::UnknownFrameType(t) => json!({"kind": "UnknownFrameType", "type": t}),
        DecodeError::WrongFrameType { expected, found } => {
            json!({"kind": "WrongFrameType", "expected": expected, "type": found})
        }
        DecodeError::TrailingBytes(n) => json!({"kind": "TrailingBytes", "trailing": n}),
        DecodeError::InvalidUtf8 => json!({"kind": "InvalidUtf8"}),
        DecodeError::TooLong { what, len, max } => {
            json!({"kind": "TooLong", "what": what, "len": len.to_string(), "max": max})
        }
        DecodeError::NonMinimalVarint => json!({"kind": "NonMinimalVarint"}),
        DecodeError::ReservedFlags(bits) => json!({"kind": "ReservedFlags", "bits": bits}),
        DecodeError::NestedBatch => json!({"kind": "NestedBatch"}),
        DecodeError::InvalidValue { what, value } => {
            json!({"kind": "InvalidValue", "what": what, "value": value})
        }
        other => panic!("a DecodeError this test does not know: {other:?}"),
    })
}

fn invalid_json() -> Value {
    Value::Array(
        invalid_cases()
            .iter()
            .map(|(name, bytes, err)| {
                let mut m = obj(json!({"name": name, "hex": hex(bytes)}));
                m.extend(error_json(err));
                Value::Object(m)
            })
            .collect(),
    )
}

fn rust_json() -> Value {
    Value::Array(
        rust_messages()
            .iter()
            .map(|(name, m)| vector(name, m))
            .collect(),
    )
}

/// Writes `value` to `file` with `DCENGINE_WRITE_VECTORS=1`; otherwise
/// checks the file holds the same JSON.
fn check_or_write(file: &str, value: &Value) {
    let path = vectors_dir().join(file);
    if std::env::var("DCENGINE_WRITE_VECTORS").as_deref() == Ok("1") {
        let text = serde_json::to_string_pretty(value).expect("serializes") + "\n";
        std::fs::write(&path, text).expect("writes the vectors");
        return;
    }
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run `DCENGINE_WRITE_VECTORS=1 cargo test --test js_vectors` to write it",
            path.display()
        )
    });
    let on_disk: Value = serde_json::from_str(&text).expect("the vector file is JSON");
    if &on_disk != value {
        let (a, b) = (
            on_disk.as_array().map_or(0, Vec::len),
            value.as_array().map_or(0, Vec::len),
        );
        let first = on_disk
            .as_array()
            .zip(value.as_array())
            .and_then(|(x, y)| x.iter().zip(y).position(|(p, q)| p != q));
        panic!(
            "{} differs from what the Rust codec builds ({a} vectors on disk, {b} built; \
             first difference at index {first:?}); if the change is intended, rerun with \
             DCENGINE_WRITE_VECTORS=1 and commit the file",
            path.display()
        );
    }
}

// ---- Tests ---------------------------------------------------------------------

#[test]
fn rust_vectors_match_the_committed_file() {
    check_or_write("rust.json", &rust_json());
}

#[test]
fn invalid_vectors_match_the_committed_file() {
    check_or_write("invalid.json", &invalid_json());
}

#[test]
fn rust_vectors_round_trip_through_their_json() {
    for (name, m) in rust_messages() {
        let v = vector(&name, &m);
        let bytes = unhex(v["hex"].as_str().expect("hex"));
        assert_eq!(Message::decode_exact(&bytes[..]).as_ref(), Ok(&m), "{name}");
        assert_eq!(message_from_json(&v), m, "{name}: JSON description");
    }
}

#[test]
fn every_frame_type_and_flag_is_covered() {
    let msgs = rust_messages();
    let frames: Vec<Frame> = msgs
        .iter()
        .flat_map(|(_, m)| m.clone().into_frames())
        .collect();
    let names: std::collections::BTreeSet<&str> = frames.iter().map(Frame::name).collect();
    assert_eq!(names.len(), 13, "{names:?}");
    assert!(msgs.iter().any(|(_, m)| matches!(m, Message::Batch(_))));
    let bits = |t: &str, f: &Frame| {
        let b = f.to_bytes();
        (f.name() == t).then(|| b[1])
    };
    for (t, all) in [
        ("SenderOpened", vec![0, 1]),
        ("SenderClosed", vec![0, 1]),
        ("Data", vec![0, 1, 2, 3]),
        ("KeepAlive", vec![0, 1]),
        ("FlowControl", vec![0, 1]),
    ] {
        let seen: std::collections::BTreeSet<u8> =
            frames.iter().filter_map(|f| bits(t, f)).collect();
        assert_eq!(seen.into_iter().collect::<Vec<_>>(), all, "{t} flags");
    }
}

#[test]
fn invalid_vectors_are_rejected_by_the_rust_decoder() {
    for (name, bytes, err) in invalid_cases() {
        assert_eq!(
            Message::decode_exact(&bytes[..]),
            Err(err),
            "{name}: {}",
            hex(&bytes)
        );
    }
}

#[test]
fn ts_vectors_decode_and_reencode_byte_for_byte() {
    let path = vectors_dir().join("ts.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run `npm run vectors` in clients/js",
            path.display()
        )
    });
    let vectors: Vec<Value> = serde_json::from_str(&text).expect("ts.json is a JSON array");
    assert!(!vectors.is_empty(), "ts.json holds no vectors");
    for v in &vectors {
        let name = v["name"].as_str().expect("a name");
        let bytes = unhex(v["hex"].as_str().expect("hex"));
        let decoded = Message::decode_exact(&bytes[..])
            .unwrap_or_else(|e| panic!("{name}: the Rust decoder rejects it: {e:?}"));
        let (batch, frames) = message_parts(&decoded);
        assert_eq!(json!(batch), v["batch"], "{name}: batch");
        assert_eq!(Value::Array(frames), v["frames"], "{name}: frames");
        let built = message_from_json(v);
        assert_eq!(built, decoded, "{name}: JSON description");
        assert_eq!(hex(&built.to_bytes()), hex(&bytes), "{name}: re-encoding");
    }
}
