//! The SCTP conformance and interop matrix: a real dcengine server over
//! UDP on loopback against SCTP stacks nobody here wrote (usrsctp,
//! webrtc-sctp, the published dcsctp). See `README.md` and
//! `../docs/interop.md`.

pub mod dcsctp;
pub mod pc;
pub mod pc_str0m;
pub mod pc_webrtc;
pub mod peer;
pub mod scenarios;
pub mod server;
pub mod tap;
pub mod usrsctp;
pub mod webrtc;

/// Runs `f` on its own thread; the result as `Err(panic message)` if it
/// panicked.
pub fn isolate(f: impl FnOnce() + Send + 'static) -> std::thread::JoinHandle<Result<(), String>> {
    std::thread::spawn(move || {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|e| {
            e.downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "panicked".into())
        })
    })
}
