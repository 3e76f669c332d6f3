//! Join authentication: who may join which call. A server checks every
//! [`crate::wire::Join`] with a [`JoinVerifier`]; the default is
//! [`HmacVerifier`] over tokens from [`mint_token`].
#![forbid(unsafe_code)]

use std::time::{Duration, Instant};

use bytes::Bytes;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

use crate::wire::ErrorCode;

const TOKEN_VERSION: u8 = 2;
/// Version, key id, expiry: the bytes before the tag, all MACed.
const HEADER_LEN: usize = 1 + 4 + 8;
const TAG_LEN: usize = 32;
const TOKEN_LEN: usize = HEADER_LEN + TAG_LEN;
const DOMAIN: &[u8] = b"dcengine-join-v2";
const KEY_ID_DOMAIN: &[u8] = b"dcengine-key-id";
/// [`HmacVerifier::max_lifetime`]'s default.
const DEFAULT_MAX_LIFETIME: Duration = Duration::from_secs(24 * 60 * 60);

/// A token could not be minted, or a verifier built.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// The secret is empty: every token would be forgeable.
    #[error("the token secret is empty")]
    EmptySecret,
    /// A call or participant id is longer than 255 bytes (no `Join` frame
    /// carries it, so no token for it is of use).
    #[error("call and participant ids in a token must be at most 255 bytes")]
    IdTooLong,
    /// [`HmacVerifier::second_secret`] was given a secret with the first
    /// one's key id: the same secret twice (or, once in 2^32, another
    /// secret whose id collides; pick another).
    #[error("the second secret has the first one's key id (the same secret twice?)")]
    SameKeyId,
}

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

    /// The token is valid for longer than the verifier allows
    /// ([`HmacVerifier::max_lifetime`]), `max`.
    pub fn lifetime_too_long(max: Duration) -> Self {
        Self {
            code: ErrorCode::BAD_TOKEN,
            reason: format!(
                "the join token expires more than {} s from now, the server's limit",
                max.as_secs()
            ),
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
/// A token is an HMAC-SHA256 over its header (version, key id, expiry),
/// the call id and the participant id, checked in constant time; it is
/// refused once the expiry has passed by the [`WallClock`], and when it
/// expires more than [`HmacVerifier::max_lifetime`] (24 h by default)
/// after now. Embedders with their own identity system implement
/// [`JoinVerifier`] instead. `docs/security.md` says what a token allows
/// and what it does not protect.
///
/// The verifier holds one secret, or two while secrets rotate
/// ([`HmacVerifier::second_secret`]); a token's key id says which one
/// verifies it. A key id is derived from its secret, so minting needs only
/// the secret. To rotate: give the verifiers the new secret as a second
/// one, then mint with the new secret, and once every token of the old one
/// has expired (at most `max_lifetime` later) drop the old one.
///
/// Token layout (45 bytes, version 2):
///
/// ```text
///  0        1                 5                              13                            45
/// +--------+-----------------+------------------------------+-----------------------------+
/// | 0x02   | key id (u32 BE) | expiry (u64 BE, Unix secs)   | HMAC-SHA256 tag (32 bytes)  |
/// +--------+-----------------+------------------------------+-----------------------------+
///  \___________________ header, MACed _____________________/
///
/// tag    = HMAC-SHA256(secret, "dcengine-join-v2" | header
///                              | len(call) | call | len(participant) | participant)
/// key id = the first 4 bytes of SHA-256("dcengine-key-id" | secret)
/// (lengths one byte each; ids are at most 255 bytes)
/// ```
pub struct HmacVerifier {
    first: Key,
    second: Option<Key>,
    max_lifetime: Duration,
    clock: WallClock,
}

/// One secret of a verifier: its key id and its keyed MAC.
struct Key {
    id: u32,
    mac: Hmac<Sha256>,
}

impl Key {
    fn new(secret: &[u8]) -> Result<Self, TokenError> {
        if secret.is_empty() {
            return Err(TokenError::EmptySecret);
        }
        let digest = Sha256::new()
            .chain_update(KEY_ID_DOMAIN)
            .chain_update(secret)
            .finalize();
        let id = u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]);
        let mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret)
            .map_err(|_| TokenError::EmptySecret)?; // HMAC takes keys of any length.
        Ok(Self { id, mac })
    }

    /// The tag of a token with `header` for `call` and `participant`;
    /// `None` if an id is longer than 255 bytes.
    fn tag(
        &self,
        header: &[u8; HEADER_LEN],
        call: &str,
        participant: &str,
    ) -> Option<Hmac<Sha256>> {
        let call_len = u8::try_from(call.len()).ok()?;
        let participant_len = u8::try_from(participant.len()).ok()?;
        let mut mac = self.mac.clone();
        mac.update(DOMAIN);
        mac.update(header);
        mac.update(&[call_len]);
        mac.update(call.as_bytes());
        mac.update(&[participant_len]);
        mac.update(participant.as_bytes());
        Some(mac)
    }
}

