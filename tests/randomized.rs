//! A randomized workout: 50 participants in 3 calls, random senders,
//! participant lists, list changes, closes and leaves, over a lossy network.
//! Every delivered message must have been addressed to that receiver, by
//! that sender, in that call; Durable messages arrive exactly once, in order.

#[path = "common/mod.rs"]
mod common;

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use common::World;
use dcengine::sim::LinkConfig;
use dcengine::{
    Call, DataChannelPriority, DataChannelReceiver, DataChannelReliability, DataChannelSender,
    DataChannelSenderOptions, ParticipantId,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const CALLS: usize = 3;
const PARTICIPANTS: usize = 50;
const OPS: usize = 2500;

struct Person {
    call: usize,
    id: String,
    handle: Call,
    leaves: bool,
    left: bool,
    senders: Vec<(u32, DataChannelSender)>,
    receivers: Vec<DataChannelReceiver>,
}

/// What the test knows about a message it sent.
struct Sent {
    call: usize,
    sender: String,
    durable: bool,
    /// Which sender object (session) sent it.
    key: u32,
    /// `None`: everyone else in the call.
    to: Option<BTreeSet<String>>,
}

fn payload(msg: u32, sender_key: u32) -> Vec<u8> {
    let mut v = msg.to_be_bytes().to_vec();
    v.extend_from_slice(&sender_key.to_be_bytes());
    v.resize(8 + (msg as usize % 300), 0xab);
    v
}

#[test]
fn fifty_participants_three_calls_random_operations() {
    for seed in [42, 7, 2026] {
        workout(seed);
    }
}

fn workout(seed: u64) {
    let link = LinkConfig {
        latency: Duration::from_millis(10),
        jitter: Duration::from_millis(4),
        loss: 0.05,
        duplicate: 0.01,
        reorder: 0.02,
        ..LinkConfig::default()
    };
    let mut w = World::new(seed, link);
    let mut rng = StdRng::seed_from_u64(seed);
    let mut people: Vec<Person> = (0..PARTICIPANTS)
        .map(|i| {
            let call = i % CALLS;
            let id = format!("p{i}");
            let (_host, handle) = w.join(&format!("call-{call}"), &id);
            Person {
                call,
                id,
                handle,
                leaves: i % 10 == 3,
                left: false,
                senders: Vec::new(),
                receivers: Vec::new(),
            }
        })
        .collect();
    let sizes: Vec<usize> = (0..CALLS)
        .map(|c| people.iter().filter(|p| p.call == c).count())
        .collect();
    w.settle_until(|_| {
        people
            .iter()
            .all(|p| p.handle.participants().len() == sizes[p.call] - 1)
    });

    let mut sent: HashMap<u32, Sent> = HashMap::new();
    let mut next_msg = 0u32;
    let mut next_sender_key = 0u32;
    for _ in 0..OPS {
        let i = rng.random_range(0..PARTICIPANTS);
        if people[i].left {
            continue;
        }
        let call = people[i].call;
        let call_ids: Vec<String> = people
            .iter()
            .filter(|p| p.call == call)
            .map(|p| p.id.clone())
            .collect();
        let random_list = |rng: &mut StdRng| -> Vec<ParticipantId> {
            if rng.random_bool(0.4) {
                return Vec::new();
            }
            let n = rng.random_range(1..=4);
            (0..n)
                .map(|_| {
                    ParticipantId::from(call_ids[rng.random_range(0..call_ids.len())].as_str())
                })
                .collect()
        };
        match rng.random_range(0..100) {
            0..=7 => {
                let options = DataChannelSenderOptions {
                    channel_id: Some(rng.random_range(1..=4)),
                    reliability: if rng.random_bool(0.5) {
                        DataChannelReliability::Durable
                    } else {
                        DataChannelReliability::Lossy
                    },
                    priority: if rng.random_bool(0.5) {
                        DataChannelPriority::High
                    } else {
                        DataChannelPriority::Normal
                    },
                    participants: random_list(&mut rng),
                    ..Default::default()
                };
                let s = people[i]
                    .handle
                    .data_channel()
                    .create_sender(options)
                    .expect("create");
                // A new sender on a channel in use replaces the old one.
                people[i].senders.retain(|(_, old)| !old.is_closed());
                people[i].senders.push((next_sender_key, s));
                next_sender_key += 1;
            }
            8..=11 => {
                if let Some((_, s)) = people[i].senders.first() {
                    s.set_participants(random_list(&mut rng)).expect("set");
                }
            }
            12 => {
                if !people[i].senders.is_empty() {
                    let (_, s) = people[i].senders.remove(0);
                    s.close();
                }
            }
            13 => {
                if people[i].leaves {
                    people[i].handle.leave();
                    people[i].left = true;
                }
            }
            _ => {
                let n = people[i].senders.len();
                if n > 0 {
                    let (key, s) = &people[i].senders[rng.random_range(0..n)];
                    let list = s.participants();
                    let msg = next_msg;
                    next_msg += 1;
                    if s.send(payload(msg, *key)).is_ok() {
                        sent.insert(
                            msg,
                            Sent {
                                call,
                                sender: people[i].id.clone(),
                                durable: s.reliability() == DataChannelReliability::Durable,
                                key: *key,
                                to: (!list.is_empty())
                                    .then(|| list.iter().map(|p| p.as_str().to_owned()).collect()),
                            },
                        );
                    }
                }
            }
        }
        w.run_for(Duration::from_millis(rng.random_range(0..20)));
        for p in &mut people {
            let dc = p.handle.data_channel();
            p.receivers
                .extend(std::iter::from_fn(|| dc.try_next_receiver()));
        }
    }
    w.run_for(Duration::from_secs(20));

    // Check every delivery.
    // (receiver, sender key) → the message numbers received, in order.
    let mut streams: HashMap<(String, u32), Vec<u32>> = HashMap::new();
    let mut delivered = 0usize;
    for p in &mut people {
        let dc = p.handle.data_channel();
        p.receivers
            .extend(std::iter::from_fn(|| dc.try_next_receiver()));
        for r in &p.receivers {
            while let Some(m) = r.read_message() {
                delivered += 1;
                let msg = u32::from_be_bytes(m.data[..4].try_into().expect("4 bytes"));
                let key = u32::from_be_bytes(m.data[4..8].try_into().expect("4 bytes"));
                let s = sent.get(&msg).expect("a message the test sent");
                assert_eq!(s.call, p.call, "a message crossed calls");
                assert_eq!(r.sender_id().as_str(), s.sender, "wrong sender identity");
                assert_ne!(s.sender, p.id, "echoed to its sender");
                if let Some(to) = &s.to {
                    assert!(
                        to.contains(&p.id),
                        "{} got message {msg} addressed to {to:?}",
                        p.id
                    );
                }
                assert_eq!(m.data, payload(msg, key), "payload intact");
                streams.entry((p.id.clone(), key)).or_default().push(msg);
            }
        }
    }

    // Per (receiver, sender session): Durable in order, exactly once; Lossy
    // never duplicated.
    for ((receiver, _), got) in &streams {
        let durable = sent[&got[0]].durable;
        if durable {
            assert!(
                got.windows(2).all(|w| w[0] < w[1]),
                "Durable out of order or duplicated at {receiver}"
            );
        } else {
            let mut unique = got.clone();
            unique.sort();
            unique.dedup();
            assert_eq!(unique.len(), got.len(), "Lossy duplicated at {receiver}");
        }
    }
    // Durable is complete: every Durable message reached every participant
    // it was addressed to that stayed in the call throughout.
    let mut durable_checked = 0;
    for (msg, s) in sent.iter().filter(|(_, s)| s.durable) {
        for r in people.iter().filter(|p| !p.leaves) {
            let addressed = r.call == s.call
                && r.id != s.sender
                && s.to.as_ref().is_none_or(|to| to.contains(&r.id));
            if addressed {
                let got = streams
                    .get(&(r.id.clone(), s.key))
                    .is_some_and(|g| g.contains(msg));
                assert!(
                    got,
                    "Durable message {msg} from {} never reached {}",
                    s.sender, r.id
                );
                durable_checked += 1;
            }
        }
    }
    let lossy_sent = sent.values().filter(|s| !s.durable).count();
    println!(
        "seed {seed}: sent {} messages ({lossy_sent} Lossy), {delivered} deliveries, {durable_checked} Durable deliveries checked complete",
        sent.len()
    );
    assert!(
        delivered > 2000,
        "the workout delivered {delivered} messages"
    );
    assert!(
        durable_checked > 500,
        "checked {durable_checked} Durable deliveries"
    );
}
