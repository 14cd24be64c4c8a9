//! Which WebSocket receive errors are the peer breaking the protocol, and the
//! close code (RFC 6455 §7.4.1) that tells it so.
//!
//! The transport (tungstenite, behind axum's `WebSocket`) refuses some frames
//! before any carrier codec sees them: text that is not UTF-8, a message over
//! the transport's size limit, a reserved opcode or broken framing. Those end
//! the call, but the carrier deserves a close code saying why, and operators a
//! counted, logged rejection. A connection that merely dropped (reset, EOF
//! without a close handshake, an I/O error) is not a rejection: nothing can be
//! sent to it, and it is not the peer's malformed input.

use std::error::Error as StdError;

use tokio_tungstenite::tungstenite::error::ProtocolError;
use tokio_tungstenite::tungstenite::Error as WsError;

/// 1002: the peer broke the WebSocket protocol (reserved opcode, bad framing).
pub const PROTOCOL_ERROR: u16 = 1002;
/// 1007: a text message that is not UTF-8.
pub const INVALID_PAYLOAD: u16 = 1007;
/// 1009: a message or frame over the transport's size limit.
pub const MESSAGE_TOO_BIG: u16 = 1009;

/// The close code and reason to send for a receive error that is the peer's
/// protocol violation, or `None` for a transport failure (the connection is
/// gone) or anything that is not a tungstenite error.
///
/// The reason never quotes the peer's bytes.
pub fn protocol_close(err: &axum::Error) -> Option<(u16, &'static str)> {
    // axum::Error wraps the tungstenite error as its source; walk the chain
    // in case another layer ever wraps it again.
    let mut cause: Option<&(dyn StdError + 'static)> = err.source();
    while let Some(e) = cause {
        if let Some(ws) = e.downcast_ref::<WsError>() {
            return close_for(ws);
        }
        cause = e.source();
    }
    None
}

fn close_for(err: &WsError) -> Option<(u16, &'static str)> {
    match err {
        WsError::Utf8(_) => Some((INVALID_PAYLOAD, "text message is not UTF-8")),
        WsError::Capacity(_) => Some((MESSAGE_TOO_BIG, "message too big")),
        // The peer vanished: there is no one to tell.
        WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => None,
        WsError::Protocol(_) => Some((PROTOCOL_ERROR, "websocket protocol violation")),
        // Closed, reset, I/O and TLS failures, and errors that only happen
        // while sending or connecting: nothing to tell the peer.
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_tungstenite::tungstenite::error::CapacityError;

    fn wrapped(e: WsError) -> axum::Error {
        axum::Error::new(e)
    }

    #[test]
    fn peer_violations_get_their_close_codes() {
        let utf8 = wrapped(WsError::Utf8("invalid utf-8".into()));
        assert_eq!(protocol_close(&utf8).map(|c| c.0), Some(1007));
        let big = wrapped(WsError::Capacity(CapacityError::MessageTooLong {
            size: 70_000,
            max_size: 66_560,
        }));
        assert_eq!(protocol_close(&big).map(|c| c.0), Some(1009));
        for p in [
            ProtocolError::UnknownDataFrameType(3),
            ProtocolError::UnknownControlFrameType(11),
            ProtocolError::NonZeroReservedBits,
            ProtocolError::UnmaskedFrameFromClient,
            ProtocolError::FragmentedControlFrame,
            ProtocolError::UnexpectedContinueFrame,
        ] {
            let e = wrapped(WsError::Protocol(p.clone()));
            assert_eq!(protocol_close(&e).map(|c| c.0), Some(1002), "{p:?}");
        }
    }

    #[test]
    fn a_vanished_peer_is_not_a_rejection() {
        for e in [
            WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake),
            WsError::ConnectionClosed,
            WsError::Io(std::io::Error::from(std::io::ErrorKind::ConnectionReset)),
        ] {
            assert_eq!(protocol_close(&wrapped(e)), None);
        }
        let other = axum::Error::new(std::io::Error::other("not a websocket error"));
        assert_eq!(protocol_close(&other), None);
    }
}
