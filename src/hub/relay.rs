//! Work that one worker's hub hands another's in a multi-worker engine.
//!
//! The kernel spreads associations over the workers' sockets by 4-tuple, so
//! the members of one call live on different workers. Each call is homed on
//! one worker ([`home_worker`]); the home hub holds the room and decides
//! fan-out, and the hubs owning members' associations relay their frames to
//! it and send what it addresses to them. See `docs/architecture.md`.

use std::time::Instant;

use super::Hub;

/// The worker that homes `call_id` in an engine of `workers` workers: a
/// fixed hash (FNV-1a), so every worker agrees without a lookup.
pub fn home_worker(call_id: &str, workers: usize) -> usize {
    if workers <= 1 {
        return 0;
    }
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in call_id.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (h % workers as u64) as usize
}

/// One unit of work for another worker's hub (opaque to the driver).
#[derive(Debug)]
pub struct Relay {
    pub(crate) msg: RelayMsg,
}

#[derive(Debug)]
pub(crate) enum RelayMsg {}

/// Batches waiting for each worker.
#[derive(Debug)]
pub(crate) struct Outbox {
    batches: Vec<Vec<Relay>>,
    /// Workers with a non-empty batch, in the order they got their first.
    ready: Vec<usize>,
}

impl Outbox {
    pub(crate) fn new(workers: usize) -> Self {
        Self {
            batches: (0..workers).map(|_| Vec::new()).collect(),
            ready: Vec::new(),
        }
    }

    #[allow(dead_code)]
    pub(crate) fn push(&mut self, worker: usize, relay: Relay) {
        let Some(batch) = self.batches.get_mut(worker) else {
            return;
        };
        if batch.is_empty() {
            self.ready.push(worker);
        }
        batch.push(relay);
    }

    pub(crate) fn poll(&mut self) -> Option<(usize, Vec<Relay>)> {
        let worker = self.ready.pop()?;
        Some((worker, std::mem::take(&mut self.batches[worker])))
    }
}

impl Hub {
    pub(super) fn on_relay(&mut self, _now: Instant, relay: Relay) {
        match relay.msg {}
    }
}
