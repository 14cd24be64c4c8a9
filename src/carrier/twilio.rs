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

/// Longest call, stream or account id accepted. Twilio's are 34 characters
/// (`CA`/`MZ`/`AC` and 32 hex digits); other carriers and test emulators use
/// other shapes, so the rule is `[A-Za-z0-9_-]{1,64}`. The ids go into every
/// log line of the call (its span), so they must be short and plain.
const MAX_ID_LEN: usize = 64;

/// A call, stream or account id: 1–64 of `[A-Za-z0-9_-]`.
fn is_carrier_id(s: &str) -> bool {
    s.len() <= MAX_ID_LEN && is_safe_id(s)
}

/// The most characters of carrier text an error message quotes.
const MAX_QUOTED: usize = 64;

/// Carrier vocabulary (event names, encodings, digits): short runs of
/// `[A-Za-z0-9_./*#+-]` with fewer than six digits, so never a phone number.
fn is_plain_word(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_./*#+-".contains(c))
        && s.bytes().filter(u8::is_ascii_digit).count() < 6
}

/// Carrier text as an error message (and so a log line) may quote it: a plain
/// word, cut to [`MAX_QUOTED`] characters, as it is; anything else (free text
/// that may be a name, a phone number, control characters) masked by
/// [`crate::pii::mask`], which shows only a length or a phone's last two digits.
fn quoted(s: &str) -> String {
    if !is_plain_word(s) {
        return crate::pii::mask(s);
    }
    if s.len() <= MAX_QUOTED {
        return format!("`{s}`");
    }
    // Plain words are ASCII: slicing at a byte index is a char boundary.
    format!("`{}…` ({} chars)", &s[..MAX_QUOTED], s.len())
}

/// A JSON error, without serde's message: that quotes the offending value
/// (`invalid type: string "+447700900123"`), which is carrier text.
fn json_error(e: &serde_json::Error) -> CarrierError {
    let what = match e.classify() {
        serde_json::error::Category::Syntax => "not JSON",
        serde_json::error::Category::Eof => "truncated JSON",
        serde_json::error::Category::Data => "JSON of the wrong shape",
        serde_json::error::Category::Io => "unreadable JSON",
    };
    CarrierError::Malformed(format!("{what} at line {} column {}", e.line(), e.column()))
}

/// `field` of `start` must be a carrier id.
fn check_id(field: &str, value: &str) -> Result<(), CarrierError> {
    if is_carrier_id(value) {
        Ok(())
    } else {
        Err(CarrierError::Malformed(format!(
            "{field} is not 1–{MAX_ID_LEN} of [A-Za-z0-9_-] ({} bytes)",
            value.len()
        )))
    }
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
        let msg: Inbound<'_> = serde_json::from_str(text).map_err(|e| json_error(&e))?;
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
                        "bad dtmf digit {}",
                        quoted(&dtmf.digit)
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
                check_id("streamSid", &sid)?;
                check_id("callSid", &start.call_sid)?;
                check_id("accountSid", &start.account_sid)?;
                // Parameter names are logged as they are (the values masked).
                if let Some(name) = start.custom_parameters.keys().find(|k| !is_carrier_id(k)) {
                    return Err(CarrierError::Malformed(format!(
                        "customParameters name is not 1–{MAX_ID_LEN} of [A-Za-z0-9_-] ({} bytes)",
                        name.len()
                    )));
                }
                if let Some(fmt) = &start.media_format {
                    let enc_ok = fmt.encoding.as_deref().is_none_or(|e| e == "audio/x-mulaw");
                    let rate_ok = fmt.sample_rate.is_none_or(|r| r == 8000);
                    if !enc_ok || !rate_ok {
                        return Err(CarrierError::Malformed(format!(
                            "unsupported media format {} @ {:?} Hz",
                            fmt.encoding
                                .as_deref()
                                .map_or_else(|| "(none)".into(), quoted),
                            fmt.sample_rate
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
            other => Err(CarrierError::UnknownEvent(quoted(other))),
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

    /// The start message with one field of `start` replaced.
    fn start_with(field: &str, value: &str) -> String {
        let mut v: serde_json::Value = serde_json::from_str(START).unwrap();
        v["start"][field] = serde_json::Value::String(value.into());
        if field == "streamSid" {
            v["streamSid"] = serde_json::Value::String(value.into());
        }
        v.to_string()
    }

    #[test]
    fn twilio_and_emulator_ids_start_a_call() {
        let twilio = [
            ("callSid", "CA0123456789abcdef0123456789abcdef"),
            ("streamSid", "MZ0123456789abcdef0123456789abcdef"),
            ("accountSid", "AC0123456789abcdef0123456789abcdef"),
        ];
        for (field, id) in twilio {
            let mut c = TwilioCodec::new(65536);
            let ev = c.parse_text(&start_with(field, id));
            assert!(
                matches!(ev, Ok(CallEvent::Start(_))),
                "{field}={id}: {ev:?}"
            );
        }
        let mut c = TwilioCodec::new(65536);
        let ev = c.parse_text(&start_with("callSid", &"call_1-x".repeat(8)));
        assert!(matches!(ev, Ok(CallEvent::Start(_))), "64 chars: {ev:?}");
    }

    #[test]
    fn start_with_a_bad_id_is_rejected_and_starts_no_call() {
        let long = "A".repeat(60_000);
        for field in ["callSid", "streamSid", "accountSid"] {
            for bad in [
                long.as_str(),
                "",
                "CA 1",
                "CA\u{1b}[31m",
                "CA1\"}",
                "+447700900123",
                "CAé",
                &"a".repeat(65),
            ] {
                let mut c = TwilioCodec::new(1 << 20);
                let msg = start_with(field, bad);
                let err = c
                    .parse_text(&msg)
                    .expect_err("a bad id must not start a call");
                let text = err.to_string();
                assert!(text.len() < 200, "{field}: {} chars of error", text.len());
                assert!(!text.contains("7700900"), "{field}: {text}");
                assert!(!text.chars().any(char::is_control), "{field}: {text:?}");
                // No call started: media is still out of place.
                assert!(matches!(
                    c.parse_text(&media("AAAA")),
                    Err(CarrierError::OutOfPlace(_))
                ));
            }
        }
        let mut c = TwilioCodec::new(65536);
        let no_call_sid = START.replace(r#""callSid":"CA9","#, "");
        assert!(
            c.parse_text(&no_call_sid).is_err(),
            "a start without callSid"
        );
    }

    /// Everything a carrier can put in an error message is short, printable
    /// and never a phone number.
    #[test]
    fn error_messages_carry_little_and_safe_carrier_text() {
        let number = "+447700900123";
        let huge = "e".repeat(60_000);
        let cases = [
            format!(r#"{{"event":"{huge}","streamSid":"MZ123"}}"#),
            format!(r#"{{"event":"{number}","streamSid":"MZ123"}}"#),
            format!(r#"{{"event":"call {number} now","streamSid":"MZ123"}}"#),
            r#"{"event":"a\u001b[2Jb\n\r\u0000","streamSid":"MZ123"}"#.to_string(),
            format!(r#"{{"event":"dtmf","streamSid":"MZ123","dtmf":{{"digit":"{number}"}}}}"#),
            format!(r#"{{"event":"dtmf","streamSid":"MZ123","dtmf":{{"digit":"{huge}"}}}}"#),
            r#"{"event":"dtmf","streamSid":"MZ123","dtmf":{"digit":"\u001b[1m"}}"#.to_string(),
            // serde's own messages quote the offending value.
            format!(
                r#"{{"event":"dtmf","streamSid":"MZ123","dtmf":{{"digit":{{"x":"{number}"}}}}}}"#
            ),
            format!(
                r#"{{"event":"media","streamSid":"MZ123","media":{{"payload":["{number}"]}}}}"#
            ),
            format!(r#"{{"event":{{"{number}":1}}}}"#),
            format!(r#"{{"event":"{number}"#),
            r#"{"event":"dtmf","streamSid":"MZ123","dtmf":{"digit":447700900123}}"#.to_string(),
            format!(
                r#"{{"event":"start","start":{{"callSid":"CA1","mediaFormat":{{"sampleRate":"{number}"}}}}}}"#
            ),
        ];
        for msg in &cases {
            let mut c = started();
            let err = c.parse_text(msg).expect_err("rejected");
            let text = err.to_string();
            let shown = msg.chars().take(60).collect::<String>();
            assert!(text.len() <= 160, "{shown}: {} chars: {text}", text.len());
            assert!(!text.contains("7700900"), "{shown}: {text}");
            assert!(!text.chars().any(char::is_control), "{shown}: {text:?}");
            assert!(!text.contains('\u{1b}'), "{shown}: {text:?}");
        }
        // A plain unknown event name is still shown, for operators.
        let mut c = started();
        let err = c
            .parse_text(r#"{"event":"dance","streamSid":"MZ123"}"#)
            .unwrap_err();
        assert!(err.to_string().contains("dance"), "{err}");
        let mut c = TwilioCodec::new(65536);
        let odd_format = START.replace("audio/x-mulaw", &format!("{huge}{number}"));
        let text = c.parse_text(&odd_format).unwrap_err().to_string();
        assert!(text.len() <= 160 && !text.contains("7700900"), "{text}");
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
