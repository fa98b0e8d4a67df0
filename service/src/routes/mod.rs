//! The HTTP routes, one module per route group, merged into one router by `crate::app`.
//!
//! - `legacy`: the proof of concept's routes (`/competitor`, `/settimes`, …);
//! - `competitors`, `times`, `results`, `waves`, `passings`, `audit`: the versioned API under
//!   `/api/v1`;
//! - `import`: the start-list import (CSV or JSON); `export`: results and start list as CSV;
//! - `openapi`: `/api/v1/openapi.json` and `/api/v1/race`;
//! - `health`: `/health` and `/ready`;
//! - `page`: the public results page at `/`;
//! - `query`: helpers shared by the groups (bibs in paths, pages, filters).

pub mod audit;
pub mod competitors;
pub mod export;
pub mod health;
pub mod import;
pub mod legacy;
pub mod openapi;
pub mod page;
pub mod passings;
pub mod query;
pub mod results;
pub mod times;
pub mod waves;

use axum::Router;

use crate::state::AppState;

/// Every route, without middleware.
pub fn router() -> Router<AppState> {
    Router::new()
        .merge(legacy::router())
        .merge(competitors::router())
        .merge(import::router())
        .merge(times::router())
        .merge(results::router())
        .merge(waves::router())
        .merge(passings::router())
        .merge(audit::router())
        .merge(openapi::router())
        .merge(health::router())
        .merge(page::router())
}
