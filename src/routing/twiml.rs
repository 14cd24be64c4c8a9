//! TwiML rendering: a [`Plan`] (or a screening, or a fixed reply) as an
//! escaped XML `<Response>`.
//!
//! Every callback URL is absolute (`server.public_url` + path), because
//! Twilio signs and requests exactly the URL we give it, and carries what the
//! next webhook needs (`n` = the configured number, `leg`, `group`, `step`,
//! `menu`, `attempt`, `call`, `accept`) in its query string — the signature covers the
//! query, so none of it can be forged.

use chrono::{DateTime, Utc};

use super::plan::{Leg, Plan, Press, Ring, Screening, Speech, Step, Target};
use super::signature::{sign_stream_token, StreamKey, STREAM_TOKEN_TTL_S};

/// Most characters of a `<Parameter>` value (Twilio: name + value < 500).
const MAX_PARAMETER_CHARS: usize = 400;

/// An XML element.
#[derive(Debug, Clone)]
pub struct El {
    name: &'static str,
    attrs: Vec<(&'static str, String)>,
    children: Vec<Node>,
}

#[derive(Debug, Clone)]
enum Node {
    El(El),
    Text(String),
}

impl El {
    /// `<name>`.
    pub fn new(name: &'static str) -> El {
        El {
            name,
            attrs: Vec::new(),
            children: Vec::new(),
        }
    }

    /// Add an attribute.
    pub fn attr(mut self, k: &'static str, v: impl Into<String>) -> El {
        self.attrs.push((k, v.into()));
        self
    }

    /// Add a child element.
    pub fn child(mut self, c: El) -> El {
        self.children.push(Node::El(c));
        self
    }

    /// Add text.
    pub fn text(mut self, t: impl Into<String>) -> El {
        self.children.push(Node::Text(t.into()));
        self
    }

    fn write(&self, out: &mut String) {
        out.push('<');
        out.push_str(self.name);
        for (k, v) in &self.attrs {
            out.push(' ');
            out.push_str(k);
            out.push_str("=\"");
            escape_into(v, out);
            out.push('"');
        }
        if self.children.is_empty() {
            out.push_str("/>");
            return;
        }
        out.push('>');
        for c in &self.children {
            match c {
                Node::El(e) => e.write(out),
                Node::Text(t) => escape_into(t, out),
            }
        }
        out.push_str("</");
        out.push_str(self.name);
        out.push('>');
    }

    /// The document: XML declaration and this element.
    pub fn document(&self) -> String {
        let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>");
        self.write(&mut out);
        out
    }
}

/// XML-escape text or an attribute value; characters XML 1.0 forbids
/// (control characters other than tab, CR, LF) are dropped.
fn escape_into(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => {}
            c => out.push(c),
        }
    }
}

/// Percent-encode a query value (RFC 3986 unreserved characters kept).
pub fn encode_query_value(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `{base}{path}?k=v&…` with encoded values (empty values left out).
pub fn url(base: &str, path: &str, query: &[(&str, String)]) -> String {
    let mut u = format!("{}{path}", base.trim_end_matches('/'));
    let mut sep = '?';
    for (k, v) in query.iter().filter(|(_, v)| !v.is_empty()) {
        u.push(sep);
        u.push_str(k);
        u.push('=');
        u.push_str(&encode_query_value(v));
        sep = '&';
    }
    u
}

/// The media WebSocket URL for `public_url` (`https` → `wss`, `http` → `ws`).
pub fn stream_url(public_url: &str) -> String {
    let base = public_url.trim_end_matches('/');
    let ws = if let Some(rest) = base.strip_prefix("https://") {
        format!("wss://{rest}")
    } else if let Some(rest) = base.strip_prefix("http://") {
        format!("ws://{rest}")
    } else {
        base.to_string()
    };
    format!("{ws}/media/twilio")
}

/// What rendering needs besides the plan.
#[derive(Debug, Clone, Copy)]
pub struct Render<'a> {
    /// `server.public_url`.
    pub public_url: &'a str,
    /// The caller's call (the parent leg).
    pub call_sid: &'a str,
    /// `From` of the webhook.
    pub from: &'a str,
    /// `To` of the webhook.
    pub to: &'a str,
    /// Signs the stream token.
    pub stream_key: &'a StreamKey,
    /// When the TwiML is built (the token expires `STREAM_TOKEN_TTL_S` later).
    pub now: DateTime<Utc>,
}

