//! The idle column: 40 s without data, per peer. All of them start
//! together on the first test (each on its own thread), whatever the test
//! runner's thread count, so the column costs 40 s of wall time, not 40 s
//! a peer; each test then waits for its own peer's result.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::Duration;

use dcengine_interop::isolate;
use dcengine_interop::scenarios::{self, Kind};
use dcengine_interop::usrsctp::Bind;

const IDLE: Duration = Duration::from_secs(40);

const ROWS: &[(&str, Kind)] = &[
    ("usrsctp", Kind::Usrsctp(Bind::Loopback)),
    ("usrsctp_any_v4", Kind::Usrsctp(Bind::AnyV4)),
    ("usrsctp_any_v6", Kind::Usrsctp(Bind::AnyV6)),
    ("webrtc_sctp", Kind::Webrtc),
    ("dcsctp", Kind::Dcsctp),
];

type Running = Mutex<HashMap<&'static str, JoinHandle<Result<(), String>>>>;

fn result(row: &str) {
    static RUNNING: OnceLock<Running> = OnceLock::new();
    let running = RUNNING.get_or_init(|| {
        Mutex::new(
            ROWS.iter()
                .map(|&(name, kind)| (name, isolate(move || scenarios::idle(kind, IDLE))))
                .collect(),
        )
    });
    let handle = running
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .remove(row)
        .expect("a row");
    match handle.join() {
        Ok(Ok(())) => {}
        Ok(Err(message)) => panic!("{message}"),
        Err(_) => panic!("the idle cell's thread died"),
    }
}

#[test]
fn usrsctp() {
    result("usrsctp");
}

#[test]
fn usrsctp_any_v4() {
    result("usrsctp_any_v4");
}

#[test]
fn usrsctp_any_v6() {
    result("usrsctp_any_v6");
}

#[test]
fn webrtc_sctp() {
    result("webrtc_sctp");
}

#[test]
fn dcsctp() {
    result("dcsctp");
}
