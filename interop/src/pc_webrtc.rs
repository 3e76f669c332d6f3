//! A full webrtc-rs peer connection (crate `webrtc` 0.21, on its sans-IO
//! core `rtc`): ICE (full agent, controlling), DTLS (client: the engine's
//! answer says `setup:passive`), SCTP and two data channels negotiated
//! out of band, ids 0 (ordered, reliable) and 1 (unordered,
//! maxRetransmits 0). It runs on its own thread with a current-thread
//! tokio runtime; webrtc-rs drives the connection on reactor threads of
//! its own.
//!
//! Host candidates on 127.0.0.1 only (`with_udp_addrs`), mDNS disabled,
//! no STUN or TURN server. The offer is sent once ICE gathering is
//! complete (the engine takes no trickled candidates).
//!
//! Stream numbers in [`Cmd::Send`] and [`Ev::Msg`] are the channel ids.
//! [`Cmd::Shutdown`] closes the peer connection (webrtc-rs closes its
//! data channels, the SCTP association and DTLS); [`Ev::Closed`] is
//! reported when channel 0 closes (a SCTP stream reset or the end of the
//! association), [`Ev::Ended`] when the connection state becomes
//! `closed`, [`Ev::Aborted`] when it becomes `failed`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::time::Duration;

use bytes::BytesMut;
use webrtc::data_channel::{DataChannel, DataChannelEvent, RTCDataChannelInit};
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCConfigurationBuilder,
    RTCIceGatheringState, RTCPeerConnectionState, RTCSessionDescription, SettingEngineBuilder,
};

use rtc::peer_connection::configuration::setting_engine::SctpMaxMessageSize;

use crate::pc::Signal;
use crate::peer::{Cmd, Ev, Peer};

/// Starts a webrtc-rs peer connection; its offer goes out through
/// `signal` and its answer comes back the same way.
pub fn spawn(signal: Signal) -> Peer {
    let (cmd_tx, cmd_rx) = std::sync::mpsc::channel::<Cmd>();
    let (ev_tx, ev_rx) = std::sync::mpsc::channel::<Ev>();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let ev = ev_tx.clone();
        if let Err(e) = rt.block_on(run(signal, cmd_rx, ev_tx)) {
            let _ = ev.send(Ev::Error(e));
        }
        rt.shutdown_timeout(Duration::from_millis(200));
    });
    Peer::new("webrtc-rs", cmd_tx, ev_rx)
}

struct Handler {
    events: std::sync::Mutex<Sender<Ev>>,
    gathered: tokio::sync::mpsc::UnboundedSender<()>,
}

impl Handler {
    fn send(&self, e: Ev) {
        let _ = self.events.lock().expect("not poisoned").send(e);
    }
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        if state == RTCIceGatheringState::Complete {
            let _ = self.gathered.send(());
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        self.send(Ev::Info(format!("connection state {state}")));
        match state {
            RTCPeerConnectionState::Closed => self.send(Ev::Ended),
            RTCPeerConnectionState::Failed => self.send(Ev::Aborted(format!("{state}"))),
            _ => {}
        }
    }
}

/// Forwards a channel's events; reports [`Ev::Connected`] when the
/// second of the two channels opens.
fn watch(dc: Arc<dyn DataChannel>, stream: u16, opened: Arc<AtomicUsize>, ev: Sender<Ev>) {
    tokio::spawn(async move {
        while let Some(e) = dc.poll().await {
            match e {
                DataChannelEvent::OnOpen => {
                    let _ = ev.send(Ev::Info(format!("channel {stream} open")));
                    if opened.fetch_add(1, Ordering::SeqCst) + 1 == 2 {
                        let _ = ev.send(Ev::Connected);
                    }
                }
                DataChannelEvent::OnMessage(m) => {
                    let _ = ev.send(Ev::Msg {
                        stream,
                        ppid: if m.is_string { 51 } else { 53 },
                        data: m.data.freeze(),
                    });
                }
                DataChannelEvent::OnClose => {
                    let _ = ev.send(Ev::Info(format!("channel {stream} closed")));
                    if stream == 0 {
                        let _ = ev.send(Ev::Closed);
                    }
                    break;
                }
                other => {
                    let _ = ev.send(Ev::Info(format!("channel {stream}: {other:?}")));
                }
            }
        }
    });
}

