//! End to end: the real `provisioner` binary against moto in server mode, through the proxy
//! that records every AWS call. Each test has its own emulator (moto allows one private DNS
//! namespace per VPC, and tests run in parallel). What moto cannot show is listed in
//! `support/mod.rs`.
//!
//! - [`deploy`]: what a cold `up` creates, one test per part of the deployment, and what a
//!   second `up` or a changed file does.
//! - [`teardown`]: `down`, alone and beside another app, in the order AWS enforces, and after
//!   an interrupted run.
//! - [`refusals`]: bad files and a missing region, credentials, VPC or `--yes`, refused before
//!   any change.

mod deploy;
mod refusals;
mod teardown;

use std::collections::BTreeSet;

/// Tags as a set of `(key, value)` pairs.
fn tag_map<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> BTreeSet<(String, String)> {
    pairs
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// Whether the tags mark a resource of `app` managed by the provisioner.
fn has_app_tags(tags: &BTreeSet<(String, String)>, app: &str) -> bool {
    tags.contains(&("app".to_owned(), app.to_owned()))
        && tags.contains(&("managed-by".to_owned(), "provisioner".to_owned()))
}
