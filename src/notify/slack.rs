//! The Slack client: Web API (`chat.postMessage`, `chat.update`, bot token)
//! or one incoming webhook, with Slack's error shapes mapped to
//! [`SlackError`]: HTTP 200 `ok:false` (permanent unless `ratelimited`),
//! 429 with `Retry-After`, 5xx and timeouts (transient). One call per
//! method; retrying is the outbox worker's job, so a Slack outage never
//! holds a request open.

use std::time::Duration;

use serde_json::{json, Value};

use super::cards::SlackMessage;
use crate::config::notify::{SlackConfig, SlackMode};
use crate::pii::Secret;
use crate::retry::retry_after;

/// A failed Slack call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SlackError {
    /// 429 (or `ok:false` `ratelimited`): try again after this long.
    #[error("rate limited; retry after {0:?}")]
    RateLimited(Duration),
    /// Worth retrying: timeout, connection refused, 5xx.
    #[error("transient: {0}")]
    Transient(String),
    /// Retrying will not help: bad token, unknown channel, invalid blocks.
    #[error("permanent: {0}")]
    Permanent(String),
}

impl SlackError {
    /// Whether a later attempt may succeed.
    pub fn is_transient(&self) -> bool {
        !matches!(self, SlackError::Permanent(_))
    }
}

/// Where a posted message landed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Posted {
    /// The channel (`webhook` in webhook mode).
    pub channel: String,
    /// Message timestamp (bot mode only).
    pub ts: Option<String>,
}

/// Sends Slack messages in the configured mode.
#[derive(Debug, Clone)]
pub struct SlackClient {
    http: reqwest::Client,
    mode: SlackMode,
    api_base: String,
    webhook_url: Secret<String>,
    token: Option<Secret<String>>,
}

/// Errors Slack returns as `ok:false` that a retry can fix.
const TRANSIENT_ERRORS: &[&str] = &[
    "internal_error",
    "fatal_error",
    "service_unavailable",
    "request_timeout",
];

impl SlackClient {
    /// A client for `cfg` (`token` is required in bot mode; see
    /// [`crate::app::App::validate`]).
    pub fn new(
        cfg: &SlackConfig,
        token: Option<Secret<String>>,
    ) -> Result<SlackClient, reqwest::Error> {
        Ok(SlackClient {
            http: reqwest::Client::builder()
                .timeout(Duration::from_millis(cfg.timeout_ms))
                .build()?,
            mode: cfg.mode,
            api_base: cfg.api_base_url.trim_end_matches('/').to_string(),
            webhook_url: Secret::new(cfg.webhook_url.clone()),
            token,
        })
    }

    /// Whether posted messages can be edited later (`chat.update`).
    pub fn can_update(&self) -> bool {
        self.mode == SlackMode::Bot
    }

    /// Post `msg` to `channel` (ignored in webhook mode).
    pub async fn post(&self, channel: &str, msg: &SlackMessage) -> Result<Posted, SlackError> {
        match self.mode {
            SlackMode::Off => Err(SlackError::Permanent("slack.mode is off".into())),
            SlackMode::Webhook => {
                let body = json!({"text": msg.text, "blocks": msg.blocks, "unfurl_links": false});
                let resp = self
                    .http
                    .post(self.webhook_url.expose())
                    .json(&body)
                    .send()
                    .await
                    .map_err(transport)?;
                let status = resp.status();
                if status.as_u16() == 429 {
                    return Err(SlackError::RateLimited(
                        retry_after(resp.headers()).unwrap_or(Duration::from_secs(1)),
                    ));
                }
                let text = resp.text().await.map_err(transport)?;
                if status.is_success() && text.trim() == "ok" {
                    Ok(Posted {
                        channel: "webhook".into(),
                        ts: None,
                    })
                } else if status.is_server_error() {
                    Err(SlackError::Transient(format!(
                        "webhook {status}: {}",
                        short(&text)
                    )))
                } else {
                    Err(SlackError::Permanent(format!(
                        "webhook {status}: {}",
                        short(&text)
                    )))
                }
            }
            SlackMode::Bot => {
                let body = json!({"channel": channel, "text": msg.text, "blocks": msg.blocks,
                                  "unfurl_links": false});
                let v = self.call("chat.postMessage", &body).await?;
                Ok(Posted {
                    channel: v
                        .get("channel")
                        .and_then(Value::as_str)
                        .unwrap_or(channel)
                        .to_string(),
                    ts: v.get("ts").and_then(Value::as_str).map(str::to_string),
                })
            }
        }
    }

    /// Replace the message `ts` in `channel` (bot mode).
    pub async fn update(
        &self,
        channel: &str,
        ts: &str,
        msg: &SlackMessage,
    ) -> Result<(), SlackError> {
        if self.mode != SlackMode::Bot {
            return Err(SlackError::Permanent(
                "chat.update needs slack.mode = \"bot\"".into(),
            ));
        }
        let body = json!({"channel": channel, "ts": ts, "text": msg.text, "blocks": msg.blocks});
        self.call("chat.update", &body).await.map(|_| ())
    }

    async fn call(&self, method: &str, body: &Value) -> Result<Value, SlackError> {
        let token = self
            .token
            .as_ref()
            .ok_or_else(|| SlackError::Permanent("no SLACK_BOT_TOKEN".into()))?;
        let resp = self
            .http
            .post(format!("{}/{method}", self.api_base))
            .bearer_auth(token.expose())
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/json; charset=utf-8",
            )
            .body(body.to_string())
            .send()
            .await
            .map_err(transport)?;
        let status = resp.status();
        if status.as_u16() == 429 {
            return Err(SlackError::RateLimited(
                retry_after(resp.headers()).unwrap_or(Duration::from_secs(1)),
            ));
        }
        let headers = resp.headers().clone();
        let text = resp.text().await.map_err(transport)?;
        if status.is_server_error() {
            return Err(SlackError::Transient(format!("{method} {status}")));
        }
        if !status.is_success() {
            return Err(SlackError::Permanent(format!("{method} {status}")));
        }
        let v: Value = serde_json::from_str(&text)
            .map_err(|_| SlackError::Transient(format!("{method}: body is not JSON")))?;
        if v.get("ok").and_then(Value::as_bool) == Some(true) {
            return Ok(v);
        }
        let err = v
            .get("error")
            .and_then(Value::as_str)
            .unwrap_or("unknown_error");
        if err == "ratelimited" {
            return Err(SlackError::RateLimited(
                retry_after(&headers).unwrap_or(Duration::from_secs(1)),
            ));
        }
        if TRANSIENT_ERRORS.contains(&err) {
            Err(SlackError::Transient(format!("{method}: {err}")))
        } else {
            Err(SlackError::Permanent(format!("{method}: {err}")))
        }
    }
}

fn transport(e: reqwest::Error) -> SlackError {
    // reqwest's message carries the URL; a webhook URL is a secret.
    let e = e.without_url();
    SlackError::Transient(format!("request failed: {e}"))
}

fn short(s: &str) -> String {
    s.chars().take(120).collect()
}
