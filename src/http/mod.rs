//! The axum router: media WebSockets, health, readiness, metrics and the API.
//!
//! [`serve`] takes an already-bound listener (tests bind port 0) and a
//! shutdown future. On shutdown the server drains: `/readyz` turns 503, new
//! media streams are refused, live calls get `server.drain_grace_s` to finish
//! and are then cancelled, and only then does the HTTP server stop. Every
//! connection must send its request head within `server.header_timeout_ms`.

pub mod api;
pub mod dashboard;
pub mod notify;
pub mod twilio;

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::serve::{Listener, ListenerExt};
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::app::App;
use crate::call::{run_call, CallServices};
use crate::carrier::twilio::TwilioCodec;
use crate::config::Config;
use crate::metrics::Metrics;

/// How far over `server.max_message_bytes` the WebSocket transport still
/// accepts a message (or frame). The carrier codec rejects anything over
/// `max_message_bytes` and the call goes on; beyond this margin the transport
/// refuses it with close code 1009. The limit is also what one connection can
/// make tungstenite reserve by announcing a frame, so it stays near the size
/// of a real carrier message (Twilio's are < 1 KiB), not megabytes.
const WS_TRANSPORT_MARGIN: usize = 1024;

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
    /// The dashboard's token, session key and opening hours.
    pub dashboard: Arc<dashboard::DashboardState>,
}

impl AppState {
    /// The state of a server over `app`'s services.
    pub fn new(app: &App) -> AppState {
        let config = app.config.clone();
        let tracker = TaskTracker::new();
        AppState {
            calls: app.call_services(tracker.clone()),
            dashboard: Arc::new(dashboard::DashboardState::new(app)),
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
        .merge(twilio::routes())
        .merge(notify::routes())
        .merge(dashboard::routes())
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
    let transport_limit = s
        .config
        .server
        .max_message_bytes
        .saturating_add(WS_TRANSPORT_MARGIN);
    ws.read_buffer_size(WS_READ_BUFFER)
        .max_message_size(transport_limit)
        .max_frame_size(transport_limit)
        .on_upgrade(move |socket| {
            tracker.track_future(run_call(socket, codec, services, slots, cancel))
        })
}

/// Serve `state` on `listener` until `shutdown` resolves, then drain.
///
/// Each accepted connection gets `server.header_timeout_ms` to deliver a
/// complete request head, counted from the accept (before hyper even knows
/// the protocol) and again between kept-alive requests, so silent or
/// half-sent connections cannot pile up. Upgraded WebSockets leave the HTTP
/// connection behind and are bounded by the call, not by this.
///
/// Drain order: `/readyz` turns 503 and new media streams are refused while
/// the listener still answers; live calls get `server.drain_grace_s`, are then
/// cancelled and waited for (bounded); only then does the listener close, every
/// HTTP connection shut down gracefully, and this return once they are gone.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let grace = Duration::from_secs(state.config.server.drain_grace_s);
    let header_timeout = Duration::from_millis(u64::from(state.config.server.header_timeout_ms));
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
        // The ended calls' last records are queued: write them before going.
        if let Some(records) = &drain_state.calls.records {
            if !records.flush(Duration::from_secs(5)).await {
                warn!("call records not all written before shutdown");
            }
        }
        info!("drained");
    };
    tokio::pin!(drained);
    // Media is small writes every 20 ms: never let Nagle hold one back waiting
    // for an ACK.
    let mut listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            warn!(error = %e, "cannot set TCP_NODELAY");
        }
    });
    // HTTP/1.1 only (carriers and webhooks speak it): no protocol sniffing,
    // so the upgraded media socket is not read through an extra rewind
    // buffer on every frame.
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    let builder = Arc::new(builder);
    let app = router(state);
    let connections = TaskTracker::new();
    let close_connections = CancellationToken::new();
    loop {
        let tcp = tokio::select! {
            // `Listener::accept` retries accept errors (e.g. out of file
            // descriptors) after a pause instead of returning them.
            (tcp, _peer) = Listener::accept(&mut listener) => tcp,
            () = &mut drained => break,
        };
        connections.spawn(serve_connection(
            builder.clone(),
            tcp,
            app.clone(),
            header_timeout,
            close_connections.clone(),
        ));
    }
    drop(listener);
    close_connections.cancel();
    connections.close();
    connections.wait().await;
    Ok(())
}

/// One HTTP connection, until it closes, upgrades, or fails to send a
/// request head within `header_timeout`.
async fn serve_connection(
    builder: Arc<hyper::server::conn::http1::Builder>,
    tcp: TcpStream,
    app: Router,
    header_timeout: Duration,
    shutdown: CancellationToken,
) {
    // This bounds the wait for the first request head from the accept,
    // whatever hyper's own header timer does with a connection that sends
    // nothing at all.
    let got_request = Arc::new(AtomicBool::new(false));
    let service = {
        let got_request = got_request.clone();
        let app = TowerToHyperService::new(app);
        hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
            got_request.store(true, Relaxed);
            hyper::service::Service::call(&app, req)
        })
    };
    let conn = builder
        .serve_connection(TokioIo::new(tcp), service)
        .with_upgrades();
    tokio::pin!(conn);
    let first_request = tokio::time::sleep(header_timeout);
    tokio::pin!(first_request);
    let mut awaiting_first = true;
    let mut shutting_down = false;
    loop {
        tokio::select! {
            res = conn.as_mut() => {
                if let Err(e) = res {
                    debug!(error = %e, "http connection ended with an error");
                }
                return;
            }
            () = &mut first_request, if awaiting_first => {
                awaiting_first = false;
                if !got_request.load(Relaxed) {
                    debug!(timeout_ms = header_timeout.as_millis() as u64, "no request head in time: closing the connection");
                    return;
                }
            }
            () = shutdown.cancelled(), if !shutting_down => {
                shutting_down = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}
