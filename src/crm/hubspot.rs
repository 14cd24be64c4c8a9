//! HubSpot CRM v3 as a [`Crm`].
//!
//! Contacts are found by a unique custom property holding the E.164 number
//! (`phone_e164` by default), falling back to the free-text `phone` /
//! `mobilephone` fields and HubSpot's `hs_searchable_calculated_*` national
//! digits; every hit is re-normalised and compared before it is trusted.
//! Search is eventually consistent, so a contact created here is remembered
//! (phone → id) and not searched for again.
//!
//! Notes, tasks, meetings and calls are created with their association to the
//! contact (type ids 202, 204, 200, 194). A 429 is retried after its
//! `Retry-After` (or exponential back-off with jitter), except on the `DAILY`
//! policy, which waits for the reset: it fails at once with
//! [`CrmError::RateLimited`]. Searches are spaced at least 250 ms apart (the
//! search endpoint allows about 4 per second per account).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{
    split_name, CallLog, Contact, ContactInput, Crm, CrmError, Direction, Meeting, Task, E164,
};
use crate::clock::Sleeper;
use crate::config_error::ConfigError;
use crate::phone::normalise;
use crate::pii::{Pii, Secret};
use crate::retry::{backoff, retry_after};

/// The environment variable holding the private-app token.
pub const TOKEN_ENV: &str = "HUBSPOT_TOKEN";

/// Association type ids, object → contact.
pub const NOTE_TO_CONTACT: u32 = 202;
/// Task → contact.
pub const TASK_TO_CONTACT: u32 = 204;
/// Meeting → contact.
pub const MEETING_TO_CONTACT: u32 = 200;
/// Call → contact.
pub const CALL_TO_CONTACT: u32 = 194;

/// `[crm.hubspot]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HubspotConfig {
    /// API base URL (default `https://api.hubapi.com`).
    pub base_url: String,
    /// Custom contact property, created in HubSpot with unique values, that
    /// holds the E.164 number (default `phone_e164`).
    pub phone_property: String,
    /// Region for numbers stored in HubSpot without a country code (ISO 3166,
    /// default `GB`).
    pub default_region: String,
    /// `hubspot_owner_id` set on notes, tasks, meetings and calls (default none).
    pub owner_id: Option<String>,
    /// Per-request timeout in milliseconds (default 10000, 100–120000).
    pub timeout_ms: u64,
    /// Retries after a 429 (and for reads, a 5xx or network error) (default 3, 0–10).
    pub max_retries: u32,
    /// Longest wait between retries in milliseconds (default 30000, 0–600000).
    pub max_backoff_ms: u64,
}

impl Default for HubspotConfig {
    fn default() -> Self {
        HubspotConfig {
            base_url: "https://api.hubapi.com".into(),
            phone_property: "phone_e164".into(),
            default_region: "GB".into(),
            owner_id: None,
            timeout_ms: 10_000,
            max_retries: 3,
            max_backoff_ms: 30_000,
        }
    }
}

impl HubspotConfig {
    /// Range and format checks.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.phone_property.is_empty()
            || !self
                .phone_property
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return Err(ConfigError::invalid(
                "crm.hubspot.phone_property",
                "must be a HubSpot property name (letters, digits, `_`)",
            ));
        }
        crate::phone::region(&self.default_region).map_err(|_| {
            ConfigError::invalid(
                "crm.hubspot.default_region",
                format!("`{}` is not an ISO 3166 region", self.default_region),
            )
        })?;
        crate::config_error::check_http_client(
            "crm.hubspot",
            &self.base_url,
            self.timeout_ms,
            self.max_retries,
            self.max_backoff_ms,
        )
    }
}

/// HubSpot v3 client.
#[derive(Debug, Clone)]
pub struct HubspotCrm {
    http: reqwest::Client,
    cfg: HubspotConfig,
    region: phonenumber::country::Id,
    token: Secret<String>,
    sleeper: Arc<dyn Sleeper>,
    /// phone → contact id of contacts found or created here (search lags).
    ids: Arc<Mutex<HashMap<String, String>>>,
    last_search: Arc<Mutex<Option<tokio::time::Instant>>>,
}

