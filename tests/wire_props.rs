//! Property tests for the wire format (`dcengine::wire`).
//!
//! For every frame type, [`Batch`] and [`Message`], values built by proptest
//! strategies must:
//! - encode to exactly `encoded_len()` bytes (also into a fixed slice, so an
//!   unwritten byte or an overrun shows), and `to_bytes()` gives the same;
//! - decode back (with `decode_exact`, from a slice, from `Bytes` and from a
//!   non-contiguous `Buf`) to an equal value;
//! - fail to decode from every strict prefix of their encoding (with
//!   `UnexpectedEnd`, or `TooLong` for a batch count the prefix cannot hold);
//! - fail with `TrailingBytes(1)` when one byte is appended.
//!
//! Arbitrary bytes, and mutated valid encodings, must never make a decoder
//! panic, and whatever decodes must re-encode to the identical bytes.

use bytes::{Buf, Bytes};
use dcengine::wire::*;
use proptest::collection::vec;
use proptest::prelude::*;

// ---- Strategies --------------------------------------------------------------

/// Strings up to a little over the limit (cut at a character boundary), with
/// multi-byte characters so the cut is exercised.
fn short_str() -> impl Strategy<Value = ShortStr> {
    prop_oneof![
        4 => "[a-z0-9:.-]{0,24}",
        1 => Just(String::new()),
        2 => any::<String>(),
        1 => vec(any::<char>(), 60..120).prop_map(|v| v.into_iter().collect::<String>()),
        1 => (240usize..=260).prop_map(|n| "x".repeat(n)),
    ]
    .prop_map(|s| ShortStr::truncated(&s))
}

fn member() -> impl Strategy<Value = MemberId> {
    any::<u32>().prop_map(MemberId)
}

fn origin() -> impl Strategy<Value = Option<MemberId>> {
    proptest::option::of(member())
}

fn error_code() -> impl Strategy<Value = ErrorCode> {
    any::<u16>().prop_map(ErrorCode)
}

fn reliability() -> impl Strategy<Value = Reliability> {
    prop_oneof![Just(Reliability::Lossy), Just(Reliability::Durable)]
}

fn priority() -> impl Strategy<Value = Priority> {
    prop_oneof![Just(Priority::Normal), Just(Priority::High)]
}

fn participant_id() -> impl Strategy<Value = ShortStr> {
    "[a-z0-9:_-]{0,40}".prop_map(|s| ShortStr::truncated(&s))
}

fn participants() -> impl Strategy<Value = ParticipantList> {
    prop_oneof![
        3 => vec(participant_id(), 0..=8),
        1 => vec(participant_id(), 0..=MAX_PARTICIPANTS),
        1 => vec(short_str(), MAX_PARTICIPANTS),
    ]
    .prop_map(|v| ParticipantList::try_from(v).expect("at most MAX_PARTICIPANTS"))
}

/// Random bytes of up to `small` bytes, or a filled run of any length up to
/// `max` (so every varint length class up to the limit is reached without
/// generating megabytes of randomness).
fn bytes_up_to(small: usize, max: usize) -> impl Strategy<Value = Bytes> {
    prop_oneof![
        6 => vec(any::<u8>(), 0..=small).prop_map(Bytes::from),
        1 => (any::<u8>(), 0..=max).prop_map(|(b, n)| Bytes::from(vec![b; n])),
        1 => (any::<u8>(), prop::sample::select(vec![0, 63, 64, 16383, 16384, max]))
            .prop_map(move |(b, n)| Bytes::from(vec![b; n.min(max)])),
    ]
}

fn join() -> impl Strategy<Value = Join> {
    (
        any::<u16>(),
        short_str(),
        short_str(),
        bytes_up_to(100, MAX_TOKEN_LEN),
    )
        .prop_map(|(version, call_id, participant_id, token)| Join {
            version,
            call_id,
            participant_id,
            token,
        })
}

fn join_accepted() -> impl Strategy<Value = JoinAccepted> {
    (
        any::<u16>(),
        member(),
        any::<u32>(),
        any::<u32>(),
        any::<[u32; 8]>(),
        any::<u32>(),
    )
        .prop_map(
            |(version, member, max_message_size, idle_timeout_ms, t, max_senders)| JoinAccepted {
                version,
                member,
                max_message_size,
                idle_timeout_ms,
                traffic: TrafficRules {
                    durable_kbps: t[0],
                    lossy_kbps: t[1],
                    high_lossy_kbps: t[2],
                    broadcast_packets_per_second: t[3],
                    packet_bytes: t[4],
                    burst_ms: t[5],
                    member_kbps: t[6],
                    member_messages_per_second: t[7],
                },
                max_senders,
            },
        )
}

