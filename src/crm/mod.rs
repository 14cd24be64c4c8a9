//! E.164 normalisation and the `Crm` trait.

pub mod phone;

use serde::Deserialize;

use crate::config::ConfigError;

/// `[crm]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CrmConfig {}

impl CrmConfig {
    /// Range and format checks.
    pub fn validate(&self) -> Result<(), ConfigError> {
        Ok(())
    }
}
