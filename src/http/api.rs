//! The JSON API under `/api` (bearer token `FRONTDESK_API_TOKEN`): leads,
//! calls, contacts, slots, holds and bookings. (Placeholder until the storage
//! issue lands.)

use axum::Router;

use crate::config::Config;

/// Everything the API handlers need: the store, the calendar and the CRM.
#[derive(Debug, Default)]
pub struct ApiState {}

/// Why the API state could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ApiInitError {}

impl ApiState {
    /// Connect the store and build the calendar and CRM from config.
    pub async fn from_config(_config: &Config) -> Result<ApiState, ApiInitError> {
        Ok(ApiState {})
    }
}

/// The `/api/*` routes.
pub fn routes() -> Router<super::AppState> {
    Router::new()
}