fn join_rejected() -> impl Strategy<Value = JoinRejected> {
    (error_code(), short_str()).prop_map(|(code, reason)| JoinRejected { code, reason })
}

fn leave() -> impl Strategy<Value = Leave> {
    (error_code(), short_str()).prop_map(|(code, reason)| Leave { code, reason })
}

fn participant_joined() -> impl Strategy<Value = ParticipantJoined> {
    (member(), short_str()).prop_map(|(member, participant_id)| ParticipantJoined {
        member,
        participant_id,
    })
}

fn participant_left() -> impl Strategy<Value = ParticipantLeft> {
    member().prop_map(|member| ParticipantLeft { member })
}

fn sender_opened() -> impl Strategy<Value = SenderOpened> {
    (
        any::<u16>(),
        any::<u32>(),
        reliability(),
        priority(),
        any::<u32>(),
        origin(),
    )
        .prop_map(
            |(channel, session, reliability, priority, bitrate_kbps, origin)| SenderOpened {
                channel,
                session,
                reliability,
                priority,
                bitrate_kbps,
                origin,
            },
        )
}

fn sender_closed() -> impl Strategy<Value = SenderClosed> {
    (any::<u16>(), any::<u32>(), any::<u8>(), origin()).prop_map(
        |(channel, session, reason, origin)| SenderClosed {
            channel,
            session,
            reason: CloseReason(reason),
            origin,
        },
    )
}

fn set_participants() -> impl Strategy<Value = SetParticipants> {
    (any::<u16>(), any::<u16>(), participants()).prop_map(|(channel, epoch, participants)| {
        SetParticipants {
            channel,
            epoch,
            participants,
        }
    })
}

fn data_with(payload: impl Strategy<Value = Bytes>) -> impl Strategy<Value = Data> {
    (
        any::<u16>(),
        any::<u32>(),
        any::<u32>(),
        origin(),
        proptest::option::of(any::<u16>()),
        payload,
    )
        .prop_map(|(channel, session, seq, origin, epoch, payload)| Data {
            channel,
            session,
            seq,
            origin,
            epoch,
            payload,
        })
}

fn data() -> impl Strategy<Value = Data> {
    data_with(bytes_up_to(300, MAX_PAYLOAD_LEN))
}

fn error_frame() -> impl Strategy<Value = ErrorFrame> {
    (error_code(), short_str()).prop_map(|(code, reason)| ErrorFrame { code, reason })
}

fn keep_alive() -> impl Strategy<Value = KeepAlive> {
    (any::<u16>(), any::<u32>(), origin()).prop_map(|(channel, session, origin)| KeepAlive {
        channel,
        session,
        origin,
    })
}

/// Any frame; with `small`, Data payloads and tokens stay short so that many
/// frames fit in a batch cheaply.
fn frame_with(small: bool) -> BoxedStrategy<Frame> {
    let data = if small {
        data_with(vec(any::<u8>(), 0..40).prop_map(Bytes::from)).boxed()
    } else {
        data().boxed()
    };
    prop_oneof![
        1 => join().prop_map(Frame::from),
        1 => join_accepted().prop_map(Frame::from),
        1 => join_rejected().prop_map(Frame::from),
        1 => leave().prop_map(Frame::from),
        1 => participant_joined().prop_map(Frame::from),
        1 => participant_left().prop_map(Frame::from),
        1 => sender_opened().prop_map(Frame::from),
        1 => sender_closed().prop_map(Frame::from),
        1 => set_participants().prop_map(Frame::from),
        3 => data.prop_map(Frame::from),
        1 => error_frame().prop_map(Frame::from),
        1 => keep_alive().prop_map(Frame::from),
    ]
    .boxed()
}

fn frame() -> BoxedStrategy<Frame> {
    frame_with(false)
}

/// The shortest frames: a code and an empty or one-byte reason (4 or 5
/// bytes), or a ParticipantLeft (5 bytes). Batches of only these test the
/// bound a batch's count is checked against.
fn tiny_frame() -> impl Strategy<Value = Frame> {
    let reason = prop_oneof![Just(""), Just("a")].prop_map(ShortStr::truncated);
    prop_oneof![
        (error_code(), reason.clone()).prop_map(|(code, reason)| Leave { code, reason }.into()),
        (error_code(), reason.clone())
            .prop_map(|(code, reason)| JoinRejected { code, reason }.into()),
        (error_code(), reason).prop_map(|(code, reason)| ErrorFrame { code, reason }.into()),
        participant_left().prop_map(Frame::from),
    ]
}

