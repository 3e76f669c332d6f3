//! Traffic-limit rules: how fast one sender may send.

use std::time::{Duration, Instant};

use super::AtomicTokenBucket;
use crate::wire::{Priority, Reliability, TrafficRules};

/// The traffic-limit rules of the DataChannel feature, per sender.
///
/// Defaults are the concept document's: Durable 64 kbps, Lossy 512 kbps,
/// High-priority Lossy 200 kbps, and a sender with no participant list
/// (broadcast) at most 80 packets a second, each 1,200 bytes of a message
/// counting as one packet. [`TrafficPolicy::unlimited`] turns every rule off
/// (load tests).
///
/// Each rule is a token bucket holding `max(rate × burst, one max-size
/// message)`, so a sender may burst after a quiet spell, and a message of
/// the largest size always passes a full bucket (a smaller bucket would
/// block it forever). A client checks them on `send`
/// (`MessageFailureForTrafficLimit`); a server polices the same rules
/// independently, with `server_slack` times the depth (arrival times are
/// bunched by the network).
///
/// Built with chainable setters named after the fields (`None` or a rate
/// turns a rule off or on), each of which says its default:
///
/// ```
/// # use dcengine::TrafficPolicy;
/// let policy = TrafficPolicy::default().durable_kbps(128).lossy_kbps(None);
/// assert_eq!((policy.durable_kbps, policy.lossy_kbps), (Some(128), None));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TrafficPolicy {
    /// The rule for Durable senders, in kbps (`None`: no rule); see
    /// [`TrafficPolicy::durable_kbps()`].
    pub durable_kbps: Option<u32>,
    /// The rule for Normal-priority Lossy senders, in kbps; see
    /// [`TrafficPolicy::lossy_kbps()`].
    pub lossy_kbps: Option<u32>,
    /// The rule for High-priority Lossy senders, in kbps; see
    /// [`TrafficPolicy::high_lossy_kbps()`].
    pub high_lossy_kbps: Option<u32>,
    /// The rule for senders to everyone, in packets a second; see
    /// [`TrafficPolicy::broadcast_packets_per_second()`].
    pub broadcast_packets_per_second: Option<u32>,
    /// Bytes of a message that count as one packet; see
    /// [`TrafficPolicy::packet_bytes()`].
    pub packet_bytes: u32,
    /// How much of a second's allowance may go at once; see
    /// [`TrafficPolicy::burst()`].
    pub burst: Duration,
    /// Server policing's depth multiplier; see
    /// [`TrafficPolicy::server_slack()`].
    pub server_slack: u32,
    /// The rule for one member's senders together, in kbps; see
    /// [`TrafficPolicy::member_kbps()`].
    pub member_kbps: Option<u32>,
    /// The rule for one member's messages together, a second; see
    /// [`TrafficPolicy::member_messages_per_second()`].
    pub member_messages_per_second: Option<u32>,
}

/// The least a message costs the byte rules, whatever its payload: about
/// its frame's overhead on the wire (an empty message is not free).
pub(crate) const MIN_MESSAGE_COST: usize = 16;

impl Default for TrafficPolicy {
    fn default() -> Self {
        Self {
            durable_kbps: Some(64),
            lossy_kbps: Some(512),
            high_lossy_kbps: Some(200),
            broadcast_packets_per_second: Some(80),
            packet_bytes: 1200,
            burst: Duration::from_secs(1),
            server_slack: 2,
            member_kbps: Some(2048),
            member_messages_per_second: Some(2000),
        }
    }
}

impl TrafficPolicy {
    /// No limits at all.
    pub fn unlimited() -> Self {
        Self {
            durable_kbps: None,
            lossy_kbps: None,
            high_lossy_kbps: None,
            broadcast_packets_per_second: None,
            member_kbps: None,
            member_messages_per_second: None,
            ..Self::default()
        }
    }

    /// The rule for all of one member's senders together, in kbps; `None`:
    /// no rule. The per-sender rules alone would let a member with many
    /// senders send without bound. Default 2,048 kbps (four Lossy
    /// senders' worth).
    pub fn member_kbps(mut self, kbps: impl Into<Option<u32>>) -> Self {
        self.member_kbps = kbps.into();
        self
    }

    /// The rule for all of one member's messages together, a second
    /// (tiny messages cost the server per message, whatever their bytes);
    /// `None`: no rule. Default 2,000 a second.
    pub fn member_messages_per_second(mut self, messages: impl Into<Option<u32>>) -> Self {
        self.member_messages_per_second = messages.into();
        self
    }

    /// The rule for Durable senders (either priority), in kbps; `None`:
    /// no rule. Default 64 kbps.
    pub fn durable_kbps(mut self, kbps: impl Into<Option<u32>>) -> Self {
        self.durable_kbps = kbps.into();
        self
    }

