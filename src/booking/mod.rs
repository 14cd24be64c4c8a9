//! Calendar booking with hold/release: the `Calendar` trait, a local calendar
//! in the store, and Cal.com. (Placeholder until the booking issue lands.)

use serde::Deserialize;

use crate::config::ConfigError;

/// `[calendar]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CalendarConfig {}

impl CalendarConfig {
    /// Range and format checks.
    pub fn validate(&self) -> Result<(), ConfigError> {
        Ok(())
    }
}
