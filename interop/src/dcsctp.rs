//! The dcsctp peer: the crate as published on crates.io (0.1.16, not the
//! engine's vendored and patched copy), driven by a small sans-IO loop over
//! a std UDP socket on its own thread.

use std::net::{SocketAddr, UdpSocket};
use std::sync::mpsc::{self, TryRecvError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use dcsctp_peer::api::{
    DcSctpSocket, Message, Options, PpId, SendOptions, SocketEvent, SocketTime, StreamId,
};

use crate::peer::{Cmd, Ev, Peer};

/// Starts a dcsctp client association to `remote` (the tap).
pub fn spawn(remote: SocketAddr) -> Peer {
    let (cmd_tx, cmd_rx) = mpsc::channel::<Cmd>();
    let (ev_tx, ev_rx) = mpsc::channel::<Ev>();
    let local: SocketAddr = if remote.is_ipv4() {
        "127.0.0.1:0".parse().expect("an address")
    } else {
        "[::1]:0".parse().expect("an address")
    };
    let sock = UdpSocket::bind(local).expect("bind");
    sock.connect(remote).expect("connect");
    std::thread::spawn(move || {
        let options = Options {
            max_message_size: 1024 * 1024,
            max_send_buffer_size: 4 * 1024 * 1024,
            max_receiver_window_buffer_size: 1024 * 1024,
            heartbeat_interval: Duration::from_secs(5),
            ..Options::default()
        };
        let mut s: Box<dyn DcSctpSocket> = dcsctp_peer::new_socket("dcsctp-peer", &options);
        let start = Instant::now();
        let now = || SocketTime::zero() + start.elapsed();
        s.connect();
        let mut buf = vec![0u8; 65536];
        let mut quit = false;
        while !quit {
            loop {
                match cmd_rx.try_recv() {
                    Ok(Cmd::Connect) => {}
                    Ok(Cmd::Send {
                        stream,
                        ppid,
                        unordered,
                        data,
                    }) => {
                        let opts = SendOptions {
                            unordered,
                            ..SendOptions::default()
                        };
                        let m = Message::new(StreamId(stream), PpId(ppid), data.to_vec());
                        if let Err(e) = s.send(m, &opts) {
                            let _ = ev_tx.send(Ev::Error(format!("send: {e:?}")));
                        }
                    }
                    Ok(Cmd::Reset(stream)) => {
                        if let Err(e) = s.reset_streams(&[StreamId(stream)]) {
                            let _ = ev_tx.send(Ev::Error(format!("reset: {e:?}")));
                        }
                    }
                    Ok(Cmd::Shutdown) => s.shutdown(),
                    Ok(Cmd::Abort) => s.close(),
                    Ok(Cmd::Quit) | Err(TryRecvError::Disconnected) => {
                        quit = true;
                        break;
                    }
                    Err(TryRecvError::Empty) => break,
                }
            }
            s.advance_time(now());
            while let Some(e) = s.poll_event() {
                let ev = match e {
                    SocketEvent::SendPacket(p) => {
                        let _ = sock.send(&p);
                        continue;
                    }
                    SocketEvent::OnConnected() => Ev::Connected,
                    SocketEvent::OnClosed() => Ev::Closed,
                    SocketEvent::OnAborted(kind, text) => Ev::Aborted(format!("{kind:?}: {text}")),
                    SocketEvent::OnStreamsResetPerformed(v) => {
                        Ev::Info(format!("outgoing reset performed {v:?}"))
                    }
                    SocketEvent::OnIncomingStreamReset(v) => {
                        Ev::Info(format!("incoming reset {v:?}"))
                    }
                    SocketEvent::OnStreamsResetFailed(v) => Ev::Info(format!("reset failed {v:?}")),
                    SocketEvent::OnError(kind, text) => Ev::Info(format!("error {kind:?}: {text}")),
                    _ => continue,
                };
                let _ = ev_tx.send(ev);
            }
            while let Some(m) = s.get_next_message() {
                let _ = ev_tx.send(Ev::Msg {
                    stream: m.stream_id.0,
                    ppid: m.ppid.0,
                    data: Bytes::from(m.payload),
                });
            }
            if quit {
                break;
            }
            // Wait for a packet until the next timer (at most 20 ms, so
            // commands are picked up promptly).
            let (until, at) = (s.poll_timeout(), now());
            let wait = if until <= at {
                Duration::from_millis(1)
            } else if until == SocketTime::infinite_future() {
                Duration::from_millis(20)
            } else {
                (until - at).clamp(Duration::from_millis(1), Duration::from_millis(20))
            };
            let _ = sock.set_read_timeout(Some(wait));
            if let Ok(n) = sock.recv(&mut buf) {
                s.handle_input(&buf[..n]);
                // Take what else is waiting without blocking.
                let _ = sock.set_nonblocking(true);
                while let Ok(n) = sock.recv(&mut buf) {
                    s.handle_input(&buf[..n]);
                }
                let _ = sock.set_nonblocking(false);
            }
        }
    });
    Peer::new("dcsctp", cmd_tx, ev_rx)
}