    /// The rule for Normal-priority Lossy senders, in kbps; `None`: no
    /// rule. Default 512 kbps.
    pub fn lossy_kbps(mut self, kbps: impl Into<Option<u32>>) -> Self {
        self.lossy_kbps = kbps.into();
        self
    }

    /// The rule for High-priority Lossy senders, in kbps; `None`: no rule.
    /// Default 200 kbps.
    pub fn high_lossy_kbps(mut self, kbps: impl Into<Option<u32>>) -> Self {
        self.high_lossy_kbps = kbps.into();
        self
    }

    /// The rule for senders to everyone (no participant list), in packets
    /// of [`TrafficPolicy::packet_bytes()`] a second; `None`: no rule.
    /// Default 80 packets a second.
    pub fn broadcast_packets_per_second(mut self, packets: impl Into<Option<u32>>) -> Self {
        self.broadcast_packets_per_second = packets.into();
        self
    }

    /// Bytes of a message that count as one packet for the broadcast rule.
    /// Default 1,200.
    pub fn packet_bytes(mut self, bytes: u32) -> Self {
        self.packet_bytes = bytes;
        self
    }

    /// How much of a second's allowance may go at once (the bucket depth,
    /// never less than one max-size message). Default 1 s.
    pub fn burst(mut self, burst: Duration) -> Self {
        self.burst = burst;
        self
    }

    /// Server policing: how many times a rule's depth the server allows
    /// (≥ 1; arrival times are bunched by the network). Default 2.
    pub fn server_slack(mut self, slack: u32) -> Self {
        self.server_slack = slack;
        self
    }

    /// The rules as a server announces them (in `JoinAccepted`).
    pub(crate) fn to_rules(&self) -> TrafficRules {
        TrafficRules {
            durable_kbps: self.durable_kbps.unwrap_or(0),
            lossy_kbps: self.lossy_kbps.unwrap_or(0),
            high_lossy_kbps: self.high_lossy_kbps.unwrap_or(0),
            broadcast_packets_per_second: self.broadcast_packets_per_second.unwrap_or(0),
            packet_bytes: self.packet_bytes,
            burst_ms: u32::try_from(self.burst.as_millis()).unwrap_or(u32::MAX),
            member_kbps: self.member_kbps.unwrap_or(0),
            member_messages_per_second: self.member_messages_per_second.unwrap_or(0),
        }
    }

    /// This policy tightened by a server's `rules`, rule by rule: the lower
    /// rate where both have one, either's where only one has, a smaller
    /// packet size and a shorter burst. What a client enforces after joining
    /// (its own rules never loosen; the server's always apply).
    pub(crate) fn stricter(&self, rules: &TrafficRules) -> Self {
        fn tighter(own: Option<u32>, server: u32) -> Option<u32> {
            match (own, (server > 0).then_some(server)) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            }
        }
        let burst = match rules.burst_ms {
            0 => self.burst,
            ms => self.burst.min(Duration::from_millis(u64::from(ms))),
        };
        Self {
            durable_kbps: tighter(self.durable_kbps, rules.durable_kbps),
            lossy_kbps: tighter(self.lossy_kbps, rules.lossy_kbps),
            high_lossy_kbps: tighter(self.high_lossy_kbps, rules.high_lossy_kbps),
            broadcast_packets_per_second: tighter(
                self.broadcast_packets_per_second,
                rules.broadcast_packets_per_second,
            ),
            packet_bytes: match rules.packet_bytes {
                0 => self.packet_bytes,
                b => self.packet_bytes.min(b),
            },
            burst,
            server_slack: self.server_slack,
            member_kbps: tighter(self.member_kbps, rules.member_kbps),
            member_messages_per_second: tighter(
                self.member_messages_per_second,
                rules.member_messages_per_second,
            ),
        }
    }

    /// A limiter for one member's senders together (the member rules),
    /// full at `now`, its depth `slack` times a burst's worth (at least
    /// one max-size message). Checked with `broadcast` set: its packet
    /// rule counts messages.
    pub(crate) fn member_limiter(&self, max_message_size: u32, slack: u32, now: Instant) -> TrafficLimiter {
        let bytes = self
            .member_kbps
            .map(|kbps| self.bucket(u64::from(kbps) * 125, u64::from(max_message_size), slack, now));
        let packets = self
            .member_messages_per_second
            .map(|n| self.bucket(u64::from(n), 1, slack, now));
        TrafficLimiter {
            bytes,
            packets,
            // Every message is one "packet": the rule counts messages.
            packet_bytes: u32::MAX,
        }
    }

    /// The byte rate allowed to a sender of this kind, in kbps.
    pub(crate) fn rate_kbps(&self, reliability: Reliability, priority: Priority) -> Option<u32> {
        match (reliability, priority) {
            (Reliability::Durable, _) => self.durable_kbps,
            (Reliability::Lossy, Priority::Normal) => self.lossy_kbps,
            (Reliability::Lossy, Priority::High) => self.high_lossy_kbps,
        }
    }

    /// How many packets a message of `len` bytes counts as (at least one).
    pub(crate) fn packets(&self, len: usize) -> u64 {
        let per = u64::from(self.packet_bytes.max(1));
        (len as u64).div_ceil(per).max(1)
    }

    /// A full bucket refilling at `rate` a second, `burst` of it deep (at
    /// least `least`, and one), times `slack`.
    fn bucket(&self, rate: u64, least: u64, slack: u32, now: Instant) -> AtomicTokenBucket {
        let depth = ((rate as f64 * self.burst.as_secs_f64()) as u64)
            .max(least)
            .max(1);
        AtomicTokenBucket::new(rate, depth * u64::from(slack.max(1)), now)
    }

    /// A limiter for one sender, full at `now`. `max_message_size` sets the
    /// smallest depth; `slack` multiplies the depth (1 for clients,
    /// [`TrafficPolicy::server_slack`] for servers).
    pub(crate) fn limiter(
        &self,
        reliability: Reliability,
        priority: Priority,
        max_message_size: u32,
        slack: u32,
        now: Instant,
    ) -> TrafficLimiter {
        let bytes = self
            .rate_kbps(reliability, priority)
            .map(|kbps| self.bucket(u64::from(kbps) * 125, u64::from(max_message_size), slack, now));
        let packets = self.broadcast_packets_per_second.map(|pps| {
            let least = self.packets(max_message_size as usize);
            self.bucket(u64::from(pps), least, slack, now)
        });
        TrafficLimiter {
            bytes,
            packets,
            packet_bytes: self.packet_bytes,
        }
    }
}