fn header(key_id: u32, expiry: u64) -> [u8; HEADER_LEN] {
    let mut h = [0; HEADER_LEN];
    h[0] = TOKEN_VERSION;
    h[1..5].copy_from_slice(&key_id.to_be_bytes());
    h[5..].copy_from_slice(&expiry.to_be_bytes());
    h
}

impl std::fmt::Debug for HmacVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HmacVerifier")
            .field(
                "key_ids",
                &(self.first.id, self.second.as_ref().map(|k| k.id)),
            )
            .field("max_lifetime", &self.max_lifetime)
            .field("clock", &self.clock)
            .finish_non_exhaustive()
    }
}

impl HmacVerifier {
    /// A verifier for tokens minted with `secret`, checking expiry against
    /// `clock`. [`TokenError::EmptySecret`] if `secret` is empty.
    pub fn new(secret: &[u8], clock: WallClock) -> Result<Self, TokenError> {
        Ok(Self {
            first: Key::new(secret)?,
            second: None,
            max_lifetime: DEFAULT_MAX_LIFETIME,
            clock,
        })
    }

    /// Tokens minted with `secret` verify too (rotation, see the type's
    /// doc); replaces an earlier second secret. [`TokenError::EmptySecret`]
    /// if it is empty, [`TokenError::SameKeyId`] if it is the first one.
    pub fn second_secret(mut self, secret: &[u8]) -> Result<Self, TokenError> {
        let key = Key::new(secret)?;
        if key.id == self.first.id {
            return Err(TokenError::SameKeyId);
        }
        self.second = Some(key);
        Ok(self)
    }

    /// A token that expires more than this after now is refused
    /// ([`JoinRejection::lifetime_too_long`]), however well signed: a
    /// leaked token is of use for at most this long. Default 24 h.
    pub fn max_lifetime(mut self, max: Duration) -> Self {
        self.max_lifetime = max;
        self
    }
}

impl JoinVerifier for HmacVerifier {
    fn verify(&self, request: &JoinRequest<'_>, now: Instant) -> Result<(), JoinRejection> {
        let Some((header, tag)) = request.token.split_first_chunk::<HEADER_LEN>() else {
            return Err(JoinRejection::bad_token());
        };
        if header[0] != TOKEN_VERSION || tag.len() != TAG_LEN {
            return Err(JoinRejection::bad_token());
        }
        let key_id = u32::from_be_bytes([header[1], header[2], header[3], header[4]]);
        let key = std::iter::once(&self.first)
            .chain(&self.second)
            .find(|k| k.id == key_id)
            .ok_or_else(JoinRejection::bad_token)?;
        key.tag(header, request.call_id, request.participant_id)
            .ok_or_else(JoinRejection::bad_token)?
            // Constant-time comparison.
            .verify_slice(tag)
            .map_err(|_| JoinRejection::bad_token())?;
        let mut expiry = [0; 8];
        expiry.copy_from_slice(&header[5..]);
        let expiry = u64::from_be_bytes(expiry);
        let unix_now = self.clock.unix_at(now).as_secs();
        if unix_now >= expiry {
            return Err(JoinRejection::expired());
        }
        if expiry - unix_now > self.max_lifetime.as_secs() {
            return Err(JoinRejection::lifetime_too_long(self.max_lifetime));
        }
        Ok(())
    }
}

