//! A fast hasher for maps keyed by ids this engine assigns (association
//! ids, member numbers, session and call keys, flow keys), some with a
//! peer's channel id beside them: std's SipHash resists keys an attacker
//! picks to collide, and was
//! 10–12 % of a p2p 100 B profile (perf/README.md), a few lookups per
//! message. Maps keyed by what the network chooses (addresses, call ids,
//! ICE credentials) keep std's `RandomState`.
//!
//! The hash is rustc's FxHash (the `rustc-hash` crate): add the word,
//! multiply by an odd constant, rotate at the end. It does not resist
//! chosen keys: where a peer picks part of a key (a channel id beside a
//! member number, in the rooms' routes, the egress flows and a client's
//! receivers), 65,536 channel ids of one member fill a 2,048-bucket table
//! up to 34 to a bucket, whatever the member number (a review measured it
//! with rustc-hash 2.1.3), and a lookup with the worst 1,024 of them took
//! 16 ns against 2 ns for sequential ids and 13 ns for SipHash. That is
//! accepted there: the counts are capped (`max_senders_per_member`,
//! 1,024), so a peer can cancel the gain, not flood a chain. A key a peer
//! picks whole (a member's traffic-rule state) keeps std's `RandomState`.
#![forbid(unsafe_code)]

use std::collections::HashMap;

/// A `HashMap` for ids this engine assigns (see the module).
pub(crate) type IdMap<K, V> = HashMap<K, V, rustc_hash::FxBuildHasher>;

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::hash::BuildHasher;

    #[test]
    fn dense_ids_spread_over_buckets() {
        // Consecutive ids land in distinct low bits (hashbrown's bucket
        // index) often enough.
        let hash = |i: u32| rustc_hash::FxBuildHasher.hash_one(i);
        let low: HashSet<u64> = (0..1024).map(|i| hash(i) & 1023).collect();
        assert!(low.len() > 600, "{} of 1024 buckets", low.len());
    }
}
