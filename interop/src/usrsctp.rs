//! The usrsctp peer: `peers/usrsctp_puppet.c` in a child process (usrsctp
//! keeps global state, so one process per association), over UDP
//! encapsulation, driven over its stdin and stdout.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, UdpSocket};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;

use crate::peer::{Cmd, Ev, Peer};
use crate::tap::abort_causes;

/// Where the usrsctp socket is bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bind {
    /// 127.0.0.1 only.
    Loopback,
    /// INADDR_ANY: the INIT carries the host's addresses as parameters.
    AnyV4,
    /// in6addr_any (the server on ::1).
    AnyV6,
}

impl Bind {
    fn arg(self) -> &'static str {
        match self {
            Bind::Loopback => "127.0.0.1",
            Bind::AnyV4 => "0.0.0.0",
            Bind::AnyV6 => "::",
        }
    }
}

/// A UDP port free on both address families, for usrsctp's encapsulation
/// socket (it binds the port itself on the wildcard addresses).
fn free_udp_port() -> u16 {
    let s = UdpSocket::bind("[::]:0").expect("bind a dual-stack UDP socket");
    s.local_addr().expect("an address").port()
}

/// Starts a usrsctp puppet bound as `bind`, connecting to `remote` (the
/// tap), and returns its handle once it has been told to connect.
pub fn spawn(bind: Bind, remote: SocketAddr) -> Peer {
    let exe = env!("USRSCTP_PUPPET");
    let mut child: Child = Command::new(exe)
        .arg(bind.arg())
        .arg(remote.ip().to_string())
        .arg(remote.port().to_string())
        .arg(free_udp_port().to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the usrsctp puppet");
    let stdin: ChildStdin = child.stdin.take().expect("stdin");
    let stdout = child.stdout.take().expect("stdout");
    let child = Arc::new(Mutex::new(child));
    let (cmd_tx, cmd_rx) = mpsc::channel::<Cmd>();
    let (ev_tx, ev_rx) = mpsc::channel::<Ev>();

    // Events: the puppet's lines.
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let (word, rest) = line.split_once(' ').unwrap_or((line.as_str(), ""));
            let ev = match word {
                "READY" | "SENT" => continue,
                "CONNECTED" => Ev::Connected,
                "CLOSED" => Ev::Closed,
                "ABORTED" => {
                    // sac_info: the ABORT chunk received, if any.
                    let raw = unhex(rest);
                    let text = if raw.len() >= 4 && raw[0] == 6 {
                        format!("ABORT received: {}", abort_causes(&raw[4..]))
                    } else {
                        "association lost".into()
                    };
                    Ev::Aborted(text)
                }
                "ABORTED_LOCAL" => Ev::Aborted("ABORT sent".into()),
                "MSG" => {
                    let mut it = rest.splitn(3, ' ');
                    let stream = it.next().and_then(|s| s.parse().ok()).unwrap_or(u16::MAX);
                    let ppid = it.next().and_then(|s| s.parse().ok()).unwrap_or(0);
                    let data = Bytes::from(unhex(it.next().unwrap_or("")));
                    Ev::Msg { stream, ppid, data }
                }
                "ERR" => Ev::Error(rest.to_owned()),
                _ => Ev::Info(line.clone()),
            };
            if ev_tx.send(ev).is_err() {
                break;
            }
        }
    });

    // Commands: lines to the puppet.
    std::thread::spawn(move || {
        let mut stdin = std::io::BufWriter::new(stdin);
        let mut quit = false;
        while let Ok(c) = cmd_rx.recv() {
            let line = match c {
                Cmd::Send {
                    stream,
                    ppid,
                    unordered,
                    data,
                } => format!(
                    "send {stream} {ppid} {} {}",
                    u8::from(unordered),
                    hex(&data)
                ),
                Cmd::Connect => "connect".into(),
                Cmd::Reset(s) => format!("reset {s}"),
                Cmd::Shutdown => "shutdown".into(),
                Cmd::Abort => "abort".into(),
                Cmd::Quit => {
                    quit = true;
                    "quit".into()
                }
            };
            if writeln!(stdin, "{line}")
                .and_then(|_| stdin.flush())
                .is_err()
                || quit
            {
                break;
            }
        }
        drop(stdin);
        // Reap the puppet (give it a moment to exit on its own).
        let mut child = child.lock().unwrap_or_else(PoisonError::into_inner);
        for _ in 0..50 {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    });

    let name = match bind {
        Bind::Loopback => "usrsctp",
        Bind::AnyV4 => "usrsctp (0.0.0.0)",
        Bind::AnyV6 => "usrsctp (::)",
    };
    let peer = Peer::new(name, cmd_tx, ev_rx);
    peer.cmd(Cmd::Connect);
    peer
}

fn hex(data: &[u8]) -> String {
    const D: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(data.len() * 2);
    for b in data {
        s.push(D[(b >> 4) as usize] as char);
        s.push(D[(b & 15) as usize] as char);
    }
    s
}

fn unhex(s: &str) -> Vec<u8> {
    let b = s.trim().as_bytes();
    let v = |c: u8| match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        b'A'..=b'F' => c - b'A' + 10,
        _ => 0,
    };
    b.chunks_exact(2)
        .map(|p| (v(p[0]) << 4) | v(p[1]))
        .collect()
}
