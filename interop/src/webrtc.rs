//! The webrtc-sctp peer (the webrtc-rs project's SCTP stack) over a tokio
//! UDP socket, on its own thread with a current-thread runtime.
//!
//! webrtc-sctp does not say how an association ended: the driver keeps an
//! unused stream (15) open and reports [`Ev::Ended`] when its read ends
//! (the association unregisters every stream when it closes). A stream the
//! test resets ends its own reader, not the association: that is why the
//! end is watched on a stream nobody touches. It has no API to send an
//! ABORT either.

use std::net::{Shutdown, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::net::UdpSocket;
use tokio::sync::mpsc as tmpsc;
use webrtc_sctp::association::{Association, Config};
use webrtc_sctp::chunk::chunk_payload_data::PayloadProtocolIdentifier;
use webrtc_sctp::stream::{ReliabilityType, Stream};

use crate::peer::{Cmd, Ev, Peer};

/// The stream that only watches for the association's end.
const WATCH_STREAM: u16 = 15;

/// Starts a webrtc-sctp client association to `remote` (the tap).
pub fn spawn(remote: SocketAddr) -> Peer {
    let (cmd_tx, cmd_rx) = std::sync::mpsc::channel::<Cmd>();
    let (ev_tx, ev_rx) = std::sync::mpsc::channel::<Ev>();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime");
        rt.block_on(run(remote, cmd_rx, ev_tx));
        rt.shutdown_timeout(Duration::from_millis(200));
    });
    Peer::new("webrtc-sctp", cmd_tx, ev_rx)
}

fn read_into(s: Arc<Stream>, ev: std::sync::mpsc::Sender<Ev>) {
    tokio::spawn(async move {
        let mut buf = vec![0u8; 1024 * 1024];
        let id = s.stream_identifier();
        loop {
            match s.read_sctp(&mut buf).await {
                Ok((0, _)) => {
                    let _ = ev.send(Ev::Info(format!("stream {id}: read ended")));
                    break;
                }
                Ok((n, ppi)) => {
                    let _ = ev.send(Ev::Msg {
                        stream: id,
                        ppid: ppi as u32,
                        data: Bytes::copy_from_slice(&buf[..n]),
                    });
                }
                Err(e) => {
                    let _ = ev.send(Ev::Info(format!("stream {id}: {e}")));
                    break;
                }
            }
        }
    });
}

async fn run(
    remote: SocketAddr,
    cmds: std::sync::mpsc::Receiver<Cmd>,
    ev: std::sync::mpsc::Sender<Ev>,
) {
    let local: SocketAddr = if remote.is_ipv4() {
        "127.0.0.1:0".parse().expect("an address")
    } else {
        "[::1]:0".parse().expect("an address")
    };
    let sock = UdpSocket::bind(local).await.expect("bind");
    sock.connect(remote).await.expect("connect");
    let config = Config {
        net_conn: Arc::new(sock),
        max_receive_buffer_size: 1024 * 1024,
        max_message_size: 1024 * 1024,
        mtu: 0,
        name: "webrtc-sctp-peer".into(),
        remote_port: 5000,
        local_port: 5000,
    };
    let assoc =
        match tokio::time::timeout(Duration::from_secs(30), Association::client(config)).await {
            Ok(Ok(a)) => Arc::new(a),
            Ok(Err(e)) => {
                let _ = ev.send(Ev::Aborted(format!("handshake failed: {e}")));
                return;
            }
            Err(_) => {
                let _ = ev.send(Ev::Aborted("handshake timed out".into()));
                return;
            }
        };
    let _ = ev.send(Ev::Connected);
    let bin = PayloadProtocolIdentifier::Binary;
    let s0 = assoc.open_stream(0, bin).await.expect("stream 0");
    let s1 = assoc.open_stream(1, bin).await.expect("stream 1");
    s1.set_reliability_params(true, ReliabilityType::Reliable, 0);
    let watch = assoc
        .open_stream(WATCH_STREAM, bin)
        .await
        .expect("watch stream");
    read_into(s0.clone(), ev.clone());
    read_into(s1.clone(), ev.clone());
    {
        let (assoc, ev) = (assoc.clone(), ev.clone());
        tokio::spawn(async move {
            while let Some(s) = assoc.accept_stream().await {
                read_into(s, ev.clone());
            }
        });
    }
    {
        let ev = ev.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 65536];
            loop {
                match watch.read_sctp(&mut buf).await {
                    Ok((0, _)) | Err(_) => break,
                    Ok(_) => continue,
                }
            }
            let _ = ev.send(Ev::Ended);
        });
    }
    let (tx, mut rx) = tmpsc::unbounded_channel();
    tokio::task::spawn_blocking(move || {
        while let Ok(c) = cmds.recv() {
            if tx.send(c).is_err() {
                break;
            }
        }
    });
    while let Some(c) = rx.recv().await {
        match c {
            Cmd::Connect => {}
            Cmd::Send {
                stream,
                ppid,
                unordered,
                data,
            } => {
                let s = match stream {
                    0 => s0.clone(),
                    1 => s1.clone(),
                    n => {
                        let _ = ev.send(Ev::Error(format!("no stream {n} in this driver")));
                        continue;
                    }
                };
                if unordered != (stream == 1) {
                    let _ = ev.send(Ev::Error(
                        "webrtc-sctp orders per stream: stream 1 unordered, 0 ordered".into(),
                    ));
                }
                if let Err(e) = s.write_sctp(&data, ppid.into()).await {
                    let _ = ev.send(Ev::Error(format!("send: {e}")));
                }
            }
            Cmd::Reset(n) => {
                let s = if n == 0 { s0.clone() } else { s1.clone() };
                // webrtc-sctp resets a stream when both its halves are shut.
                if let Err(e) = s.shutdown(Shutdown::Both).await {
                    let _ = ev.send(Ev::Error(format!("reset: {e}")));
                }
            }
            Cmd::Shutdown => {
                let (assoc, ev) = (assoc.clone(), ev.clone());
                tokio::spawn(async move {
                    if let Err(e) = assoc.shutdown().await {
                        let _ = ev.send(Ev::Error(format!("shutdown: {e}")));
                    }
                });
            }
            Cmd::Abort => {
                let _ = ev.send(Ev::Error("webrtc-sctp has no API to send an ABORT".into()));
            }
            Cmd::Quit => break,
        }
    }
    let _ = assoc.close().await;
}
