//! Twilio voice webhooks: the incoming call, the `<Dial>` outcome, the AI's
//! closed stream, the answering human's whisper, the voicemail recording and
//! per-leg status callbacks.
//!
//! Every request is checked first: `X-Twilio-Signature` must be Twilio's
//! HMAC-SHA1 of `server.public_url` + path + query and the sorted form
//! parameters, under `TWILIO_AUTH_TOKEN` (constant-time compare). A forged or
//! unsigned request, or any request while no token is configured, gets 403
//! and changes nothing.
//!
//! This module owns parsing, the store reads and writes around a decision,
//! and the activity log; the decisions themselves are the pure
//! [`crate::routing::Routing`], and the TwiML is [`crate::routing::twiml`].
//! Phone numbers are only logged masked.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use chrono::{DateTime, Utc};
use tracing::{info, warn};

use super::AppState;
use crate::app::Services;
use crate::config::routing::is_e164;
use crate::pii::{mask, Pii};
use crate::routing::plan::{dial_answered, Leg, Plan, Step, Target, WhisperVars};
use crate::routing::twiml::{self, Render};
use crate::routing::{verify_twilio_signature, Caller, Routing, StreamKey, Toggles};
use crate::store::{CallRef, NewCall, NewContact, NewLead, StoreError, TRANSFER_KIND};

/// The `/twilio/*` routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/twilio/voice", post(voice))
        .route("/twilio/dial-complete", post(dial_complete))
        .route("/twilio/after-stream", post(after_stream))
        .route("/twilio/whisper", post(whisper))
        .route("/twilio/recording", post(recording))
        .route("/twilio/status", post(status))
}

/// Why a webhook was not answered with TwiML.
#[derive(Debug)]
enum HookError {
    /// Bad, missing or unverifiable signature.
    Forbidden,
    /// A required parameter is missing.
    BadRequest(&'static str),
    /// The database failed where the answer depends on it.
    Store(StoreError),
}

impl From<StoreError> for HookError {
    fn from(e: StoreError) -> Self {
        HookError::Store(e)
    }
}

impl IntoResponse for HookError {
    fn into_response(self) -> Response {
        match self {
            HookError::Forbidden => (StatusCode::FORBIDDEN, "forbidden\n").into_response(),
            HookError::BadRequest(what) => {
                (StatusCode::BAD_REQUEST, format!("missing {what}\n")).into_response()
            }
            HookError::Store(e) => {
                warn!(error = %e, "twilio webhook: storage failed");
                (StatusCode::INTERNAL_SERVER_ERROR, "storage error\n").into_response()
            }
        }
    }
}

fn xml(body: String) -> Response {
    ([(header::CONTENT_TYPE, "text/xml; charset=utf-8")], body).into_response()
}

/// Decode `application/x-www-form-urlencoded` (also a query string). `None`
/// on a bad percent escape or bytes that are not UTF-8.
fn parse_form(s: &[u8]) -> Option<Vec<(String, String)>> {
    fn decode(s: &[u8]) -> Option<String> {
        let mut out = Vec::with_capacity(s.len());
        let mut i = 0;
        while i < s.len() {
            match s[i] {
                b'+' => out.push(b' '),
                b'%' => {
                    let hex = s.get(i + 1..i + 3)?;
                    let hex = std::str::from_utf8(hex).ok()?;
                    out.push(u8::from_str_radix(hex, 16).ok()?);
                    i += 2;
                }
                b => out.push(b),
            }
            i += 1;
        }
        String::from_utf8(out).ok()
    }
    s.split(|b| *b == b'&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let mut it = pair.splitn(2, |b| *b == b'=');
            let k = decode(it.next().unwrap_or_default())?;
            let v = decode(it.next().unwrap_or_default())?;
            Some((k, v))
        })
        .collect()
}

/// A verified webhook request.
struct Hook<'a> {
    services: &'a Services,
    key: StreamKey,
    form: Vec<(String, String)>,
    query: Vec<(String, String)>,
    now: DateTime<Utc>,
}

