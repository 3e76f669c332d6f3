//! HTTP signalling for `dcengine serve` and `dcengine chat --host` (the
//! answering end) and `dcengine chat` (a client's): a participant posts its
//! SDP offer with its join token and gets the engine's answer.
//!
//! ```text
//! POST /v1/calls/{call}/join
//! Content-Type: application/json
//! {"participant": "alice", "token": "<hex, as `dcengine token` prints>", "sdp": "<offer>"}
//!
//! 200 {"sdp": "<answer>"}
//! 400 {"error": "..."}   the body or the offer is malformed
//! 401 {"error": "..."}   the token is refused (forged, expired, or for another call or participant)
//! 503 {"error": "..."}   the server cannot take the peer now (full, stopping)
//!
//! POST /v1/calls/{call}/token       only with --demo-tokens (else 404)
//! {"participant": "alice"}
//! 200 {"token": "<hex>"}            valid for an hour
//! 400 {"error": "..."}              no participant, or a call or participant id over 255 bytes
//!
//! GET /v1/health
//! 200 {"ok": true}
//!
//! anything else: the --web directory's files, or 404 {"error": "..."}
//! ```
//!
//! The routes are one [`router`], served over HTTP or HTTPS (rustls on
//! aws-lc-rs) by [`serve`], with CORS for the origins given.

use std::net::SocketAddr;
use std::path::{Path as FsPath, PathBuf};
use std::sync::{Arc, Weak};
use std::time::Duration;

use axum::Json;
use axum::extract::connect_info::{ConnectInfo, Connected};
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::handler::HandlerWithoutStateExt;
use axum::http::{HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::{IncomingStream, Listener};
use dcengine::{Engine, EngineError, SignalError, mint_token};
use serde::{Deserialize, Serialize};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::services::ServeDir;

/// How long a token from `POST /v1/calls/{call}/token` is valid.
pub(crate) const DEMO_TOKEN_LIFETIME: Duration = Duration::from_secs(60 * 60);

/// The longest call or participant id a token can carry, in bytes.
const MAX_ID_LEN: usize = 255;

/// How long a client has to complete its TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// TLS handshakes in progress at once; further connections wait to start
/// theirs.
const MAX_TLS_HANDSHAKES: usize = 256;

/// The path a participant posts its offer to.
pub(crate) fn join_path(call: &str) -> String {
    format!("/v1/calls/{call}/join")
}

/// The signalling endpoint's command-line options, shared by `dcengine
/// serve` and `dcengine chat --host`.
#[derive(Debug, Clone, Default, clap::Args)]
pub(crate) struct HttpArgs {
    /// An origin (`scheme://host[:port]`, as a browser sends it) whose pages
    /// may call the signalling API (CORS); repeat for several, `*` for any.
    /// Without it, only pages served by this endpoint (same origin) may.
    #[arg(long = "cors-origin", value_name = "ORIGIN")]
    pub(crate) cors_origins: Vec<String>,
    /// A directory whose files are served at / (index.html for a
    /// directory), e.g. clients/js/web for the browser demo; the API routes
    /// under /v1 take precedence.
    #[arg(long, value_name = "DIR")]
    pub(crate) web: Option<PathBuf>,
    /// INSECURE, for demos and tests only: POST /v1/calls/{call}/token
    /// hands anyone a one-hour join token for any participant they name.
    #[arg(long)]
    pub(crate) demo_tokens: bool,
    /// Serve HTTPS with this certificate chain (PEM), with --tls-key: a
    /// browser needs a secure context (HTTPS, or localhost) for WebRTC.
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    pub(crate) tls_cert: Option<PathBuf>,
    /// The private key (PEM: PKCS#8, PKCS#1 or SEC1) of --tls-cert.
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    pub(crate) tls_key: Option<PathBuf>,
}

impl HttpArgs {
    /// Whether any option beyond the plain endpoint is given.
    pub(crate) fn any(&self) -> bool {
        !self.cors_origins.is_empty()
            || self.web.is_some()
            || self.demo_tokens
            || self.tls_cert.is_some()
            || self.tls_key.is_some()
    }

    /// The endpoint's configuration; demo tokens, when on, are minted with
    /// `secret` and valid for at most `max_lifetime` (the verifier refuses
    /// longer ones).
    pub(crate) fn config(&self, secret: &[u8], max_lifetime: Duration) -> Config {
        Config {
            cors_origins: self.cors_origins.clone(),
            web: self.web.clone(),
            demo_tokens: self.demo_tokens.then(|| DemoTokens {
                secret: secret.to_vec(),
                lifetime: DEMO_TOKEN_LIFETIME.min(max_lifetime),
            }),
            tls: self.tls_cert.clone().zip(self.tls_key.clone()),
        }
    }
}

/// What the signalling endpoint serves beyond the join route, and how.
#[derive(Debug, Clone, Default)]
pub(crate) struct Config {
    /// Origins allowed to call the API from a browser; `*` for any; none:
    /// no CORS headers at all (same origin only).
    pub(crate) cors_origins: Vec<String>,
    /// A directory served at `/`.
    pub(crate) web: Option<PathBuf>,
    /// `POST /v1/calls/{call}/token`, when on.
    pub(crate) demo_tokens: Option<DemoTokens>,
    /// HTTPS: the certificate chain's and the key's PEM files.
    pub(crate) tls: Option<(PathBuf, PathBuf)>,
}

/// How demo tokens are minted.
#[derive(Clone)]
pub(crate) struct DemoTokens {
    /// The verifier's secret.
    pub(crate) secret: Vec<u8>,
    /// How long each token is valid.
    pub(crate) lifetime: Duration,
}

impl std::fmt::Debug for DemoTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DemoTokens")
            .field("secret", &"<redacted>")
            .field("lifetime", &self.lifetime)
            .finish()
    }
}

