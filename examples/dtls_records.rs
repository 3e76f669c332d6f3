//! Seals and opens `COUNT` application-data records of `SIZE` bytes
//! through a connected pair of [`DtlsSession`]s (the client seals, the
//! server opens), the path `benches/dtls.rs` times. Made for a
//! deterministic profile: the records are sent from `records`, a function
//! of its own, so that callgrind can count it alone:
//!
//! ```text
//! cargo build --profile bench --example dtls_records
//! valgrind --tool=callgrind --toggle-collect='*dtls_records::records*' \
//!     target/release/examples/dtls_records 1232 2000
//! ```
//!
//! It prints the negotiated record layer (version, overhead per record),
//! read from the first record on the wire.

use std::hint::black_box;
use std::time::Instant;

use bytes::Bytes;
use dcengine::dtls::DtlsSession;

#[path = "../benches/support/dtls_pair.rs"]
mod dtls_pair;
use dtls_pair::pair;

/// `count` records of `packet` from `client` to `server`.
#[inline(never)]
fn records(client: &mut DtlsSession, server: &mut DtlsSession, packet: &Bytes, count: usize) {
    let now = Instant::now();
    for _ in 0..count {
        client.send(packet.clone()).expect("send");
        let record = client.poll_transmit().expect("a record");
        server.handle_datagram(now, &record);
        black_box(server.poll_plaintext().expect("the packet"));
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let size: usize = args.next().map_or(1232, |a| a.parse().expect("SIZE"));
    let count: usize = args.next().map_or(10_000, |a| a.parse().expect("COUNT"));
    let (mut client, mut server) = pair();
    let packet = Bytes::from(vec![0x5a; size]);

    // One record, looked at: the record layer that was negotiated.
    client.send(packet.clone()).expect("send");
    let record = client.poll_transmit().expect("a record");
    let version = u16::from_be_bytes([record[1], record[2]]);
    println!(
        "record: content type {}, version {version:#06x} ({}), {} bytes for {size} of plaintext (overhead {})",
        record[0],
        if version == 0xfefd {
            "DTLS 1.2"
        } else {
            "DTLS 1.3 / other"
        },
        record.len(),
        record.len() - size,
    );
    server.handle_datagram(Instant::now(), &record);
    assert_eq!(server.poll_plaintext().as_deref(), Some(&packet[..]));

    records(&mut client, &mut server, &packet, count);
    println!("{count} records of {size} bytes sealed and opened");
}