impl Hook<'_> {
    fn form(&self, k: &str) -> Option<&str> {
        self.form
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
    }

    fn q(&self, k: &str) -> Option<String> {
        self.query
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .filter(|v| !v.is_empty())
    }

    fn call_sid(&self) -> Result<&str, HookError> {
        self.form("CallSid")
            .filter(|s| !s.is_empty())
            .ok_or(HookError::BadRequest("CallSid"))
    }
}

fn verify<'a>(
    s: &'a AppState,
    uri: &Uri,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Hook<'a>, HookError> {
    let services = s.api.services().ok_or(HookError::Forbidden)?;
    let token = services
        .twilio_auth_token
        .as_ref()
        .ok_or(HookError::Forbidden)?;
    let path = uri.path_and_query().map_or(uri.path(), |p| p.as_str());
    let url = format!("{}{path}", s.config.server.public_url.trim_end_matches('/'));
    let form = parse_form(body).ok_or(HookError::Forbidden)?;
    let signature = headers
        .get("x-twilio-signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if signature.is_empty() || !verify_twilio_signature(token.expose(), &url, &form, signature) {
        warn!(
            path = uri.path(),
            signed = !signature.is_empty(),
            "twilio webhook refused: bad signature"
        );
        return Err(HookError::Forbidden);
    }
    let query = parse_form(uri.query().unwrap_or_default().as_bytes()).unwrap_or_default();
    Ok(Hook {
        services,
        key: StreamKey::from_auth_token(token.expose()),
        form,
        query,
        now: services.clock.now(),
    })
}

/// Log one activity entry; a storage failure is logged, never fatal to the call.
async fn log_event(
    h: &Hook<'_>,
    call: Option<&CallRef>,
    at: DateTime<Utc>,
    kind: &str,
    detail: &str,
) {
    let Some(call) = call else { return };
    if let Err(e) = h
        .services
        .store
        .add_call_event(&call.id, at, kind, detail)
        .await
    {
        warn!(error = %e, kind, "cannot write call activity");
    }
}

fn describe(t: &Target) -> String {
    match t {
        Target::Client(c) => format!("client:{c}"),
        Target::Sip(_) => "sip".into(),
        Target::Phone { e164, .. } => format!("phone {}", mask(e164)),
    }
}

fn describe_plan(p: &Plan) -> String {
    match &p.step {
        Step::Ring(r) => format!(
            "{}; ring {} for {} s",
            p.why,
            r.targets
                .iter()
                .map(describe)
                .collect::<Vec<_>>()
                .join(", "),
            r.timeout_s
        ),
        _ => p.why.clone(),
    }
}

fn event_kind(p: &Plan) -> &'static str {
    match &p.step {
        Step::Ring(_) => "ring_attempt",
        Step::Ai { .. } => "ai",
        Step::Menu { .. } => "ivr",
        Step::Voicemail { .. } => "voicemail_offered",
        Step::Reject => "rejected",
        Step::Hangup => "hangup",
    }
}

/// The call and the routing inputs of this webhook's parent call.
struct CallCtx {
    call: Option<CallRef>,
    sid: String,
    from: String,
    to: String,
    earlier: Vec<DateTime<Utc>>,
}