async fn run(signal: Signal, cmds: Receiver<Cmd>, ev: Sender<Ev>) -> Result<(), String> {
    let (gathered_tx, mut gathered_rx) = tokio::sync::mpsc::unbounded_channel();
    let handler = Arc::new(Handler {
        events: std::sync::Mutex::new(ev.clone()),
        gathered: gathered_tx,
    });
    let settings = SettingEngineBuilder::new()
        .with_multicast_dns_mode(rtc::ice::mdns::MulticastDnsMode::Disabled)
        // The default is RFC 8841's 64 KiB: this end may send up to what
        // the engine's answer says (a=max-message-size).
        .with_sctp_max_message_size(SctpMaxMessageSize::Bounded(1 << 20))
        .build();
    let pc = PeerConnectionBuilder::new()
        .with_configuration(RTCConfigurationBuilder::new().build())
        .with_setting_engine(settings)
        .with_handler(handler)
        .with_runtime(webrtc::runtime::default_runtime().ok_or("no webrtc runtime")?)
        .with_udp_addrs(vec!["127.0.0.1:0".to_string()])
        .build()
        .await
        .map_err(|e| format!("build: {e}"))?;
    let opened = Arc::new(AtomicUsize::new(0));
    let mut channels: Vec<Arc<dyn DataChannel>> = Vec::new();
    for (id, ordered, retransmits) in [(0u16, true, None), (1u16, false, Some(0u16))] {
        let init = RTCDataChannelInit {
            ordered,
            max_retransmits: retransmits,
            negotiated: Some(id),
            ..Default::default()
        };
        let dc = pc
            .create_data_channel(&format!("dcengine-{id}"), Some(init))
            .await
            .map_err(|e| format!("create_data_channel {id}: {e}"))?;
        watch(dc.clone(), id, opened.clone(), ev.clone());
        channels.push(dc);
    }
    let offer = pc
        .create_offer(None)
        .await
        .map_err(|e| format!("create_offer: {e}"))?;
    pc.set_local_description(offer)
        .await
        .map_err(|e| format!("set_local_description: {e}"))?;
    let _ = tokio::time::timeout(Duration::from_secs(30), gathered_rx.recv()).await;
    let offer = pc
        .local_description()
        .await
        .ok_or("no local description")?
        .sdp;
    let Some(answer) = signal.exchange(offer) else {
        return Err("no answer".into());
    };
    let answer = RTCSessionDescription::answer(answer).map_err(|e| format!("answer: {e}"))?;
    pc.set_remote_description(answer)
        .await
        .map_err(|e| format!("set_remote_description: {e}"))?;
    loop {
        match cmds.try_recv() {
            Ok(Cmd::Send { stream, data, .. }) => {
                let dc = channels.get(usize::from(stream)).cloned();
                match dc {
                    Some(dc) => {
                        if let Err(e) = dc.send(BytesMut::from(&data[..])).await {
                            let _ = ev.send(Ev::Error(format!("send on {stream}: {e}")));
                        }
                    }
                    None => {
                        let _ = ev.send(Ev::Error(format!("no channel {stream}")));
                    }
                }
            }
            Ok(Cmd::Shutdown) => {
                if let Err(e) = pc.close().await {
                    let _ = ev.send(Ev::Error(format!("close: {e}")));
                }
            }
            Ok(Cmd::Quit) | Err(std::sync::mpsc::TryRecvError::Disconnected) => break,
            Ok(other) => {
                let _ = ev.send(Ev::Error(format!("{other:?}: not supported")));
            }
            Err(std::sync::mpsc::TryRecvError::Empty) => {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
    }
    let _ = pc.close().await;
    Ok(())
}
