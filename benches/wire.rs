//! Wire-format cost: encoding and decoding one [`Message`] of each frame
//! type, and a [`Batch`] of 32 small Data frames.
//!
//! Encoding writes into a reused buffer (no allocation), as a sender does
//! when it packs frames into an SCTP message. Decoding takes the message from
//! [`Bytes`], as the node receives it, so payloads are zero-copy slices of
//! the input. Throughput is in frames (a batch counts its 32 frames), so
//! criterion's `elem/s` is frames per second and the time per element is the
//! cost per frame.
//!
//! Run with `cargo bench --bench wire`; pass a filter such as `decode/data`
//! to run part of it.

use std::hint::black_box;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use dcengine::internal::TrafficPolicyInternals as _;
use dcengine::sched::TrafficPolicy;
use dcengine::wire::{
    Batch, CloseReason, Codec, Data, ErrorCode, ErrorFrame, Frame, Join, JoinAccepted,
    JoinRejected, KeepAlive, Leave, MemberId, Message, PROTOCOL_VERSION, ParticipantJoined,
    ParticipantLeft, Priority, Reliability, SenderClosed, SenderOpened, SetParticipants, ShortStr,
};

/// Frames in the batch case.
const BATCH_FRAMES: usize = 32;

fn short(s: &str) -> ShortStr {
    ShortStr::try_from(s).expect("short enough")
}

/// A Data frame as the server forwards it to a receiver (origin set), with a
/// payload of `len` bytes.
fn data(len: usize, seq: u32) -> Data {
    Data {
        channel: 1000,
        session: 7,
        seq,
        origin: Some(MemberId(3)),
        epoch: None,
        payload: Bytes::from(vec![0x5a; len]),
    }
}

/// One representative frame of each type, with a name for the benchmark id.
fn frames() -> Vec<(&'static str, Frame)> {
    let participant = "8:acs:2f1c9a52-7d3e-4c1b-9a0e-5b6f7c8d9e0f_0000001a-2b3c-4d5e";
    vec![
        ("data_16B", data(16, 1).into()),
        ("data_100B", data(100, 1).into()),
        ("data_1200B", data(1200, 1).into()),
        (
            "join",
            Join {
                version: PROTOCOL_VERSION,
                call_id: short("b1e3c2a4-5d6f-4a8b-9c0d-1e2f3a4b5c6d"),
                participant_id: short(participant),
                token: Bytes::from(vec![0x42; 600]),
            }
            .into(),
        ),
        (
            "join_accepted",
            JoinAccepted {
                version: PROTOCOL_VERSION,
                member: MemberId(12),
                max_message_size: 65536,
                idle_timeout_ms: 120_000,
                traffic: TrafficPolicy::default().to_rules(),
                max_senders: 1024,
            }
            .into(),
        ),
        (
            "join_rejected",
            JoinRejected {
                code: ErrorCode::BAD_TOKEN,
                reason: short("token signature does not verify"),
            }
            .into(),
        ),
        (
            "leave",
            Leave {
                code: ErrorCode::NONE,
                reason: short(""),
            }
            .into(),
        ),
        (
            "participant_joined",
            ParticipantJoined {
                member: MemberId(12),
                participant_id: short(participant),
            }
            .into(),
        ),
        (
            "participant_left",
            ParticipantLeft {
                member: MemberId(12),
            }
            .into(),
        ),
        (
            "sender_opened",
            SenderOpened {
                channel: 1000,
                session: 7,
                reliability: Reliability::Lossy,
                priority: Priority::High,
                bitrate_kbps: 64,
                origin: Some(MemberId(3)),
            }
            .into(),
        ),
        (
            "sender_closed",
            SenderClosed {
                channel: 1000,
                session: 7,
                reason: CloseReason::CLOSED,
                origin: Some(MemberId(3)),
            }
            .into(),
        ),
        (
            "set_participants_64",
            SetParticipants {
                channel: 1000,
                epoch: 9,
                participants: (100..164)
                    .map(|i| ShortStr::truncated(&format!("8:acs:participant-{i}")))
                    .collect::<Vec<_>>()
                    .try_into()
                    .expect("64 members"),
            }
            .into(),
        ),
        (
            "error",
            ErrorFrame {
                code: ErrorCode::TRAFFIC_LIMIT,
                reason: short("message rate above the limit"),
            }
            .into(),
        ),
        (
            "keep_alive",
            KeepAlive {
                channel: 1000,
                session: 7,
                origin: Some(MemberId(3)),
            }
            .into(),
        ),
    ]
}

/// Benchmarks encoding and decoding `message` under `name`, counting
/// `frames` frames per iteration.
fn bench_message(c: &mut Criterion, name: &str, message: &Message, frames: u64) {
    let wire = message.to_bytes();
    // Sanity: the benchmark measures a valid round trip.
    assert_eq!(
        Message::decode_exact(wire.clone()).as_ref(),
        Ok(message),
        "{name} does not round-trip"
    );

    let mut group = c.benchmark_group("encode");
    group.throughput(Throughput::Elements(frames));
    let mut buf = BytesMut::with_capacity(wire.len());
    group.bench_function(name, |b| {
        b.iter(|| {
            buf.clear();
            black_box(message).encode(&mut buf);
            black_box(buf.len())
        })
    });
    group.finish();

    let mut group = c.benchmark_group("decode");
    group.throughput(Throughput::Elements(frames));
    group.bench_function(name, |b| {
        b.iter(|| Message::decode_exact(black_box(&wire).clone()).expect("decodes"))
    });
    group.finish();
}

fn frame_benches(c: &mut Criterion) {
    for (name, frame) in frames() {
        bench_message(c, name, &Message::Frame(frame), 1);
    }
}

fn batch_benches(c: &mut Criterion) {
    let batch = Batch {
        frames: (1..=BATCH_FRAMES as u32)
            .map(|seq| data(32, seq).into())
            .collect(),
    };
    bench_message(
        c,
        "batch_32x_data_32B",
        &Message::Batch(batch),
        BATCH_FRAMES as u64,
    );
}

fn config() -> Criterion {
    // Shorter than criterion's defaults so the whole file runs in about a
    // minute and a half; the command line can still override these.
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
}

criterion_group! {
    name = benches;
    config = config();
    targets = frame_benches, batch_benches
}
criterion_main!(benches);
