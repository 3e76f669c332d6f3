//! One DTLS association with one peer: dimpl's state machine, the peer's
//! certificate checked against the fingerprint signalling gave, and the
//! records in and out as [`Bytes`].

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use dimpl::{Dtls, Output};

use super::{Certificate, DtlsError, Fingerprint};

/// Which end of the DTLS handshake this is (RFC 8842's `a=setup`: the
/// `active` end is the client).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DtlsRole {
    /// Sends the ClientHello (`a=setup:active`): a joining participant.
    Client,
    /// Answers it (`a=setup:passive`): the server.
    Server,
}

/// What happened to a [`DtlsSession`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionEvent {
    /// The handshake completed and the peer's certificate matched the
    /// expected fingerprint: application data flows.
    Connected,
    /// The peer closed the session (`close_notify`).
    PeerClosed,
    /// The session failed and is unusable: a handshake error, a certificate
    /// that does not match, a handshake timeout.
    Failed(DtlsError),
}

/// Largest plaintext a session holds for its peer before the handshake
/// completes; what goes past it is dropped (the layer above — SCTP —
/// retransmits).
pub const PENDING_LIMIT: usize = 64 * 1024;

/// A DTLS session with one peer (sans-IO).
///
/// # Contract
/// - Inputs: [`DtlsSession::handle_datagram`] (a datagram from the peer),
///   [`DtlsSession::handle_timeout`] (the instant from
///   [`DtlsSession::poll_timeout`] came), [`DtlsSession::send`] (plaintext
///   to protect), [`DtlsSession::close`].
/// - Outputs: [`DtlsSession::poll_transmit`] (datagrams for the peer),
///   [`DtlsSession::poll_plaintext`] (what the peer sent, one record's
///   plaintext each), [`DtlsSession::poll_event`], [`DtlsSession::poll_timeout`].
///
/// After each input, drain the outputs. Time must not go backwards. Once
/// [`SessionEvent::Failed`] or [`SessionEvent::PeerClosed`] came, the session
/// takes nothing more and should be dropped.
///
/// The peer's certificate is accepted only if its SHA-256 fingerprint is
/// the one given at creation (what the peer's SDP said, RFC 8122); no
/// plaintext is released before that check (dimpl reports the certificate
/// before the handshake completes).
pub struct DtlsSession {
    dtls: Dtls,
    role: DtlsRole,
    expected: Fingerprint,
    cert_ok: bool,
    connected: bool,
    dead: bool,
    /// Plaintext given before the handshake completed.
    pending: VecDeque<Bytes>,
    pending_bytes: usize,
    transmits: VecDeque<Bytes>,
    plaintext: VecDeque<Bytes>,
    events: VecDeque<SessionEvent>,
    timeout: Option<Instant>,
    /// The buffer dimpl writes its output into.
    scratch: Vec<u8>,
    /// Plaintext dropped because the handshake was still running.
    dropped_pending: u64,
}

impl std::fmt::Debug for DtlsSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DtlsSession")
            .field("role", &self.role)
            .field("connected", &self.connected)
            .field("dead", &self.dead)
            .finish_non_exhaustive()
    }
}

impl DtlsSession {
    /// A session in `role` with a peer whose certificate must have
    /// `expected` as its fingerprint. A client sends its ClientHello on the
    /// first drain.
    pub fn new(
        config: &Arc<dimpl::Config>,
        certificate: &Certificate,
        role: DtlsRole,
        expected: Fingerprint,
        now: Instant,
    ) -> Self {
        let dtls_cert = certificate.to_dimpl();
        let mut dtls = match role {
            // A server takes DTLS 1.3 where the client offers it, 1.2
            // otherwise (browsers offer 1.2; some offer both).
            DtlsRole::Server => Dtls::new_auto(config.clone(), dtls_cert, now),
            DtlsRole::Client => Dtls::new_12(config.clone(), dtls_cert, now),
        };
        if role == DtlsRole::Client {
            dtls.set_active(true);
        }
        let mut s = Self {
            dtls,
            role,
            expected,
            cert_ok: false,
            connected: false,
            dead: false,
            pending: VecDeque::new(),
            pending_bytes: 0,
            transmits: VecDeque::new(),
            plaintext: VecDeque::new(),
            events: VecDeque::new(),
            timeout: None,
            scratch: vec![0; 2048],
            dropped_pending: 0,
        };
        s.drain();
        s
    }

    /// Whether the handshake completed with the expected peer.
    pub fn is_connected(&self) -> bool {
        self.connected && !self.dead
    }

    /// Whether the session failed or was closed (it takes nothing more).
    pub fn is_dead(&self) -> bool {
        self.dead
    }

    /// Plaintext given before the handshake completed and dropped because
    /// more than [`PENDING_LIMIT`] bytes were waiting.
    pub fn dropped_pending(&self) -> u64 {
        self.dropped_pending
    }

