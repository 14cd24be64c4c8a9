//! Contacts keyed by phone number: E.164 numbers ([`crate::phone`]) and the
//! [`Crm`] trait, with a local CRM in the store ([`LocalCrm`]) and HubSpot
//! ([`HubspotCrm`]).
//!
//! This module owns what "the same person" means (one normalised E.164
//! number) and how notes, tasks, calls and meetings attach to a contact. It
//! must not create a contact for a number it could not normalise (anonymous,
//! restricted, short codes), must not log personal data unmasked, and must not
//! decide *what* to write (the brain and the notification layer do).

pub mod hubspot;
mod local;

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use hubspot::HubspotCrm;
pub use local::LocalCrm;

use crate::config_error::ConfigError;
use crate::phone::E164;
use crate::pii::Pii;
use crate::store::StoreError;

/// `[crm]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CrmConfig {
    /// Where contacts live: `local` (the store, default) or `hubspot`
    /// (token in `HUBSPOT_TOKEN`).
    pub provider: CrmProvider,
    /// `[crm.hubspot]`: used when `provider = "hubspot"`.
    pub hubspot: hubspot::HubspotConfig,
}

/// Which CRM implementation to use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CrmProvider {
    /// Contacts in the frontdesk database.
    #[default]
    Local,
    /// HubSpot CRM v3.
    Hubspot,
}

impl CrmConfig {
    /// Range and format checks.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.hubspot.validate()
    }
}

/// A contact as the CRM holds it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Contact {
    /// The CRM's id (UUID locally, HubSpot's numeric id remotely).
    pub id: String,
    /// The number it is keyed by.
    pub phone: E164,
    /// Full name.
    pub name: Option<Pii<String>>,
    /// Email.
    pub email: Option<Pii<String>>,
}

/// A contact to create or update. `None` fields leave stored values alone.
#[derive(Debug, Clone)]
pub struct ContactInput {
    /// The key.
    pub phone: E164,
    /// Full name.
    pub name: Option<Pii<String>>,
    /// Email.
    pub email: Option<Pii<String>>,
    /// IANA zone.
    pub timezone: Option<String>,
}

/// A follow-up task.
#[derive(Debug, Clone)]
pub struct Task {
    /// One line.
    pub subject: String,
    /// Details (personal data).
    pub body: Option<Pii<String>>,
    /// When it is due.
    pub due: DateTime<Utc>,
}

/// Call direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// The contact called us.
    Inbound,
    /// We called the contact.
    Outbound,
}

/// A call to log against a contact.
#[derive(Debug, Clone)]
pub struct CallLog {
    /// Title (`AI call: new enquiry`).
    pub title: String,
    /// Summary (personal data).
    pub body: Option<Pii<String>>,
    /// Direction.
    pub direction: Direction,
    /// When it started.
    pub started: DateTime<Utc>,
    /// How long it lasted.
    pub duration: Duration,
    /// Caller number.
    pub from: Option<E164>,
    /// Called number.
    pub to: Option<E164>,
    /// Outcome (`COMPLETED`, `NO_ANSWER`, …).
    pub status: String,
}

/// A meeting to log against a contact.
#[derive(Debug, Clone)]
pub struct Meeting {
    /// Title.
    pub title: String,
    /// Notes (personal data).
    pub body: Option<Pii<String>>,
    /// Start.
    pub start: DateTime<Utc>,
    /// End.
    pub end: DateTime<Utc>,
}

/// Why a CRM operation failed.
#[derive(Debug, thiserror::Error)]
pub enum CrmError {
    /// No contact with this id.
    #[error("no such contact")]
    ContactNotFound,
    /// A bad argument.
    #[error("invalid {field}: {message}")]
    Invalid {
        /// The argument.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
    /// The remote CRM refused or failed; `transient` says whether a retry may
    /// succeed (5xx, timeouts) or not (auth, validation).
    #[error("CRM provider error (status {status:?}, {category}): {message}")]
    Remote {
        /// HTTP status, if a response came.
        status: Option<u16>,
        /// Provider category (`VALIDATION_ERROR`, `MISSING_SCOPES`) or `network`.
        category: String,
        /// Provider message.
        message: String,
        /// Worth retrying later.
        transient: bool,
    },
    /// Still rate-limited after the allowed retries (or the daily limit).
    #[error("CRM provider rate limit ({policy})")]
    RateLimited {
        /// HubSpot's `policyName` (`TEN_SECONDLY_ROLLING`, `DAILY`).
        policy: String,
        /// The wait the provider asked for.
        retry_after: Option<Duration>,
    },
    /// The local store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A CRM keyed by phone number.
///
/// `upsert` is idempotent per number: whatever format the number arrived in,
/// one contact results. Engagement methods return the new record's id.
#[async_trait]
pub trait Crm: Send + Sync + std::fmt::Debug {
    /// The contact with this number, if any.
    async fn lookup_by_phone(&self, phone: &E164) -> Result<Option<Contact>, CrmError>;
    /// Create the contact for `c.phone`, or update the existing one.
    async fn upsert(&self, c: &ContactInput) -> Result<Contact, CrmError>;
    /// Attach a note.
    async fn add_note(
        &self,
        contact_id: &str,
        body: &Pii<String>,
        at: DateTime<Utc>,
    ) -> Result<String, CrmError>;
    /// Attach a task due at `task.due`.
    async fn add_task(&self, contact_id: &str, task: &Task) -> Result<String, CrmError>;
    /// Log a call.
    async fn log_call(&self, contact_id: &str, call: &CallLog) -> Result<String, CrmError>;
    /// Log a meeting (a booking).
    async fn add_meeting(&self, contact_id: &str, meeting: &Meeting) -> Result<String, CrmError>;
}

/// Split a full name into (first, last) for CRMs that want both.
pub fn split_name(full: &str) -> (String, String) {
    let full = full.trim();
    match full.split_once(char::is_whitespace) {
        Some((a, b)) => (a.to_string(), b.trim().to_string()),
        None => (full.to_string(), String::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_split_on_first_space() {
        assert_eq!(split_name("Alex Rivera"), ("Alex".into(), "Rivera".into()));
        assert_eq!(
            split_name(" Mary Jane  Watson "),
            ("Mary".into(), "Jane  Watson".into())
        );
        assert_eq!(split_name("Cher"), ("Cher".into(), String::new()));
    }
}
