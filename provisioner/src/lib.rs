//! Library of the provisioner. (In the `ops` branch only the deployment watcher and the logs
//! reader live here; the lead's `lib.rs` adds the rest and keeps these two lines.)

pub mod logs;
pub mod watch;