/// A join request's body.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct JoinBody {
    /// Who joins.
    pub(crate) participant: String,
    /// The join token, hex.
    pub(crate) token: String,
    /// The SDP offer.
    pub(crate) sdp: String,
}

/// The answer, or why there is none.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct Reply {
    /// The SDP answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) sdp: Option<String>,
    /// Why the join was refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<String>,
}

/// A demo token request's body.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct TokenBody {
    /// Who the token is for.
    pub(crate) participant: String,
}

/// A demo token.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct TokenReply {
    /// The token, hex.
    pub(crate) token: String,
}

/// A refusal: `{"error": "..."}` with `code`.
fn refuse(code: StatusCode, error: impl Into<String>) -> Response {
    (
        code,
        Json(Reply {
            sdp: None,
            error: Some(error.into()),
        }),
    )
        .into_response()
}

/// What the handlers share. The engine is held weakly, so that the server
/// can take it back to shut it down while the endpoint still runs.
#[derive(Clone)]
struct AppState {
    /// The engine that answers offers.
    engine: Weak<Engine>,
    /// The demo tokens' minting, when on.
    demo_tokens: Option<Arc<DemoTokens>>,
}

/// A connection's two ends: the local one is the address a peer reached
/// this host at, which an engine bound to an unspecified address announces.
#[derive(Debug, Clone, Copy)]
struct Ends {
    /// The address the request came in on.
    local: SocketAddr,
    /// The client's address.
    remote: SocketAddr,
}

/// An unknown address, when the socket cannot tell.
const NOWHERE: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 0);

impl Connected<IncomingStream<'_, TcpListener>> for Ends {
    fn connect_info(stream: IncomingStream<'_, TcpListener>) -> Self {
        Ends {
            local: stream.io().local_addr().unwrap_or(NOWHERE),
            remote: *stream.remote_addr(),
        }
    }
}

impl Connected<IncomingStream<'_, TlsListener>> for Ends {
    fn connect_info(stream: IncomingStream<'_, TlsListener>) -> Self {
        Ends {
            local: stream.io().get_ref().0.local_addr().unwrap_or(NOWHERE),
            remote: *stream.remote_addr(),
        }
    }
}

/// The signalling routes for `engine`, with `config`'s CORS, web root and
/// demo tokens; fails on an invalid origin or a web root that is not a
/// directory.
pub(crate) fn router(engine: &Arc<Engine>, config: &Config) -> Result<axum::Router, String> {
    let state = AppState {
        engine: Arc::downgrade(engine),
        demo_tokens: config.demo_tokens.clone().map(Arc::new),
    };
    let mut api = axum::Router::new()
        .route("/v1/calls/{call}/join", post(join))
        .route("/v1/calls/{call}/token", post(demo_token))
        .route("/v1/health", get(health))
        .method_not_allowed_fallback(method_not_allowed);
    if let Some(cors) = cors(&config.cors_origins)? {
        api = api.layer(cors);
    }
    let app = match &config.web {
        Some(dir) => {
            check_web_root(dir)?;
            api.fallback_service(
                ServeDir::new(dir)
                    .append_index_html_on_directories(true)
                    .not_found_service(not_found.into_service()),
            )
        }
        None => api.fallback(not_found),
    };
    Ok(app.with_state(state))
}

/// The CORS layer for `origins` (none: no layer, same origin only).
fn cors(origins: &[String]) -> Result<Option<CorsLayer>, String> {
    if origins.is_empty() {
        return Ok(None);
    }
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        let mut list = Vec::with_capacity(origins.len());
        for origin in origins {
            list.push(parse_origin(origin)?);
        }
        AllowOrigin::list(list)
    };
    Ok(Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([Method::GET, Method::POST])
            .allow_headers([header::CONTENT_TYPE])
            .max_age(Duration::from_secs(60 * 60)),
    ))
}

