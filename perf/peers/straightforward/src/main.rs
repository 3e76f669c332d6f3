//! `straightforward SIZE SECONDS [CAP_BYTES]`: the straightforward design
//! that `perf/run.sh` compares the engine with. Two threads in one process,
//! each with one blocking UDP socket on 127.0.0.1 and one sctp-proto
//! endpoint; the sender writes SIZE-byte reliable ordered messages (stream
//! 0, PPID 53) while the stream's buffered amount is under CAP_BYTES
//! (default 64 KiB: the in-flight cap), for SECONDS; the receiver counts
//! what it reads. Prints one JSON line like the usrsctp peer's.

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sctp_proto::{
    Association, AssociationHandle, ClientConfig, DatagramEvent, Endpoint, EndpointConfig, Event,
    Payload, PayloadProtocolIdentifier, ServerConfig, StreamEvent, TransportConfig,
};

/// One side: a socket, an endpoint and (once there) its association.
struct Side {
    socket: UdpSocket,
    endpoint: Endpoint,
    assoc: Option<(AssociationHandle, Association)>,
    buf: Vec<u8>,
}

impl Side {
    fn new(server: bool) -> std::io::Result<Self> {
        let socket = UdpSocket::bind("127.0.0.1:0")?;
        let transport = Arc::new(TransportConfig::default());
        let server_config = server.then(|| {
            let mut s = ServerConfig::new();
            s.transport = transport;
            Arc::new(s)
        });
        let endpoint = Endpoint::new(Arc::new(EndpointConfig::new()), server_config);
        Ok(Self {
            socket,
            endpoint,
            assoc: None,
            buf: vec![0; 65536],
        })
    }

    /// Sends what the endpoint and association have to send.
    fn flush(&mut self, now: Instant) -> std::io::Result<()> {
        while let Some(t) = self.endpoint.poll_transmit() {
            send(&self.socket, t)?;
        }
        if let Some((h, a)) = &mut self.assoc {
            while let Some(ev) = a.poll_endpoint_event() {
                if let Some(back) = self.endpoint.handle_event(*h, ev) {
                    a.handle_event(back);
                }
            }
            while let Some(t) = a.poll_transmit(now) {
                send(&self.socket, t)?;
            }
        }
        Ok(())
    }

