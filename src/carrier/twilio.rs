//! Twilio Media Streams (bidirectional `<Connect><Stream>`).
//!
//! Inbound: `connected`, `start` (with `customParameters`), `media` (base64
//! μ-law 8 kHz), `dtmf`, `mark`, `stop`. Outbound: `media`, `mark`, `clear`,
//! each carrying the `streamSid` of the `start`. Unknown fields are ignored;
//! counters are strings. The per-frame path borrows the JSON text, decodes
//! base64 and μ-law into buffers the codec reuses, and allocates nothing.

use std::borrow::Cow;
use std::collections::BTreeMap;

use base64::Engine as _;
use serde::Deserialize;

use super::{CallEvent, CarrierCodec, CarrierCommand, CarrierError, StreamStart};
use crate::audio::g711;
use crate::pii::Pii;

/// Largest media payload accepted in one message: one second of audio.
pub const MAX_PAYLOAD_SAMPLES: usize = 8000;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

#[derive(Deserialize)]
struct Inbound<'a> {
    #[serde(borrow)]
    event: Cow<'a, str>,
    #[serde(rename = "streamSid", borrow, default)]
    stream_sid: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    media: Option<MediaBody<'a>>,
    #[serde(default)]
    start: Option<StartBody>,
    #[serde(borrow, default)]
    mark: Option<MarkBody<'a>>,
    #[serde(borrow, default)]
    dtmf: Option<DtmfBody<'a>>,
}

#[derive(Deserialize)]
struct MediaBody<'a> {
    #[serde(borrow, default)]
    track: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    timestamp: Option<Cow<'a, str>>,
    #[serde(borrow)]
    payload: Cow<'a, str>,
}

#[derive(Deserialize)]
struct StartBody {
    #[serde(rename = "streamSid", default)]
    stream_sid: Option<String>,
    #[serde(rename = "callSid", default)]
    call_sid: String,
    #[serde(rename = "accountSid", default)]
    account_sid: String,
    #[serde(rename = "customParameters", default)]
    custom_parameters: BTreeMap<String, String>,
    #[serde(rename = "mediaFormat", default)]
    media_format: Option<MediaFormat>,
}

#[derive(Deserialize)]
struct MediaFormat {
    #[serde(default)]
    encoding: Option<String>,
    #[serde(rename = "sampleRate", default)]
    sample_rate: Option<u32>,
}

#[derive(Deserialize)]
struct MarkBody<'a> {
    #[serde(borrow)]
    name: Cow<'a, str>,
}

#[derive(Deserialize)]
struct DtmfBody<'a> {
    #[serde(borrow)]
    digit: Cow<'a, str>,
}

/// Stream ids and mark names go back into JSON we write by hand, so they are
/// restricted to characters that need no escaping.
fn is_safe_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The Twilio Media Streams codec for one call.
#[derive(Debug)]
pub struct TwilioCodec {
    max_message_bytes: usize,
    stream_sid: Option<String>,
    ulaw: Vec<u8>,
    pcm: Vec<i16>,
}

impl TwilioCodec {
    /// A codec that rejects text frames over `max_message_bytes`.
    pub fn new(max_message_bytes: usize) -> Self {
        TwilioCodec {
            max_message_bytes,
            stream_sid: None,
            ulaw: Vec::with_capacity(1024),
            pcm: Vec::with_capacity(1024),
        }
    }

    /// The stream id from `start`, once it has arrived.
    pub fn stream_sid(&self) -> Option<&str> {
        self.stream_sid.as_deref()
    }

    fn check_stream(&self, sid: Option<&Cow<'_, str>>) -> Result<(), CarrierError> {
        match (&self.stream_sid, sid) {
            (None, _) => Err(CarrierError::OutOfPlace("message before start".into())),
            (Some(ours), Some(theirs)) if ours.as_str() != theirs.as_ref() => Err(
                CarrierError::OutOfPlace("streamSid does not match start".into()),
            ),
            _ => Ok(()),
        }
    }
}