#[derive(Deserialize)]
struct Object {
    id: String,
    #[serde(default)]
    properties: HashMap<String, Option<String>>,
}

const SEARCH_SPACING: Duration = Duration::from_millis(250);

fn iso(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn remote_error(status: StatusCode, body: &Value) -> CrmError {
    CrmError::Remote {
        status: Some(status.as_u16()),
        category: body
            .get("category")
            .or_else(|| body.get("errorType"))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
        message: body
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("")
            .chars()
            .take(500)
            .collect(),
        transient: status.is_server_error(),
    }
}

fn bad_response(message: String) -> CrmError {
    CrmError::Remote {
        status: None,
        category: "bad_response".into(),
        message,
        transient: false,
    }
}

impl HubspotCrm {
    /// Build from `[crm.hubspot]` and the token.
    pub fn new(
        cfg: &HubspotConfig,
        token: Secret<String>,
        sleeper: Arc<dyn Sleeper>,
    ) -> Result<HubspotCrm, ConfigError> {
        cfg.validate()?;
        let region = crate::phone::region(&cfg.default_region)
            .map_err(|e| ConfigError::invalid("crm.hubspot.default_region", e.to_string()))?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(cfg.timeout_ms))
            .build()
            .map_err(|e| ConfigError::invalid("crm.hubspot", e.to_string()))?;
        Ok(HubspotCrm {
            http,
            cfg: cfg.clone(),
            region,
            token,
            sleeper,
            ids: Arc::new(Mutex::new(HashMap::new())),
            last_search: Arc::new(Mutex::new(None)),
        })
    }

    /// One API call with retries on 429 (and on 5xx/network for reads).
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        idempotent: bool,
    ) -> Result<(StatusCode, Value), CrmError> {
        let url = format!("{}{}", self.cfg.base_url.trim_end_matches('/'), path);
        let cap = Duration::from_millis(self.cfg.max_backoff_ms);
        let mut attempt = 0u32;
        loop {
            let mut req = self
                .http
                .request(method.clone(), &url)
                .bearer_auth(self.token.expose());
            if let Some(b) = body {
                req = req.json(b);
            }
            let retries_left = attempt < self.cfg.max_retries;
            let resp = match req.send().await {
                Ok(r) => r,
                Err(e) => {
                    if retries_left && (idempotent || e.is_connect()) {
                        self.sleeper
                            .sleep(backoff(attempt, Duration::from_millis(200), cap))
                            .await;
                        attempt += 1;
                        continue;
                    }
                    return Err(CrmError::Remote {
                        status: None,
                        category: "network".into(),
                        message: e.without_url().to_string(),
                        transient: true,
                    });
                }
            };
            let status = resp.status();
            let wait = retry_after(resp.headers());
            let bytes = resp.bytes().await.map_err(|e| CrmError::Remote {
                status: Some(status.as_u16()),
                category: "network".into(),
                message: e.without_url().to_string(),
                transient: true,
            })?;
            let json: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            if status == StatusCode::TOO_MANY_REQUESTS {
                let policy = json
                    .get("policyName")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                if policy == "DAILY" || !retries_left {
                    return Err(CrmError::RateLimited {
                        policy,
                        retry_after: wait,
                    });
                }
                let d = wait
                    .unwrap_or_else(|| backoff(attempt, Duration::from_secs(1), cap))
                    .min(cap);
                tracing::warn!(
                    path,
                    attempt,
                    policy,
                    wait_ms = d.as_millis() as u64,
                    "hubspot rate limit, backing off"
                );
                self.sleeper.sleep(d).await;
                attempt += 1;
                continue;
            }
            if status.is_server_error() && idempotent && retries_left {
                self.sleeper
                    .sleep(backoff(attempt, Duration::from_millis(200), cap))
                    .await;
                attempt += 1;
                continue;
            }
            return Ok((status, json));
        }
    }

    async fn throttle_search(&self) {
        let wait = {
            let mut last = self.last_search.lock().unwrap_or_else(|p| p.into_inner());
            let now = tokio::time::Instant::now();
            let next = last.map(|t| t + SEARCH_SPACING).unwrap_or(now).max(now);
            *last = Some(next);
            next - now
        };
        if !wait.is_zero() {
            self.sleeper.sleep(wait).await;
        }
    }

    fn contact_of(&self, o: &Object, phone: &E164) -> Contact {
        let prop = |k: &str| {
            o.properties
                .get(k)
                .cloned()
                .flatten()
                .filter(|s| !s.is_empty())
        };
        let name = match (prop("firstname"), prop("lastname")) {
            (Some(f), Some(l)) => Some(format!("{f} {l}")),
            (Some(f), None) => Some(f),
            (None, Some(l)) => Some(l),
            (None, None) => None,
        };
        Contact {
            id: o.id.clone(),
            phone: phone.clone(),
            name: name.map(Pii::new),
            email: prop("email").map(Pii::new),
        }
    }

    /// Does this search hit really carry `phone`?
    fn matches(&self, o: &Object, phone: &E164) -> bool {
        let props = [self.cfg.phone_property.as_str(), "phone", "mobilephone"];
        props.iter().any(|k| {
            o.properties
                .get(*k)
                .cloned()
                .flatten()
                .and_then(|v| normalise(&v, self.region).ok())
                .is_some_and(|n| &n == phone)
        })
    }

    fn remember(&self, phone: &E164, id: &str) {
        self.ids
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(phone.as_str().to_string(), id.to_string());
    }

    fn remembered(&self, phone: &E164) -> Option<String> {
        self.ids
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(phone.as_str())
            .cloned()
    }

    fn properties_list(&self) -> Vec<String> {
        ["firstname", "lastname", "email", "phone", "mobilephone"]
            .iter()
            .map(|s| s.to_string())
            .chain(std::iter::once(self.cfg.phone_property.clone()))
            .collect()
    }

    async fn get_contact(&self, id: &str) -> Result<Option<Object>, CrmError> {
        let path = format!(
            "/crm/v3/objects/contacts/{}?properties={}",
            id.chars()
                .filter(|c| c.is_ascii_alphanumeric())
                .collect::<String>(),
            self.properties_list().join(",")
        );
        let (status, body) = self.call(Method::GET, &path, None, true).await?;
        match status {
            s if s.is_success() => serde_json::from_value(body)
                .map(Some)
                .map_err(|e| bad_response(format!("contact: {e}"))),
            StatusCode::NOT_FOUND => Ok(None),
            s => Err(remote_error(s, &body)),
        }
    }

    async fn search(&self, phone: &E164) -> Result<Option<Object>, CrmError> {
        let e164 = phone.as_str();
        let national = phone.national_digits();
        let eq = |prop: &str, v: &str| json!({"filters": [{"propertyName": prop, "operator": "EQ", "value": v}]});
        let body = json!({
            "filterGroups": [
                eq(&self.cfg.phone_property, e164),
                eq("phone", e164),
                eq("mobilephone", e164),
                eq("hs_searchable_calculated_phone_number", &national),
                eq("hs_searchable_calculated_mobile_number", &national),
            ],
            "properties": self.properties_list(),
            "sorts": [{"propertyName": "lastmodifieddate", "direction": "DESCENDING"}],
            "limit": 10,
        });
        self.throttle_search().await;
        let (status, resp) = self
            .call(
                Method::POST,
                "/crm/v3/objects/contacts/search",
                Some(&body),
                true,
            )
            .await?;
        if !status.is_success() {
            return Err(remote_error(status, &resp));
        }
        let results: Vec<Object> = serde_json::from_value(resp["results"].clone())
            .map_err(|e| bad_response(format!("search: {e}")))?;
        // Prefer the unique property, then any verified phone field.
        let exact = results.iter().position(|o| {
            o.properties
                .get(&self.cfg.phone_property)
                .cloned()
                .flatten()
                .as_deref()
                == Some(e164)
        });
        let idx = exact.or_else(|| results.iter().position(|o| self.matches(o, phone)));
        Ok(idx.and_then(|i| results.into_iter().nth(i)))
    }

    async fn find(&self, phone: &E164) -> Result<Option<Object>, CrmError> {
        if let Some(id) = self.remembered(phone) {
            if let Some(o) = self.get_contact(&id).await? {
                return Ok(Some(o));
            }
        }
        let found = self.search(phone).await?;
        if let Some(o) = &found {
            self.remember(phone, &o.id);
        }
        Ok(found)
    }

    fn contact_properties(&self, c: &ContactInput, create: bool) -> Value {
        let mut p = serde_json::Map::new();
        p.insert(self.cfg.phone_property.clone(), json!(c.phone.as_str()));
        if create {
            p.insert("phone".into(), json!(c.phone.as_str()));
        }
        if let Some(n) = &c.name {
            let (first, last) = split_name(n.expose());
            p.insert("firstname".into(), json!(first));
            if !last.is_empty() {
                p.insert("lastname".into(), json!(last));
            }
        }
        if let Some(e) = &c.email {
            p.insert("email".into(), json!(e.expose()));
        }
        Value::Object(p)
    }

    async fn update(&self, id: &str, c: &ContactInput) -> Result<Object, CrmError> {
        let body = json!({"properties": self.contact_properties(c, false)});
        let path = format!(
            "/crm/v3/objects/contacts/{}",
            id.chars()
                .filter(|c| c.is_ascii_alphanumeric())
                .collect::<String>()
        );
        let (status, resp) = self.call(Method::PATCH, &path, Some(&body), true).await?;
        match status {
            s if s.is_success() => {
                serde_json::from_value(resp).map_err(|e| bad_response(format!("contact: {e}")))
            }
            StatusCode::NOT_FOUND => Err(CrmError::ContactNotFound),
            s => Err(remote_error(s, &resp)),
        }
    }

    async fn engagement(
        &self,
        object: &str,
        contact_id: &str,
        association: u32,
        mut properties: Value,
    ) -> Result<String, CrmError> {
        if let Some(owner) = &self.cfg.owner_id {
            properties["hubspot_owner_id"] = json!(owner);
        }
        let body = json!({
            "properties": properties,
            "associations": [{
                "to": {"id": contact_id},
                "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": association}],
            }],
        });
        let (status, resp) = self
            .call(
                Method::POST,
                &format!("/crm/v3/objects/{object}"),
                Some(&body),
                false,
            )
            .await?;
        match status {
            s if s.is_success() => resp
                .get("id")
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| bad_response(format!("{object}: no id"))),
            StatusCode::NOT_FOUND => Err(CrmError::ContactNotFound),
            s => Err(remote_error(s, &resp)),
        }
    }
}

