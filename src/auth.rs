//! Join authentication: who may join which call. A server checks every
//! [`crate::wire::Join`] with a [`JoinVerifier`]; the default is
//! [`HmacVerifier`] over tokens from [`mint_token`].
#![forbid(unsafe_code)]

use std::time::{Duration, Instant};

use bytes::Bytes;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::wire::ErrorCode;

const TOKEN_VERSION: u8 = 1;
const TOKEN_LEN: usize = 1 + 8 + 32;
const DOMAIN: &[u8] = b"dcengine-join-v1";

/// What a participant presents to join a call.
#[derive(Debug, Clone, Copy)]
pub struct JoinRequest<'a> {
    /// The call to join.
    pub call_id: &'a str,
    /// Who the participant says it is.
    pub participant_id: &'a str,
    /// The proof.
    pub token: &'a [u8],
}

/// Why a join was refused; sent to the client in `JoinRejected`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("join rejected ({code:?}): {reason}")]
pub struct JoinRejection {
    /// The code on the wire.
    pub code: ErrorCode,
    /// For people.
    pub reason: String,
}

impl JoinRejection {
    /// The token does not verify.
    pub fn bad_token() -> Self {
        Self {
            code: ErrorCode::BAD_TOKEN,
            reason: "the join token is not valid for this call and participant".into(),
        }
    }

    /// The token has expired.
    pub fn expired() -> Self {
        Self {
            code: ErrorCode::TOKEN_EXPIRED,
            reason: "the join token has expired".into(),
        }
    }
}

/// Decides whether a participant may join a call.
///
/// Called on the thread that drives the server, once per join: keep it
/// fast and non-blocking.
pub trait JoinVerifier: Send + Sync {
    /// `Ok` admits the participant; `now` is the server's current time.
    fn verify(&self, request: &JoinRequest<'_>, now: Instant) -> Result<(), JoinRejection>;
}

/// Maps the monotonic `Instant`s the sans-IO core is given to wall-clock
/// time, from one anchor taken by the driver (`Instant::now()` and the Unix
/// time at the same moment). Tests pick any anchor.
#[derive(Debug, Clone, Copy)]
pub struct WallClock {
    instant: Instant,
    unix: Duration,
}

impl WallClock {
    /// `instant` happened at `unix` since the Unix epoch.
    pub fn new(instant: Instant, unix: Duration) -> Self {
        Self { instant, unix }
    }

    /// Time since the Unix epoch at `now`.
    pub fn unix_at(&self, now: Instant) -> Duration {
        match now.checked_duration_since(self.instant) {
            Some(after) => self.unix + after,
            None => self.unix.saturating_sub(self.instant - now),
        }
    }
}

/// The default verifier: tokens from [`mint_token`] with the same secret.
///
/// A token is an HMAC-SHA256 over the call id, the participant id and an
/// expiry time, checked in constant time, and refused once the expiry has
/// passed by the [`WallClock`]. Embedders with their own identity system
/// implement [`JoinVerifier`] instead.
///
/// Token layout (40 bytes):
///
/// ```text
/// +--------+----------------------------+----------------------------------+
/// | 0x01   | expiry (u64 BE, Unix secs) | HMAC-SHA256 tag (32 bytes)       |
/// +--------+----------------------------+----------------------------------+
/// tag = HMAC-SHA256(secret, "dcengine-join-v1" | len(call) | call
///                           | len(participant) | participant | expiry)
/// (lengths one byte each; ids are at most 255 bytes)
/// ```
pub struct HmacVerifier {
    mac: Hmac<Sha256>,
    clock: WallClock,
}

impl std::fmt::Debug for HmacVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HmacVerifier")
            .field("clock", &self.clock)
            .finish_non_exhaustive()
    }
}

impl HmacVerifier {
    /// A verifier for tokens minted with `secret`, checking expiry against
    /// `clock`.
    pub fn new(secret: &[u8], clock: WallClock) -> Self {
        Self {
            mac: new_mac(secret),
            clock,
        }
    }
}