/// Batches of 0–8 frames, batches of only the shortest frames, and sometimes
/// more than 63 frames (a two-byte count).
fn batch() -> impl Strategy<Value = Batch> {
    prop_oneof![
        4 => vec(frame_with(true), 0..=8),
        1 => vec(tiny_frame(), 1..=70),
        1 => vec(frame(), 1..=3),
        1 => vec(frame_with(true), 62..=70),
    ]
    .prop_map(|frames| Batch { frames })
}

fn message() -> impl Strategy<Value = Message> {
    prop_oneof![
        frame().prop_map(Message::Frame),
        batch().prop_map(Message::Batch),
    ]
}

// ---- Checks --------------------------------------------------------------------

/// The prefix lengths to try for an encoding of `len` bytes: all of them,
/// except that for long encodings (a large payload or token, or a big batch)
/// only a sample of the cuts in the middle is taken. Every field boundary of
/// a frame lies in its first or last few hundred bytes, and the cuts inside a
/// long payload all fail the same way, so this keeps the run fast without
/// losing cases; batches are re-decoded from the start for every cut, so
/// trying all of them would be quadratic.
fn prefix_cuts(len: usize) -> Box<dyn Iterator<Item = usize>> {
    const EDGE: usize = 512;
    if len <= 4 * EDGE {
        return Box::new(0..len);
    }
    let stride = ((len - 2 * EDGE) / 256).max(1);
    Box::new(
        (0..EDGE)
            .chain((EDGE..len - EDGE).step_by(stride))
            .chain(len - EDGE..len),
    )
}

/// Every property of a valid value; `extra` is the byte appended at the end.
fn check_roundtrip<T>(value: &T, extra: u8) -> Result<(), TestCaseError>
where
    T: Codec + PartialEq + std::fmt::Debug,
{
    // encode writes exactly encoded_len bytes: into a growable buffer...
    let mut grown = Vec::new();
    value.encode(&mut grown);
    prop_assert_eq!(grown.len(), value.encoded_len());
    // ...and into a fixed slice, filling it exactly.
    let mut fixed = vec![0xa5u8; value.encoded_len()];
    let mut slice = &mut fixed[..];
    value.encode(&mut slice);
    prop_assert!(
        slice.is_empty(),
        "encode wrote fewer than encoded_len bytes"
    );
    prop_assert_eq!(&fixed, &grown);
    let bytes = value.to_bytes();
    prop_assert_eq!(&bytes[..], &grown[..]);

    // Decoding gives the value back: from a slice, from `Bytes`, and from a
    // buffer split in two chunks.
    prop_assert_eq!(&T::decode_exact(&grown[..])?, value);
    prop_assert_eq!(&T::decode_exact(bytes.clone())?, value);
    let mid = grown.len() / 2;
    prop_assert_eq!(
        &T::decode_exact((&grown[..mid]).chain(&grown[mid..]))?,
        value
    );

    // `decode` consumes exactly the value and leaves what follows.
    let mut followed = grown.clone();
    followed.extend_from_slice(&[extra, 0x77]);
    let mut rest = &followed[..];
    prop_assert_eq!(&T::decode(&mut rest)?, value);
    prop_assert_eq!(rest, &[extra, 0x77][..]);

    // Every strict prefix fails.
    for cut in prefix_cuts(grown.len()) {
        match T::decode_exact(&grown[..cut]) {
            Err(DecodeError::UnexpectedEnd) => {}
            Err(DecodeError::TooLong {
                what: "batch count",
                ..
            }) => {}
            other => prop_assert!(
                false,
                "prefix of {} of {} bytes gave {:?}",
                cut,
                grown.len(),
                other
            ),
        }
    }

    // One trailing byte is reported.
    let mut trailing = grown;
    trailing.push(extra);
    prop_assert_eq!(
        T::decode_exact(&trailing[..]),
        Err(DecodeError::TrailingBytes(1))
    );
    Ok(())
}

