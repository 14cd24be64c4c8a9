//! A WebSocket mock of a provider: checks one auth header at the upgrade
//! (a wrong or missing one gets the HTTP 401 a real provider answers),
//! tells the test each accepted handshake, and hands every accepted socket
//! to the test's own protocol script.
#![allow(dead_code)]

use std::future::Future;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;
pub use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// The provider's side of one connection.
pub type Conn = WebSocketStream<TcpStream>;

/// One upgrade the mock saw.
#[derive(Debug, Clone)]
pub struct Handshake {
    /// Path and query, e.g. `/v1/listen?model=nova-3&…`.
    pub uri: String,
    /// Whether it was refused (bad key).
    pub refused: bool,
    /// Header values the test asked to see, in `seen_headers` order.
    pub headers: Vec<Option<String>>,
}

/// A running mock.
pub struct MockWs {
    /// `ws://127.0.0.1:PORT` (no path).
    pub base: String,
    /// Every handshake, in order.
    pub handshakes: mpsc::UnboundedReceiver<Handshake>,
}

/// Serve on a free port. Upgrades must carry `auth.0: auth.1`; `seen` names
/// headers to report in each [`Handshake`].
pub async fn start<F, Fut>(
    auth: (&'static str, String),
    seen: &'static [&'static str],
    script: F,
) -> MockWs
where
    F: Fn(Conn) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("ws://{}", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::unbounded_channel();
    let script = Arc::new(script);
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (tx, script, auth) = (tx.clone(), script.clone(), auth.clone());
            tokio::spawn(async move {
                let mut hs = None;
                // The handshake callback's signature is tungstenite's, error type included.
                #[allow(clippy::result_large_err)]
                let check = |req: &Request, resp: Response| -> Result<Response, ErrorResponse> {
                    let ok = req
                        .headers()
                        .get(auth.0)
                        .and_then(|v| v.to_str().ok())
                        .is_some_and(|v| v == auth.1);
                    hs = Some(Handshake {
                        uri: req.uri().to_string(),
                        refused: !ok,
                        headers: seen
                            .iter()
                            .map(|h| {
                                req.headers()
                                    .get(*h)
                                    .and_then(|v| v.to_str().ok())
                                    .map(str::to_string)
                            })
                            .collect(),
                    });
                    if ok {
                        Ok(resp)
                    } else {
                        let mut r = ErrorResponse::new(Some("{\"err_msg\":\"bad key\"}".into()));
                        *r.status_mut() = StatusCode::UNAUTHORIZED;
                        Err(r)
                    }
                };
                let ws = tokio_tungstenite::accept_hdr_async(tcp, check).await;
                if let Some(h) = hs {
                    let _ = tx.send(h);
                }
                if let Ok(ws) = ws {
                    script(ws).await;
                }
            });
        }
    });
    MockWs {
        base,
        handshakes: rx,
    }
}

/// The JSON of a text frame, or `None` for other frames.
pub fn json_of(m: &Message) -> Option<serde_json::Value> {
    match m {
        Message::Text(t) => serde_json::from_str(t.as_str()).ok(),
        _ => None,
    }
}
