//! A fast hasher for maps keyed by ids this engine assigns (association
//! ids, member numbers, session and call keys, flow keys): std's SipHash
//! resists keys an attacker picks to collide, which these are not, and was
//! 10–12 % of a p2p 100 B profile (perf/README.md), a few lookups per
//! message. Maps keyed by what the network chooses (addresses, call ids,
//! ICE credentials) keep std's `RandomState`.
//!
//! The hash is rustc's FxHash (the `rustc-hash` crate): add the word,
//! multiply by an odd constant, rotate at the end so the high bits the
//! multiply mixes best reach the low bits hashbrown picks buckets with.
//! Where a peer picks part of a key (a channel id beside a member number),
//! distinct values of that part still land in distinct buckets: an odd
//! multiply is a bijection on the low bits.
#![forbid(unsafe_code)]

use std::collections::HashMap;

/// A `HashMap` for ids this engine assigns (see the module).
pub(crate) type IdMap<K, V> = HashMap<K, V, rustc_hash::FxBuildHasher>;

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::hash::BuildHasher;

    use super::*;

    #[test]
    fn dense_ids_spread_over_buckets() {
        // Consecutive ids land in distinct low bits (hashbrown's bucket
        // index) often enough.
        let hash = |i: u32| rustc_hash::FxBuildHasher.hash_one(i);
        let low: HashSet<u64> = (0..1024).map(|i| hash(i) & 1023).collect();
        assert!(low.len() > 600, "{} of 1024 buckets", low.len());
        let mut m: IdMap<(u32, u16), u32> = IdMap::default();
        for i in 0..10_000u32 {
            m.insert((i / 7, (i % 7) as u16), i);
        }
        assert_eq!(m.len(), 10_000);
        assert_eq!(m[&(3, 2)], 23);
    }
}