fn speech(s: &Speech) -> El {
    match s {
        Speech::Say(t) => El::new("Say").text(t.clone()),
        Speech::Play(u) => El::new("Play").text(u.clone()),
    }
}

fn truncate(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

impl Render<'_> {
    fn number_q(&self, plan: &Plan) -> (&'static str, String) {
        ("n", plan.number.clone().unwrap_or_default())
    }

    /// The `<Response>` for `plan`.
    pub fn plan(&self, plan: &Plan) -> String {
        let mut r = El::new("Response");
        for s in &plan.say_first {
            r = r.child(speech(s));
        }
        let n = self.number_q(plan);
        match &plan.step {
            Step::Ai {
                mode,
                transfer_failed,
            } => {
                let expires = self.now + chrono::Duration::seconds(STREAM_TOKEN_TTL_S);
                let token = sign_stream_token(self.call_sid, expires, self.stream_key);
                let mut params = vec![
                    ("call_sid", self.call_sid.to_string()),
                    ("from", self.from.to_string()),
                    ("to", self.to.to_string()),
                    ("mode", mode.as_str().to_string()),
                    ("number", n.1.clone()),
                    ("token", token),
                ];
                if *transfer_failed {
                    params.push(("transfer_failed", "true".into()));
                }
                let mut stream = El::new("Stream").attr("url", stream_url(self.public_url));
                for (k, v) in params {
                    stream = stream.child(
                        El::new("Parameter")
                            .attr("name", k)
                            .attr("value", truncate(&v, MAX_PARAMETER_CHARS)),
                    );
                }
                let action = url(
                    self.public_url,
                    "/twilio/after-stream",
                    &[n.clone(), ("mode", mode.as_str().into())],
                );
                r = r.child(El::new("Connect").attr("action", action).child(stream));
            }
            Step::Ring(ring) => r = r.child(self.dial(ring, &n)),
            Step::Menu {
                id,
                prompt,
                timeout_s,
                attempt,
            } => {
                let action = url(
                    self.public_url,
                    "/twilio/voice",
                    &[n, ("menu", id.clone()), ("attempt", attempt.to_string())],
                );
                r = r.child(
                    El::new("Gather")
                        .attr("input", "dtmf")
                        .attr("numDigits", "1")
                        .attr("timeout", timeout_s.to_string())
                        .attr("actionOnEmptyResult", "true")
                        .attr("action", action)
                        .child(speech(prompt)),
                );
            }
            Step::Voicemail {
                greeting,
                alert_group,
            } => {
                let action = url(
                    self.public_url,
                    "/twilio/recording",
                    &[n, ("group", alert_group.clone().unwrap_or_default())],
                );
                r = r
                    .child(speech(greeting))
                    .child(
                        El::new("Record")
                            .attr("action", action)
                            .attr("maxLength", "120")
                            .attr("timeout", "5")
                            .attr("playBeep", "true"),
                    )
                    .child(El::new("Hangup"));
            }
            Step::Reject => r = r.child(El::new("Reject").attr("reason", "rejected")),
            Step::Hangup => r = r.child(El::new("Hangup")),
        }
        r.document()
    }

    fn dial(&self, ring: &Ring, n: &(&'static str, String)) -> El {
        let mut q = ring.leg.query();
        q.push(n.clone());
        let action = url(self.public_url, "/twilio/dial-complete", &q);
        let mut d = El::new("Dial")
            .attr("timeout", ring.timeout_s.to_string())
            .attr("action", action);
        if let Some(id) = &ring.caller_id {
            d = d.attr("callerId", id.clone());
        }
        if ring.record {
            d = d.attr("record", "record-from-answer");
        }
        let mut wq = vec![("call", self.call_sid.to_string())];
        wq.extend(ring.leg.query());
        wq.push(n.clone());
        let whisper = url(self.public_url, "/twilio/whisper", &wq);
        let status = url(
            self.public_url,
            "/twilio/status",
            &[("call", self.call_sid.to_string())],
        );
        for t in &ring.targets {
            let (name, body) = match t {
                Target::Client(c) => ("Client", c.clone()),
                Target::Sip(s) => ("Sip", s.clone()),
                Target::Phone { e164, .. } => ("Number", e164.clone()),
            };
            let mut noun = El::new(name)
                .attr(
                    "statusCallbackEvent",
                    "initiated ringing answered completed",
                )
                .attr("statusCallback", status.clone());
            if ring.screened {
                noun = noun.attr("url", whisper.clone());
            }
            if let Target::Phone {
                forwarded: true, ..
            } = t
            {
                if ring.machine_detection {
                    noun = noun.attr("machineDetection", "Enable");
                }
            }
            d = d.child(noun.text(body));
        }
        d
    }

    /// The answering human's TwiML: the screening words, then either nothing
    /// (bridge) or a one-digit `<Gather>` whose silence ends in `<Hangup/>`, so
    /// a voicemail box that never presses a key is not connected.
    pub fn screening(&self, s: &Screening, accept_url: &str) -> String {
        let mut r = El::new("Response");
        match s.press {
            None => {
                for t in &s.say {
                    r = r.child(El::new("Say").text(t.clone()));
                }
            }
            Some(p) => {
                let mut g = El::new("Gather")
                    .attr("input", "dtmf")
                    .attr("numDigits", "1")
                    .attr("timeout", p.wait_s().to_string())
                    .attr("action", accept_url.to_string());
                for t in &s.say {
                    g = g.child(El::new("Say").text(t.clone()));
                }
                r = r.child(g).child(El::new("Hangup"));
            }
        }
        r.document()
    }
}

/// The reply to a screened leg's key: `<Response/>` bridges, `<Hangup/>` drops the leg.
pub fn accept_reply(press: Option<Press>, digits: &str) -> String {
    let accepted = press.map(|p| p.accepts(digits)).unwrap_or(true);
    if accepted {
        El::new("Response").document()
    } else {
        hangup()
    }
}

/// `<Response><Hangup/></Response>`.
pub fn hangup() -> String {
    El::new("Response").child(El::new("Hangup")).document()
}

/// `<Response><Say>…</Say><Hangup/></Response>`.
pub fn say_and_hang_up(text: &str) -> String {
    El::new("Response")
        .child(El::new("Say").text(text))
        .child(El::new("Hangup"))
        .document()
}

/// An empty `<Response/>` (status callbacks).
pub fn empty() -> String {
    El::new("Response").document()
}

/// Which of our legs a callback URL names, for the TwiML of the whisper.
pub fn leg_label(leg: &Leg) -> &'static str {
    match leg {
        Leg::Assigned => "assigned",
        Leg::Number => "number",
        Leg::Transfer => "transfer",
        Leg::Oncall { .. } => "oncall",
    }
}

