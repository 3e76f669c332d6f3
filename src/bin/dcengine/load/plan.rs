//! The pure part of `dcengine load`: who is in which call, who sends what
//! to whom, and the payload's header.

use std::time::Duration;

use dcengine::{DataChannelPriority, DataChannelReliability};

/// Payload header: the send time (µs since the run's start) and the
/// sender's index in the run, both big-endian.
pub(crate) const HEADER: usize = 12;

/// Most participants in one call the tool sets up (the participant-list
/// limit is 64 recipients, and a broadcast reaches everyone else).
pub(crate) const MAX_PARTICIPANTS: usize = 1024;

/// The delivery classes, in the order reports list them.
pub(crate) const CLASSES: [(DataChannelReliability, DataChannelPriority); 4] = [
    (DataChannelReliability::Durable, DataChannelPriority::Normal),
    (DataChannelReliability::Durable, DataChannelPriority::High),
    (DataChannelReliability::Lossy, DataChannelPriority::Normal),
    (DataChannelReliability::Lossy, DataChannelPriority::High),
];

/// The index of a class in [`CLASSES`].
pub(crate) fn class_index(r: DataChannelReliability, p: DataChannelPriority) -> usize {
    let lossy = usize::from(r == DataChannelReliability::Lossy);
    let high = usize::from(p == DataChannelPriority::High);
    lossy * 2 + high
}

/// Who a sender's messages go to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Recipients {
    /// The next `n` participants of the call (a participant list).
    Next(usize),
    /// Everyone else (an empty participant list).
    Broadcast,
}

impl std::str::FromStr for Recipients {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "broadcast" | "all" => Ok(Self::Broadcast),
            n => match n.parse::<usize>() {
                Ok(k) if (1..=64).contains(&k) => Ok(Self::Next(k)),
                _ => Err(format!(
                    "recipients: a count from 1 to 64, or `broadcast`; not {s:?}"
                )),
            },
        }
    }
}

impl std::fmt::Display for Recipients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Next(n) => write!(f, "{n}"),
            Self::Broadcast => f.write_str("broadcast"),
        }
    }
}

/// The shape of a run, checked.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Shape {
    pub(crate) calls: usize,
    pub(crate) participants: usize,
    /// Participants of each call that send (the first ones).
    pub(crate) sending: usize,
    pub(crate) senders: usize,
    pub(crate) size: usize,
    /// Messages a second per sender; 0: open loop (as fast as `writable()`
    /// allows).
    pub(crate) rate: f64,
    /// Percent of senders that are Lossy, and that are High.
    pub(crate) lossy_percent: u32,
    pub(crate) high_percent: u32,
    /// High senders are Lossy and the others Durable (`--lossy` ignored).
    pub(crate) high_lossy: bool,
    pub(crate) recipients: Recipients,
    pub(crate) duration: Duration,
    pub(crate) warmup: Duration,
}

/// One sender of the run.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SenderPlan {
    /// Index in the run (written into every payload).
    pub(crate) index: u32,
    pub(crate) call: usize,
    pub(crate) participant: usize,
    pub(crate) channel: u16,
    pub(crate) reliability: DataChannelReliability,
    pub(crate) priority: DataChannelPriority,
    /// Participant indexes in the call; empty: broadcast.
    pub(crate) to: Vec<usize>,
    /// How many receive each message.
    pub(crate) fan_out: u64,
}

impl Shape {
    /// Checks the numbers against each other.
    pub(crate) fn check(&self, max_message_size: usize) -> Result<(), String> {
        if self.calls == 0 {
            return Err("--calls must be at least 1".into());
        }
        if !(2..=MAX_PARTICIPANTS).contains(&self.participants) {
            return Err(format!(
                "--participants must be from 2 to {MAX_PARTICIPANTS}"
            ));
        }
        if self.sending > self.participants {
            return Err("--sending-participants must be at most --participants".into());
        }
        if self.senders > 64 {
            return Err("--senders must be at most 64 per participant".into());
        }
        if self.size < HEADER || self.size > max_message_size {
            return Err(format!(
                "--size must be from {HEADER} (the timestamp header) to {max_message_size} bytes"
            ));
        }
        if !(self.rate >= 0.0 && self.rate <= 10_000_000.0) {
            return Err("--rate must be from 0 (open loop) to 10000000 a second".into());
        }
        if self.lossy_percent > 100 || self.high_percent > 100 {
            return Err("--lossy and --high are percentages (0 to 100)".into());
        }
        if let Recipients::Next(n) = self.recipients
            && n >= self.participants
        {
            return Err(format!(
                "--recipients {n} needs at least {} participants per call",
                n + 1
            ));
        }
        let d = self.duration.as_secs_f64();
        if !(0.1..=3600.0).contains(&d) {
            return Err("--duration must be from 0.1 to 3600 seconds".into());
        }
        if self.warmup > Duration::from_secs(600) {
            return Err("--warmup must be at most 600 seconds".into());
        }
        Ok(())
    }

