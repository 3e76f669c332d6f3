//! Offer/answer (RFC 8829's JSEP, RFC 8841's data-channel SDP) for hubs
//! that run DTLS: a server answers a WebRTC offer; a native client makes
//! one, hands it to its application's signalling, and joins with the
//! answer. See `docs/architecture.md`, "Signalling".

use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;
use rand::Rng;

use super::{Hub, JoinError};
use crate::auth::{JoinRejection, JoinRequest};
use crate::datachannel::Call;
use crate::dtls::Fingerprint;
use crate::ice::{AddSessionError, IceClientConfig};
use crate::sdp::{self, Answer, LocalDescription, Offer, SdpError};

/// Why an offer or an answer was not taken.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignalError {
    /// The hub runs plain SCTP ([`HubConfig::dtls`](crate::HubConfig::dtls)
    /// is not set): there is nothing to negotiate.
    #[error("this engine runs without DTLS: it takes no offers")]
    NotSecure,
    /// The description is not a usable data-channel offer or answer.
    #[error(transparent)]
    Sdp(#[from] SdpError),
    /// The join token was refused.
    #[error("the join was refused: {}", .0.reason)]
    Refused(JoinRejection),
    /// The server holds as many pending peers as it may, or the offer's
    /// credentials clash with one.
    #[error("the server cannot take this peer now: {0}")]
    Full(#[from] AddSessionError),
    /// The answer lists no candidate address to reach the server at.
    #[error("the answer lists no candidate")]
    NoCandidate,
    /// The application's signalling failed (its message).
    #[error("signalling failed: {0}")]
    Failed(String),
    /// The offer's `a=max-message-size` is below the largest message the
    /// engine may send to the peer (a forwarded `Data` of the call's
    /// largest payload): its messages could not all be delivered. Lower the
    /// server's `max_message_size`, or raise the peer's limit.
    #[error("the offer's a=max-message-size {offered} is below {needed}, the largest message this server sends")]
    MessageSizeTooSmall {
        /// What the offer says (RFC 8841: 65,536 when absent).
        offered: u64,
        /// What the server needs.
        needed: u64,
    },
}

/// What WebRTC stacks advertise as the largest message they take (RFC 8841's
/// `a=max-message-size`: Chromium, webrtc-rs and str0m say 262,144): over
/// DTLS a server keeps its largest forwarded `Data` within it.
pub(crate) const WEBRTC_MAX_MESSAGE: u64 = 256 * 1024;

/// The size of the largest message the engine sends a receiver when
/// payloads are at most `payload` bytes: a forwarded `Data` (origin, no
/// epoch).
pub(crate) fn largest_data(payload: u32) -> u64 {
    u64::from(payload) + crate::wire::Data::overhead(true, false, payload as usize) as u64
}

/// The largest payload whose forwarded `Data` fits in `limit` bytes.
pub(crate) fn payload_within(limit: u64) -> u32 {
    let mut p = u32::try_from(limit).unwrap_or(u32::MAX);
    while p > 0 && largest_data(p) > limit {
        p -= 1;
    }
    p
}

/// What a server settled with one peer through signalling: the ICE
/// credentials its checks must carry and the certificate it must present.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ExpectedPeer {
    pub(crate) local_ufrag: String,
    pub(crate) local_pwd: String,
    pub(crate) remote_ufrag: String,
    pub(crate) fingerprint: Fingerprint,
}

/// A native client's offer, waiting for the server's answer
/// ([`Hub::offer`], then [`Hub::join_answered`]).
#[derive(Debug, Clone)]
pub struct PendingOffer {
    sdp: String,
    ufrag: String,
    pwd: String,
}

impl PendingOffer {
    /// The offer's SDP: what the application sends to the server.
    pub fn sdp(&self) -> &str {
        &self.sdp
    }
}

/// ICE credentials (RFC 8839: a ufrag of at least 4 and a password of at
/// least 22 ice-chars; ours are 8 and 24 letters and digits).
pub(crate) fn credentials(rng: &mut impl Rng) -> (String, String) {
    const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut pick = |n: usize| -> String {
        (0..n)
            .map(|_| char::from(CHARS[rng.random_range(0..CHARS.len())]))
            .collect()
    };
    (pick(8), pick(24))
}

/// Reads `offer` into what the server expects of its peer, and writes the
/// answer: ICE-lite with `ufrag`/`pwd`, this end's `fingerprint` and
/// `candidates`.
pub(crate) fn answer_offer(
    offer: &str,
    (ufrag, pwd): (String, String),
    fingerprint: Fingerprint,
    max_message_size: u64,
    needed: u64,
    candidates: &[SocketAddr],
    session_id: u64,
) -> Result<(ExpectedPeer, String), SignalError> {
    let offer = sdp::parse_offer(offer)?;
    let theirs = offer.sha256().ok_or(SdpError::MissingFingerprint)?;
    // RFC 8841: absent, 64 KiB; 0, any size.
    let offered = offer.max_message_size.unwrap_or(sdp::DEFAULT_MAX_MESSAGE_SIZE);
    if offered != 0 && offered < needed {
        return Err(SignalError::MessageSizeTooSmall { offered, needed });
    }
    let local = LocalDescription {
        session_id,
        ice_ufrag: ufrag.clone(),
        ice_pwd: pwd.clone(),
        fingerprint: fingerprint.0,
        max_message_size,
        candidates: candidates.to_vec(),
    };
    let answer = sdp::write_answer(&Answer::for_offer(&offer, &local));
    Ok((
        ExpectedPeer {
            local_ufrag: ufrag,
            local_pwd: pwd,
            remote_ufrag: offer.ice_ufrag,
            fingerprint: Fingerprint(theirs),
        },
        answer,
    ))
}

