//! HTTP signalling for `dcengine serve` (the server's end) and
//! `dcengine chat` (a client's): a participant posts its SDP offer with its
//! join token and gets the engine's answer.
//!
//! ```text
//! POST /v1/calls/{call}/join
//! Content-Type: application/json
//! {"participant": "alice", "token": "<hex, as `dcengine token` prints>", "sdp": "<offer>"}
//!
//! 200 {"sdp": "<answer>"}
//! 400 {"error": "..."}   the body or the offer is malformed
//! 401 {"error": "..."}   the token is refused
//! 503 {"error": "..."}   the server cannot take the peer now (full, stopping)
//! ```

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Json;
use axum::extract::connect_info::{ConnectInfo, Connected};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::post;
use axum::serve::IncomingStream;
use dcengine::{Engine, EngineError, SignalError};
use serde::{Deserialize, Serialize};

/// The path a participant posts its offer to.
pub(crate) fn join_path(call: &str) -> String {
    format!("/v1/calls/{call}/join")
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

/// The local address a request came in on: with an engine bound to an
/// unspecified address, the address the peer can reach it at.
#[derive(Debug, Clone, Copy)]
struct Local(SocketAddr);

impl Connected<IncomingStream<'_, tokio::net::TcpListener>> for Local {
    fn connect_info(stream: IncomingStream<'_, tokio::net::TcpListener>) -> Self {
        Local(
            stream
                .io()
                .local_addr()
                .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0))),
        )
    }
}

/// Serves the signalling endpoint for `engine` on `addr` (TCP), on a
/// thread of its own; returns the address it listens on.
pub(crate) fn serve(engine: Arc<Engine>, addr: SocketAddr) -> Result<SocketAddr, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .map_err(|e| format!("signalling: {e}"))?;
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind(addr))
        .map_err(|e| format!("signalling on {addr}: {e}"))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    let app = axum::Router::new()
        .route("/v1/calls/{call}/join", post(join))
        .with_state(engine);
    std::thread::Builder::new()
        .name("dcengine-signalling".into())
        .spawn(move || {
            let served = runtime.block_on(async move {
                axum::serve(listener, app.into_make_service_with_connect_info::<Local>()).await
            });
            if let Err(e) = served {
                tracing::error!("signalling stopped: {e}");
            }
        })
        .map_err(|e| e.to_string())?;
    Ok(local)
}

async fn join(
    State(engine): State<Arc<Engine>>,
    ConnectInfo(Local(local)): ConnectInfo<Local>,
    Path(call): Path<String>,
    body: Result<Json<JoinBody>, axum::extract::rejection::JsonRejection>,
) -> (StatusCode, Json<Reply>) {
    let refuse = |code: StatusCode, error: String| {
        (
            code,
            Json(Reply {
                sdp: None,
                error: Some(error),
            }),
        )
    };
    let Ok(Json(body)) = body else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "the body must be JSON: {\"participant\", \"token\" (hex), \"sdp\"}".into(),
        );
    };
    let Some(token) = crate::net::unhex(&body.token) else {
        return refuse(StatusCode::BAD_REQUEST, "the token must be hex".into());
    };
    // An engine on an unspecified address announces the one this request
    // reached, with its own port.
    let udp = engine.local_addr();
    let candidate = if udp.ip().is_unspecified() {
        SocketAddr::new(local.ip(), udp.port())
    } else {
        udp
    };
    let answered = tokio::task::spawn_blocking(move || {
        engine.accept_offer_at(&body.sdp, &[candidate], &call, &body.participant, &token)
    })
    .await;
    match answered {
        Ok(Ok(sdp)) => (
            StatusCode::OK,
            Json(Reply {
                sdp: Some(sdp),
                error: None,
            }),
        ),
        Ok(Err(EngineError::Signal(e))) => {
            let code = match e {
                SignalError::Refused(_) => StatusCode::UNAUTHORIZED,
                SignalError::Full(_) => StatusCode::SERVICE_UNAVAILABLE,
                SignalError::NotSecure => StatusCode::NOT_IMPLEMENTED,
                _ => StatusCode::BAD_REQUEST,
            };
            refuse(code, e.to_string())
        }
        Ok(Err(e)) => refuse(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        Err(e) => refuse(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// A client's end: posts `offer` for `participant` with `token` to the
/// server at `http` (`host:port`) and returns its answer.
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
    use std::time::{Duration, Instant};

    use dcengine::{Certificate, HmacVerifier, HubConfig, WallClock, mint_token};

    use super::*;

    const SECRET: &[u8] = b"signalling test secret";

    fn server() -> (Arc<Engine>, SocketAddr) {
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
        let http = serve(engine.clone(), ([127, 0, 0, 1], 0).into()).expect("signalling");
        (engine, http)
    }

    fn token(who: &str) -> bytes::Bytes {
        let expires = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs()
            + 600;
        mint_token(SECRET, "c", who, expires).expect("a token")
    }

    #[test]
    fn a_client_joins_through_the_http_endpoint_and_bad_requests_get_clear_errors() {
        let (_server, http) = server();
        let client = Engine::builder()
            .hub(HubConfig::client().dtls(Certificate::generate().expect("a certificate")))
            .start()
            .expect("a client");
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
        let e = request_answer(http, "c", "bob", &token("bob"), offer).expect_err("a bad offer");
        assert!(e.contains("400") && e.contains("SDP"), "{e}");
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(10)))
            .build()
            .into();
        let r = agent
            .post(&format!("http://{http}{}", join_path("c")))
            .header("content-type", "application/json")
            .send("{not json")
            .expect("an answer");
        assert_eq!(r.status(), 400);
    }
}