/// A frame also round-trips as a [`Frame`] and as a single-frame [`Message`],
/// with the same bytes as the bare frame.
fn check_frame<T>(value: T, extra: u8) -> Result<(), TestCaseError>
where
    T: Codec + PartialEq + std::fmt::Debug + Clone + Into<Frame>,
{
    check_roundtrip(&value, extra)?;
    let frame: Frame = value.clone().into();
    check_roundtrip(&frame, extra)?;
    prop_assert_eq!(frame.to_bytes(), value.to_bytes());
    let message = Message::Frame(frame);
    check_roundtrip(&message, extra)?;
    prop_assert_eq!(message.to_bytes(), value.to_bytes());
    Ok(())
}

/// Decoding `input` does not panic, and whatever decodes re-encodes to the
/// bytes it was decoded from.
fn check_canonical<T>(input: &[u8]) -> Result<(), TestCaseError>
where
    T: Codec + PartialEq + std::fmt::Debug,
{
    if let Ok(v) = T::decode_exact(input) {
        prop_assert_eq!(&v.to_bytes()[..], input);
        prop_assert_eq!(v.encoded_len(), input.len());
    }
    let mut rest = input;
    if let Ok(v) = T::decode(&mut rest) {
        let used = input.len() - rest.len();
        prop_assert_eq!(&v.to_bytes()[..], &input[..used]);
    }
    // The zero-copy path agrees with the slice path.
    prop_assert_eq!(
        T::decode_exact(Bytes::copy_from_slice(input)),
        T::decode_exact(input)
    );
    Ok(())
}

fn check_canonical_all(input: &[u8]) -> Result<(), TestCaseError> {
    check_canonical::<Message>(input)?;
    check_canonical::<Frame>(input)?;
    check_canonical::<Batch>(input)?;
    check_canonical::<Join>(input)?;
    check_canonical::<JoinAccepted>(input)?;
    check_canonical::<JoinRejected>(input)?;
    check_canonical::<Leave>(input)?;
    check_canonical::<ParticipantJoined>(input)?;
    check_canonical::<ParticipantLeft>(input)?;
    check_canonical::<SenderOpened>(input)?;
    check_canonical::<SenderClosed>(input)?;
    check_canonical::<SetParticipants>(input)?;
    check_canonical::<Data>(input)?;
    check_canonical::<ErrorFrame>(input)?;
    check_canonical::<KeepAlive>(input)?;
    check_canonical::<VarInt>(input)?;
    check_canonical::<ShortStr>(input)?;
    check_canonical::<ParticipantList>(input)?;
    Ok(())
}

