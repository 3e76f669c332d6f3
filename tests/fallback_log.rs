//! The io_uring fallback says which backend runs and why in exactly one
//! log line. Alone in its own test binary: `tracing` caches per call site
//! whether anyone listens, which races with other tests' threads.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use dcengine::{Backend, Engine};

/// Counts the events at INFO or more severe that reach it.
struct CountEvents(Arc<AtomicUsize>);

impl tracing::Subscriber for CountEvents {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        if *event.metadata().level() <= tracing::Level::INFO {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

#[test]
fn the_fallback_logs_exactly_one_line() {
    let logged = Arc::new(AtomicUsize::new(0));
    let engine = tracing::subscriber::with_default(CountEvents(logged.clone()), || {
        Engine::builder()
            .disable_io_uring()
            .start()
            .expect("engine starts")
    });
    assert_eq!(engine.backend(), Backend::Portable);
    assert_eq!(
        logged.load(Ordering::Relaxed),
        1,
        "one line says which backend runs and why"
    );
    // An explicit choice is not a fallback: nothing to say.
    let portable = tracing::subscriber::with_default(CountEvents(logged.clone()), || {
        Engine::builder()
            .backend(Backend::Portable)
            .start()
            .expect("engine starts")
    });
    assert_eq!(portable.backend(), Backend::Portable);
    assert_eq!(logged.load(Ordering::Relaxed), 1);
}
