//! A structurally valid `Message` (built with `arbitrary`) must encode to
//! `encoded_len` bytes and decode back to itself.
#![no_main]

use dcengine::wire::{Codec, Message};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|message: Message| {
    let wire = message.to_bytes();
    assert_eq!(wire.len(), message.encoded_len());

    let mut grown = Vec::new();
    message.encode(&mut grown);
    assert_eq!(&grown[..], &wire[..]);

    assert_eq!(Message::decode_exact(wire).as_ref(), Ok(&message));
    assert_eq!(Message::decode_exact(&grown[..]).as_ref(), Ok(&message));
});
