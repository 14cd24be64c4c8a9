//! Storage on sqlx: SQLite by default (zero setup), PostgreSQL for several
//! nodes. Migrations for both, and the durable outbox. (Issue: storage,
//! booking and CRM — this file is a placeholder until it lands.)

use serde::Deserialize;

use crate::config::ConfigError;

/// `[storage]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// `sqlite://…` or `postgres://…`; `FRONTDESK_DATABASE_URL` overrides it.
    pub url: Option<String>,
}

impl StorageConfig {
    /// Range and format checks.
    pub fn validate(&self) -> Result<(), ConfigError> {
        Ok(())
    }
}