/// HubSpot answers a duplicate email with `Contact already exists. Existing ID: 123`.
fn existing_id(body: &Value) -> Option<String> {
    let msg = body.get("message")?.as_str()?;
    let tail = msg.split("Existing ID:").nth(1)?.trim();
    let id: String = tail.chars().take_while(|c| c.is_ascii_digit()).collect();
    (!id.is_empty()).then_some(id)
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[async_trait]
impl Crm for HubspotCrm {
    async fn lookup_by_phone(&self, phone: &E164) -> Result<Option<Contact>, CrmError> {
        Ok(self.find(phone).await?.map(|o| self.contact_of(&o, phone)))
    }

    async fn upsert(&self, c: &ContactInput) -> Result<Contact, CrmError> {
        if let Some(existing) = self.find(&c.phone).await? {
            let o = self.update(&existing.id, c).await?;
            return Ok(self.contact_of(&o, &c.phone));
        }
        let body = json!({"properties": self.contact_properties(c, true)});
        let (status, resp) = self
            .call(Method::POST, "/crm/v3/objects/contacts", Some(&body), false)
            .await?;
        let o: Object = match status {
            s if s.is_success() => {
                serde_json::from_value(resp).map_err(|e| bad_response(format!("contact: {e}")))?
            }
            // Same email (or same unique phone property, created by another
            // node a moment ago): update that contact instead.
            StatusCode::CONFLICT => match existing_id(&resp) {
                Some(id) => self.update(&id, c).await?,
                None => return Err(remote_error(status, &resp)),
            },
            s => return Err(remote_error(s, &resp)),
        };
        self.remember(&c.phone, &o.id);
        Ok(self.contact_of(&o, &c.phone))
    }

    async fn add_note(
        &self,
        contact_id: &str,
        body: &Pii<String>,
        at: DateTime<Utc>,
    ) -> Result<String, CrmError> {
        let props = json!({
            "hs_timestamp": iso(at),
            "hs_note_body": format!("<p>{}</p>", html_escape(body.expose())),
        });
        self.engagement("notes", contact_id, NOTE_TO_CONTACT, props)
            .await
    }

    async fn add_task(&self, contact_id: &str, task: &Task) -> Result<String, CrmError> {
        let props = json!({
            "hs_timestamp": iso(task.due),
            "hs_task_subject": task.subject,
            "hs_task_body": task.body.as_ref().map(|b| b.expose().clone()).unwrap_or_default(),
            "hs_task_status": "NOT_STARTED",
            "hs_task_priority": "HIGH",
            "hs_task_type": "CALL",
        });
        self.engagement("tasks", contact_id, TASK_TO_CONTACT, props)
            .await
    }

    async fn log_call(&self, contact_id: &str, call: &CallLog) -> Result<String, CrmError> {
        let mut props = json!({
            "hs_timestamp": iso(call.started),
            "hs_call_title": call.title,
            "hs_call_body": call.body.as_ref().map(|b| b.expose().clone()).unwrap_or_default(),
            "hs_call_direction": match call.direction {
                Direction::Inbound => "INBOUND",
                Direction::Outbound => "OUTBOUND",
            },
            "hs_call_duration": call.duration.as_millis().to_string(),
            "hs_call_status": call.status,
        });
        if let Some(f) = &call.from {
            props["hs_call_from_number"] = json!(f.as_str());
        }
        if let Some(t) = &call.to {
            props["hs_call_to_number"] = json!(t.as_str());
        }
        self.engagement("calls", contact_id, CALL_TO_CONTACT, props)
            .await
    }

    async fn add_meeting(&self, contact_id: &str, m: &Meeting) -> Result<String, CrmError> {
        let props = json!({
            "hs_timestamp": iso(m.start),
            "hs_meeting_title": m.title,
            "hs_meeting_body": m.body.as_ref().map(|b| b.expose().clone()).unwrap_or_default(),
            "hs_meeting_start_time": iso(m.start),
            "hs_meeting_end_time": iso(m.end),
            "hs_meeting_outcome": "SCHEDULED",
        });
        self.engagement("meetings", contact_id, MEETING_TO_CONTACT, props)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn existing_id_is_read_from_the_409_message() {
        let b = json!({"status":"error","message":"Contact already exists. Existing ID: 12345","category":"CONFLICT"});
        assert_eq!(existing_id(&b).as_deref(), Some("12345"));
        assert_eq!(existing_id(&json!({"message": "nope"})), None);
    }

    #[test]
    fn config_errors_name_keys() {
        let cfg = HubspotConfig {
            phone_property: "phone e164".into(),
            ..HubspotConfig::default()
        };
        assert!(cfg
            .validate()
            .unwrap_err()
            .to_string()
            .contains("crm.hubspot.phone_property"));
    }
}
