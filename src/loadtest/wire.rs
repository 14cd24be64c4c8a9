//! The load generator's own minimal Twilio Media Streams serialisation
//! (independent of the server's `carrier` module on purpose): outbound
//! messages are written into a reusable buffer with only the counters
//! varying; inbound messages are parsed with borrowed fields.

use std::borrow::Cow;

use bytes::BytesMut;
use serde::Deserialize;

/// Identifiers of one emulated call.
#[derive(Debug, Clone)]
pub struct CallIds {
    /// `MZ` + 32 hex.
    pub stream_sid: String,
    /// `CA` + 32 hex.
    pub call_sid: String,
    /// `AC` + 32 hex.
    pub account_sid: String,
    /// Caller number (`customParameters.from`).
    pub from: String,
    /// Called number (`customParameters.to`).
    pub to: String,
}

impl CallIds {
    /// Random SIDs; the caller number is derived from `index`.
    pub fn random(index: usize, rng: &mut impl rand::Rng) -> Self {
        let sid = |p: &str, rng: &mut dyn rand::RngCore| {
            let mut b = [0u8; 16];
            rng.fill_bytes(&mut b);
            format!("{p}{}", hex::encode(b))
        };
        Self {
            stream_sid: sid("MZ", rng),
            call_sid: sid("CA", rng),
            account_sid: "AC00000000000000000000000000000000".to_string(),
            from: format!("+1555{:07}", index % 10_000_000),
            to: "+15550000000".to_string(),
        }
    }
}