    /// Waits at most `max` for a datagram (or the association's timer).
    fn receive(&mut self, max: Duration) -> std::io::Result<()> {
        let now = Instant::now();
        let wait = self
            .assoc
            .as_ref()
            .and_then(|(_, a)| a.poll_timeout())
            .map_or(max, |t| t.saturating_duration_since(now).min(max))
            .max(Duration::from_micros(50));
        self.socket.set_read_timeout(Some(wait))?;
        match self.socket.recv_from(&mut self.buf) {
            Ok((n, from)) => {
                let data = Bytes::copy_from_slice(&self.buf[..n]);
                match self.endpoint.handle(Instant::now(), from, None, None, data) {
                    Some((h, DatagramEvent::NewAssociation(a))) => self.assoc = Some((h, a)),
                    Some((_, DatagramEvent::AssociationEvent(ev))) => {
                        if let Some((_, a)) = &mut self.assoc {
                            a.handle_event(ev);
                        }
                    }
                    None => {}
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => return Err(e),
        }
        let now = Instant::now();
        if let Some((_, a)) = &mut self.assoc
            && a.poll_timeout().is_some_and(|t| t <= now)
        {
            a.handle_timeout(now);
        }
        Ok(())
    }
}

fn send(socket: &UdpSocket, t: sctp_proto::Transmit) -> std::io::Result<()> {
    if let Payload::RawEncode(datagrams) = t.payload {
        for d in datagrams {
            socket.send_to(&d, t.remote)?;
        }
    }
    Ok(())
}

fn receiver(mut side: Side, seconds: f64) -> std::io::Result<(u64, u64, f64)> {
    let (mut messages, mut bytes) = (0u64, 0u64);
    let (mut first, mut last) = (None::<Instant>, Instant::now());
    let give_up = Instant::now() + Duration::from_secs_f64(seconds + 10.0);
    loop {
        side.receive(Duration::from_millis(5))?;
        let mut ended = false;
        if let Some((_, a)) = &mut side.assoc {
            while let Some(ev) = a.poll() {
                match ev {
                    Event::Stream(StreamEvent::Opened { .. }) => {
                        while a.accept_stream().is_some() {}
                    }
                    Event::Stream(StreamEvent::Readable { id }) => {
                        if let Ok(mut s) = a.stream(id) {
                            while let Ok(Some(chunks)) = s.read_sctp() {
                                messages += 1;
                                bytes += chunks.len() as u64;
                                last = Instant::now();
                                first.get_or_insert(last);
                            }
                        }
                    }
                    Event::AssociationLost { .. } => ended = true,
                    _ => {}
                }
            }
        }
        side.flush(Instant::now())?;
        // The sender stops after SECONDS; 1 s without data ends the count.
        if ended
            || (first.is_some() && last.elapsed() > Duration::from_secs(1))
            || Instant::now() > give_up
        {
            break;
        }
    }
    Ok((
        messages,
        bytes,
        first.map_or(0.0, |f| (last - f).as_secs_f64()),
    ))
}

fn sender(
    mut side: Side,
    to: SocketAddr,
    size: usize,
    seconds: f64,
    cap: usize,
) -> std::io::Result<()> {
    let mut config = ClientConfig::new();
    config.transport = Arc::new(TransportConfig::default());
    let (h, a) = side
        .endpoint
        .connect(config, to)
        .map_err(std::io::Error::other)?;
    side.assoc = Some((h, a));
    let payload = Bytes::from(vec![0xab; size]);
    let mut connected = false;
    let mut end = Instant::now() + Duration::from_secs(10);
    loop {
        let now = Instant::now();
        if now >= end {
            break;
        }
        if let Some((_, a)) = &mut side.assoc {
            while let Some(ev) = a.poll() {
                if matches!(ev, Event::Connected) && !connected {
                    connected = true;
                    end = Instant::now() + Duration::from_secs_f64(seconds);
                    a.open_stream(0, PayloadProtocolIdentifier::Binary)
                        .map_err(std::io::Error::other)?;
                }
            }
            if connected && let Ok(mut s) = a.stream(0) {
                while s.buffered_amount().unwrap_or(usize::MAX) < cap {
                    if s.write_sctp(&payload, PayloadProtocolIdentifier::Binary)
                        .is_err()
                    {
                        break;
                    }
                }
            }
        }
        side.flush(Instant::now())?;
        side.receive(Duration::from_millis(1))?;
    }
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let num = |i: usize, d: f64| args.get(i).and_then(|s| s.parse::<f64>().ok()).unwrap_or(d);
    let (size, seconds, cap) = (
        num(1, 100.0) as usize,
        num(2, 3.0),
        num(3, 65536.0) as usize,
    );
    let run = || -> std::io::Result<(u64, u64, f64)> {
        let rx = Side::new(true)?;
        let tx = Side::new(false)?;
        let to = rx.socket.local_addr()?;
        let r = std::thread::spawn(move || receiver(rx, seconds));
        let s = std::thread::spawn(move || sender(tx, to, size.max(1), seconds, cap));
        s.join()
            .map_err(|_| std::io::Error::other("sender panicked"))??;
        r.join()
            .map_err(|_| std::io::Error::other("receiver panicked"))?
    };
    match run() {
        Ok((messages, bytes, secs)) => {
            let per = |n: u64| if secs > 0.0 { n as f64 / secs } else { 0.0 };
            println!(
                "{{\"peer\":\"straightforward\",\"cap\":{cap},\"messages\":{messages},\"bytes\":{bytes},\"seconds\":{secs:.6},\"messages_per_s\":{:.0},\"bytes_per_s\":{:.0}}}",
                per(messages),
                per(bytes)
            );
        }
        Err(e) => {
            eprintln!("straightforward: {e}");
            std::process::exit(1);
        }
    }
}
