//! A mock OpenAI-compatible server: `POST /v1/chat/completions` answers
//! with what the test's script returns (an SSE body in pieces, an error
//! status, or nothing at all), and reports each request — its
//! `Authorization` header and JSON body — and the moment the client went
//! away in the middle of a streamed body.
#![allow(dead_code)]

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use futures_util::StreamExt;
use tokio::sync::mpsc;

/// What the server answers one request with.
pub enum Answer {
    /// 200 `text/event-stream`, these pieces in order (an event may be cut
    /// anywhere), then the end of the body — or, with `hold`, no end: the
    /// body stays open until the client goes away.
    Sse { pieces: Vec<String>, hold: bool },
    /// A non-2xx status with a body and optional `Retry-After`.
    Status(u16, String, Option<u64>),
    /// Never answer.
    Silence,
}

/// One request the server got.
#[derive(Debug, Clone)]
pub struct Seen {
    /// The `Authorization` header, if any.
    pub auth: Option<String>,
    /// The JSON body.
    pub body: serde_json::Value,
}

/// A running mock.
pub struct MockLlm {
    /// `http://127.0.0.1:PORT/v1`
    pub base_url: String,
    /// Requests, in order.
    pub requests: mpsc::UnboundedReceiver<Seen>,
    /// One message each time a held body is dropped because the client left.
    pub dropped: mpsc::UnboundedReceiver<()>,
}

type Script = Arc<dyn Fn(usize) -> Answer + Send + Sync>;

#[derive(Clone)]
struct St {
    script: Script,
    n: Arc<std::sync::atomic::AtomicUsize>,
    seen: mpsc::UnboundedSender<Seen>,
    dropped: mpsc::UnboundedSender<()>,
}

/// Signals when the body stream holding it is dropped.
struct Guard(mpsc::UnboundedSender<()>);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.send(());
    }
}

async fn chat(State(st): State<St>, headers: HeaderMap, body: Bytes) -> Response {
    let n = st.n.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let _ = st.seen.send(Seen {
        auth: headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        body: serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
    });
    match (st.script)(n) {
        Answer::Sse { pieces, hold } => {
            let head = futures_util::stream::iter(
                pieces
                    .into_iter()
                    .map(|p| Ok::<_, std::convert::Infallible>(Bytes::from(p))),
            );
            let body = if hold {
                let guard = Guard(st.dropped.clone());
                Body::from_stream(head.chain(futures_util::stream::pending()).map(move |x| {
                    let _held = &guard;
                    x
                }))
            } else {
                Body::from_stream(head)
            };
            (
                [
                    ("content-type", "text/event-stream"),
                    ("x-request-id", "req_1"),
                ],
                body,
            )
                .into_response()
        }
        Answer::Status(code, body, retry) => {
            let mut r = (StatusCode::from_u16(code).unwrap(), body).into_response();
            if let Some(s) = retry {
                r.headers_mut()
                    .insert("retry-after", s.to_string().parse().unwrap());
            }
            r
        }
        Answer::Silence => std::future::pending().await,
    }
}

/// Serve `script` (called with the request's number, from 0).
pub async fn start(script: impl Fn(usize) -> Answer + Send + Sync + 'static) -> MockLlm {
    let (seen, requests) = mpsc::unbounded_channel();
    let (dropped_tx, dropped) = mpsc::unbounded_channel();
    let st = St {
        script: Arc::new(script),
        n: Arc::default(),
        seen,
        dropped: dropped_tx,
    };
    let app = axum::Router::new()
        .route("/v1/chat/completions", post(chat))
        .with_state(st);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base_url = format!("http://{}/v1", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    MockLlm {
        base_url,
        requests,
        dropped,
    }
}

/// `data: {json}\n\n`
pub fn event(v: serde_json::Value) -> String {
    format!("data: {v}\n\n")
}

/// A content delta chunk, with the fields real servers add.
pub fn text_chunk(t: &str) -> String {
    event(serde_json::json!({
        "id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1730000000,
        "model": "gpt-4o-mini", "service_tier": "default", "obfuscation": "a8Xk",
        "choices": [{"index": 0, "delta": {"content": t}, "logprobs": null, "finish_reason": null}],
        "usage": null
    }))
}