impl JoinVerifier for HmacVerifier {
    fn verify(&self, request: &JoinRequest<'_>, now: Instant) -> Result<(), JoinRejection> {
        let token = request.token;
        if token.len() != TOKEN_LEN || token[0] != TOKEN_VERSION {
            return Err(JoinRejection::bad_token());
        }
        let mut expiry = [0; 8];
        expiry.copy_from_slice(&token[1..9]);
        let expiry = u64::from_be_bytes(expiry);
        let mut mac = self.mac.clone();
        feed(&mut mac, request.call_id, request.participant_id, expiry)
            .ok_or_else(JoinRejection::bad_token)?;
        // Constant-time comparison.
        mac.verify_slice(&token[9..])
            .map_err(|_| JoinRejection::bad_token())?;
        if self.clock.unix_at(now).as_secs() >= expiry {
            return Err(JoinRejection::expired());
        }
        Ok(())
    }
}

/// Makes a join token for `participant_id` in `call_id`, valid until
/// `expires_unix_secs` (seconds since the Unix epoch). `None` if an id is
/// longer than 255 bytes.
pub fn mint_token(
    secret: &[u8],
    call_id: &str,
    participant_id: &str,
    expires_unix_secs: u64,
) -> Option<Bytes> {
    let mut mac = new_mac(secret);
    feed(&mut mac, call_id, participant_id, expires_unix_secs)?;
    let mut out = Vec::with_capacity(TOKEN_LEN);
    out.push(TOKEN_VERSION);
    out.extend_from_slice(&expires_unix_secs.to_be_bytes());
    out.extend_from_slice(&mac.finalize().into_bytes());
    Some(out.into())
}

fn new_mac(secret: &[u8]) -> Hmac<Sha256> {
    <Hmac<Sha256> as KeyInit>::new_from_slice(secret).expect("HMAC accepts keys of any length")
}

fn feed(mac: &mut Hmac<Sha256>, call: &str, participant: &str, expiry: u64) -> Option<()> {
    let call_len = u8::try_from(call.len()).ok()?;
    let participant_len = u8::try_from(participant.len()).ok()?;
    mac.update(DOMAIN);
    mac.update(&[call_len]);
    mac.update(call.as_bytes());
    mac.update(&[participant_len]);
    mac.update(participant.as_bytes());
    mac.update(&expiry.to_be_bytes());
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (HmacVerifier, Instant) {
        let now = crate::sim::start_instant();
        let clock = WallClock::new(now, Duration::from_secs(1_000_000));
        (HmacVerifier::new(b"secret", clock), now)
    }

    fn req<'a>(call: &'a str, who: &'a str, token: &'a [u8]) -> JoinRequest<'a> {
        JoinRequest {
            call_id: call,
            participant_id: who,
            token,
        }
    }

    #[test]
    fn a_minted_token_verifies_until_it_expires() {
        let (v, now) = setup();
        let token = mint_token(b"secret", "call", "alice", 1_000_060).expect("short ids");
        assert_eq!(v.verify(&req("call", "alice", &token), now), Ok(()));
        let later = now + Duration::from_secs(60);
        assert_eq!(
            v.verify(&req("call", "alice", &token), later),
            Err(JoinRejection::expired())
        );
    }

    #[test]
    fn a_token_is_bound_to_call_participant_secret_and_expiry() {
        let (v, now) = setup();
        let token = mint_token(b"secret", "call", "alice", 2_000_000).expect("short ids");
        let bad = Err(JoinRejection::bad_token());
        assert_eq!(v.verify(&req("call", "mallory", &token), now), bad);
        assert_eq!(v.verify(&req("other", "alice", &token), now), bad);
        let forged = mint_token(b"guess", "call", "alice", 2_000_000).expect("short ids");
        assert_eq!(v.verify(&req("call", "alice", &forged), now), bad);
        let mut extended = token.to_vec();
        extended[8] ^= 1; // change the expiry
        assert_eq!(v.verify(&req("call", "alice", &extended), now), bad);
        assert_eq!(v.verify(&req("call", "alice", &token[..20]), now), bad);
        // Ids that cannot be framed never verify.
        let long = "x".repeat(300);
        assert!(mint_token(b"secret", &long, "alice", 1).is_none());
        assert_eq!(v.verify(&req(&long, "alice", &token), now), bad);
    }
}