/// Checks that `origin` is what a browser sends in `Origin`:
/// `scheme://host[:port]`, no path, no trailing slash.
fn parse_origin(origin: &str) -> Result<HeaderValue, String> {
    let bad = |why: &str| {
        format!(
            "--cors-origin {origin:?}: {why} (an origin is scheme://host[:port], e.g. http://localhost:8080, or *)"
        )
    };
    let Some((scheme, rest)) = origin.split_once("://") else {
        return Err(bad("no scheme"));
    };
    if scheme.is_empty() || rest.is_empty() {
        return Err(bad("no scheme or no host"));
    }
    if rest.contains('/') {
        return Err(bad("an origin has no path, not even a trailing /"));
    }
    HeaderValue::from_str(origin).map_err(|_| bad("not a valid header value"))
}

/// Checks a web root: it must be a directory; without the bundle
/// (`dcengine.js`) the demo page cannot load, which is worth a warning.
fn check_web_root(dir: &FsPath) -> Result<(), String> {
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return Err(format!("--web {}: not a directory", dir.display())),
        Err(e) => return Err(format!("--web {}: {e}", dir.display())),
    }
    if !dir.join("dcengine.js").is_file() {
        tracing::warn!(
            web = %dir.display(),
            "no dcengine.js in the web root: the browser client is not built; run `npm run bundle` in clients/js"
        );
    }
    Ok(())
}

/// Serves `router`'s routes for `engine` on `addr` (TCP), over HTTPS when
/// `config.tls` names a certificate and key, on a thread of its own;
/// returns where it listens.
pub(crate) fn serve(
    engine: &Arc<Engine>,
    addr: SocketAddr,
    config: &Config,
) -> Result<Endpoint, String> {
    let tls = match &config.tls {
        Some((cert, key)) => Some(tls_acceptor(cert, key)?),
        None => None,
    };
    let app = router(engine, config)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .map_err(|e| format!("signalling: {e}"))?;
    let listener = runtime
        .block_on(TcpListener::bind(addr))
        .map_err(|e| format!("signalling on {addr} (TCP): {e}"))?;
    let local = listener
        .local_addr()
        .map_err(|e| format!("signalling on {addr}: {e}"))?;
    let endpoint = Endpoint {
        addr: local,
        tls: tls.is_some(),
    };
    std::thread::Builder::new()
        .name("dcengine-signalling".into())
        .spawn(move || {
            let served = runtime.block_on(async move {
                match tls {
                    None => {
                        axum::serve(listener, app.into_make_service_with_connect_info::<Ends>())
                            .await
                    }
                    Some(acceptor) => {
                        let listener = TlsListener::start(listener, acceptor);
                        axum::serve(listener, app.into_make_service_with_connect_info::<Ends>())
                            .await
                    }
                }
            });
            if let Err(e) = served {
                tracing::error!("signalling stopped: {e}");
            }
        })
        .map_err(|e| format!("signalling: cannot start its thread: {e}"))?;
    Ok(endpoint)
}

/// Where a signalling endpoint listens.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Endpoint {
    /// Its TCP address.
    pub(crate) addr: SocketAddr,
    /// Whether it speaks HTTPS.
    pub(crate) tls: bool,
}

impl Endpoint {
    /// The URL a browser on this host opens: `localhost` for an unspecified
    /// address.
    pub(crate) fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        let ip = self.addr.ip();
        if ip.is_unspecified() {
            format!("{scheme}://localhost:{}", self.addr.port())
        } else {
            format!("{scheme}://{}", self.addr)
        }
    }
}

/// The TLS side of `--tls-cert`/`--tls-key`: rustls on aws-lc-rs, HTTP/1.1.
fn tls_acceptor(cert: &FsPath, key: &FsPath) -> Result<TlsAcceptor, String> {
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("--tls-cert {}: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!(
            "--tls-cert {}: no CERTIFICATE in the file (PEM expected)",
            cert.display()
        ));
    }
    let private = PrivateKeyDer::from_pem_file(key).map_err(|e| {
        format!(
            "--tls-key {}: {e} (a PEM private key expected: PKCS#8, PKCS#1 or SEC1)",
            key.display()
        )
    })?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_no_client_auth()
        .with_single_cert(chain, private)
        .map_err(|e| match e {
            rustls::Error::InconsistentKeys(_) => format!(
                "--tls-key {} does not belong to --tls-cert {}",
                key.display(),
                cert.display()
            ),
            e => format!(
                "--tls-cert {} / --tls-key {}: {e}",
                cert.display(),
                key.display()
            ),
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Connections whose TLS handshake is done. The handshakes run in tasks of
/// their own (a slow client holds up no other), at most
/// [`MAX_TLS_HANDSHAKES`] at once, each within [`TLS_HANDSHAKE_TIMEOUT`].
struct TlsListener {
    /// The listening socket's address.
    local: SocketAddr,
    /// Connections ready for HTTP, with the client's address.
    ready: tokio::sync::mpsc::Receiver<(tokio_rustls::server::TlsStream<TcpStream>, SocketAddr)>,
}

impl TlsListener {
    /// Accepts on `listener` in a task of its own (on the current runtime).
    fn start(listener: TcpListener, acceptor: TlsAcceptor) -> Self {
        let local = listener.local_addr().unwrap_or(NOWHERE);
        let (tx, ready) = tokio::sync::mpsc::channel(64);
        let permits = Arc::new(tokio::sync::Semaphore::new(MAX_TLS_HANDSHAKES));
        tokio::spawn(async move {
            let mut listener = listener;
            loop {
                let Ok(permit) = permits.clone().acquire_owned().await else {
                    return;
                };
                // axum's own accept: retries, and backs off on errors such
                // as too many open files.
                let (tcp, remote) = Listener::accept(&mut listener).await;
                let acceptor = acceptor.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    let handshake =
                        tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await;
                    drop(permit);
                    match handshake {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, remote)).await;
                        }
                        // A browser that does not trust the certificate
                        // ends here, with an alert saying so.
                        Ok(Err(e)) => tracing::info!(%remote, "TLS handshake failed: {e}"),
                        Err(_) => tracing::info!(
                            %remote,
                            "TLS handshake not done within {} s: closed",
                            TLS_HANDSHAKE_TIMEOUT.as_secs()
                        ),
                    }
                });
            }
        });
        TlsListener { local, ready }
    }
}