/// Append the decimal digits of `n`.
pub fn put_u64(out: &mut BytesMut, mut n: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

/// Append `s` as a JSON string literal.
fn put_json_str(out: &mut BytesMut, s: &str) {
    // Serialising a &str cannot fail.
    let v = serde_json::to_string(s).unwrap_or_default();
    out.extend_from_slice(v.as_bytes());
}

/// Per-call prefix of every media message: everything up to the
/// `sequenceNumber` value.
pub fn media_prefix(stream_sid: &str) -> Box<[u8]> {
    format!(r#"{{"event":"media","streamSid":"{stream_sid}","sequenceNumber":""#)
        .into_bytes()
        .into_boxed_slice()
}

/// One inbound `media` message (`prefix` from [`media_prefix`]).
pub fn write_media(
    out: &mut BytesMut,
    prefix: &[u8],
    seq: u64,
    chunk: u64,
    timestamp_ms: u64,
    payload_b64: &[u8],
) {
    out.reserve(prefix.len() + payload_b64.len() + 128);
    out.extend_from_slice(prefix);
    put_u64(out, seq);
    out.extend_from_slice(br#"","media":{"track":"inbound","chunk":""#);
    put_u64(out, chunk);
    out.extend_from_slice(br#"","timestamp":""#);
    put_u64(out, timestamp_ms);
    out.extend_from_slice(br#"","payload":""#);
    out.extend_from_slice(payload_b64);
    out.extend_from_slice(br#""}}"#);
}

/// The `connected` message.
pub fn write_connected(out: &mut BytesMut) {
    out.extend_from_slice(br#"{"event":"connected","protocol":"Call","version":"1.0.0"}"#);
}

/// The `start` message.
pub fn write_start(out: &mut BytesMut, ids: &CallIds, seq: u64) {
    let v = serde_json::json!({
        "event": "start",
        "sequenceNumber": seq.to_string(),
        "streamSid": ids.stream_sid,
        "start": {
            "accountSid": ids.account_sid,
            "streamSid": ids.stream_sid,
            "callSid": ids.call_sid,
            "tracks": ["inbound"],
            "customParameters": { "from": ids.from, "to": ids.to },
            "mediaFormat": { "encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1 },
        },
    });
    out.extend_from_slice(v.to_string().as_bytes());
}

/// A `mark` echo.
pub fn write_mark(out: &mut BytesMut, ids: &CallIds, seq: u64, name: &str) {
    out.extend_from_slice(br#"{"event":"mark","sequenceNumber":""#);
    put_u64(out, seq);
    out.extend_from_slice(br#"","streamSid":""#);
    out.extend_from_slice(ids.stream_sid.as_bytes());
    out.extend_from_slice(br#"","mark":{"name":"#);
    put_json_str(out, name);
    out.extend_from_slice(b"}}");
}

/// The `stop` message.
pub fn write_stop(out: &mut BytesMut, ids: &CallIds, seq: u64) {
    out.extend_from_slice(br#"{"event":"stop","sequenceNumber":""#);
    put_u64(out, seq);
    out.extend_from_slice(br#"","streamSid":""#);
    out.extend_from_slice(ids.stream_sid.as_bytes());
    out.extend_from_slice(br#"","stop":{"accountSid":""#);
    out.extend_from_slice(ids.account_sid.as_bytes());
    out.extend_from_slice(br#"","callSid":""#);
    out.extend_from_slice(ids.call_sid.as_bytes());
    out.extend_from_slice(br#""}}"#);
}

/// A server → carrier message, fields borrowed from the frame.
#[derive(Debug, Deserialize)]
pub struct ServerMessage<'a> {
    /// `media`, `mark` or `clear`.
    #[serde(borrow)]
    pub event: Cow<'a, str>,
    /// Must equal the stream's SID.
    #[serde(rename = "streamSid", borrow, default)]
    pub stream_sid: Option<Cow<'a, str>>,
    /// Present on `media`.
    #[serde(borrow, default)]
    pub media: Option<ServerMedia<'a>>,
    /// Present on `mark`.
    #[serde(borrow, default)]
    pub mark: Option<ServerMark<'a>>,
}

/// `media` body.
#[derive(Debug, Deserialize)]
pub struct ServerMedia<'a> {
    /// Base64 μ-law.
    #[serde(borrow)]
    pub payload: Cow<'a, str>,
}

/// `mark` body.
#[derive(Debug, Deserialize)]
pub struct ServerMark<'a> {
    /// The mark's name.
    #[serde(borrow)]
    pub name: Cow<'a, str>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids() -> CallIds {
        CallIds {
            stream_sid: "MZ1".into(),
            call_sid: "CA1".into(),
            account_sid: "AC1".into(),
            from: "+15550000001".into(),
            to: "+15550000000".into(),
        }
    }

    fn json(out: &BytesMut) -> serde_json::Value {
        serde_json::from_slice(out).unwrap_or(serde_json::Value::Null)
    }

    #[test]
    fn media_message_is_twilio_shaped() {
        let mut out = BytesMut::new();
        write_media(&mut out, &media_prefix("MZ1"), 1234567890, 7, 120, b"AAAA");
        let v = json(&out);
        assert_eq!(v["event"], "media");
        assert_eq!(v["streamSid"], "MZ1");
        assert_eq!(v["sequenceNumber"], "1234567890");
        assert_eq!(v["media"]["chunk"], "7");
        assert_eq!(v["media"]["timestamp"], "120");
        assert_eq!(v["media"]["track"], "inbound");
        assert_eq!(v["media"]["payload"], "AAAA");
        let mut z = BytesMut::new();
        put_u64(&mut z, 0);
        assert_eq!(&z[..], b"0");
    }

    #[test]
    fn control_messages_are_twilio_shaped() {
        let mut out = BytesMut::new();
        write_start(&mut out, &ids(), 1);
        let v = json(&out);
        assert_eq!(v["start"]["mediaFormat"]["sampleRate"], 8000);
        assert_eq!(v["start"]["customParameters"]["from"], "+15550000001");
        assert_eq!(v["sequenceNumber"], "1");
        out.clear();
        write_mark(&mut out, &ids(), 9, "a\"b");
        let v = json(&out);
        assert_eq!(v["mark"]["name"], "a\"b");
        assert_eq!(v["sequenceNumber"], "9");
        out.clear();
        write_stop(&mut out, &ids(), 10);
        assert_eq!(json(&out)["stop"]["callSid"], "CA1");
        out.clear();
        write_connected(&mut out);
        assert_eq!(json(&out)["protocol"], "Call");
        let r = CallIds::random(3, &mut rand::thread_rng());
        assert_eq!((r.stream_sid.len(), r.call_sid.len()), (34, 34));
        assert!(r.stream_sid.starts_with("MZ"));
    }

    #[test]
    fn server_messages_borrow() {
        let t = r#"{"event":"media","streamSid":"MZ1","media":{"payload":"AAAA"}}"#;
        let m: Result<ServerMessage, _> = serde_json::from_str(t);
        let m = m.map_err(|e| e.to_string());
        assert!(matches!(
            m.as_ref().map(|m| m
                .media
                .as_ref()
                .map(|x| matches!(x.payload, Cow::Borrowed("AAAA")))),
            Ok(Some(true))
        ));
    }
}
