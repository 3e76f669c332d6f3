//! Arbitrary bytes as a DCEP message (RFC 8832, what a peer sends on PPID
//! 50): decoding never panics, and what decodes re-encodes to the same
//! bytes and back.
#![no_main]

use bytes::Bytes;
use dcengine::wire::Codec;
use dcengine::wire::dcep::Dcep;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(message) = Dcep::decode_exact(Bytes::copy_from_slice(data)) {
        let wire = message.to_bytes();
        assert_eq!(wire.len(), message.encoded_len());
        assert_eq!(&wire[..], data, "canonical");
        assert_eq!(Dcep::decode_exact(wire), Ok(message));
    }
});
