//! The axum router: media WebSockets, health, readiness, metrics and the API.
//!
//! [`serve`] takes an already-bound listener (tests bind port 0) and a
//! shutdown future. On shutdown the server drains: `/readyz` turns 503, new
//! media streams are refused, live calls get `server.drain_grace_s` to finish
//! and are then cancelled, and only then does the HTTP server stop.

pub mod api;
pub mod notify;

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::serve::ListenerExt;
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::app::App;
use crate::call::{run_call, CallServices};
use crate::carrier::twilio::TwilioCodec;
use crate::config::Config;
use crate::metrics::Metrics;

/// Largest WebSocket message the transport accepts at all; the carrier codec
/// applies the tighter `server.max_message_bytes` and survives what it rejects.
const WS_TRANSPORT_LIMIT: usize = 1 << 20;

/// The WebSocket read buffer. tungstenite zero-fills the free part of this
/// buffer before every socket read, so its 128 KiB default costs a 128 KiB
/// memset per 20 ms media frame; carrier messages are < 1 KiB, and the buffer
/// still grows for a larger one.
const WS_READ_BUFFER: usize = 4096;

/// Shared state of every handler. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// The validated config.
    pub config: Arc<Config>,
    /// Process metrics.
    pub metrics: Arc<Metrics>,
    /// Store, calendar, CRM (the `/api` routes).
    pub api: Arc<api::ApiState>,
    /// What each call needs.
    pub calls: CallServices,
    /// Live call tasks, for draining.
    pub tracker: TaskTracker,
    /// Cancels every live call (after the drain grace).
    pub cancel_calls: CancellationToken,
    /// True once shutdown began.
    pub draining: Arc<AtomicBool>,
    /// Caps concurrent calls at `server.max_calls`.
    pub call_slots: Arc<Semaphore>,
}

impl AppState {
    /// The state of a server over `app`'s services.
    pub fn new(app: &App) -> AppState {
        let config = app.config.clone();
        let tracker = TaskTracker::new();
        AppState {
            calls: CallServices::new(app, tracker.clone()),
            call_slots: Arc::new(Semaphore::new(config.server.max_calls)),
            metrics: app.metrics.clone(),
            api: Arc::new(api::ApiState::new(
                app.services.clone(),
                app.api_token.clone(),
            )),
            config,
            tracker,
            cancel_calls: CancellationToken::new(),
            draining: Arc::new(AtomicBool::new(false)),
        }
    }
}

/// Build the router.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/media/twilio", get(media_twilio))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .merge(api::routes())
        .merge(notify::routes())
        .with_state(state)
}

async fn readyz(State(s): State<AppState>) -> Response {
    if s.draining.load(Relaxed) {
        (StatusCode::SERVICE_UNAVAILABLE, "draining\n").into_response()
    } else {
        "ready\n".into_response()
    }
}

async fn metrics(State(s): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.metrics.render(),
    )
        .into_response()
}

async fn media_twilio(State(s): State<AppState>, ws: WebSocketUpgrade) -> Response {
    if s.draining.load(Relaxed) {
        s.metrics.calls_refused.fetch_add(1, Relaxed);
        return (StatusCode::SERVICE_UNAVAILABLE, "draining\n").into_response();
    }
    // Refuse early when a started stream could not get a permit anyway; the
    // permit itself is taken only once the stream sends `start`.
    if s.call_slots.available_permits() == 0 {
        s.metrics.calls_refused.fetch_add(1, Relaxed);
        warn!(
            max_calls = s.config.server.max_calls,
            "refusing media stream: at capacity"
        );
        return (StatusCode::SERVICE_UNAVAILABLE, "at capacity\n").into_response();
    }
    let slots = s.call_slots.clone();
    let codec = TwilioCodec::new(s.config.server.max_message_bytes);
    let services = s.calls.clone();
    let cancel = s.cancel_calls.child_token();
    let tracker = s.tracker.clone();
    ws.read_buffer_size(WS_READ_BUFFER)
        .max_message_size(WS_TRANSPORT_LIMIT)
        .max_frame_size(WS_TRANSPORT_LIMIT)
        .on_upgrade(move |socket| {
            tracker.track_future(run_call(socket, codec, services, slots, cancel))
        })
}

/// Serve `state` on `listener` until `shutdown` resolves, then drain.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let grace = Duration::from_secs(state.config.server.drain_grace_s);
    let drain_state = state.clone();
    let drained = async move {
        shutdown.await;
        drain_state.draining.store(true, Relaxed);
        drain_state.tracker.close();
        let live = drain_state.metrics.active_calls.load(Relaxed);
        info!(live_calls = live, grace_s = grace.as_secs(), "draining");
        if tokio::time::timeout(grace, drain_state.tracker.wait())
            .await
            .is_err()
        {
            warn!("drain grace over: ending remaining calls");
            drain_state.cancel_calls.cancel();
            let _ = tokio::time::timeout(Duration::from_secs(5), drain_state.tracker.wait()).await;
        }
        info!("drained");
    };
    // Media is small writes every 20 ms: never let Nagle hold one back waiting
    // for an ACK.
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            warn!(error = %e, "cannot set TCP_NODELAY");
        }
    });
    axum::serve(listener, router(state))
        .with_graceful_shutdown(drained)
        .await
}
