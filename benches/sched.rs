//! Scheduling costs: a token-bucket take, one scheduler pick among 1,000
//! busy channels (strict priority + deficit round robin, some shaped), the
//! traffic-limit check `send` makes, and a message crossing threads through
//! a sender's lock-free queue (application thread → worker).
//!
//! Run with `cargo bench --bench sched`.

use std::collections::VecDeque;
use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use crossbeam_queue::SegQueue;
use dcengine::internal::TrafficPolicyInternals as _;
use dcengine::sched::{FlowSpec, Head, Pick, Scheduler, TokenBucket, TrafficPolicy};
use dcengine::wire::{Priority, Reliability};

fn token_bucket(c: &mut Criterion) {
    let t0 = Instant::now();
    let mut b = TokenBucket::new(64_000, 1 << 20, t0);
    let mut now = t0;
    let mut g = c.benchmark_group("token_bucket");
    g.throughput(Throughput::Elements(1));
    g.bench_function("try_take", |bench| {
        bench.iter(|| {
            now += Duration::from_micros(1);
            black_box(b.try_take(black_box(100), now))
        })
    });
    let limiter =
        TrafficPolicy::default().limiter(Reliability::Lossy, Priority::Normal, 32 * 1024, 1, t0);
    let mut now = t0;
    g.bench_function("traffic_rules_admit", |bench| {
        bench.iter(|| {
            now += Duration::from_millis(2);
            black_box(limiter.try_admit(black_box(100), true, now))
        })
    });
    g.finish();
}

fn scheduler_pick(c: &mut Criterion) {
    const FLOWS: u32 = 1000;
    let t0 = Instant::now();
    let mut s = Scheduler::new(Duration::from_millis(100));
    let mut queues: Vec<VecDeque<usize>> = Vec::new();
    for k in 0..FLOWS {
        let priority = if k % 10 == 0 {
            Priority::High
        } else {
            Priority::Normal
        };
        // Every fourth flow shaped (generously, so it never parks here).
        let shaping = (k % 4 == 0).then_some((1u64 << 40, 1u64 << 40));
        s.insert(
            k,
            FlowSpec {
                priority,
                lossy: k % 2 == 0,
                shaping,
            },
            t0,
        );
        queues.push(VecDeque::from(vec![100 + (k as usize % 7) * 150; 4]));
        s.wake(k);
    }
    let mut g = c.benchmark_group("scheduler");
    g.throughput(Throughput::Elements(1));
    g.bench_function("pick_1000_channels", |bench| {
        bench.iter(|| {
            let pick = s.next(t0, |k| {
                queues[k as usize]
                    .front()
                    .map(|&len| Head { len, queued_at: t0 })
            });
            // Keep every Normal flow busy: what is sent is queued again.
            // (High flows drain first and then stay idle, so the steady
            // state is a pick among 900 Normal channels after an empty
            // High list.)
            if let Some(Pick::Send(k) | Pick::Drop(k)) = pick {
                let q = &mut queues[k as usize];
                if let Some(len) = q.pop_front()
                    && k % 10 != 0
                {
                    q.push_back(len);
                }
            }
            black_box(pick)
        })
    });
    g.finish();
}

fn cross_thread(c: &mut Criterion) {
    const BATCH: u64 = 10_000;
    let mut g = c.benchmark_group("cross_thread");
    g.throughput(Throughput::Elements(BATCH));
    let payload = Bytes::from_static(&[0u8; 100]);
    g.bench_function("enqueue_dequeue", |bench| {
        bench.iter(|| {
            let q = Arc::new(SegQueue::new());
            let done = Arc::new(AtomicBool::new(false));
            let (q2, done2, p) = (q.clone(), done.clone(), payload.clone());
            let producer = std::thread::spawn(move || {
                for _ in 0..BATCH {
                    q2.push(p.clone());
                }
                done2.store(true, Ordering::Release);
            });
            let mut got = 0;
            while got < BATCH {
                if q.pop().is_some() {
                    got += 1;
                } else if done.load(Ordering::Acquire) && q.is_empty() {
                    break;
                } else {
                    std::hint::spin_loop();
                }
            }
            producer.join().expect("producer");
            black_box(got)
        })
    });
    g.finish();
}

criterion_group!(benches, token_bucket, scheduler_pick, cross_thread);
criterion_main!(benches);
