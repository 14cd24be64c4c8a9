//! What the WebSocket providers share: connecting with headers under a
//! deadline, and mapping a refused handshake or a close to a
//! [`ProviderError`] of the right class. No header value (the key) is ever
//! put into an error or a log line.

use std::time::Duration;

use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Error as WsError;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::ProviderError;

/// A provider's socket.
pub(crate) type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Whether an HTTP status means "will not work on retry".
pub(crate) fn status_is_permanent(status: u16) -> bool {
    matches!(status, 400 | 401 | 403 | 404 | 405 | 410 | 413 | 415 | 422)
}

/// Cut a server's message to a loggable length (on a char boundary).
pub(crate) fn short(s: &str) -> String {
    const MAX: usize = 200;
    if s.len() <= MAX {
        return s.to_string();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// Connect to `url` with `headers` (e.g. the auth header) within `timeout`.
pub(crate) async fn connect(
    provider: &'static str,
    url: &str,
    headers: &[(&'static str, &str)],
    timeout: Duration,
) -> Result<Ws, ProviderError> {
    let mut req = url
        .into_client_request()
        .map_err(|e| ProviderError::Permanent {
            provider,
            message: format!("bad URL: {e}"),
        })?;
    for (name, value) in headers {
        let v = HeaderValue::from_str(value).map_err(|_| ProviderError::Permanent {
            provider,
            // Never echo the value: it may be the key.
            message: format!("header {name} holds characters HTTP does not allow"),
        })?;
        req.headers_mut().insert(*name, v);
    }
    match tokio::time::timeout(timeout, tokio_tungstenite::connect_async(req)).await {
        Err(_) => Err(ProviderError::Transient {
            provider,
            message: format!("WebSocket handshake took longer than {timeout:?}"),
            retry_after: None,
        }),
        Ok(Ok((ws, _resp))) => Ok(ws),
        Ok(Err(e)) => Err(handshake_error(provider, e)),
    }
}

/// The class of a failed handshake: 4xx auth/params are permanent; 429,
/// 5xx and network trouble are transient.
fn handshake_error(provider: &'static str, e: WsError) -> ProviderError {
    match e {
        WsError::Http(resp) => {
            let status = resp.status().as_u16();
            // Deepgram says why in `dg-error`; others in the body.
            let why = resp
                .headers()
                .get("dg-error")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
                .or_else(|| {
                    resp.body()
                        .as_deref()
                        .map(|b| String::from_utf8_lossy(b).into_owned())
                })
                .unwrap_or_default();
            let message = match status {
                401 | 403 => format!("authentication refused ({status})"),
                _ if why.trim().is_empty() => format!("handshake refused ({status})"),
                _ => format!("handshake refused ({status}): {}", short(why.trim())),
            };
            if status_is_permanent(status) {
                ProviderError::Permanent { provider, message }
            } else {
                let retry_after = resp
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(Duration::from_secs);
                ProviderError::Transient {
                    provider,
                    message,
                    retry_after,
                }
            }
        }
        WsError::Url(e) => ProviderError::Permanent {
            provider,
            message: format!("bad URL: {e}"),
        },
        other => ProviderError::Transient {
            provider,
            message: format!("cannot connect: {other}"),
            retry_after: None,
        },
    }
}

/// The error a close frame other than a normal one stands for: policy
/// violations (bad key, bad payload) are permanent, the rest transient.
pub(crate) fn close_error(provider: &'static str, frame: Option<&CloseFrame>) -> ProviderError {
    let (code, reason) = match frame {
        Some(f) => (u16::from(f.code), short(f.reason.as_str())),
        None => (1005, String::new()),
    };
    let message = if reason.is_empty() {
        format!("closed by the server ({code})")
    } else {
        format!("closed by the server ({code} {reason})")
    };
    if matches!(
        frame.map(|f| f.code),
        Some(CloseCode::Policy | CloseCode::Unsupported | CloseCode::Invalid | CloseCode::Protocol)
    ) {
        ProviderError::Permanent { provider, message }
    } else {
        ProviderError::Transient {
            provider,
            message,
            retry_after: None,
        }
    }
}

/// Whether a close frame is the normal end of the stream.
pub(crate) fn is_normal_close(frame: Option<&CloseFrame>) -> bool {
    frame.is_none_or(|f| f.code == CloseCode::Normal)
}

/// A read error on an open socket: the connection broke (transient).
pub(crate) fn read_error(provider: &'static str, e: WsError) -> ProviderError {
    ProviderError::Transient {
        provider,
        message: format!("connection lost: {e}"),
        retry_after: None,
    }
}

/// A message the client cannot make sense of (the protocol does not match:
/// permanent, so a chain moves on).
pub(crate) fn malformed(provider: &'static str, what: impl std::fmt::Display) -> ProviderError {
    ProviderError::Permanent {
        provider,
        message: format!("malformed message from the server: {what}"),
    }
}