async fn call_ctx(s: &AppState, h: &Hook<'_>, sid: &str, create: bool) -> CallCtx {
    let store = &h.services.store;
    let found = match store.call_by_sid(sid).await {
        Ok(c) => c,
        Err(e) => {
            warn!(error = %e, "cannot read call");
            None
        }
    };
    let form_from = h.form("From").unwrap_or_default().to_string();
    let form_to = h.form("To").unwrap_or_default().to_string();
    let call = match found {
        Some(c) => Some(c),
        None if create => {
            let contact = if is_e164(&form_from) {
                store.contact_by_phone(&form_from).await.ok().flatten()
            } else {
                None
            };
            let new = NewCall {
                call_sid: Some(sid.to_string()),
                contact_id: contact.map(|c| c.id),
                direction: "inbound".into(),
                from: Some(Pii::new(form_from.clone())).filter(|p| !p.expose().is_empty()),
                to: Some(Pii::new(form_to.clone())).filter(|p| !p.expose().is_empty()),
                status: h.form("CallStatus").unwrap_or("ringing").to_string(),
            };
            match store.upsert_call(&new, h.now).await {
                Ok(_) => store.call_by_sid(sid).await.ok().flatten(),
                Err(e) => {
                    warn!(error = %e, "cannot record call");
                    None
                }
            }
        }
        None => None,
    };
    let from = call
        .as_ref()
        .and_then(|c| c.from.as_ref().map(|p| p.expose().clone()))
        .unwrap_or(form_from);
    // The number that routed the call: the `n` of our own callback URL, else
    // the stored (or webhook) `To`.
    let to = h.q("n").unwrap_or_else(|| {
        call.as_ref()
            .and_then(|c| c.to.as_ref().map(|p| p.expose().clone()))
            .unwrap_or(form_to)
    });
    let window = chrono::Duration::seconds(i64::from(s.config.location.repeat_window_s));
    let earlier = if is_e164(&from) {
        store
            .recent_calls_from(&from, h.now - window, sid)
            .await
            .unwrap_or_else(|e| {
                warn!(error = %e, "cannot read call history");
                Vec::new()
            })
    } else {
        Vec::new()
    };
    CallCtx {
        call,
        sid: sid.to_string(),
        from,
        to,
        earlier,
    }
}

impl CallCtx {
    fn routing<'a>(&'a self, s: &'a AppState, h: &'a Hook<'_>) -> Routing<'a> {
        Routing::new(
            &s.config,
            Toggles::of(&s.config),
            h.now,
            h.services.business_tz,
            Caller {
                from: &self.from,
                to: &self.to,
                stir_verstat: h.form("StirVerstat"),
            },
            &self.earlier,
        )
    }

    fn render<'a>(&'a self, s: &'a AppState, h: &'a Hook<'_>) -> Render<'a> {
        Render {
            public_url: &s.config.server.public_url,
            call_sid: &self.sid,
            from: &self.from,
            to: &self.to,
            stream_key: &h.key,
            now: h.now,
        }
    }
}

/// The call is over: queue its post-call webhook and, when it went
/// unanswered, the missed-call text-back (both once per call; a storage
/// failure is logged, never fatal to the webhook's answer).
async fn finished(h: &Hook<'_>, sid: &str) {
    let Some(n) = &h.services.notify else { return };
    if let Err(e) = n.call_finished(sid, h.now).await {
        warn!(error = %e, "cannot queue the finished call's deliveries");
    }
}

/// Whether a plan ends the call.
fn ends_call(p: &Plan) -> bool {
    matches!(p.step, Step::Hangup | Step::Reject)
}

/// Raise an on-call alert: a tier C lead for the team (its `lead.created`
/// outbox item is what notifies), and an `alert` entry in the call's log.
async fn raise_alert(
    h: &Hook<'_>,
    c: &CallCtx,
    group: &str,
    why: &str,
    notes: Option<String>,
) -> Option<String> {
    log_event(
        h,
        c.call.as_ref(),
        h.now,
        "alert",
        &format!("on-call `{group}`: {why}"),
    )
    .await;
    lead_for(h, c, Some(group), notes).await
}

/// Store (once per call) a tier C lead for the caller; returns the contact id.
async fn lead_for(
    h: &Hook<'_>,
    c: &CallCtx,
    owner: Option<&str>,
    notes: Option<String>,
) -> Option<String> {
    if !is_e164(&c.from) {
        return None;
    }
    let lead = NewLead {
        contact: NewContact {
            phone_e164: Pii::new(c.from.clone()),
            name: None,
            email: None,
            timezone: None,
        },
        call_sid: Some(c.sid.clone()),
        intent: Some("voicemail".into()),
        tier: Some("C".into()),
        source: Some("inbound_call".into()),
        transcript_id: None,
        notes: notes.map(Pii::new),
        routing_owner: owner.map(str::to_string),
    };
    match h.services.store.ingest_lead(&lead, h.now).await {
        Ok(out) => Some(out.contact.id),
        Err(e) => {
            warn!(error = %e, "cannot store the lead");
            None
        }
    }
}

