//! The axum router: media WebSockets, health, readiness, metrics and the API.

pub mod api;

use std::sync::Arc;

use axum::Router;

use crate::config::Config;
use crate::metrics::Metrics;

/// Shared state of every handler. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// The validated config.
    pub config: Arc<Config>,
    /// Process metrics.
    pub metrics: Arc<Metrics>,
    /// Store, calendar, CRM (the `/api` routes).
    pub api: Arc<api::ApiState>,
}

/// Build the router.
pub fn router(state: AppState) -> Router {
    Router::new().merge(api::routes()).with_state(state)
}