/// One sender's traffic-limit state (see [`TrafficPolicy`]).
///
/// Lock-free: [`TrafficLimiter::try_admit`] takes `&self`, so the
/// application threads sharing a sender check the rules without a mutex
/// (each rule is an [`AtomicTokenBucket`]).
#[derive(Debug)]
pub struct TrafficLimiter {
    bytes: Option<AtomicTokenBucket>,
    packets: Option<AtomicTokenBucket>,
    packet_bytes: u32,
}

impl TrafficLimiter {
    /// Whether a message of `len` bytes may go now (`broadcast`: the sender
    /// has no participant list). Takes its tokens only if every rule
    /// admits it: a message one rule refuses gets back what the other took
    /// (a concurrent send on the same sender may see those tokens taken for
    /// that instant).
    pub fn try_admit(&self, len: usize, broadcast: bool, now: Instant) -> bool {
        let len = len.max(MIN_MESSAGE_COST) as u64;
        if let Some(b) = &self.bytes
            && !b.try_take(len, now)
        {
            return false;
        }
        if broadcast && let Some(p) = &self.packets {
            let packets = len.div_ceil(u64::from(self.packet_bytes.max(1))).max(1);
            if !p.try_take(packets, now) {
                if let Some(b) = &self.bytes {
                    b.refund(len);
                }
                return false;
            }
        }
        true
    }

    /// Gives back what [`TrafficLimiter::try_admit`] took for a message
    /// of `len` bytes (another rule refused it after all).
    pub fn refund(&self, len: usize, broadcast: bool) {
        let len = len.max(MIN_MESSAGE_COST) as u64;
        if let Some(b) = &self.bytes {
            b.refund(len);
        }
        if broadcast && let Some(p) = &self.packets {
            p.refund(len.div_ceil(u64::from(self.packet_bytes.max(1))).max(1));
        }
    }

    /// How long from `now` until a message of `len` bytes would be
    /// admitted (zero: now); `None` if never (larger than a rule's bucket).
    pub fn time_until(
        &self,
        len: usize,
        broadcast: bool,
        now: Instant,
    ) -> Option<std::time::Duration> {
        let len = len.max(MIN_MESSAGE_COST) as u64;
        let mut wait = std::time::Duration::ZERO;
        if let Some(b) = &self.bytes {
            wait = wait.max(b.time_until(len, now)?);
        }
        if broadcast && let Some(p) = &self.packets {
            let packets = len.div_ceil(u64::from(self.packet_bytes.max(1))).max(1);
            wait = wait.max(p.time_until(packets, now)?);
        }
        Some(wait)
    }

    /// Whether every rule's bucket is full at `now`: the limiter is as
    /// good as a new one (and may be forgotten).
    pub fn is_full(&self, now: Instant) -> bool {
        [&self.bytes, &self.packets]
            .into_iter()
            .flatten()
            .all(|b| b.is_full(now))
    }

