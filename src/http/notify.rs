//! Routes of the call-back flow: `GET /c/{token}` (the claim page, with a
//! player when the lead's call has a recording), `GET /c/{token}/recording`
//! (that recording, authorised by the same token), `POST /c/{token}/claim`
//! (claim + click-to-call) and `POST
//! /slack/interactions` (the card's Claim button, signature checked over the
//! raw body). Pages are server-rendered HTML with every value escaped.

use std::collections::HashMap;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use chrono::{DateTime, Utc};
use serde_json::Value;

use super::AppState;
use crate::notify::dial::xml_escape as esc;
use crate::notify::media::{recording_of, Recording};
use crate::notify::signature::verify_slack;
use crate::notify::{ClaimError, DialOutcome, Notify};
use crate::store::{ClaimResult, LeadClaim, LeadRecord};

/// The notify routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/c/{token}", get(claim_page))
        .route("/c/{token}/claim", post(claim))
        .route("/c/{token}/recording", get(recording))
        .route("/slack/interactions", post(slack_interactions))
}

fn notify_of(s: &AppState) -> Option<(Notify, DateTime<Utc>)> {
    let svc = s.api.services()?;
    Some((svc.notify.clone()?, svc.clock.now()))
}

fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"referrer\" content=\"no-referrer\"><title>{}</title>\
         <style>body{{font-family:system-ui,sans-serif;max-width:34rem;margin:2rem auto;padding:0 1rem;line-height:1.4}}\
         dt{{font-weight:600}}button,.btn{{font-size:1.2rem;padding:.7rem 1.4rem;background:#1a7f37;color:#fff;border:0;border-radius:.4rem;text-decoration:none;display:inline-block}}\
         .muted{{color:#555}}</style></head><body>{body}</body></html>",
        esc(title)
    );
    (status, [("cache-control", "no-store")], Html(html)).into_response()
}

fn refused(e: &ClaimError) -> Response {
    match e {
        ClaimError::Link(_) => page(
            StatusCode::FORBIDDEN,
            "Link not valid",
            "<h1>This link is not valid</h1><p>It may have expired or been altered. Ask for a new one from the lead's Slack card.</p>",
        ),
        ClaimError::NoLead | ClaimError::Disabled => {
            page(StatusCode::NOT_FOUND, "Not found", "<h1>Lead not found</h1>")
        }
        ClaimError::NoRep => page(
            StatusCode::BAD_REQUEST,
            "Who is claiming?",
            "<h1>Say who is claiming</h1><p>Pick your name and try again.</p>",
        ),
        ClaimError::Store(err) => {
            tracing::warn!(error = %err, "claim failed");
            page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Try again",
                "<h1>Something went wrong</h1><p>Try again in a moment.</p>",
            )
        }
    }
}

fn lead_html(l: &LeadRecord, n: &Notify) -> String {
    let name = l
        .name
        .as_ref()
        .map(|v| v.expose().as_str())
        .unwrap_or("Unknown caller");
    let summary = l.notes.as_ref().map(|v| v.expose().as_str()).unwrap_or("");
    format!(
        "<h1>{}</h1><dl><dt>Intent</dt><dd>{}</dd><dt>Tier</dt><dd>{}</dd><dt>Called</dt><dd>{}</dd>\
         <dt>Summary</dt><dd>{}</dd></dl>",
        esc(name),
        esc(l.intent.as_deref().unwrap_or("unknown")),
        esc(l.tier.as_deref().unwrap_or("?")),
        esc(&l.created_at.with_timezone(&n.tz()).format("%a %d %b %H:%M %Z").to_string()),
        esc(summary)
    )
}

fn claimed_html(c: &LeadClaim, n: &Notify) -> String {
    format!(
        "<p class=\"claimed\"><strong>Claimed by {} at {}</strong></p>",
        esc(&c.rep_name),
        esc(&c
            .claimed_at
            .with_timezone(&n.tz())
            .format("%H:%M on %a %d %b")
            .to_string())
    )
}

