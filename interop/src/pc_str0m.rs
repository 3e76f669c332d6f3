//! A full str0m peer connection (sans-IO; crate `str0m` 0.24 with its
//! `rust-crypto` backend: DTLS by dimpl, the DTLS crate the engine also
//! uses, with RustCrypto primitives), driven by a loop over a std UDP
//! socket bound to 127.0.0.1 on its own thread: ICE (full agent,
//! controlling, one host candidate), DTLS client (the answer says
//! `setup:passive`), SCTP, and two data channels negotiated out of band,
//! ids 0 (ordered, reliable) and 1 (unordered, maxRetransmits 0). str0m
//! does no mDNS and gathers nothing: its only candidate is the one given.
//!
//! Stream numbers in [`Cmd::Send`] and [`Ev::Msg`] are the channel ids.
//! [`Cmd::Shutdown`] is `Rtc::close` (SCTP SHUTDOWN, then DTLS
//! close_notify); [`Ev::Closed`] is reported when channel 0 closes,
//! [`Ev::Ended`] when the `Rtc` is no longer alive.

use std::collections::HashMap;
use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::sync::mpsc::{Receiver, Sender, TryRecvError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use str0m::change::SdpAnswer;
use str0m::channel::{ChannelConfig, ChannelId, Reliability};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc};

use crate::pc::Signal;
use crate::peer::{Cmd, Ev, Peer};

/// Starts a str0m peer connection; its offer goes out through `signal`
/// and its answer comes back the same way.
pub fn spawn(signal: Signal) -> Peer {
    let (cmd_tx, cmd_rx) = std::sync::mpsc::channel::<Cmd>();
    let (ev_tx, ev_rx) = std::sync::mpsc::channel::<Ev>();
    std::thread::spawn(move || {
        if let Err(e) = run(signal, &cmd_rx, &ev_tx) {
            let _ = ev_tx.send(Ev::Error(e));
        }
    });
    Peer::new("str0m", cmd_tx, ev_rx)
}

