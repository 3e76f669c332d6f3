//! What DTLS costs per SCTP packet: one packet protected by one end of a
//! connected DTLS session and opened by the other (both ends on one core,
//! as in the node pair bench), at the sizes the engine sends: a packet
//! with one 100-byte message (148 bytes of SCTP), and a full packet (1,232
//! bytes: a 1,200-byte message, or a batch of small ones).
//!
//! Compare with `benches/node.rs` (what a message costs through SCTP) to
//! see DTLS's share. Run with `cargo bench --bench dtls`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

#[path = "support/dtls_pair.rs"]
mod dtls_pair;
use dtls_pair::pair;

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("dtls");
    g.measurement_time(Duration::from_secs(3));
    let (mut client, mut server) = pair();
    let now = Instant::now();
    for size in [148usize, 1232] {
        let packet = Bytes::from(vec![0x5a; size]);
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_function(format!("seal_open/{size}B"), |b| {
            b.iter(|| {
                client.send(packet.clone()).expect("send");
                let record = client.poll_transmit().expect("a record");
                server.handle_datagram(now, &record);
                black_box(server.poll_plaintext().expect("the packet"));
            });
        });
        // The floor: what moving the packet costs without DTLS (the copies
        // the layer makes anyway).
        g.bench_function(format!("copy_only/{size}B"), |b| {
            b.iter(|| black_box(Bytes::copy_from_slice(black_box(&packet))));
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
