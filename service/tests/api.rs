//! Integration tests of the timing service, through real HTTP against a real `redis-server`
//! (each test starts its own on a free loopback port; see `common`). One test binary, one
//! module per area (the ripgrep layout): linking once keeps `cargo test` fast.

// Tests state their expectations with `expect` / `unwrap`: a failure is the test failing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

/// Bearer-token auth on and off.
mod auth;
/// `/api/v1/competitors` CRUD, listing and bad input.
mod competitors;
/// The HTTP edge: auth scheme, media types, duplicate keys, early refusals, slow clients.
mod edge;
/// CSV exports against the JSON, and back through the import.
mod export;
/// The start-list import: CSV and JSON, bad input, partial mode, upserts.
mod import;
/// Legacy routes with the original's example bodies.
mod legacy;
/// ETags, 304, long polls across processes, the waiter limit.
mod live;
/// The results page in headless chromium.
mod page;
/// Chip reads, waves, gun and net time, manual overrides, the audit trail (issue 11).
mod passings;
/// The real binary: SIGTERM with a request in flight, `healthcheck`, invalid definition files,
/// Redis followed by its DNS name to a new address.
mod process;
/// `/health`, `/ready`, Redis stopped and restarted, fallbacks, OpenAPI, race definition.
mod resilience;
/// `/api/v1/results`: ties, own start times, midnight, scopes, statuses, pagination.
mod results;
/// `/api/v1/competitors/{bib}/times` and `/status`.
mod times;