impl Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(ready) => ready,
            // The accepting task holds the sender until its runtime ends,
            // and with it this listener's.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

/// `GET /v1/health`.
async fn health() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "ok": true }))
}

/// Any route not served: 404 with what was asked.
async fn not_found(method: Method, uri: Uri) -> Response {
    refuse(
        StatusCode::NOT_FOUND,
        format!("no such route: {method} {}", uri.path()),
    )
}

/// A known route asked with the wrong method.
async fn method_not_allowed(method: Method, uri: Uri) -> Response {
    refuse(
        StatusCode::METHOD_NOT_ALLOWED,
        format!(
            "{method} is not allowed on {} (POST a join or a token, GET the health)",
            uri.path()
        ),
    )
}

/// The reason a call or participant id cannot go into a token, if any.
fn invalid_id(what: &str, id: &str) -> Option<String> {
    if id.is_empty() {
        Some(format!("the {what} id is empty"))
    } else if id.len() > MAX_ID_LEN {
        Some(format!(
            "the {what} id is {} bytes; at most {MAX_ID_LEN}",
            id.len()
        ))
    } else {
        None
    }
}

/// `POST /v1/calls/{call}/token`: a demo token, when they are on.
async fn demo_token(
    State(state): State<AppState>,
    ConnectInfo(ends): ConnectInfo<Ends>,
    Path(call): Path<String>,
    body: Result<Json<TokenBody>, JsonRejection>,
) -> Response {
    let Some(demo) = state.demo_tokens else {
        return refuse(
            StatusCode::NOT_FOUND,
            "no demo tokens here: the server runs without --demo-tokens",
        );
    };
    let body = match body {
        Ok(Json(body)) => body,
        Err(e) => {
            return refuse(
                StatusCode::BAD_REQUEST,
                format!(
                    "the body must be JSON {{\"participant\"}}: {}",
                    e.body_text()
                ),
            );
        }
    };
    if let Some(why) =
        invalid_id("call", &call).or_else(|| invalid_id("participant", &body.participant))
    {
        return refuse(StatusCode::BAD_REQUEST, why);
    }
    let expires = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .saturating_add(demo.lifetime)
        .as_secs();
    match mint_token(&demo.secret, &call, &body.participant, expires) {
        Ok(token) => {
            tracing::info!(
                %call,
                participant = %body.participant,
                remote = %ends.remote,
                "minted a demo token"
            );
            Json(TokenReply {
                token: crate::net::hex(&token),
            })
            .into_response()
        }
        Err(e) => refuse(StatusCode::BAD_REQUEST, e.to_string()),
    }
}