/// `POST /twilio/voice`: the incoming call (and IVR key presses).
async fn voice(
    State(s): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, HookError> {
    let h = verify(&s, &uri, &headers, &body)?;
    let sid = h.call_sid()?.to_string();
    let c = call_ctx(&s, &h, &sid, true).await;
    let r = c.routing(&s, &h);
    let plan = match h.q("menu") {
        Some(menu) => {
            let attempt = h.q("attempt").and_then(|a| a.parse().ok()).unwrap_or(0);
            r.menu_input(&menu, attempt, h.form("Digits").unwrap_or_default())
        }
        None => {
            log_event(
                &h,
                c.call.as_ref(),
                h.now,
                "inbound",
                &format!("guard {}", r.guard().label()),
            )
            .await;
            r.inbound()
        }
    };
    info!(call_sid = %sid, why = %plan.why, "routed");
    log_event(
        &h,
        c.call.as_ref(),
        h.now,
        event_kind(&plan),
        &describe_plan(&plan),
    )
    .await;
    if let Some(group) = &plan.alert_now {
        raise_alert(&h, &c, group, "call arrived", None).await;
    }
    if ends_call(&plan) {
        finished(&h, &sid).await;
    }
    Ok(xml(c.render(&s, &h).plan(&plan)))
}

/// `POST /twilio/dial-complete`: a `<Dial>` ended; stage 3 or the next step.
async fn dial_complete(
    State(s): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, HookError> {
    let h = verify(&s, &uri, &headers, &body)?;
    let sid = h.call_sid()?.to_string();
    let c = call_ctx(&s, &h, &sid, true).await;
    let leg = Leg::from_query(|k| h.q(k)).unwrap_or(Leg::Number);
    // A missing status is treated as a failed dial: the backup always runs.
    let status = h.form("DialCallStatus").unwrap_or("failed").to_string();
    let bridged = h.form("DialBridged").and_then(|b| b.parse::<bool>().ok());
    let plan = c.routing(&s, &h).after_dial(&leg, &status, bridged);
    let answered = dial_answered(&status, bridged);
    let kind = if answered { "answered" } else { "no_answer" };
    log_event(
        &h,
        c.call.as_ref(),
        h.now,
        kind,
        &format!("{} leg: dial {status}", twiml::leg_label(&leg)),
    )
    .await;
    if leg == Leg::Transfer && !answered {
        log_event(
            &h,
            c.call.as_ref(),
            h.now,
            "transfer_failed",
            "nobody accepted the transfer",
        )
        .await;
    }
    if !answered {
        log_event(
            &h,
            c.call.as_ref(),
            h.now,
            event_kind(&plan),
            &describe_plan(&plan),
        )
        .await;
    }
    info!(call_sid = %sid, status = %status, why = %plan.why, "dial complete");
    if ends_call(&plan) {
        finished(&h, &sid).await;
    }
    Ok(xml(c.render(&s, &h).plan(&plan)))
}

/// The target and summary of a hand-off detail (`{"target", "summary"}`).
fn handoff_fields(detail: &str) -> (String, Option<String>) {
    let v: serde_json::Value = serde_json::from_str(detail).unwrap_or_default();
    let field = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_string);
    (
        field("target").unwrap_or_default(),
        field("summary").filter(|s| !s.trim().is_empty()),
    )
}

/// `POST /twilio/after-stream`: the AI closed its media stream. A pending
/// `handoff` in the call's activity log → the transfer ring; none → hang up.
async fn after_stream(
    State(s): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, HookError> {
    let h = verify(&s, &uri, &headers, &body)?;
    let sid = h.call_sid()?.to_string();
    let c = call_ctx(&s, &h, &sid, true).await;
    let pending = match &c.call {
        Some(call) => h.services.store.pending_handoff(&call.id).await?,
        None => None,
    };
    let Some(handoff) = pending else {
        log_event(
            &h,
            c.call.as_ref(),
            h.now,
            "stream_closed",
            "no hand-off: hang up",
        )
        .await;
        info!(call_sid = %sid, "stream closed without hand-off");
        finished(&h, &sid).await;
        return Ok(xml(twiml::hangup()));
    };
    let (target, _) = handoff_fields(&handoff.detail);
    let plan = c.routing(&s, &h).transfer(&target);
    log_event(
        &h,
        c.call.as_ref(),
        h.now,
        TRANSFER_KIND,
        &format!("handoff={} {}", handoff.id, describe_plan(&plan)),
    )
    .await;
    info!(call_sid = %sid, why = %plan.why, "warm transfer");
    if ends_call(&plan) {
        finished(&h, &sid).await;
    }
    Ok(xml(c.render(&s, &h).plan(&plan)))
}

/// `POST /twilio/whisper`: TwiML for the human who answered a screened leg,
/// and (with `accept=1`) their key press.
async fn whisper(
    State(s): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, HookError> {
    let h = verify(&s, &uri, &headers, &body)?;
    let parent = h
        .q("call")
        .or_else(|| h.form("ParentCallSid").map(str::to_string))
        .ok_or(HookError::BadRequest("call"))?;
    let c = call_ctx(&s, &h, &parent, false).await;
    let leg = Leg::from_query(|k| h.q(k)).unwrap_or(Leg::Number);
    let r = c.routing(&s, &h);
    let store = &h.services.store;
    let mut vars = WhisperVars::default();
    if let Some(call) = &c.call {
        let contact = match &call.contact_id {
            Some(id) => store.contact_by_id(id).await.ok().flatten(),
            None => store.contact_by_phone(&c.from).await.ok().flatten(),
        };
        vars.contact_name = contact.and_then(|c| c.name.map(|n| n.expose().clone()));
        vars.lead_source = Some("inbound call".into());
        if leg == Leg::Transfer {
            vars.lead_summary = store
                .latest_handoff(&call.id)
                .await
                .ok()
                .flatten()
                .and_then(|e| handoff_fields(&e.detail).1);
        }
    }
    let screening = r.screening(&leg, &vars);
    if h.q("accept").as_deref() == Some("1") {
        let digits = h.form("Digits").unwrap_or_default();
        let accepted = screening.press.map(|p| p.accepts(digits)).unwrap_or(true);
        let kind = if accepted {
            "screen_accepted"
        } else {
            "screen_declined"
        };
        log_event(
            &h,
            c.call.as_ref(),
            h.now,
            kind,
            &format!("{} leg", twiml::leg_label(&leg)),
        )
        .await;
        return Ok(xml(twiml::accept_reply(screening.press, digits)));
    }
    let mut q: Vec<(&str, String)> = h
        .query
        .iter()
        .filter(|(k, _)| k.as_str() != "accept")
        .map(|(k, v)| (k.as_str(), v.clone()))
        .collect();
    q.push(("accept", "1".into()));
    let accept = twiml::url(&s.config.server.public_url, "/twilio/whisper", &q);
    log_event(
        &h,
        c.call.as_ref(),
        h.now,
        "screening",
        &format!("{} leg answered", twiml::leg_label(&leg)),
    )
    .await;
    Ok(xml(c.render(&s, &h).screening(&screening, &accept)))
}

/// `POST /twilio/recording`: the voicemail `<Record>` finished. Store the
/// voicemail, link it to the contact, create a tier C lead with its URL.
async fn recording(
    State(s): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, HookError> {
    let h = verify(&s, &uri, &headers, &body)?;
    let sid = h.call_sid()?.to_string();
    let url = h
        .form("RecordingUrl")
        .filter(|u| !u.is_empty())
        .ok_or(HookError::BadRequest("RecordingUrl"))?
        .to_string();
    let c = call_ctx(&s, &h, &sid, true).await;
    let Some(call) = &c.call else {
        return Err(HookError::BadRequest("a known call"));
    };
    let store = &h.services.store;
    if store
        .voicemails_of_call(&call.id)
        .await?
        .iter()
        .any(|v| v.recording_url == url)
    {
        // A retried callback: stored already.
        return Ok(xml(twiml::say_and_hang_up("Thank you. Goodbye.")));
    }
    let secs: Option<i64> = h.form("RecordingDuration").and_then(|d| d.parse().ok());
    let group = h.q("group");
    let notes = format!(
        "Voicemail{}: {url}",
        secs.map(|s| format!(" ({s} s)")).unwrap_or_default()
    );
    let owner = group.clone().or_else(|| {
        s.config
            .numbers
            .iter()
            .find(|n| n.e164 == c.to)
            .map(|n| n.team_member.clone())
            .filter(|t| !t.is_empty())
    });
    let contact_id = match &group {
        Some(g) => raise_alert(&h, &c, g, "voicemail left", Some(notes)).await,
        None => lead_for(&h, &c, owner.as_deref(), Some(notes)).await,
    }
    .or_else(|| call.contact_id.clone());
    store
        .add_voicemail(
            Some(&call.id),
            contact_id.as_deref(),
            &url,
            secs.map(|s| s * 1000),
            None,
            h.now,
        )
        .await?;
    let detail = format!(
        "voicemail{} recorded",
        secs.map(|s| format!(" {s} s")).unwrap_or_default()
    );
    log_event(&h, Some(call), h.now, "voicemail", &detail).await;
    info!(call_sid = %sid, "voicemail stored");
    finished(&h, &sid).await;
    Ok(xml(twiml::say_and_hang_up("Thank you. Goodbye.")))
}

/// `POST /twilio/status`: a status callback of the call or of one dialled
/// leg, written to the parent call's activity log.
async fn status(
    State(s): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, HookError> {
    let h = verify(&s, &uri, &headers, &body)?;
    let sid = h.call_sid()?.to_string();
    let parent = h
        .q("call")
        .or_else(|| h.form("ParentCallSid").map(str::to_string))
        .unwrap_or_else(|| sid.clone());
    let is_parent = parent == sid;
    let store = &h.services.store;
    let Some(call) = store.call_by_sid(&parent).await? else {
        return Ok(xml(twiml::empty()));
    };
    let st = h.form("CallStatus").unwrap_or("unknown");
    let at = h
        .form("Timestamp")
        .and_then(|t| DateTime::parse_from_rfc2822(t).ok())
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or(h.now);
    let kind = match st {
        "queued" | "initiated" | "ringing" => "ring_attempt",
        "in-progress" | "answered" => "answered",
        "completed" => "leg_completed",
        "busy" | "no-answer" | "failed" | "canceled" => "no_answer",
        _ => "status",
    };
    let leg = h.form("To").unwrap_or_default();
    let leg = if leg.starts_with("client:") {
        leg.to_string()
    } else {
        mask(leg)
    };
    if is_parent {
        let ended = matches!(
            st,
            "completed" | "busy" | "no-answer" | "failed" | "canceled"
        )
        .then_some(at);
        store.set_call_status(&call.id, st, ended).await?;
        log_event(&h, Some(&call), at, "call_status", st).await;
        if ended.is_some() {
            finished(&h, &parent).await;
        }
    } else {
        log_event(&h, Some(&call), at, kind, &format!("{st}: {leg}")).await;
    }
    Ok(xml(twiml::empty()))
}

#[cfg(test)]
mod tests {
    use super::parse_form;

    #[test]
    fn form_decoding() {
        let f = parse_form(b"From=%2B447700900123&Body=a+b%26c&Empty=&Bare").unwrap();
        assert_eq!(
            f,
            vec![
                ("From".into(), "+447700900123".into()),
                ("Body".into(), "a b&c".into()),
                ("Empty".into(), String::new()),
                ("Bare".into(), String::new()),
            ]
        );
        assert!(parse_form(b"x=%zz").is_none());
        assert!(parse_form(b"x=%ff").is_none());
        assert_eq!(parse_form(b"").unwrap(), vec![]);
    }
}