/// Makes a join token for `participant_id` in `call_id`, valid until
/// `expires_unix_secs` (seconds since the Unix epoch), for an
/// [`HmacVerifier`] that holds `secret`. Fails if `secret` is empty or an
/// id is longer than 255 bytes.
///
/// A verifier refuses a token that expires more than its
/// [`HmacVerifier::max_lifetime`] (24 h by default) after the join: mint
/// tokens for a shorter while than that.
pub fn mint_token(
    secret: &[u8],
    call_id: &str,
    participant_id: &str,
    expires_unix_secs: u64,
) -> Result<Bytes, TokenError> {
    let key = Key::new(secret)?;
    let header = header(key.id, expires_unix_secs);
    let mac = key
        .tag(&header, call_id, participant_id)
        .ok_or(TokenError::IdTooLong)?;
    let mut out = Vec::with_capacity(TOKEN_LEN);
    out.extend_from_slice(&header);
    out.extend_from_slice(&mac.finalize().into_bytes());
    Ok(out.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW_UNIX: u64 = 1_000_000;

    fn clock() -> (WallClock, Instant) {
        let now = crate::sim::start_instant();
        (WallClock::new(now, Duration::from_secs(NOW_UNIX)), now)
    }

    fn setup() -> (HmacVerifier, Instant) {
        let (clock, now) = clock();
        (HmacVerifier::new(b"secret", clock).expect("a secret"), now)
    }

    fn req<'a>(call: &'a str, who: &'a str, token: &'a [u8]) -> JoinRequest<'a> {
        JoinRequest {
            call_id: call,
            participant_id: who,
            token,
        }
    }

    fn mint(secret: &[u8], expiry: u64) -> Bytes {
        mint_token(secret, "call", "alice", expiry).expect("short ids")
    }

    #[test]
    fn a_minted_token_verifies_until_it_expires() {
        let (v, now) = setup();
        let token = mint(b"secret", NOW_UNIX + 60);
        assert_eq!(v.verify(&req("call", "alice", &token), now), Ok(()));
        let later = now + Duration::from_secs(60);
        assert_eq!(
            v.verify(&req("call", "alice", &token), later),
            Err(JoinRejection::expired())
        );
    }

    #[test]
    fn a_token_is_bound_to_call_participant_secret_and_header() {
        let (v, now) = setup();
        let token = mint(b"secret", NOW_UNIX + 600);
        let bad = Err(JoinRejection::bad_token());
        assert_eq!(v.verify(&req("call", "mallory", &token), now), bad);
        assert_eq!(v.verify(&req("other", "alice", &token), now), bad);
        let forged = mint(b"guess", NOW_UNIX + 600);
        assert_eq!(v.verify(&req("call", "alice", &forged), now), bad);
        // Every header byte is MACed: the version, the key id, the expiry.
        for at in 0..HEADER_LEN {
            let mut changed = token.to_vec();
            changed[at] ^= 1;
            assert_eq!(
                v.verify(&req("call", "alice", &changed), now),
                bad,
                "byte {at}"
            );
        }
        assert_eq!(v.verify(&req("call", "alice", &token[..20]), now), bad);
        let mut longer = token.to_vec();
        longer.push(0);
        assert_eq!(v.verify(&req("call", "alice", &longer), now), bad);
        assert_eq!(v.verify(&req("call", "alice", &[]), now), bad);
        // Ids that cannot be framed never verify.
        let long = "x".repeat(300);
        assert_eq!(
            mint_token(b"secret", &long, "alice", 1),
            Err(TokenError::IdTooLong)
        );
        assert_eq!(v.verify(&req(&long, "alice", &token), now), bad);
    }

    /// The layout `HmacVerifier`'s doc draws, computed here from the doc.
    #[test]
    fn the_token_layout_is_the_documented_one() {
        let secret = b"secret";
        let expiry: u64 = 0x0102_0304_0506_0708;
        let token = mint_token(secret, "call", "alice", expiry).expect("token");
        let key_id = &Sha256::new()
            .chain_update(b"dcengine-key-id")
            .chain_update(secret)
            .finalize()[..4];
        let mut header = vec![0x02];
        header.extend_from_slice(key_id);
        header.extend_from_slice(&expiry.to_be_bytes());
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret).expect("any key");
        mac.update(b"dcengine-join-v2");
        mac.update(&header);
        mac.update(b"\x04call\x05alice");
        let mut want = header;
        want.extend_from_slice(&mac.finalize().into_bytes());
        assert_eq!(token.len(), 45);
        assert_eq!(&token[..], &want[..]);
    }

    #[test]
    fn an_empty_secret_is_refused_when_minting_and_verifying() {
        let (clock, _) = clock();
        assert_eq!(
            HmacVerifier::new(b"", clock).err(),
            Some(TokenError::EmptySecret)
        );
        assert_eq!(
            mint_token(b"", "call", "alice", NOW_UNIX + 60),
            Err(TokenError::EmptySecret)
        );
        let (v, _) = setup();
        assert_eq!(v.second_secret(b"").err(), Some(TokenError::EmptySecret));
    }

    #[test]
    fn a_token_valid_for_longer_than_the_max_lifetime_is_refused() {
        let (v, now) = setup();
        let day = 24 * 60 * 60;
        let request = |token: &Bytes| v.verify(&req("call", "alice", token), now);
        assert_eq!(request(&mint(b"secret", NOW_UNIX + day)), Ok(()));
        let too_long = Err(JoinRejection::lifetime_too_long(Duration::from_secs(day)));
        assert_eq!(request(&mint(b"secret", NOW_UNIX + day + 1)), too_long);
        assert_eq!(request(&mint(b"secret", u64::MAX)), too_long);
        let rejection = JoinRejection::lifetime_too_long(Duration::from_secs(day));
        assert_eq!(rejection.code, ErrorCode::BAD_TOKEN);
        assert!(rejection.reason.contains("86400 s"), "{}", rejection.reason);
        // With the limit at an hour, a two-hour token is refused now and
        // accepted an hour later.
        let (v, now) = setup();
        let v = v.max_lifetime(Duration::from_secs(3600));
        let token = mint(b"secret", NOW_UNIX + 7200);
        assert_eq!(
            v.verify(&req("call", "alice", &token), now),
            Err(JoinRejection::lifetime_too_long(Duration::from_secs(3600)))
        );
        let an_hour_later = now + Duration::from_secs(3600);
        assert_eq!(
            v.verify(&req("call", "alice", &token), an_hour_later),
            Ok(())
        );
    }

    #[test]
    fn two_secrets_verify_during_a_rotation_each_by_its_key_id() {
        let (v, now) = setup();
        let old = mint(b"secret", NOW_UNIX + 60);
        let new = mint(b"new secret", NOW_UNIX + 60);
        let other = mint(b"another secret", NOW_UNIX + 60);
        assert_eq!(
            v.verify(&req("call", "alice", &new), now),
            Err(JoinRejection::bad_token())
        );
        let v = v.second_secret(b"new secret").expect("a second secret");
        for token in [&old, &new] {
            assert_eq!(v.verify(&req("call", "alice", token), now), Ok(()));
        }
        assert_eq!(
            v.verify(&req("call", "alice", &other), now),
            Err(JoinRejection::bad_token())
        );
        // The key ids differ, so each token names its secret.
        assert_ne!(old[1..5], new[1..5]);
        // A token naming one key's id but signed by the other fails.
        let mut swapped = new.to_vec();
        swapped[1..5].copy_from_slice(&old[1..5]);
        assert_eq!(
            v.verify(&req("call", "alice", &swapped), now),
            Err(JoinRejection::bad_token())
        );
        // The same secret twice is a mistake, not a rotation.
        let (v, _) = setup();
        assert_eq!(
            v.second_secret(b"secret").err(),
            Some(TokenError::SameKeyId)
        );
    }
}