impl Hub {
    /// Server role over DTLS: answers a WebRTC data-channel offer from
    /// the participant `participant_id` joining `call_id` with `token` (the
    /// token is checked now, and again when the participant's `Join`
    /// arrives inside DTLS). The answer is ICE-lite with fresh credentials,
    /// this hub's certificate fingerprint, `setup:passive`, and
    /// `candidates` (the addresses of this hub's sockets). The peer's
    /// ICE checks, signed with those credentials, then let its address
    /// start DTLS with the certificate its offer named.
    pub fn accept_offer(
        &mut self,
        now: Instant,
        offer: &str,
        candidates: &[SocketAddr],
        join: &JoinRequest<'_>,
    ) -> Result<String, SignalError> {
        let now = self.advance(now);
        if self.secure.is_none() {
            return Err(SignalError::NotSecure);
        }
        if let Some(verifier) = &self.config.verifier {
            verifier.verify(join, now).map_err(SignalError::Refused)?;
        }
        let fingerprint = self.dtls_fingerprint().ok_or(SignalError::NotSecure)?;
        let credentials = credentials(&mut self.signal_rng);
        let session_id = self.signal_rng.random::<u64>() >> 1;
        // The answer says what the node takes; the offer must take the
        // largest message the call may send the peer.
        let max = u64::from(self.config.node.max_sctp_message_size);
        let needed = largest_data(self.config.channel.max_message_size);
        let (peer, answer) = answer_offer(
            offer,
            credentials,
            fingerprint,
            max,
            needed,
            candidates,
            session_id,
        )?;
        self.expect_peer(now, &peer)?;
        Ok(answer)
    }

    /// Server role: a peer whose offer another worker answered (the
    /// engine tells every worker, since the kernel picks the socket its
    /// checks arrive at).
    pub(crate) fn expect_peer(
        &mut self,
        now: Instant,
        peer: &ExpectedPeer,
    ) -> Result<(), SignalError> {
        let now = self.advance(now);
        let secure = self.secure.as_mut().ok_or(SignalError::NotSecure)?;
        secure.expect(
            now,
            &peer.local_ufrag,
            &peer.local_pwd,
            &peer.remote_ufrag,
            peer.fingerprint,
        )?;
        Ok(())
    }

    /// Client role over DTLS: a WebRTC data-channel offer (this hub's ICE
    /// credentials and certificate fingerprint, `setup:actpass`) for the
    /// application to send to the server; join with its answer
    /// ([`Hub::join_answered`]).
    pub fn offer(&mut self) -> Result<PendingOffer, SignalError> {
        let fingerprint = self.dtls_fingerprint().ok_or(SignalError::NotSecure)?;
        let (ufrag, pwd) = credentials(&mut self.signal_rng);
        let local = LocalDescription {
            session_id: self.signal_rng.random::<u64>() >> 1,
            ice_ufrag: ufrag.clone(),
            ice_pwd: pwd.clone(),
            fingerprint: fingerprint.0,
            max_message_size: u64::from(self.config.node.max_sctp_message_size),
            candidates: Vec::new(),
        };
        Ok(PendingOffer {
            sdp: sdp::write_offer(&Offer::native(&local)),
            ufrag,
            pwd,
        })
    }

    /// Client role over DTLS: joins `call_id` through the server that sent
    /// `answer` to `offer`: ICE checks to its first candidate, then DTLS
    /// with the certificate the answer named, then the join as
    /// [`Hub::join_remote`] does it.
    pub fn join_answered(
        &mut self,
        now: Instant,
        offer: &PendingOffer,
        answer: &str,
        call_id: &str,
        participant_id: &str,
        token: Bytes,
    ) -> Result<Call, JoinError> {
        let now = self.advance(now);
        let secure = self.secure.as_mut().ok_or(JoinError::Signal(SignalError::NotSecure))?;
        let answer =
            sdp::parse_answer(answer).map_err(|e| JoinError::Signal(SignalError::Sdp(e)))?;
        let server = *answer
            .candidates
            .first()
            .ok_or(JoinError::Signal(SignalError::NoCandidate))?;
        let mut ice = IceClientConfig::new(
            offer.ufrag.clone(),
            offer.pwd.clone(),
            answer.ice_ufrag.clone(),
            answer.ice_pwd.clone(),
            server,
        );
        ice.seed = self.signal_rng.random();
        secure.connect_ice(now, ice, Fingerprint(answer.fingerprint));
        self.join_remote(now, server, call_id, participant_id, token)
    }
}
