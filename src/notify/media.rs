//! The recording behind the claim page's player: the call's own Ogg Opus
//! recording (`[recording] dir/{call_sid}.ogg`, written by
//! the call recorder) or the voicemail Twilio stored, fetched with
//! the account's credentials — and only ever from `[twilio] api_base_url`,
//! so a stored URL can never carry the credentials anywhere else.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::pii::Secret;
use crate::store::{LeadRecord, Store, StoreError};

/// Where a lead's recording is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recording {
    /// A file of ours (Ogg Opus).
    File(PathBuf),
    /// A Twilio recording URL (fetched as MP3).
    Remote(String),
}

/// The lead's recording: its call's own file if there is one, else the
/// call's latest voicemail.
pub async fn recording_of(
    store: &Store,
    dir: &Path,
    lead: &LeadRecord,
) -> Result<Option<Recording>, StoreError> {
    let Some(sid) = lead.call_sid.as_deref() else {
        return Ok(None);
    };
    // The recorder names files by the carrier's id, which it only accepts
    // in this alphabet; anything else cannot be one of ours.
    let usable = !sid.is_empty()
        && sid
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if usable {
        let file = dir.join(format!("{sid}.ogg"));
        if tokio::fs::metadata(&file)
            .await
            .map(|m| m.is_file())
            .unwrap_or(false)
        {
            return Ok(Some(Recording::File(file)));
        }
    }
    let Some(call) = store.call_by_sid(sid).await? else {
        return Ok(None);
    };
    Ok(store
        .voicemails_of_call(&call.id)
        .await?
        .pop()
        .map(|v| Recording::Remote(v.recording_url)))
}

/// Fetches Twilio recordings with the account's Basic auth.
#[derive(Debug, Clone)]
pub struct TwilioMedia {
    http: reqwest::Client,
    base: String,
    sid: String,
    token: Secret<String>,
}

impl TwilioMedia {
    /// A fetcher for recordings under `base` (`[twilio] api_base_url`).
    pub fn new(
        base: &str,
        sid: Secret<String>,
        token: Secret<String>,
    ) -> Result<TwilioMedia, reqwest::Error> {
        Ok(TwilioMedia {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .redirect(reqwest::redirect::Policy::limited(3))
                .build()?,
            base: base.trim_end_matches('/').to_string(),
            sid: sid.expose().clone(),
            token,
        })
    }

    /// Whether `url` is under the configured Twilio base (the only place
    /// the credentials are sent).
    pub fn owns(&self, url: &str) -> bool {
        url.strip_prefix(&self.base)
            .is_some_and(|rest| rest.starts_with('/'))
    }

    /// GET the recording as MP3. `None` when `url` is not Twilio's or the
    /// fetch failed (logged without the URL, which names the account).
    pub async fn fetch(&self, url: &str) -> Option<reqwest::Response> {
        if !self.owns(url) {
            return None;
        }
        let url = if url.ends_with(".mp3") || url.ends_with(".wav") {
            url.to_string()
        } else {
            format!("{url}.mp3")
        };
        match self
            .http
            .get(url)
            .basic_auth(&self.sid, Some(self.token.expose()))
            .send()
            .await
        {
            Ok(r) if r.status().is_success() => Some(r),
            Ok(r) => {
                tracing::warn!(status = %r.status(), "voicemail fetch refused");
                None
            }
            Err(e) => {
                tracing::warn!(error = %e.without_url(), "voicemail fetch failed");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_only_go_to_the_configured_base() {
        let m = TwilioMedia::new(
            "https://api.twilio.com/",
            Secret::new("AC1".into()),
            Secret::new("t".into()),
        )
        .unwrap();
        assert!(m.owns("https://api.twilio.com/2010-04-01/Accounts/AC1/Recordings/RE1"));
        assert!(!m.owns("https://api.twilio.com.evil.example/x"));
        assert!(!m.owns("https://evil.example/https://api.twilio.com/x"));
    }
}