async fn claim_page(State(s): State<AppState>, Path(token): Path<String>) -> Response {
    let Some((n, now)) = notify_of(&s) else {
        return refused(&ClaimError::Disabled);
    };
    let claims = match n.verify(&token, now) {
        Ok(c) => c,
        Err(e) => return refused(&e),
    };
    let store = &n.parts().store;
    let lead = match store.lead_by_id(&claims.lead_id).await {
        Ok(Some(l)) => l,
        Ok(None) => return refused(&ClaimError::NoLead),
        Err(e) => return refused(&ClaimError::Store(e)),
    };
    let claim = match store.lead_claim(&lead.id).await {
        Ok(c) => c,
        Err(e) => return refused(&ClaimError::Store(e)),
    };
    let mut body = lead_html(&lead, &n);
    let p = n.parts();
    match recording_of(&p.store, &p.recording_dir, &lead).await {
        Ok(Some(_)) => body.push_str(&format!(
            "<p><strong>Recording</strong><br><audio controls preload=\"none\" src=\"/c/{}/recording\">\
             Your browser cannot play it: <a href=\"/c/{}/recording\">download</a>.</audio></p>",
            esc(&token),
            esc(&token)
        )),
        Ok(None) => {}
        Err(e) => tracing::warn!(error = %e, "cannot look up the lead's recording"),
    }
    match claim {
        Some(c) => body.push_str(&claimed_html(&c, &n)),
        None => {
            let who = match &claims.rep {
                Some(_) => String::new(),
                None if !n.reps().is_empty() => {
                    let opts: String = n
                        .reps()
                        .iter()
                        .map(|r| {
                            format!(
                                "<option value=\"{}\">{}</option>",
                                esc(&r.id),
                                esc(if r.name.is_empty() { &r.id } else { &r.name })
                            )
                        })
                        .collect();
                    format!(
                        "<p><label>I am <select name=\"rep\" required>{opts}</select></label></p>"
                    )
                }
                None => {
                    "<p><label>Your name <input name=\"rep\" required maxlength=\"64\"></label></p>"
                        .into()
                }
            };
            body.push_str(&format!(
                "<form method=\"post\" action=\"/c/{}/claim\">{who}<button type=\"submit\">Claim and call back</button></form>",
                esc(&token)
            ));
        }
    }
    page(StatusCode::OK, "Call back", &body)
}

/// `GET /c/{token}/recording`: the lead's recording, for the page's player.
async fn recording(State(s): State<AppState>, Path(token): Path<String>) -> Response {
    let Some((n, now)) = notify_of(&s) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let claims = match n.verify(&token, now) {
        Ok(c) => c,
        Err(_) => return StatusCode::FORBIDDEN.into_response(),
    };
    let p = n.parts();
    let lead = match p.store.lead_by_id(&claims.lead_id).await {
        Ok(Some(l)) => l,
        Ok(None) => return StatusCode::NOT_FOUND.into_response(),
        Err(e) => return refused(&ClaimError::Store(e)),
    };
    let headers = |ct: &str| {
        [
            (header::CONTENT_TYPE, ct.to_string()),
            (header::CACHE_CONTROL, "private, no-store".to_string()),
        ]
    };
    match recording_of(&p.store, &p.recording_dir, &lead).await {
        Ok(Some(Recording::File(path))) => match tokio::fs::read(&path).await {
            Ok(bytes) => (headers("audio/ogg"), bytes).into_response(),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the recording");
                StatusCode::NOT_FOUND.into_response()
            }
        },
        Ok(Some(Recording::Remote(url))) => {
            let Some(resp) = (match &p.media {
                Some(m) => m.fetch(&url).await,
                None => None,
            }) else {
                return StatusCode::BAD_GATEWAY.into_response();
            };
            let ct = resp
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .filter(|v| v.starts_with("audio/"))
                .unwrap_or("audio/mpeg")
                .to_string();
            (headers(&ct), Body::from_stream(resp.bytes_stream())).into_response()
        }
        Ok(None) => StatusCode::NOT_FOUND.into_response(),
        Err(e) => refused(&ClaimError::Store(e)),
    }
}