impl CarrierCodec for TwilioCodec {
    fn name(&self) -> &'static str {
        "twilio"
    }

    fn parse_text(&mut self, text: &str) -> Result<CallEvent<'_>, CarrierError> {
        if text.len() > self.max_message_bytes {
            return Err(CarrierError::Oversize(text.len()));
        }
        let msg: Inbound<'_> =
            serde_json::from_str(text).map_err(|e| CarrierError::Malformed(e.to_string()))?;
        match msg.event.as_ref() {
            "media" => {
                self.check_stream(msg.stream_sid.as_ref())?;
                let media = msg
                    .media
                    .ok_or_else(|| CarrierError::Malformed("media event without `media`".into()))?;
                if let Some(track) = &media.track {
                    if track != "inbound" && track != "inbound_track" {
                        return Ok(CallEvent::Ignored);
                    }
                }
                let payload = media.payload.as_bytes();
                if payload.is_empty() {
                    return Err(CarrierError::BadPayload("empty payload".into()));
                }
                if payload.len() / 4 * 3 > MAX_PAYLOAD_SAMPLES + 3 {
                    return Err(CarrierError::BadPayload(format!(
                        "{} base64 bytes is more than one second of audio",
                        payload.len()
                    )));
                }
                self.ulaw.clear();
                // STANDARD rejects lengths that do not decode to whole bytes and
                // non-canonical trailing bits: a payload must be whole 8-bit samples.
                B64.decode_vec(payload, &mut self.ulaw)
                    .map_err(|e| CarrierError::BadPayload(e.to_string()))?;
                self.pcm.clear();
                g711::decode_ulaw_into(&self.ulaw, &mut self.pcm);
                let timestamp_ms = media.timestamp.as_deref().and_then(|t| t.parse().ok());
                Ok(CallEvent::Media {
                    timestamp_ms,
                    pcm: &self.pcm,
                })
            }
            "mark" => {
                self.check_stream(msg.stream_sid.as_ref())?;
                let mark = msg
                    .mark
                    .ok_or_else(|| CarrierError::Malformed("mark event without `mark`".into()))?;
                Ok(CallEvent::Mark(mark.name.into_owned()))
            }
            "dtmf" => {
                self.check_stream(msg.stream_sid.as_ref())?;
                let dtmf = msg
                    .dtmf
                    .ok_or_else(|| CarrierError::Malformed("dtmf event without `dtmf`".into()))?;
                let mut chars = dtmf.digit.chars();
                match (chars.next(), chars.next()) {
                    (Some(c), None) if c.is_ascii_digit() || "*#ABCD".contains(c) => {
                        Ok(CallEvent::Dtmf(c))
                    }
                    _ => Err(CarrierError::Malformed(format!(
                        "bad dtmf digit {:?}",
                        dtmf.digit
                    ))),
                }
            }
            "start" => {
                if self.stream_sid.is_some() {
                    return Err(CarrierError::OutOfPlace("second start".into()));
                }
                let start = msg
                    .start
                    .ok_or_else(|| CarrierError::Malformed("start event without `start`".into()))?;
                let sid = msg
                    .stream_sid
                    .map(Cow::into_owned)
                    .or(start.stream_sid)
                    .ok_or_else(|| CarrierError::Malformed("start without streamSid".into()))?;
                if !is_safe_id(&sid) {
                    return Err(CarrierError::Malformed(
                        "streamSid has unexpected characters".into(),
                    ));
                }
                if let Some(fmt) = &start.media_format {
                    let enc_ok = fmt.encoding.as_deref().is_none_or(|e| e == "audio/x-mulaw");
                    let rate_ok = fmt.sample_rate.is_none_or(|r| r == 8000);
                    if !enc_ok || !rate_ok {
                        return Err(CarrierError::Malformed(format!(
                            "unsupported media format {:?} @ {:?}",
                            fmt.encoding, fmt.sample_rate
                        )));
                    }
                }
                self.stream_sid = Some(sid.clone());
                Ok(CallEvent::Start(Box::new(StreamStart {
                    stream_sid: sid,
                    call_sid: start.call_sid,
                    account_sid: start.account_sid,
                    custom_parameters: start
                        .custom_parameters
                        .into_iter()
                        .map(|(k, v)| (k, Pii::new(v)))
                        .collect(),
                })))
            }
            "stop" => Ok(CallEvent::Stop),
            "connected" => Ok(CallEvent::Connected),
            other => Err(CarrierError::UnknownEvent(other.chars().take(32).collect())),
        }
    }

    fn parse_binary(&mut self, _data: &[u8]) -> Result<CallEvent<'_>, CarrierError> {
        Err(CarrierError::UnexpectedFrame("binary"))
    }

    fn encode(&mut self, cmd: &CarrierCommand, out: &mut String) {
        // Before `start` there is no stream to address; the core never sends then.
        let sid = self.stream_sid.as_deref().unwrap_or("");
        match cmd {
            CarrierCommand::Media(pcm) => {
                self.ulaw.clear();
                g711::encode_ulaw_into(pcm, &mut self.ulaw);
                out.reserve(64 + sid.len() + self.ulaw.len().div_ceil(3) * 4);
                out.push_str(r#"{"event":"media","streamSid":""#);
                out.push_str(sid);
                out.push_str(r#"","media":{"payload":""#);
                B64.encode_string(&self.ulaw, out);
                out.push_str(r#""}}"#);
            }
            CarrierCommand::Mark(name) => {
                debug_assert!(is_safe_id(name), "mark names are generated by the core");
                out.push_str(r#"{"event":"mark","streamSid":""#);
                out.push_str(sid);
                out.push_str(r#"","mark":{"name":""#);
                out.push_str(name);
                out.push_str(r#""}}"#);
            }
            CarrierCommand::Clear => {
                out.push_str(r#"{"event":"clear","streamSid":""#);
                out.push_str(sid);
                out.push_str(r#""}"#);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const START: &str = r#"{"event":"start","sequenceNumber":"1","streamSid":"MZ123",
        "start":{"accountSid":"AC1","streamSid":"MZ123","callSid":"CA9","tracks":["inbound"],
        "customParameters":{"from":"+447700900123"},
        "mediaFormat":{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1}},"extra":{"x":1}}"#;

    fn started() -> TwilioCodec {
        let mut c = TwilioCodec::new(65536);
        c.parse_text(r#"{"event":"connected","protocol":"Call","version":"1.0.0"}"#)
            .unwrap();
        assert!(matches!(c.parse_text(START).unwrap(), CallEvent::Start(_)));
        c
    }

    fn media(payload: &str) -> String {
        format!(
            r#"{{"event":"media","sequenceNumber":"4","streamSid":"MZ123","media":{{"track":"inbound","chunk":"2","timestamp":"40","payload":"{payload}"}}}}"#
        )
    }

    #[test]
    fn start_carries_ids_and_masked_parameters() {
        let mut c = TwilioCodec::new(65536);
        let CallEvent::Start(s) = c.parse_text(START).unwrap() else {
            panic!("not a start")
        };
        assert_eq!(
            (s.stream_sid.as_str(), s.call_sid.as_str()),
            ("MZ123", "CA9")
        );
        let from = &s.custom_parameters["from"];
        assert_eq!(from.expose(), "+447700900123");
        assert!(!format!("{s:?}").contains("7700900"));
    }

    #[test]
    fn media_decodes_ulaw_to_pcm() {
        let mut c = started();
        let payload = B64.encode([0xFFu8, 0x80, 0x00, 0xF2]);
        let ev = c.parse_text(&media(&payload)).unwrap();
        assert_eq!(
            ev,
            CallEvent::Media {
                timestamp_ms: Some(40),
                pcm: &[0, 32124, -32124, 104]
            }
        );
    }

    #[test]
    fn dtmf_mark_stop() {
        let mut c = started();
        let d = r#"{"event":"dtmf","streamSid":"MZ123","sequenceNumber":"5","dtmf":{"track":"inbound_track","digit":"7"}}"#;
        assert_eq!(c.parse_text(d).unwrap(), CallEvent::Dtmf('7'));
        let m =
            r#"{"event":"mark","sequenceNumber":"4","streamSid":"MZ123","mark":{"name":"g1-2"}}"#;
        assert_eq!(c.parse_text(m).unwrap(), CallEvent::Mark("g1-2".into()));
        let s = r#"{"event":"stop","sequenceNumber":"5","streamSid":"MZ123","stop":{"accountSid":"AC1","callSid":"CA9"}}"#;
        assert_eq!(c.parse_text(s).unwrap(), CallEvent::Stop);
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        let mut c = started();
        assert!(matches!(
            c.parse_text("{not json"),
            Err(CarrierError::Malformed(_))
        ));
        assert!(matches!(
            c.parse_text(&media("!!!!")),
            Err(CarrierError::BadPayload(_))
        ));
        // 5 base64 chars cannot be whole bytes.
        assert!(matches!(
            c.parse_text(&media("/////")),
            Err(CarrierError::BadPayload(_))
        ));
        assert!(matches!(
            c.parse_text(&media("")),
            Err(CarrierError::BadPayload(_))
        ));
        assert!(matches!(
            c.parse_text(r#"{"event":"dance","streamSid":"MZ123"}"#),
            Err(CarrierError::UnknownEvent(_))
        ));
        let other = media("AAAA").replace("MZ123", "MZ999");
        assert!(matches!(
            c.parse_text(&other),
            Err(CarrierError::OutOfPlace(_))
        ));
        let big = media(&"A".repeat(20_000));
        assert!(matches!(
            c.parse_text(&big),
            Err(CarrierError::BadPayload(_))
        ));
        let mut small = TwilioCodec::new(1024);
        assert!(matches!(
            small.parse_text(&big),
            Err(CarrierError::Oversize(_))
        ));
        assert!(matches!(
            c.parse_binary(b"\x00\x01"),
            Err(CarrierError::UnexpectedFrame(_))
        ));
        // After all that, media still works.
        assert!(matches!(
            c.parse_text(&media("//8=")),
            Ok(CallEvent::Media { .. })
        ));
    }

    #[test]
    fn media_before_start_and_unsafe_stream_ids_are_rejected() {
        let mut c = TwilioCodec::new(65536);
        assert!(matches!(
            c.parse_text(&media("AAAA")),
            Err(CarrierError::OutOfPlace(_))
        ));
        let evil = START.replace("MZ123", r#"MZ\"},\"x"#);
        assert!(c.parse_text(&evil).is_err());
    }

    #[test]
    fn outbound_messages_are_valid_twilio_json() {
        let mut c = started();
        let mut out = String::new();
        c.encode(&CarrierCommand::Media(vec![0, 1000, -1000]), &mut out);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["event"], "media");
        assert_eq!(v["streamSid"], "MZ123");
        let bytes = B64.decode(v["media"]["payload"].as_str().unwrap()).unwrap();
        assert_eq!(bytes, vec![0xFF, 0xCE, 0x4E]);
        out.clear();
        c.encode(&CarrierCommand::Mark("g3-1".into()), &mut out);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(
            (v["event"].as_str(), v["mark"]["name"].as_str()),
            (Some("mark"), Some("g3-1"))
        );
        out.clear();
        c.encode(&CarrierCommand::Clear, &mut out);
        assert_eq!(out, r#"{"event":"clear","streamSid":"MZ123"}"#);
    }

    proptest! {
        #[test]
        fn arbitrary_text_never_panics(s in ".{0,600}") {
            let mut c = started();
            let _ = c.parse_text(&s);
        }

        #[test]
        fn arbitrary_bytes_as_text_never_panic(b in proptest::collection::vec(any::<u8>(), 0..600)) {
            let mut c = started();
            let s = String::from_utf8_lossy(&b);
            let _ = c.parse_text(&s);
            let _ = c.parse_binary(&b);
        }

        #[test]
        fn arbitrary_payloads_never_panic(p in "[A-Za-z0-9+/=]{0,400}") {
            let mut c = started();
            if let Ok(CallEvent::Media { pcm, .. }) = c.parse_text(&media(&p)) {
                prop_assert!(pcm.len() <= MAX_PAYLOAD_SAMPLES);
            }
        }

        #[test]
        fn structured_junk_never_panics(
            event in prop_oneof!["media", "start", "mark", "dtmf", "stop", "connected", "x"],
            field in prop_oneof!["media", "start", "mark", "dtmf", "stop"],
            val in prop_oneof![Just("null".to_string()), Just("{}".to_string()), Just("[]".to_string()), Just("1".to_string()), "\"[a-z]{0,5}\"", Just(r#"{"payload":"AAAA","name":"x","digit":"1"}"#.to_string())],
        ) {
            let mut c = started();
            let s = format!(r#"{{"event":"{event}","streamSid":"MZ123","{field}":{val}}}"#);
            let _ = c.parse_text(&s);
        }
    }
}