#[cfg(test)]
#[path = "../../tests/support/xml.rs"]
pub(crate) mod xml;

#[cfg(test)]
mod tests {
    use super::super::plan::Mode;
    use super::*;

    const PUBLIC: &str = "https://fd.example";

    fn render(doc: &Plan) -> xml::Node {
        let key = StreamKey::from_auth_token("tok");
        let r = Render {
            public_url: PUBLIC,
            call_sid: "CA1",
            from: "+447700900123",
            to: "+442079460001",
            stream_key: &key,
            now: DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default(),
        };
        let text = r.plan(doc);
        xml::parse(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
    }

    fn plan(step: Step) -> Plan {
        Plan {
            say_first: vec![Speech::Say("Calls are recorded & kept.".into())],
            step,
            number: Some("+442079460001".into()),
            alert_now: None,
            why: String::new(),
        }
    }

    /// Every kind of step renders to TwiML that parses back with the
    /// attributes and nouns Twilio needs.
    #[test]
    fn every_step_renders_and_parses_back() {
        let ai = render(&plan(Step::Ai {
            mode: Mode::Backup,
            transfer_failed: true,
        }));
        assert_eq!(ai.child_names(), ["Say", "Connect"]);
        assert_eq!(ai.children[0].text, "Calls are recorded & kept.");
        let connect = ai.find("Connect").unwrap();
        assert_eq!(
            connect.attr("action"),
            Some("https://fd.example/twilio/after-stream?n=%2B442079460001&mode=backup")
        );
        let stream = connect.find("Stream").unwrap();
        assert_eq!(stream.attr("url"), Some("wss://fd.example/media/twilio"));
        let mut params = Vec::new();
        stream.find_all("Parameter", &mut params);
        let names: Vec<_> = params.iter().filter_map(|p| p.attr("name")).collect();
        assert_eq!(
            names,
            [
                "call_sid",
                "from",
                "to",
                "mode",
                "number",
                "token",
                "transfer_failed"
            ]
        );

        let ring = render(&plan(Step::Ring(Ring {
            leg: Leg::Oncall {
                group: "support desk".into(),
                step: 2,
            },
            targets: vec![
                Target::Client("alex".into()),
                Target::Sip("sip:kim@x.example".into()),
                Target::Phone {
                    e164: "+447700900001".into(),
                    forwarded: true,
                },
                Target::Phone {
                    e164: "+447700900002".into(),
                    forwarded: false,
                },
            ],
            timeout_s: 25,
            caller_id: Some("+442079460001".into()),
            record: true,
            screened: true,
            machine_detection: true,
        })));
        let dial = ring.find("Dial").unwrap();
        assert_eq!(dial.attr("timeout"), Some("25"));
        assert_eq!(dial.attr("callerId"), Some("+442079460001"));
        assert_eq!(dial.attr("record"), Some("record-from-answer"));
        assert_eq!(
            dial.attr("action"),
            Some("https://fd.example/twilio/dial-complete?leg=oncall&group=support%20desk&step=2&n=%2B442079460001")
        );
        assert_eq!(dial.child_names(), ["Client", "Sip", "Number", "Number"]);
        assert!(dial.children.iter().all(|n| n.attr("url")
            == Some("https://fd.example/twilio/whisper?call=CA1&leg=oncall&group=support%20desk&step=2&n=%2B442079460001")));
        assert!(
            dial.children
                .iter()
                .all(|n| n.attr("statusCallback")
                    == Some("https://fd.example/twilio/status?call=CA1"))
        );
        // Answering-machine detection only on the forwarded phone.
        let amd: Vec<_> = dial
            .children
            .iter()
            .map(|n| n.attr("machineDetection"))
            .collect();
        assert_eq!(amd, [None, None, Some("Enable"), None]);
        assert_eq!(dial.children[1].text, "sip:kim@x.example");

        let menu = render(&plan(Step::Menu {
            id: "main".into(),
            prompt: Speech::Play("https://cdn.example/menu.mp3?a=1&b=2".into()),
            timeout_s: 7,
            attempt: 1,
        }));
        let gather = menu.find("Gather").unwrap();
        assert_eq!(gather.attr("numDigits"), Some("1"));
        assert_eq!(gather.attr("timeout"), Some("7"));
        assert_eq!(gather.attr("actionOnEmptyResult"), Some("true"));
        assert_eq!(
            gather.attr("action"),
            Some("https://fd.example/twilio/voice?n=%2B442079460001&menu=main&attempt=1")
        );
        assert_eq!(
            gather.find("Play").map(|p| p.text.as_str()),
            Some("https://cdn.example/menu.mp3?a=1&b=2")
        );

        let vm = render(&plan(Step::Voicemail {
            greeting: Speech::Say("Leave a message <after> the beep.".into()),
            alert_group: Some("support".into()),
        }));
        assert_eq!(vm.child_names(), ["Say", "Say", "Record", "Hangup"]);
        assert_eq!(vm.children[1].text, "Leave a message <after> the beep.");
        assert_eq!(
            vm.find("Record").and_then(|r| r.attr("action")),
            Some("https://fd.example/twilio/recording?n=%2B442079460001&group=support")
        );

        let reject = render(&plan(Step::Reject));
        assert_eq!(
            reject.find("Reject").and_then(|r| r.attr("reason")),
            Some("rejected")
        );
        assert_eq!(render(&plan(Step::Hangup)).child_names(), ["Say", "Hangup"]);
    }

    #[test]
    fn screening_and_accept_replies() {
        let key = StreamKey::from_auth_token("tok");
        let r = Render {
            public_url: PUBLIC,
            call_sid: "CA1",
            from: "",
            to: "",
            stream_key: &key,
            now: DateTime::from_timestamp(0, 0).unwrap_or_default(),
        };
        let press = Screening {
            say: vec![
                "Call for Sales & Co".into(),
                "Press any key to connect.".into(),
            ],
            press: Some(Press::AnyKey { wait_s: 6 }),
        };
        let doc =
            xml::parse(&r.screening(&press, "https://fd.example/twilio/whisper?accept=1")).unwrap();
        assert_eq!(doc.child_names(), ["Gather", "Hangup"]);
        let g = doc.find("Gather").unwrap();
        assert_eq!(g.attr("timeout"), Some("6"));
        assert_eq!(g.child_names(), ["Say", "Say"]);
        assert_eq!(g.children[0].text, "Call for Sales & Co");
        let plain = Screening {
            say: vec!["Call for Sales".into()],
            press: None,
        };
        assert_eq!(
            xml::parse(&r.screening(&plain, "")).unwrap().child_names(),
            ["Say"]
        );
        let one = Some(Press::One { wait_s: 10 });
        assert!(xml::parse(&accept_reply(one, "1"))
            .unwrap()
            .children
            .is_empty());
        assert_eq!(
            xml::parse(&accept_reply(one, "2")).unwrap().child_names(),
            ["Hangup"]
        );
        assert_eq!(
            xml::parse(&accept_reply(Some(Press::AnyKey { wait_s: 6 }), ""))
                .unwrap()
                .child_names(),
            ["Hangup"]
        );
    }

    #[test]
    fn escaping_round_trips_through_a_parser() {
        let nasty = "Tom & Jerry's <\"quoted\"> \u{1}bell";
        let doc = El::new("Response")
            .child(El::new("Say").attr("voice", nasty).text(nasty))
            .document();
        assert!(!doc.contains("Tom & Jerry"), "{doc}");
        let root = xml::parse(&doc).unwrap();
        let say = root.find("Say").unwrap();
        assert_eq!(say.text, "Tom & Jerry's <\"quoted\"> bell");
        assert_eq!(say.attr("voice"), Some("Tom & Jerry's <\"quoted\"> bell"));
    }

    #[test]
    fn urls_encode_values() {
        assert_eq!(
            url(
                "https://a.example/",
                "/twilio/x",
                &[("n", "+44 1".into()), ("e", String::new())]
            ),
            "https://a.example/twilio/x?n=%2B44%201"
        );
        assert_eq!(
            stream_url("https://a.example/"),
            "wss://a.example/media/twilio"
        );
        assert_eq!(stream_url("http://a:8080"), "ws://a:8080/media/twilio");
    }
}