/// A change to a valid encoding.
#[derive(Debug, Clone)]
enum Mutation {
    Set(prop::sample::Index, u8),
    Xor(prop::sample::Index, u8),
    Insert(prop::sample::Index, u8),
    Remove(prop::sample::Index),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let idx = any::<prop::sample::Index>;
    prop_oneof![
        (idx(), any::<u8>()).prop_map(|(i, b)| Mutation::Set(i, b)),
        (idx(), 1..=255u8).prop_map(|(i, b)| Mutation::Xor(i, b)),
        (idx(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        idx().prop_map(Mutation::Remove),
    ]
}

fn apply(bytes: &mut Vec<u8>, m: &Mutation) {
    if bytes.is_empty() {
        if let Mutation::Set(_, b) | Mutation::Insert(_, b) = m {
            bytes.push(*b);
        }
        return;
    }
    match m {
        Mutation::Set(i, b) => {
            let i = i.index(bytes.len());
            bytes[i] = *b;
        }
        Mutation::Xor(i, b) => {
            let i = i.index(bytes.len());
            bytes[i] ^= *b;
        }
        Mutation::Insert(i, b) => {
            let i = i.index(bytes.len() + 1);
            bytes.insert(i, *b);
        }
        Mutation::Remove(i) => {
            let i = i.index(bytes.len());
            bytes.remove(i);
        }
    }
}

// ---- Properties ------------------------------------------------------------------

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        // Failures are reported with their seed; do not write regression
        // files next to the test.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config(128))]

    #[test]
    fn join_roundtrips(v in join(), extra in any::<u8>()) {
        check_frame(v, extra)?;
    }

    #[test]
    fn join_accepted_roundtrips(v in join_accepted(), extra in any::<u8>()) {
        check_frame(v, extra)?;
    }

    #[test]
    fn join_rejected_roundtrips(v in join_rejected(), extra in any::<u8>()) {
        check_frame(v, extra)?;
    }

    #[test]
    fn leave_roundtrips(v in leave(), extra in any::<u8>()) {
        check_frame(v, extra)?;
    }

    #[test]
    fn participant_joined_roundtrips(v in participant_joined(), extra in any::<u8>()) {
        check_frame(v, extra)?;
    }

    #[test]
    fn participant_left_roundtrips(v in participant_left(), extra in any::<u8>()) {
        check_frame(v, extra)?;
    }

    #[test]
    fn sender_opened_roundtrips(v in sender_opened(), extra in any::<u8>()) {
        check_frame(v, extra)?;
    }

    #[test]
    fn sender_closed_roundtrips(v in sender_closed(), extra in any::<u8>()) {
        check_frame(v, extra)?;
    }

    #[test]
    fn set_participants_roundtrips(v in set_participants(), extra in any::<u8>()) {
        check_frame(v, extra)?;
    }

    #[test]
    fn data_roundtrips(v in data(), extra in any::<u8>()) {
        check_frame(v, extra)?;
    }

    #[test]
    fn error_frame_roundtrips(v in error_frame(), extra in any::<u8>()) {
        check_frame(v, extra)?;
    }

    #[test]
    fn keep_alive_roundtrips(v in keep_alive(), extra in any::<u8>()) {
        check_frame(v, extra)?;
    }

    #[test]
    fn any_frame_roundtrips(v in frame(), extra in any::<u8>()) {
        check_roundtrip(&v, extra)?;
    }

    #[test]
    fn batch_roundtrips(v in batch(), extra in any::<u8>()) {
        check_roundtrip(&v, extra)?;
        let message = Message::Batch(v.clone());
        check_roundtrip(&message, extra)?;
        prop_assert_eq!(message.to_bytes(), v.to_bytes());
        prop_assert_eq!(
            v.encoded_len(),
            Batch::len_with(v.frames.len(), v.frames.iter().map(Codec::encoded_len).sum())
        );
        prop_assert_eq!(message.into_frames().collect::<Vec<_>>(), v.frames.clone());
        // Packing the frames' encodings gives the batch's encoding.
        let encoded: Vec<_> = v.frames.iter().map(|f| f.to_bytes()).collect();
        prop_assert_eq!(Batch::concat(&encoded), v.to_bytes());
    }

    #[test]
    fn message_roundtrips(v in message(), extra in any::<u8>()) {
        check_roundtrip(&v, extra)?;
    }

    #[test]
    fn data_overhead_matches_encoded_len(v in data()) {
        prop_assert_eq!(
            Data::overhead(v.origin.is_some(), v.epoch.is_some(), v.payload.len())
                + v.payload.len(),
            v.encoded_len()
        );
    }

    #[test]
    fn varint_roundtrips(
        v in prop_oneof![0..64u64, 0..(1u64 << 14), 0..(1u64 << 30), 0..=VarInt::MAX],
        extra in any::<u8>(),
    ) {
        check_roundtrip(&VarInt::new(v).expect("in range"), extra)?;
    }
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn arbitrary_bytes_decode_canonically(input in vec(any::<u8>(), 0..64)) {
        check_canonical_all(&input)?;
    }

    /// Arbitrary bytes after a valid type byte, so each frame's decoder gets
    /// past its first check.
    #[test]
    fn typed_arbitrary_bytes_decode_canonically(
        ty in prop_oneof![1..=0x0cu8, Just(0x0f), any::<u8>()],
        flags in prop_oneof![0..=3u8, any::<u8>()],
        rest in vec(any::<u8>(), 0..48),
    ) {
        let mut input = vec![ty, flags];
        input.extend_from_slice(&rest);
        check_canonical_all(&input)?;
    }
}

proptest! {
    #![proptest_config(config(256))]

    /// Valid encodings with a few bytes changed: decoding still never panics
    /// and anything accepted is canonical.
    #[test]
    fn mutated_encodings_decode_canonically(
        v in prop_oneof![
            frame_with(true).prop_map(Message::Frame),
            vec(frame_with(true), 0..4).prop_map(|frames| Message::Batch(Batch { frames })),
        ],
        mutations in vec(mutation(), 1..4),
    ) {
        let mut bytes = v.to_bytes().to_vec();
        for m in &mutations {
            apply(&mut bytes, m);
        }
        check_canonical_all(&bytes)?;
    }

    /// Consecutive frames decode one after another from one `Bytes`, each
    /// `decode` taking exactly its own bytes.
    #[test]
    fn consecutive_frames_decode_in_order(frames in vec(frame_with(true), 0..10)) {
        let mut wire = Vec::new();
        for f in &frames {
            f.encode(&mut wire);
        }
        let mut buf = Bytes::from(wire);
        let mut back = Vec::new();
        while buf.has_remaining() {
            back.push(Frame::decode(&mut buf)?);
        }
        prop_assert_eq!(back, frames);
    }
}

/// Fixed cases at the edges of each limit.
#[test]
fn limits_are_enforced_at_the_edge() {
    // A Data payload of exactly the limit decodes; one more byte is TooLong.
    let max = Data {
        channel: 1,
        session: 1,
        seq: 1,
        origin: None,
        epoch: None,
        payload: Bytes::from(vec![7u8; MAX_PAYLOAD_LEN]),
    };
    assert_eq!(Data::decode_exact(max.to_bytes()), Ok(max));
    let mut over = vec![0x0au8, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1];
    VarInt::new(MAX_PAYLOAD_LEN as u64 + 1)
        .expect("small")
        .encode(&mut over);
    over.resize(over.len() + MAX_PAYLOAD_LEN + 1, 0);
    assert_eq!(
        Data::decode_exact(&over[..]),
        Err(DecodeError::TooLong {
            what: "payload length",
            len: MAX_PAYLOAD_LEN as u64 + 1,
            max: MAX_PAYLOAD_LEN as u64,
        })
    );

    // A token of exactly the limit decodes; one more byte is TooLong.
    let join = Join {
        version: PROTOCOL_VERSION,
        call_id: ShortStr::truncated("c"),
        participant_id: ShortStr::truncated("p"),
        token: Bytes::from(vec![1u8; MAX_TOKEN_LEN]),
    };
    assert_eq!(Join::decode_exact(join.to_bytes()), Ok(join));
    let mut over = vec![0x01u8, 0, 1, 1, b'c', 1, b'p'];
    VarInt::new(MAX_TOKEN_LEN as u64 + 1)
        .expect("small")
        .encode(&mut over);
    over.resize(over.len() + MAX_TOKEN_LEN + 1, 0);
    assert_eq!(
        Join::decode_exact(&over[..]),
        Err(DecodeError::TooLong {
            what: "token length",
            len: MAX_TOKEN_LEN as u64 + 1,
            max: MAX_TOKEN_LEN as u64,
        })
    );

    // 64 participants decode; 65 are TooLong even with the bytes present.
    let ids: Vec<ShortStr> = (0..64)
        .map(|i| ShortStr::truncated(&format!("p{i}")))
        .collect();
    let sp = SetParticipants {
        channel: 1,
        epoch: 1,
        participants: ids.try_into().expect("64"),
    };
    assert_eq!(SetParticipants::decode_exact(sp.to_bytes()), Ok(sp));
    assert!(ParticipantList::try_from(vec![ShortStr::default(); 65]).is_err());
    let mut over = vec![0x09u8, 0, 1, 0, 1, MAX_PARTICIPANTS as u8 + 1];
    over.resize(over.len() + MAX_PARTICIPANTS + 1, 0); // 65 empty ids
    assert_eq!(
        SetParticipants::decode_exact(&over[..]),
        Err(DecodeError::TooLong {
            what: "participant count",
            len: MAX_PARTICIPANTS as u64 + 1,
            max: MAX_PARTICIPANTS as u64,
        })
    );

    // A string of 255 bytes decodes; ShortStr refuses 256.
    let long = ShortStr::try_from("y".repeat(MAX_STR_LEN)).expect("255 bytes");
    assert_eq!(ShortStr::decode_exact(long.to_bytes()), Ok(long));
    assert!(ShortStr::try_from("y".repeat(MAX_STR_LEN + 1)).is_err());
}

/// The shortest frames (4 bytes: a code/reason frame with an empty reason)
/// decode inside a batch on their own.
#[test]
fn batch_of_shortest_frames_decodes() {
    let empty = ShortStr::default();
    for frames in [
        vec![Frame::from(Leave {
            code: ErrorCode::NONE,
            reason: empty.clone(),
        })],
        vec![
            Frame::from(JoinRejected {
                code: ErrorCode::BAD_TOKEN,
                reason: empty.clone(),
            }),
            Frame::from(ErrorFrame {
                code: ErrorCode::INTERNAL,
                reason: empty.clone(),
            }),
        ],
        vec![
            Frame::from(ErrorFrame {
                code: ErrorCode::INTERNAL,
                reason: empty.clone(),
            });
            100
        ],
    ] {
        let batch = Batch { frames };
        assert_eq!(Batch::decode_exact(batch.to_bytes()), Ok(batch.clone()));
        let message = Message::Batch(batch);
        assert_eq!(Message::decode_exact(message.to_bytes()), Ok(message));
    }
}
