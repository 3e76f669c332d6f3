//! Arbitrary bytes as a received SCTP user message.
//!
//! Decoding must never panic, and must be canonical: whatever decodes
//! re-encodes to exactly the bytes it came from. Also decodes the input as
//! consecutive frames from one `Bytes` (the zero-copy path) until the first
//! error, checking each frame the same way, and checks that a buffer split
//! in two chunks decodes the same as a contiguous one.
#![no_main]

use bytes::{Buf, Bytes};
use dcengine::wire::{Codec, Frame, Message};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The whole input as one message.
    let from_slice = Message::decode_exact(data);
    if let Ok(message) = &from_slice {
        let wire = message.to_bytes();
        assert_eq!(&wire[..], data, "decoding is not canonical");
        assert_eq!(message.encoded_len(), data.len());
        assert_eq!(Message::decode_exact(wire).as_ref(), Ok(message));
    }

    // The zero-copy path, and a non-contiguous buffer, agree with the slice.
    let bytes = Bytes::copy_from_slice(data);
    assert_eq!(Message::decode_exact(bytes.clone()), from_slice);
    let split = data
        .first()
        .map_or(0, |&b| usize::from(b) % (data.len() + 1));
    let (head, tail) = data.split_at(split);
    assert_eq!(Message::decode_exact(head.chain(tail)), from_slice);

    // Consecutive frames, each taking exactly its own bytes.
    let mut buf = bytes;
    while buf.has_remaining() {
        let start = data.len() - buf.remaining();
        let Ok(frame) = Frame::decode(&mut buf) else {
            break;
        };
        let end = data.len() - buf.remaining();
        assert!(end > start, "a frame decoded from no bytes");
        assert_eq!(&frame.to_bytes()[..], &data[start..end]);
        assert_eq!(frame.encoded_len(), end - start);
    }
});