/// `POST /v1/calls/{call}/join`: an offer in, the engine's answer out.
async fn join(
    State(state): State<AppState>,
    ConnectInfo(ends): ConnectInfo<Ends>,
    Path(call): Path<String>,
    body: Result<Json<JoinBody>, JsonRejection>,
) -> Response {
    let body = match body {
        Ok(Json(body)) => body,
        Err(e) => {
            return refuse(
                StatusCode::BAD_REQUEST,
                format!(
                    "the body must be JSON {{\"participant\", \"token\" (hex), \"sdp\"}}: {}",
                    e.body_text()
                ),
            );
        }
    };
    let Some(token) = crate::net::unhex(&body.token) else {
        return refuse(StatusCode::BAD_REQUEST, "the token must be hex");
    };
    let Some(engine) = state.engine.upgrade() else {
        return refuse(StatusCode::SERVICE_UNAVAILABLE, "the server is stopping");
    };
    // An engine on an unspecified address announces the one this request
    // reached, with its own port.
    let udp = engine.local_addr();
    let candidate = if udp.ip().is_unspecified() {
        SocketAddr::new(ends.local.ip(), udp.port())
    } else {
        udp
    };
    let participant = body.participant;
    let (c, p) = (call.clone(), participant.clone());
    let answered = tokio::task::spawn_blocking(move || {
        engine.accept_offer_at(&body.sdp, &[candidate], &c, &p, &token)
    })
    .await;
    let (code, error) = match answered {
        Ok(Ok(sdp)) => {
            tracing::info!(%call, %participant, remote = %ends.remote, %candidate, "answered an offer");
            return Json(Reply {
                sdp: Some(sdp),
                error: None,
            })
            .into_response();
        }
        Ok(Err(EngineError::Signal(e))) => {
            let code = match e {
                SignalError::Refused(_) => StatusCode::UNAUTHORIZED,
                SignalError::Full(_) => StatusCode::SERVICE_UNAVAILABLE,
                SignalError::NotSecure => StatusCode::NOT_IMPLEMENTED,
                _ => StatusCode::BAD_REQUEST,
            };
            (code, e.to_string())
        }
        Ok(Err(e)) => (StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    tracing::info!(%call, %participant, remote = %ends.remote, status = code.as_u16(), "refused an offer: {error}");
    refuse(code, error)
}

/// A client's end: posts `offer` for `participant` with `token` to the
/// server at `http` (`host:port`, plain HTTP) and returns its answer.
pub(crate) fn request_answer(
    http: SocketAddr,
    call: &str,
    participant: &str,
    token: &[u8],
    offer: &str,
) -> Result<String, String> {
    let url = format!("http://{http}{}", join_path(call));
    let body = JoinBody {
        participant: participant.to_owned(),
        token: crate::net::hex(token),
        sdp: offer.to_owned(),
    };
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(std::time::Duration::from_secs(10)))
        .build()
        .into();
    let mut response = agent
        .post(&url)
        .send_json(&body)
        .map_err(|e| format!("signalling at {url}: {e}"))?;
    let status = response.status();
    let reply: Reply = response
        .body_mut()
        .read_json()
        .map_err(|e| format!("signalling at {url}: {status}: {e}"))?;
    match reply {
        Reply { sdp: Some(sdp), .. } if status.is_success() => Ok(sdp),
        Reply { error, .. } => Err(format!(
            "signalling at {url}: {status}: {}",
            error.unwrap_or_default()
        )),
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::time::{Duration, Instant};

    use dcengine::{Certificate, HmacVerifier, HubConfig, WallClock, mint_token};

    use super::*;

    const SECRET: &[u8] = b"signalling test secret";

    /// A DTLS server engine on 0.0.0.0 with its endpoint on 127.0.0.1.
    fn server_with(config: &Config) -> (Arc<Engine>, Endpoint) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let verifier =
            HmacVerifier::new(SECRET, WallClock::new(Instant::now(), now)).expect("a verifier");
        let engine = Arc::new(
            Engine::builder()
                .bind(([0, 0, 0, 0], 0).into())
                .hub(
                    HubConfig::server(Arc::new(verifier))
                        .dtls(Certificate::generate().expect("a certificate")),
                )
                .start()
                .expect("a server"),
        );
        let endpoint = serve(&engine, ([127, 0, 0, 1], 0).into(), config).expect("signalling");
        (engine, endpoint)
    }

    fn server() -> (Arc<Engine>, SocketAddr) {
        let (engine, endpoint) = server_with(&Config::default());
        (engine, endpoint.addr)
    }

    fn client() -> Engine {
        Engine::builder()
            .hub(HubConfig::client().dtls(Certificate::generate().expect("a certificate")))
            .start()
            .expect("a client")
    }

    fn token(who: &str) -> bytes::Bytes {
        let expires = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs()
            + 600;
        mint_token(SECRET, "c", who, expires).expect("a token")
    }

    /// An HTTP client that reports every status as a response, bounded in
    /// time.
    fn agent() -> ureq::Agent {
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(10)))
            .build()
            .into()
    }

    /// A response's header, as a string ("" when absent).
    fn header_of(r: &ureq::http::Response<ureq::Body>, name: &str) -> String {
        r.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    }

    /// A directory of its own under the system's temporary one, removed on
    /// drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> Self {
            let dir = std::env::temp_dir().join(format!(
                "dcengine-signal-{name}-{}-{:?}",
                std::process::id(),
                Instant::now()
            ));
            std::fs::create_dir_all(&dir).expect("a temporary directory");
            TempDir(dir)
        }

        fn write(&self, file: &str, contents: &str) -> PathBuf {
            let path = self.0.join(file);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).expect("a directory");
            }
            std::fs::write(&path, contents).expect("a file");
            path
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn a_client_joins_through_the_http_endpoint_and_bad_requests_get_clear_errors() {
        let (_server, http) = server();
        let client = client();
        let t = token("alice");
        let call = client
            .join_signalled("c", "alice", t.clone(), |offer| {
                // The server listens on 0.0.0.0: the answer names the
                // address this request reached (127.0.0.1).
                let answer = request_answer(http, "c", "alice", &t, offer)?;
                assert!(answer.contains("127.0.0.1"), "{answer}");
                Ok::<_, String>(answer)
            })
            .expect("joins");
        assert!(
            crate::net::pollster_ready(&call),
            "joined over the answer's candidate"
        );

        let offer = "v=0\r\n";
        let e = request_answer(http, "c", "bob", b"forged", offer).expect_err("a bad token");
        assert!(e.contains("401"), "{e}");
        // A token for another call is refused as well: a call is made by
        // its first join, so "unknown" means "not what the token says".
        let e = request_answer(http, "other", "bob", &token("bob"), offer)
            .expect_err("a token for another call");
        assert!(e.contains("401"), "{e}");
        let e = request_answer(http, "c", "bob", &token("bob"), offer).expect_err("a bad offer");
        assert!(e.contains("400") && e.contains("SDP"), "{e}");
        let mut r = agent()
            .post(&format!("http://{http}{}", join_path("c")))
            .header("content-type", "application/json")
            .send("{not json")
            .expect("an answer");
        assert_eq!(r.status(), 400);
        let reply: Reply = r.body_mut().read_json().expect("a JSON error");
        assert!(
            reply.error.is_some_and(|e| e.contains("must be JSON")),
            "says what the body must be"
        );
        let mut r = agent()
            .post(&format!("http://{http}{}", join_path("c")))
            .header("content-type", "application/json")
            .send(r#"{"participant": "bob", "token": "zz", "sdp": ""}"#)
            .expect("an answer");
        assert_eq!(r.status(), 400);
        let reply: Reply = r.body_mut().read_json().expect("a JSON error");
        assert_eq!(reply.error.as_deref(), Some("the token must be hex"));
    }

    #[test]
    fn health_answers_and_unknown_routes_and_methods_are_json_errors() {
        let (_server, http) = server();
        let mut r = agent()
            .get(&format!("http://{http}/v1/health"))
            .call()
            .expect("an answer");
        assert_eq!(r.status(), 200);
        assert_eq!(header_of(&r, "content-type"), "application/json");
        assert_eq!(
            r.body_mut().read_to_string().expect("a body"),
            r#"{"ok":true}"#
        );

        let mut r = agent()
            .get(&format!("http://{http}/v1/nope"))
            .call()
            .expect("an answer");
        assert_eq!(r.status(), 404);
        let reply: Reply = r.body_mut().read_json().expect("a JSON error");
        assert_eq!(reply.error.as_deref(), Some("no such route: GET /v1/nope"));
        // No web root: / is not served either.
        let r = agent()
            .get(&format!("http://{http}/"))
            .call()
            .expect("an answer");
        assert_eq!(r.status(), 404);

        let mut r = agent()
            .get(&format!("http://{http}{}", join_path("c")))
            .call()
            .expect("an answer");
        assert_eq!(r.status(), 405);
        let reply: Reply = r.body_mut().read_json().expect("a JSON error");
        assert!(
            reply
                .error
                .is_some_and(|e| e.contains("GET is not allowed")),
            "says which method"
        );
    }

    /// A CORS preflight for a join from `origin`.
    fn preflight(http: SocketAddr, origin: &str) -> ureq::http::Response<ureq::Body> {
        agent()
            .options(&format!("http://{http}{}", join_path("c")))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type")
            .call()
            .expect("an answer")
    }

    #[test]
    fn without_cors_origins_no_cors_headers_are_sent() {
        let (_server, http) = server();
        let r = preflight(http, "http://app.example");
        assert_ne!(r.status(), 200, "no preflight is answered");
        assert_eq!(header_of(&r, "access-control-allow-origin"), "");
        let r = agent()
            .get(&format!("http://{http}/v1/health"))
            .header("origin", "http://app.example")
            .call()
            .expect("an answer");
        assert_eq!(r.status(), 200);
        assert_eq!(header_of(&r, "access-control-allow-origin"), "");
    }

    #[test]
    fn cors_origins_get_preflights_answered_and_others_do_not() {
        let (_server, endpoint) = server_with(&Config {
            cors_origins: vec!["http://app.example".into(), "https://b.example:8443".into()],
            ..Config::default()
        });
        let http = endpoint.addr;
        for origin in ["http://app.example", "https://b.example:8443"] {
            let r = preflight(http, origin);
            assert_eq!(r.status(), 200, "{origin}");
            assert_eq!(header_of(&r, "access-control-allow-origin"), origin);
            assert!(
                header_of(&r, "access-control-allow-methods").contains("POST"),
                "{origin}"
            );
            assert!(
                header_of(&r, "access-control-allow-headers").contains("content-type"),
                "{origin}"
            );
        }
        let r = preflight(http, "http://evil.example");
        assert_eq!(header_of(&r, "access-control-allow-origin"), "");
        // The actual request carries the header too.
        let r = agent()
            .get(&format!("http://{http}/v1/health"))
            .header("origin", "http://app.example")
            .call()
            .expect("an answer");
        assert_eq!(
            header_of(&r, "access-control-allow-origin"),
            "http://app.example"
        );

        let (_server, endpoint) = server_with(&Config {
            cors_origins: vec!["*".into()],
            ..Config::default()
        });
        let r = preflight(endpoint.addr, "http://anywhere.example");
        assert_eq!(r.status(), 200);
        assert_eq!(header_of(&r, "access-control-allow-origin"), "*");
    }

    #[test]
    fn a_malformed_cors_origin_is_refused_with_the_reason() {
        for (origin, why) in [
            ("http://localhost:8080/", "no path"),
            ("localhost:8080", "no scheme"),
            ("http://", "no host"),
        ] {
            let e = cors(&[origin.to_owned()]).expect_err(origin);
            assert!(e.contains(why) && e.contains(origin), "{origin}: {e}");
        }
    }

    #[test]
    fn demo_tokens_are_404_when_off_and_join_a_call_when_on() {
        let (_server, http) = server();
        let mut r = agent()
            .post(&format!("http://{http}/v1/calls/c/token"))
            .send_json(TokenBody {
                participant: "alice".into(),
            })
            .expect("an answer");
        assert_eq!(r.status(), 404);
        let reply: Reply = r.body_mut().read_json().expect("a JSON error");
        assert!(
            reply.error.is_some_and(|e| e.contains("--demo-tokens")),
            "says how to turn them on"
        );

        let (_server, endpoint) = server_with(&Config {
            demo_tokens: Some(DemoTokens {
                secret: SECRET.to_vec(),
                lifetime: DEMO_TOKEN_LIFETIME,
            }),
            ..Config::default()
        });
        let http = endpoint.addr;
        let url = format!("http://{http}/v1/calls/c/token");
        let mut r = agent()
            .post(&url)
            .send_json(TokenBody {
                participant: "carol".into(),
            })
            .expect("an answer");
        assert_eq!(r.status(), 200);
        let TokenReply { token } = r.body_mut().read_json().expect("a token");
        let token = crate::net::unhex(&token).expect("hex");
        let client = client();
        let call = client
            .join_signalled("c", "carol", token.clone(), |offer| {
                request_answer(http, "c", "carol", &token, offer)
            })
            .expect("joins with the demo token");
        assert!(crate::net::pollster_ready(&call), "joined");
        // The token names its participant and call: no one else's.
        let e = client
            .join_signalled("c", "mallory", token.clone(), |offer| {
                request_answer(http, "c", "mallory", &token, offer)
            })
            .expect_err("carol's token is not mallory's");
        assert!(e.to_string().contains("401"), "{e}");

        for (body, why) in [
            (r#"{"participant": ""}"#.to_owned(), "empty"),
            (
                format!(r#"{{"participant": "{}"}}"#, "x".repeat(256)),
                "256 bytes; at most 255",
            ),
            (r#"{"who": "x"}"#.to_owned(), "must be JSON"),
        ] {
            let mut r = agent()
                .post(&url)
                .header("content-type", "application/json")
                .send(&body)
                .expect("an answer");
            assert_eq!(r.status(), 400, "{body}");
            let reply: Reply = r.body_mut().read_json().expect("a JSON error");
            let error = reply.error.unwrap_or_default();
            assert!(error.contains(why), "{body}: {error}");
        }
        let r = agent()
            .post(&url)
            .send_json(TokenBody {
                participant: "x".repeat(255),
            })
            .expect("an answer");
        assert_eq!(r.status(), 200, "255 bytes is the limit, included");
    }

    #[test]
    fn the_web_root_is_served_with_module_content_types_and_the_api_first() {
        let web = TempDir::new("web");
        web.write("index.html", "<!doctype html><title>demo</title>");
        web.write("demo.js", "import './dcengine.js';");
        web.write("dcengine.js", "export const x = 1;");
        // A file where an API route is: the route wins.
        web.write("v1/health", "shadowed");
        let (_server, endpoint) = server_with(&Config {
            web: Some(web.0.clone()),
            ..Config::default()
        });
        let http = endpoint.addr;
        let get = |path: &str| {
            agent()
                .get(&format!("http://{http}{path}"))
                .call()
                .expect("an answer")
        };
        let mut r = get("/");
        assert_eq!(r.status(), 200);
        assert!(header_of(&r, "content-type").starts_with("text/html"));
        assert!(
            r.body_mut()
                .read_to_string()
                .expect("a body")
                .contains("<title>demo</title>")
        );
        for js in ["/demo.js", "/dcengine.js"] {
            let r = get(js);
            assert_eq!(r.status(), 200, "{js}");
            // What a browser needs to run it as an ES module.
            assert_eq!(header_of(&r, "content-type"), "text/javascript", "{js}");
        }
        let mut r = get("/v1/health");
        assert_eq!(
            r.body_mut().read_to_string().expect("a body"),
            r#"{"ok":true}"#
        );
        let mut r = get("/missing.js");
        assert_eq!(r.status(), 404);
        let reply: Reply = r.body_mut().read_json().expect("a JSON error");
        assert_eq!(
            reply.error.as_deref(),
            Some("no such route: GET /missing.js")
        );
        assert_eq!(get("/../Cargo.toml").status(), 404, "nothing outside");

        let e = router(
            &server().0,
            &Config {
                web: Some(web.0.join("index.html")),
                ..Config::default()
            },
        )
        .expect_err("a file is no web root");
        assert!(e.contains("not a directory"), "{e}");
    }

    /// A self-signed certificate for `localhost` and its key, as PEM files
    /// in `dir`.
    fn self_signed(dir: &TempDir, name: &str) -> (PathBuf, PathBuf, Vec<u8>) {
        let rcgen::CertifiedKey { cert, signing_key } =
            rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])
                .expect("a certificate");
        (
            dir.write(&format!("{name}.crt"), &cert.pem()),
            dir.write(&format!("{name}.key"), &signing_key.serialize_pem()),
            cert.der().to_vec(),
        )
    }

    /// `GET path` over TLS to `addr`, trusting only `root`: the raw
    /// response.
    fn https_get(addr: SocketAddr, root: &[u8], path: &str) -> Result<String, String> {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from(root.to_vec()))
            .map_err(|e| e.to_string())?;
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let name =
            rustls::pki_types::ServerName::try_from("localhost").map_err(|e| e.to_string())?;
        let tls =
            rustls::ClientConnection::new(Arc::new(config), name).map_err(|e| e.to_string())?;
        let tcp = std::net::TcpStream::connect(addr).map_err(|e| e.to_string())?;
        tcp.set_read_timeout(Some(Duration::from_secs(10)))
            .map_err(|e| e.to_string())?;
        let mut stream = rustls::StreamOwned::new(tls, tcp);
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        )
        .map_err(|e| e.to_string())?;
        let mut response = Vec::new();
        match stream.read_to_end(&mut response) {
            Ok(_) => {}
            // A peer that closes without close_notify: what came is enough.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !response.is_empty() => {}
            Err(e) => return Err(e.to_string()),
        }
        String::from_utf8(response).map_err(|e| e.to_string())
    }

    #[test]
    fn https_serves_with_the_given_certificate() {
        let dir = TempDir::new("tls");
        let (cert, key, der) = self_signed(&dir, "a");
        let (_server, endpoint) = server_with(&Config {
            tls: Some((cert, key)),
            ..Config::default()
        });
        assert!(endpoint.tls);
        assert!(
            endpoint.url().starts_with("https://127.0.0.1:"),
            "{}",
            endpoint.url()
        );
        let response = https_get(endpoint.addr, &der, "/v1/health").expect("HTTPS");
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        assert!(response.ends_with(r#"{"ok":true}"#), "{response}");

        // A client that trusts another certificate gives up; the server
        // goes on serving.
        let (_, _, other) = self_signed(&dir, "b");
        let e = https_get(endpoint.addr, &other, "/v1/health").expect_err("not trusted");
        assert!(e.contains("certificate"), "{e}");
        let response = https_get(endpoint.addr, &der, "/v1/health").expect("HTTPS again");
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");

        // Plain HTTP to the HTTPS port gets no answer from the API.
        let r = agent()
            .get(&format!("http://{}/v1/health", endpoint.addr))
            .call();
        assert!(r.map(|r| r.status() != 200).unwrap_or(true));
    }

    /// Why `tls_acceptor` refuses `cert` and `key`.
    fn tls_error(cert: &FsPath, key: &FsPath, case: &str) -> String {
        match tls_acceptor(cert, key) {
            Ok(_) => panic!("{case}: accepted"),
            Err(e) => e,
        }
    }

    #[test]
    fn tls_files_that_cannot_be_used_are_clear_errors() {
        let dir = TempDir::new("tls-bad");
        let (cert, key, _) = self_signed(&dir, "a");
        let (_, other_key, _) = self_signed(&dir, "b");
        let e = tls_error(&cert, &other_key, "mismatched");
        assert!(e.contains("does not belong to --tls-cert"), "{e}");
        let missing = dir.0.join("missing.crt");
        let e = tls_error(&missing, &key, "missing");
        assert!(e.contains("--tls-cert") && e.contains("missing.crt"), "{e}");
        let e = tls_error(&key, &key, "a key is no certificate");
        assert!(e.contains("no CERTIFICATE"), "{e}");
        let e = tls_error(&cert, &cert, "a certificate is no key");
        assert!(e.contains("--tls-key") && e.contains("a.crt"), "{e}");
    }
}
