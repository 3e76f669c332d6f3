//! A connected DTLS session pair, shared by `benches/dtls.rs` and
//! `examples/dtls_records.rs` (included with `#[path]`).

use std::time::Instant;

use dcengine::Certificate;
use dcengine::dtls::{DtlsRole, DtlsSession, config};

/// A connected pair: client and server, handshake done.
pub(crate) fn pair() -> (DtlsSession, DtlsSession) {
    let (c, s) = (
        Certificate::generate().expect("a certificate"),
        Certificate::generate().expect("a certificate"),
    );
    let now = Instant::now();
    let (c_cfg, s_cfg) = (config(1400, false, 1), config(1400, false, 2));
    let mut client = DtlsSession::new(
        &c_cfg.expect("config"),
        &c,
        DtlsRole::Client,
        s.fingerprint(),
        now,
    );
    let mut server = DtlsSession::new(
        &s_cfg.expect("config"),
        &s,
        DtlsRole::Server,
        c.fingerprint(),
        now,
    );
    let mut now = now;
    for _ in 0..20 {
        while let Some(d) = client.poll_transmit() {
            server.handle_datagram(now, &d);
        }
        while let Some(d) = server.poll_transmit() {
            client.handle_datagram(now, &d);
        }
        if let Some(at) = [client.poll_timeout(), server.poll_timeout()]
            .into_iter()
            .flatten()
            .min()
        {
            now = now.max(at);
            client.handle_timeout(now);
            server.handle_timeout(now);
        }
    }
    assert!(client.is_connected() && server.is_connected(), "handshake");
    (client, server)
}
