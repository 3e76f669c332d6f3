//! DTLS under SCTP (RFC 8261), as WebRTC runs it: certificates checked by
//! their SHA-256 fingerprints from signalling (RFC 8122, RFC 8842), sans-IO.
//!
//! The DTLS state machine is [dimpl](https://crates.io/crates/dimpl) (str0m's
//! DTLS: pure Rust, `forbid(unsafe_code)`, sans-IO, DTLS 1.2 and 1.3 with
//! the WebRTC suites, ECDHE-ECDSA with AES-GCM), 0.9.0 vendored in
//! `vendor/dimpl` with patches to its record path (`vendor/README.md`).
//! This module adds what the engine needs around it:
//!
//! - [`Certificate`]: an ECDSA P-256 self-signed certificate, generated or
//!   loaded from DER, and its [`Fingerprint`] in the SDP form
//!   (`sha-256 AB:CD:…`).
//! - [`DtlsSession`]: one peer's session. The peer's certificate must match
//!   the fingerprint signalling gave, or the session fails before any
//!   plaintext is released.
//!
//! Nothing here opens a socket or reads a clock. dimpl draws the
//! handshake's key material from the system's cryptographic generator
//! (aws-lc): keys cannot come from a seed. Its other randomness (timer
//! jitter) is seeded from the caller's generator through the
//! [`dimpl::Config`] the caller builds.
#![forbid(unsafe_code)]
// Counters and getters the integration tests and fuzz targets read.
#![cfg_attr(not(feature = "_internal"), allow(dead_code, unused_imports))]

mod layer;
mod session;

pub use layer::{ALLOW_LIFETIME, DtlsLayer, DtlsStats, LayerEvent};
pub use session::{DtlsRole, DtlsSession, PENDING_LIMIT, SessionEvent};

use std::sync::Arc;

use sha2::{Digest, Sha256};

/// Why DTLS failed.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DtlsError {
    /// The peer's certificate is not the one signalling announced.
    #[error("the peer's certificate has fingerprint {got}, signalling announced {expected}")]
    FingerprintMismatch {
        /// What signalling said.
        expected: Fingerprint,
        /// What the peer presented.
        got: Fingerprint,
    },
    /// The handshake completed without a peer certificate.
    #[error("the peer presented no certificate")]
    NoPeerCertificate,
    /// The handshake did not complete in time (flights unanswered).
    #[error("the DTLS handshake timed out")]
    HandshakeTimeout,
    /// The peer broke the protocol, or a cryptographic operation failed.
    #[error("DTLS: {0}")]
    Protocol(String),
    /// The session is closed.
    #[error("the DTLS session is closed")]
    Closed,
    /// A certificate could not be generated or read.
    #[error("certificate: {0}")]
    Certificate(String),
}

/// A SHA-256 certificate fingerprint (RFC 8122), as SDP's
/// `a=fingerprint:sha-256` writes it: 32 bytes in upper-case hex, separated
/// by colons.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint(pub [u8; 32]);

impl Fingerprint {
    /// The fingerprint of a DER-encoded certificate.
    pub fn of(der: &[u8]) -> Self {
        Self(Sha256::digest(der).into())
    }
}

impl std::fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, b) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(":")?;
            }
            write!(f, "{b:02X}")?;
        }
        Ok(())
    }
}

impl std::fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

/// A fingerprint that is not 32 colon-separated hex bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a SHA-256 fingerprint (32 hex bytes separated by colons): {0:?}")]
pub struct FingerprintParseError(pub String);

impl std::str::FromStr for Fingerprint {
    type Err = FingerprintParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || FingerprintParseError(s.chars().take(120).collect());
        let mut out = [0u8; 32];
        let mut parts = s.trim().split(':');
        for byte in &mut out {
            let part = parts.next().ok_or_else(err)?;
            if part.len() != 2 {
                return Err(err());
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| err())?;
        }
        if parts.next().is_some() {
            return Err(err());
        }
        Ok(Self(out))
    }
}

/// An ECDSA P-256 certificate and its private key (DER), shared cheaply.
#[derive(Clone)]
pub struct Certificate {
    inner: Arc<CertInner>,
}

struct CertInner {
    der: Vec<u8>,
    key: Vec<u8>,
    fingerprint: Fingerprint,
}

impl std::fmt::Debug for Certificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Certificate")
            .field("fingerprint", &self.inner.fingerprint)
            .finish_non_exhaustive()
    }
}

impl Certificate {
    /// A new self-signed ECDSA P-256 certificate (valid for a year), as a
    /// WebRTC endpoint makes one per session or per process. Uses the
    /// system's cryptographic random generator: call it from the runtime or
    /// the embedder, never from a simulated core.
    pub fn generate() -> Result<Self, DtlsError> {
        let c = dimpl::certificate::generate_self_signed_certificate()
            .map_err(|e| DtlsError::Certificate(e.to_string()))?;
        Ok(Self::from_der(c.certificate, c.private_key))
    }

    /// A certificate and its PKCS#8 private key, both DER. Whether the key
    /// fits the certificate shows at the first handshake.
    pub fn from_der(certificate: Vec<u8>, private_key: Vec<u8>) -> Self {
        let fingerprint = Fingerprint::of(&certificate);
        Self {
            inner: Arc::new(CertInner {
                der: certificate,
                key: private_key,
                fingerprint,
            }),
        }
    }

    /// The certificate's SHA-256 fingerprint (what this end's SDP
    /// announces).
    pub fn fingerprint(&self) -> Fingerprint {
        self.inner.fingerprint
    }

    /// The certificate, DER.
    pub fn der(&self) -> &[u8] {
        &self.inner.der
    }

    fn to_dimpl(&self) -> dimpl::DtlsCertificate {
        dimpl::DtlsCertificate {
            certificate: self.inner.der.clone(),
            private_key: self.inner.key.clone(),
        }
    }
}

/// The dimpl configuration the engine runs DTLS with: records up to
/// `mtu` bytes of UDP payload, a client certificate required (WebRTC
/// authenticates both ends), no HelloVerifyRequest round trip when the
/// peer's address was already proven (`cookie: false`: ICE checked it),
/// timer jitter from `seed`.
pub fn config(mtu: usize, cookie: bool, seed: u64) -> Result<Arc<dimpl::Config>, DtlsError> {
    dimpl::Config::builder()
        .mtu(mtu)
        // One datagram per SCTP packet, drained after each: a few suffice,
        // handshake flights included.
        .max_queue_tx(64)
        .max_queue_rx(64)
        .require_client_certificate(true)
        .use_server_cookie(cookie)
        .dangerously_set_rng_seed(seed)
        .build()
        .map(Arc::new)
        .map_err(|e| DtlsError::Protocol(format!("configuration: {e}")))
}

#[cfg(test)]
mod tests;