    /// A datagram from the peer arrived at `now`.
    pub fn handle_datagram(&mut self, now: Instant, datagram: &[u8]) {
        if self.dead {
            return;
        }
        let result = self
            .dtls
            .handle_timeout(now)
            .and_then(|()| self.dtls.handle_packet(datagram));
        if let Err(e) = result {
            self.fail(DtlsError::Protocol(e.to_string()));
            return;
        }
        self.drain();
    }

    /// The instant from [`DtlsSession::poll_timeout`] came (early or late
    /// is harmless).
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.dead {
            return;
        }
        if let Err(e) = self.dtls.handle_timeout(now) {
            self.fail(match e {
                dimpl::Error::Timeout(_) => DtlsError::HandshakeTimeout,
                e => DtlsError::Protocol(e.to_string()),
            });
            return;
        }
        self.drain();
    }

    /// Protects `plaintext` (one record) for the peer. Before the handshake
    /// completes it waits (up to [`PENDING_LIMIT`] bytes; beyond, it is
    /// dropped and counted: SCTP above retransmits).
    pub fn send(&mut self, plaintext: Bytes) -> Result<(), DtlsError> {
        if self.dead {
            return Err(DtlsError::Closed);
        }
        if !self.connected {
            if self.pending_bytes + plaintext.len() > PENDING_LIMIT {
                self.dropped_pending += 1;
                return Ok(());
            }
            self.pending_bytes += plaintext.len();
            self.pending.push_back(plaintext);
            return Ok(());
        }
        if let Err(e) = protect(&mut self.dtls, &plaintext) {
            self.fail(e.clone());
            return Err(e);
        }
        self.drain();
        Ok(())
    }

    /// Closes the session: a `close_notify` goes to the peer (once
    /// connected); the session takes nothing more.
    pub fn close(&mut self) {
        if self.dead {
            return;
        }
        // Errors here only mean it was closed already.
        let _ = self.dtls.close();
        self.drain();
        self.dead = true;
        self.timeout = None;
    }

    /// The next datagram for the peer.
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        self.transmits.pop_front()
    }

    /// The next plaintext the peer sent (one record each).
    pub fn poll_plaintext(&mut self) -> Option<Bytes> {
        self.plaintext.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<SessionEvent> {
        self.events.pop_front()
    }

    /// When [`DtlsSession::handle_timeout`] should next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.dead { None } else { self.timeout }
    }

    fn fail(&mut self, error: DtlsError) {
        if self.dead {
            return;
        }
        self.dead = true;
        self.timeout = None;
        self.pending.clear();
        self.plaintext.clear();
        self.events.push_back(SessionEvent::Failed(error));
    }

    /// Takes everything dimpl has to give, up to its next timeout.
    fn drain(&mut self) {
        loop {
            match self.dtls.poll_output(&mut self.scratch) {
                Output::Packet(p) => self.transmits.push_back(Bytes::copy_from_slice(p)),
                Output::BufferTooSmall { needed } => {
                    self.scratch.resize(needed, 0);
                }
                Output::Timeout(at) => {
                    self.timeout = Some(at);
                    break;
                }
                Output::PeerCert(der) => {
                    if Fingerprint::of(der) == self.expected {
                        self.cert_ok = true;
                    } else {
                        let got = Fingerprint::of(der);
                        self.fail(DtlsError::FingerprintMismatch {
                            expected: self.expected,
                            got,
                        });
                        return;
                    }
                }
                Output::Connected => {
                    if !self.cert_ok {
                        self.fail(DtlsError::NoPeerCertificate);
                        return;
                    }
                    self.connected = true;
                    self.events.push_back(SessionEvent::Connected);
                    // What waited for the handshake goes now, in order.
                    self.pending_bytes = 0;
                    for p in std::mem::take(&mut self.pending) {
                        if let Err(e) = protect(&mut self.dtls, &p) {
                            self.fail(e);
                            return;
                        }
                    }
                }
                // dimpl holds application data back until the handshake is
                // complete, so the certificate was checked by now.
                Output::ApplicationData(data) if self.cert_ok => {
                    self.plaintext.push_back(Bytes::copy_from_slice(data));
                }
                Output::CloseNotify => {
                    self.events.push_back(SessionEvent::PeerClosed);
                    self.dead = true;
                    self.timeout = None;
                    break;
                }
                // Keying material (DTLS-SRTP) is not used: no media here.
                _ => {}
            }
        }
    }
}

/// Hands `plaintext` to dimpl as one record. dimpl takes all of it or none
/// (`Ok(0)`: only while a server has not yet chosen the DTLS version, which
/// a connected session has): none would be a silent loss, so it is an
/// error.
fn protect(dtls: &mut Dtls, plaintext: &[u8]) -> Result<(), DtlsError> {
    match dtls.send_application_data(plaintext) {
        Ok(n) if n == plaintext.len() => Ok(()),
        Ok(n) => Err(DtlsError::Protocol(format!(
            "dimpl took {n} of {} bytes of application data",
            plaintext.len()
        ))),
        Err(e) => Err(DtlsError::Protocol(e.to_string())),
    }
}