async fn claim(State(s): State<AppState>, Path(token): Path<String>, body: Bytes) -> Response {
    let Some((n, now)) = notify_of(&s) else {
        return refused(&ClaimError::Disabled);
    };
    let claims = match n.verify(&token, now) {
        Ok(c) => c,
        Err(e) => return refused(&e),
    };
    let form: HashMap<String, String> = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    let form_rep = form.get("rep").cloned().unwrap_or_default();
    let Some(rep) = claims
        .rep
        .as_deref()
        .or(Some(form_rep.as_str()))
        .and_then(|r| n.rep(r))
    else {
        return refused(&ClaimError::NoRep);
    };
    let out = match n.claim(&claims.lead_id, &rep, "link", now).await {
        Ok(o) => o,
        Err(e) => return refused(&e),
    };
    let mut body = lead_html(&out.lead, &n);
    match (&out.result, &out.dial) {
        (ClaimResult::Taken(c), _) => {
            body.push_str(&claimed_html(c, &n));
            return page(StatusCode::CONFLICT, "Already claimed", &body);
        }
        (ClaimResult::Won(c), DialOutcome::Calling(_)) => {
            body.push_str(&claimed_html(c, &n));
            body.push_str("<p>Calling your phone now. Answer it to hear the summary, then you are connected to the caller.</p>");
        }
        (ClaimResult::Won(c), DialOutcome::Tel(tel, why)) => {
            body.push_str(&claimed_html(c, &n));
            body.push_str(&format!(
                "<p class=\"muted\">{}.</p><p><a class=\"btn\" href=\"{}\">Call {}</a></p>",
                esc(why),
                esc(tel),
                esc(out.lead.phone.expose())
            ));
        }
        (ClaimResult::Won(c), DialOutcome::None) => body.push_str(&claimed_html(c, &n)),
    }
    page(StatusCode::OK, "Claimed", &body)
}

async fn slack_interactions(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some((n, now)) = notify_of(&s) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let Some(secret) = n.parts().slack_signing.as_ref() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let h = |k: &str| headers.get(k).and_then(|v| v.to_str().ok());
    if let Err(e) = verify_slack(
        secret,
        h("x-slack-request-timestamp"),
        h("x-slack-signature"),
        &body,
        now,
    ) {
        tracing::warn!(error = %e, "slack interaction refused");
        return (StatusCode::UNAUTHORIZED, "bad signature\n").into_response();
    }
    let form: HashMap<String, String> = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    let Some(payload) = form
        .get("payload")
        .and_then(|p| serde_json::from_str::<Value>(p).ok())
    else {
        return (StatusCode::BAD_REQUEST, "no payload\n").into_response();
    };
    if payload.get("type").and_then(Value::as_str) != Some("block_actions") {
        return StatusCode::OK.into_response();
    }
    let user = payload.get("user").cloned().unwrap_or(Value::Null);
    let user_id = user.get("id").and_then(Value::as_str).unwrap_or("");
    let user_name = user
        .get("username")
        .or_else(|| user.get("name"))
        .and_then(Value::as_str)
        .unwrap_or("");
    let actions = payload
        .get("actions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for a in actions {
        if a.get("action_id").and_then(Value::as_str) != Some("claim_lead") {
            continue; // the URL button: Slack still reports it; acknowledge.
        }
        let Some(lead_id) = a.get("value").and_then(Value::as_str) else {
            continue;
        };
        if user_id.is_empty() {
            continue;
        }
        let rep = n.rep_for_slack(user_id, user_name);
        match n.claim(lead_id, &rep, "slack", now).await {
            Ok(o) => {
                tracing::info!(lead = %o.lead.id, won = matches!(o.result, ClaimResult::Won(_)), "slack claim")
            }
            Err(e) => tracing::warn!(error = %e, "slack claim failed"),
        }
    }
    StatusCode::OK.into_response()
}