    /// Every sender of the run, with its class and recipients. Classes are
    /// spread evenly: of every 100 senders, `lossy_percent` are Lossy and
    /// `high_percent` are High, independently.
    pub(crate) fn senders(&self) -> Vec<SenderPlan> {
        let mut out = Vec::new();
        let mut index = 0u32;
        for call in 0..self.calls {
            for participant in 0..self.sending {
                for s in 0..self.senders {
                    let k = u64::from(index);
                    // A different stride, so the two mixes are independent.
                    let priority = if spread(k.wrapping_mul(7) + 3, self.high_percent) {
                        DataChannelPriority::High
                    } else {
                        DataChannelPriority::Normal
                    };
                    let lossy = if self.high_lossy {
                        priority == DataChannelPriority::High
                    } else {
                        spread(k, self.lossy_percent)
                    };
                    let reliability = if lossy {
                        DataChannelReliability::Lossy
                    } else {
                        DataChannelReliability::Durable
                    };
                    let (to, fan_out) = match self.recipients {
                        Recipients::Broadcast => (Vec::new(), self.participants as u64 - 1),
                        Recipients::Next(n) => (
                            (1..=n)
                                .map(|d| (participant + d) % self.participants)
                                .collect(),
                            n as u64,
                        ),
                    };
                    out.push(SenderPlan {
                        index,
                        call,
                        participant,
                        channel: 1000 + s as u16,
                        reliability,
                        priority,
                        to,
                        fan_out,
                    });
                    index += 1;
                }
            }
        }
        out
    }
}

/// Whether item `k` is among the `percent` out of every 100 (spread evenly).
fn spread(k: u64, percent: u32) -> bool {
    let p = u64::from(percent);
    (k % 100 + 1) * p / 100 > (k % 100) * p / 100
}

/// The payload of one message: header, then zeros up to `size`.
pub(crate) fn encode(size: usize, sent_us: u64, sender: u32) -> Vec<u8> {
    let mut m = vec![0; size.max(HEADER)];
    m[..8].copy_from_slice(&sent_us.to_be_bytes());
    m[8..12].copy_from_slice(&sender.to_be_bytes());
    m
}

/// The send time and sender index of a payload (`None`: too short).
pub(crate) fn decode(payload: &[u8]) -> Option<(u64, u32)> {
    let t = u64::from_be_bytes(payload.get(..8)?.try_into().ok()?);
    let s = u32::from_be_bytes(payload.get(8..12)?.try_into().ok()?);
    Some((t, s))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape() -> Shape {
        Shape {
            calls: 1,
            participants: 2,
            sending: 2,
            senders: 1,
            size: 100,
            rate: 0.0,
            lossy_percent: 0,
            high_percent: 0,
            high_lossy: false,
            recipients: Recipients::Broadcast,
            duration: Duration::from_secs(3),
            warmup: Duration::from_secs(1),
        }
    }

    #[test]
    fn payload_header_round_trips() {
        let m = encode(100, 0x0102_0304_0506_0708, 0xdead_beef);
        assert_eq!(m.len(), 100);
        assert_eq!(decode(&m), Some((0x0102_0304_0506_0708, 0xdead_beef)));
        assert!(m[HEADER..].iter().all(|&b| b == 0));
        assert_eq!(encode(3, 1, 2).len(), HEADER);
        assert_eq!(decode(&m[..11]), None);
    }

    #[test]
    fn recipients_parse_and_print() {
        assert_eq!("broadcast".parse(), Ok(Recipients::Broadcast));
        assert_eq!("all".parse(), Ok(Recipients::Broadcast));
        assert_eq!("63".parse(), Ok(Recipients::Next(63)));
        assert!("0".parse::<Recipients>().is_err());
        assert!("65".parse::<Recipients>().is_err());
        assert!("many".parse::<Recipients>().is_err());
        assert_eq!(Recipients::Next(5).to_string(), "5");
        assert_eq!(Recipients::Broadcast.to_string(), "broadcast");
    }

    #[test]
    fn check_refuses_what_cannot_run() {
        assert_eq!(shape().check(32 * 1024), Ok(()));
        let bad = [
            Shape {
                calls: 0,
                ..shape()
            },
            Shape {
                participants: 1,
                ..shape()
            },
            Shape {
                sending: 3,
                ..shape()
            },
            Shape {
                size: 11,
                ..shape()
            },
            Shape {
                size: 40_000,
                ..shape()
            },
            Shape {
                rate: -1.0,
                ..shape()
            },
            Shape {
                rate: f64::NAN,
                ..shape()
            },
            Shape {
                lossy_percent: 101,
                ..shape()
            },
            Shape {
                recipients: Recipients::Next(2),
                ..shape()
            },
            Shape {
                duration: Duration::ZERO,
                ..shape()
            },
        ];
        for s in bad {
            assert!(s.check(32 * 1024).is_err(), "{s:?}");
        }
    }

    #[test]
    fn senders_get_their_recipients_and_mix() {
        let s = Shape {
            participants: 4,
            sending: 4,
            senders: 25,
            lossy_percent: 20,
            high_percent: 50,
            high_lossy: false,
            recipients: Recipients::Next(2),
            ..shape()
        };
        let plan = s.senders();
        assert_eq!(plan.len(), 100);
        let lossy = plan
            .iter()
            .filter(|p| p.reliability == DataChannelReliability::Lossy)
            .count();
        let high = plan
            .iter()
            .filter(|p| p.priority == DataChannelPriority::High)
            .count();
        assert_eq!((lossy, high), (20, 50));
        let last = &plan[99];
        assert_eq!(
            (last.participant, last.to.clone(), last.fan_out),
            (3, vec![0, 1], 2)
        );
        assert_eq!(plan[0].channel, 1000);
        assert_eq!(plan[24].channel, 1024);
        assert!(plan.iter().enumerate().all(|(i, p)| p.index as usize == i));

        let fan = Shape {
            participants: 64,
            sending: 1,
            ..shape()
        }
        .senders();
        assert_eq!((fan.len(), fan[0].fan_out, fan[0].to.len()), (1, 63, 0));
    }

    #[test]
    fn class_indexes_follow_the_table() {
        for (i, (r, p)) in CLASSES.iter().enumerate() {
            assert_eq!(class_index(*r, *p), i);
        }
    }
}
