//! A fast hasher for maps keyed by ids this engine assigns (association
//! ids, member numbers, session and call keys, flow keys): std's SipHash
//! resists keys an attacker picks to collide, which these are not, and was
//! 10–12 % of a p2p 100 B profile (perf/README.md), a few lookups per
//! message. Maps keyed by what the network chooses (addresses, call ids,
//! ICE credentials) keep std's `RandomState`.
//!
//! The hash is rustc's FxHash (rustc-hash 2): add the word, multiply by an
//! odd constant; `finish` rotates, so the high bits the multiply mixes best
//! reach the low bits hashbrown picks buckets with.
#![forbid(unsafe_code)]

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

/// A `HashMap` for ids this engine assigns (see the module).
pub(crate) type IdMap<K, V> = HashMap<K, V, BuildHasherDefault<IdHasher>>;

/// A `HashSet` for ids this engine assigns (see the module).
#[allow(dead_code)]
pub(crate) type IdSet<K> = HashSet<K, BuildHasherDefault<IdHasher>>;

/// FxHash (see the module).
#[derive(Default, Clone, Copy)]
pub(crate) struct IdHasher(u64);

const K: u64 = 0xf135_7aea_2e62_a9c5;

impl IdHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.0 = self.0.wrapping_add(word).wrapping_mul(K);
    }
}

impl Hasher for IdHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.add(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(w) ^ ((rest.len() as u64) << 59));
        }
    }

    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    #[inline]
    fn write_u16(&mut self, i: u16) {
        self.add(u64::from(i));
    }

    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }

    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }

    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.0.rotate_left(26)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dense_ids_spread_over_buckets() {
        // Consecutive ids land in distinct low bits (hashbrown's bucket
        // index) and distinct top 7 bits often enough.
        let hash = |i: u32| {
            let mut h = IdHasher::default();
            h.write_u32(i);
            h.finish()
        };
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
