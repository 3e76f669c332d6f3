//! The system under test: a real dcengine server `Engine` (2 workers) on
//! loopback, with a participant of its own ("host") hosted inside it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use dcengine::hub::{HubConfig, HubEvent, HubStats};
use dcengine::{
    Call, Certificate, ChannelConfig, Engine, HmacVerifier, TrafficPolicy, WallClock, mint_token,
};

/// The join-token secret.
pub const SECRET: &[u8] = b"interop secret";
/// The call every cell joins.
pub const CALL: &str = "interop";
/// The largest message the server's channels take (the Data payloads of
/// the size cells are below it; the SCTP limit is what they test).
pub const CHANNEL_MAX: u32 = 256 * 1024;

fn unix_now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
}

/// A server engine and its events so far.
pub struct Server {
    engine: Option<Engine>,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Every hub event seen so far.
    pub events: Vec<HubEvent>,
}

impl Server {
    /// A 2-worker server on `bind` (port 0: any).
    pub fn start(bind: SocketAddr) -> Server {
        Self::start_with(bind, None)
    }

    /// A 2-worker server on `bind` that runs DTLS with `cert` (it answers
    /// WebRTC offers, [`Engine::accept_offer`]) when one is given.
    pub fn start_with(bind: SocketAddr, cert: Option<Certificate>) -> Server {
        let clock = WallClock::new(Instant::now(), unix_now());
        let mut config = HubConfig::server(Arc::new(
            HmacVerifier::new(SECRET, clock).expect("a secret"),
        ));
        if let Some(cert) = cert {
            config = config.dtls(cert);
        }
        let config = config.channel(
            ChannelConfig::default()
                .max_message_size(CHANNEL_MAX)
                .traffic(TrafficPolicy::unlimited()),
        );
        let engine = Engine::builder()
            .bind(bind)
            .workers(2)
            .hub(config)
            .start()
            .expect("the server starts");
        let addr = engine.local_addr();
        Server {
            engine: Some(engine),
            addr,
            events: Vec::new(),
        }
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        self.engine.as_ref().expect("running")
    }

    /// A join token for `who` in [`CALL`].
    pub fn token(who: &str) -> Bytes {
        mint_token(SECRET, CALL, who, unix_now().as_secs() + 600).expect("a token")
    }

    /// The server's own participant "host" in [`CALL`].
    pub fn host(&self) -> Call {
        let c = self.engine().join_local(CALL, "host").expect("join_local");
        assert!(c.wait_ready(Duration::from_secs(30)), "host joined");
        c
    }

    /// The engine, unless it was shut down.
    pub fn engine_opt(&self) -> Option<&Engine> {
        self.engine.as_ref()
    }

    /// Collects the events since the last call.
    pub fn poll_events(&mut self) {
        if let Some(Ok(ev)) = self.engine.as_ref().map(Engine::events) {
            self.events.extend(ev);
        }
    }

    /// Waits until an event matching `pred` was seen (or `limit`).
    pub fn wait_event(&mut self, limit: Duration, pred: impl Fn(&HubEvent) -> bool) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            self.poll_events();
            if self.events.iter().any(&pred) {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether `who` left the call (an event says so).
    pub fn left(&mut self, who: &str) -> bool {
        self.poll_events();
        self.events.iter().any(|e| is_left(e, who))
    }

    /// Waits until `who` left the call.
    pub fn wait_left(&mut self, who: &str, limit: Duration) -> bool {
        self.wait_event(limit, |e| is_left(e, who))
    }

    /// Why `who` left, as the server's `ParticipantLeft` says (the first,
    /// if several), once it did.
    pub fn left_reason(&mut self, who: &str) -> Option<String> {
        self.poll_events();
        self.events.iter().find_map(|e| match e {
            HubEvent::ParticipantLeft {
                participant_id,
                reason,
                ..
            } if participant_id.as_str() == who => Some(reason.clone()),
            _ => None,
        })
    }

    /// The counters.
    pub fn stats(&self) -> HubStats {
        self.engine().stats().expect("stats")
    }

    /// Shuts the engine down gracefully (its associations are closed
    /// with SHUTDOWN), waiting up to `deadline`.
    pub fn shutdown(&mut self, deadline: Duration) {
        if let Some(e) = self.engine.take() {
            e.shutdown(deadline);
        }
    }

    /// The events, for a failure message.
    pub fn events_text(&mut self) -> String {
        self.poll_events();
        let mut s = String::from("server events:\n");
        for e in &self.events {
            s.push_str(&format!("    {e:?}\n"));
        }
        s
    }
}

fn is_left(e: &HubEvent, who: &str) -> bool {
    matches!(e, HubEvent::ParticipantLeft { participant_id, .. } if participant_id.as_str() == who)
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown(Duration::from_secs(1));
    }
}