    /// Whether no rule applies (then nothing it does needs the time).
    pub fn is_unlimited(&self) -> bool {
        self.bytes.is_none() && self.packets.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_get_their_rates() {
        let p = TrafficPolicy::default();
        assert_eq!(p.rate_kbps(Reliability::Durable, Priority::High), Some(64));
        assert_eq!(p.rate_kbps(Reliability::Lossy, Priority::Normal), Some(512));
        assert_eq!(p.rate_kbps(Reliability::Lossy, Priority::High), Some(200));
        assert_eq!(p.packets(0), 1);
        assert_eq!(p.packets(1200), 1);
        assert_eq!(p.packets(1201), 2);
        let t0 = crate::sim::start_instant();
        let l = TrafficPolicy::unlimited().limiter(
            Reliability::Durable,
            Priority::Normal,
            1 << 15,
            1,
            t0,
        );
        assert!(l.is_unlimited());
        assert!((0..10_000).all(|_| l.try_admit(32 * 1024, true, t0)));
    }

    #[test]
    fn setters_set_their_field() {
        let p = TrafficPolicy::default()
            .durable_kbps(1)
            .lossy_kbps(None)
            .high_lossy_kbps(Some(3))
            .broadcast_packets_per_second(4)
            .packet_bytes(5)
            .burst(Duration::from_millis(6))
            .server_slack(7)
            .member_kbps(8)
            .member_messages_per_second(9);
        let expected = TrafficPolicy {
            durable_kbps: Some(1),
            lossy_kbps: None,
            high_lossy_kbps: Some(3),
            broadcast_packets_per_second: Some(4),
            packet_bytes: 5,
            burst: Duration::from_millis(6),
            server_slack: 7,
            member_kbps: Some(8),
            member_messages_per_second: Some(9),
        };
        assert_eq!(p, expected);
        let none = TrafficPolicy::default()
            .durable_kbps(None)
            .lossy_kbps(None)
            .high_lossy_kbps(None)
            .broadcast_packets_per_second(None)
            .member_kbps(None)
            .member_messages_per_second(None);
        assert_eq!(none, TrafficPolicy::unlimited());
    }

    #[test]
    fn a_rejected_message_takes_no_tokens() {
        let t0 = crate::sim::start_instant();
        let p = TrafficPolicy::default();
        // Lossy High: 25,000 bytes a second, depth 32,768 (the max message).
        let l = p.limiter(Reliability::Lossy, Priority::High, 32 * 1024, 1, t0);
        assert!(l.try_admit(32 * 1024 - 100, false, t0));
        assert!(!l.try_admit(101, false, t0));
        assert!(l.try_admit(100, false, t0));
        // Broadcast: 80 packets a second; a full bucket holds 80.
        let l = p.limiter(Reliability::Lossy, Priority::Normal, 32 * 1024, 1, t0);
        assert!((0..80).all(|_| l.try_admit(10, true, t0)));
        assert!(!l.try_admit(10, true, t0));
        // …but a listed send is not a broadcast.
        assert!(l.try_admit(10, false, t0));
    }

    #[test]
    fn a_server_tightens_rules_and_never_loosens_them() {
        let own = TrafficPolicy {
            durable_kbps: Some(64),
            lossy_kbps: None,
            high_lossy_kbps: Some(100),
            broadcast_packets_per_second: Some(80),
            ..TrafficPolicy::default()
        };
        let server = TrafficRules {
            durable_kbps: 32,
            lossy_kbps: 512,
            high_lossy_kbps: 200,
            broadcast_packets_per_second: 0,
            packet_bytes: 1000,
            burst_ms: 2000,
            member_kbps: 0,
            member_messages_per_second: 100,
        };
        let p = own.stricter(&server);
        assert_eq!(p.durable_kbps, Some(32), "the server's lower rate");
        assert_eq!(p.lossy_kbps, Some(512), "the server's rule where none");
        assert_eq!(p.high_lossy_kbps, Some(100), "the own lower rate");
        assert_eq!(p.broadcast_packets_per_second, Some(80), "0 is no rule");
        assert_eq!(p.packet_bytes, 1000);
        assert_eq!(p.burst, Duration::from_secs(1));
        assert_eq!(p.member_kbps, Some(2048), "0 is no rule");
        assert_eq!(p.member_messages_per_second, Some(100));
        // Announcing a policy and adopting it changes nothing.
        let d = TrafficPolicy::default();
        assert_eq!(TrafficPolicy::unlimited().stricter(&d.to_rules()), d);
        assert_eq!(d.stricter(&TrafficPolicy::unlimited().to_rules()), d);
    }
}