fn run(signal: Signal, cmds: &Receiver<Cmd>, ev: &Sender<Ev>) -> Result<(), String> {
    let socket = UdpSocket::bind("127.0.0.1:0").map_err(|e| format!("bind: {e}"))?;
    let local: SocketAddr = socket.local_addr().map_err(|e| e.to_string())?;
    // The default send buffer (128 KiB) refuses a larger message outright:
    // room for one at the engine's limit.
    let mut rtc = Rtc::builder()
        .set_sctp_max_buffered_amount(1 << 20)
        .build(Instant::now());
    let candidate = Candidate::host(local, "udp").map_err(|e| format!("candidate: {e}"))?;
    rtc.add_local_candidate(candidate)
        .ok_or("the host candidate was refused")?;
    let mut change = rtc.sdp_api();
    let mut ids: Vec<ChannelId> = Vec::new();
    for (id, ordered, reliability) in [
        (0u16, true, Reliability::Reliable),
        (1u16, false, Reliability::MaxRetransmits { retransmits: 0 }),
    ] {
        ids.push(change.add_channel_with_config(ChannelConfig {
            label: format!("dcengine-{id}"),
            ordered,
            reliability,
            negotiated: Some(id),
            protocol: String::new(),
        }));
    }
    let (offer, pending) = change.apply().ok_or("no offer")?;
    let Some(answer) = signal.exchange(offer.to_sdp_string()) else {
        return Err("no answer".into());
    };
    let answer = SdpAnswer::from_sdp_string(&answer).map_err(|e| format!("answer: {e}"))?;
    rtc.sdp_api()
        .accept_answer(pending, answer)
        .map_err(|e| format!("accept_answer: {e}"))?;
    let stream_of: HashMap<ChannelId, u16> = ids
        .iter()
        .enumerate()
        .map(|(i, c)| (*c, i as u16))
        .collect();
    let mut opened = 0;
    let mut buf = vec![0u8; 2048];
    let mut closing = false;
    loop {
        // Commands first: they may produce output.
        loop {
            match cmds.try_recv() {
                Ok(Cmd::Send { stream, data, .. }) => {
                    let Some(cid) = ids.get(usize::from(stream)).copied() else {
                        let _ = ev.send(Ev::Error(format!("no channel {stream}")));
                        continue;
                    };
                    match rtc.channel(cid) {
                        Some(mut ch) => match ch.write(true, &data) {
                            Ok(true) => {}
                            Ok(false) => {
                                let _ = ev.send(Ev::Error(format!(
                                    "send on {stream}: {} bytes not taken (buffer full)",
                                    data.len()
                                )));
                            }
                            Err(e) => {
                                let _ = ev.send(Ev::Error(format!("send on {stream}: {e}")));
                            }
                        },
                        None => {
                            let _ = ev.send(Ev::Error(format!("channel {stream} is not open")));
                        }
                    }
                }
                Ok(Cmd::Shutdown) => {
                    closing = true;
                    if let Err(e) = rtc.close() {
                        let _ = ev.send(Ev::Error(format!("close: {e}")));
                    }
                }
                Ok(Cmd::Quit) | Err(TryRecvError::Disconnected) => {
                    let _ = rtc.close();
                    flush(&mut rtc, &socket);
                    return Ok(());
                }
                Ok(other) => {
                    let _ = ev.send(Ev::Error(format!("{other:?}: not supported")));
                }
                Err(TryRecvError::Empty) => break,
            }
        }
        if !rtc.is_alive() {
            let _ = ev.send(Ev::Info(format!("not alive (closing: {closing})")));
            let _ = ev.send(Ev::Ended);
            // Wait for the test to let go.
            while !matches!(cmds.recv(), Ok(Cmd::Quit) | Err(_)) {}
            return Ok(());
        }
        let timeout = match rtc.poll_output().map_err(|e| format!("poll_output: {e}"))? {
            Output::Timeout(t) => t,
            Output::Transmit(t) => {
                let _ = socket.send_to(&t.contents, t.destination);
                continue;
            }
            Output::Event(e) => {
                match e {
                    Event::ChannelOpen(cid, label) => {
                        let _ = ev.send(Ev::Info(format!("channel {label} open")));
                        if stream_of.contains_key(&cid) {
                            opened += 1;
                            if opened == 2 {
                                let _ = ev.send(Ev::Connected);
                            }
                        }
                    }
                    Event::ChannelData(d) => {
                        let stream = stream_of.get(&d.id).copied().unwrap_or(u16::MAX);
                        let _ = ev.send(Ev::Msg {
                            stream,
                            ppid: if d.binary { 53 } else { 51 },
                            data: Bytes::from(d.data),
                        });
                    }
                    Event::ChannelClose(cid) => {
                        let stream = stream_of.get(&cid).copied().unwrap_or(u16::MAX);
                        let _ = ev.send(Ev::Info(format!("channel {stream} closed")));
                        if stream == 0 {
                            let _ = ev.send(Ev::Closed);
                        }
                    }
                    Event::IceConnectionStateChange(s) => {
                        let _ = ev.send(Ev::Info(format!("ICE {s:?}")));
                        if s == IceConnectionState::Disconnected && !closing {
                            let _ = ev.send(Ev::Aborted("ICE disconnected".into()));
                        }
                    }
                    Event::Connected => {
                        let _ = ev.send(Ev::Info("DTLS connected".into()));
                    }
                    _ => {}
                }
                continue;
            }
        };
        let now = Instant::now();
        let wait = timeout
            .saturating_duration_since(now)
            .min(Duration::from_millis(5));
        if wait.is_zero() {
            rtc.handle_input(Input::Timeout(now))
                .map_err(|e| format!("timeout: {e}"))?;
            continue;
        }
        socket
            .set_read_timeout(Some(wait))
            .map_err(|e| e.to_string())?;
        match socket.recv_from(&mut buf) {
            Ok((n, source)) => {
                let Ok(contents) = buf[..n].try_into() else {
                    continue;
                };
                let input = Input::Receive(
                    Instant::now(),
                    Receive {
                        proto: Protocol::Udp,
                        source,
                        destination: local,
                        contents,
                    },
                );
                if let Err(e) = rtc.handle_input(input) {
                    let _ = ev.send(Ev::Info(format!("input: {e}")));
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                rtc.handle_input(Input::Timeout(Instant::now()))
                    .map_err(|e| format!("timeout: {e}"))?;
            }
            Err(e) => return Err(format!("recv: {e}")),
        }
    }
}

/// Sends what is pending (a close's last packets), briefly.
fn flush(rtc: &mut Rtc, socket: &UdpSocket) {
    for _ in 0..100 {
        match rtc.poll_output() {
            Ok(Output::Transmit(t)) => {
                let _ = socket.send_to(&t.contents, t.destination);
            }
            Ok(Output::Event(_)) => {}
            _ => return,
        }
    }
}
