//! The Redis Functions library (`timing.lua`): built from the source, the key names
//! (`keys::lua_prelude`) and the race (checkpoints, read rules), loaded with
//! `FUNCTION LOAD REPLACE` when the service starts and again whenever Redis answers that a
//! function is missing (a Redis restarted without persistence, or a new one behind the same
//! name), then called with `FCALL`. Helpers and tables are built once per load, not per call as
//! in an `EVAL` script.
//!
//! The library and every function in it are named by the version of their source
//! (`timing_<version>`, `timing_put_<version>`): a deploy runs the old and the new service
//! side by side on one Redis (ECS starts the new task before it stops the old), and each must
//! call its own functions. Under one name, the last to load replaced the other's, whose calls
//! then went to functions that read their arguments another way. A service deletes the other
//! versions when it starts and every ten minutes after (the one it replaces, still in use
//! until the old task stops, is loaded again by that task's next call), so Redis holds two
//! while a deploy runs, and one within ten minutes of its end: every library adds to the one
//! Lua heap all functions share, and so to the cost of every call (its collector; see the
//! benchmark notes, `bench/NOTES.md`).

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, SystemTime},
};

use redis::Value;

use super::{Store, StoreError, connection::Connection, keys, parse_err};
use crate::{
    model::DAY_MS,
    race::{BEFORE_MS, Race},
};

/// What every library of the service is named, before its version.
const NAME: &str = "timing";
/// How many hex digits of its source's SHA-1 name a version.
const VERSION_DIGITS: usize = 12;

/// The library built for a race: its name and its source.
pub(super) struct Library {
    /// `timing_<version>`; its functions' names end in the part after [`NAME`].
    name: String,
    source: Arc<str>,
}

impl Library {
    /// The library for `race`: the `#!lua` line and the version's suffix, then the generated
    /// tables `K` and `R` (the race's own: its checkpoints, the name of its times index, the
    /// read rules), then `timing.lua`. The version is the SHA-1 of all but the first two lines
    /// (as `redis::Script` computes it for a script: no hashing of our own), so the same
    /// source and race give the same name in every process and every build.
    pub(super) fn for_race(race: &Race) -> Self {
        let checkpoints: Vec<String> = race
            .checkpoints
            .iter()
            .map(|c| keys::lua_string(c))
            .collect();
        let min_times: Vec<String> = race.rules.min_time_ms.iter().map(u64::to_string).collect();
        let body = format!(
            "{}-- generated from the race definition\nlocal R = {{\n  checkpoints = {{ {} }},\n  times_index = {},\n  start_window = {},\n  min_time = {{ {} }},\n  day = {},\n  before = {},\n}}\n{}",
            keys::lua_prelude(),
            checkpoints.join(", "),
            keys::lua_string(&keys::times_index(&race.checkpoints)),
            race.rules.start_window_ms,
            min_times.join(", "),
            DAY_MS,
            BEFORE_MS,
            include_str!("timing.lua"),
        );
        let script = redis::Script::new(&body);
        let version = &script.get_hash()[..VERSION_DIGITS];
        let name = format!("{NAME}_{version}");
        let source = format!("#!lua name={name}\nlocal VERSION = '_{version}'\n{body}");
        Self {
            name,
            source: Arc::from(source),
        }
    }

    /// The name `function` has in this library (`timing_put` -> `timing_put_<version>`).
    pub(super) fn function(&self, function: &str) -> String {
        format!("{function}{}", &self.name[NAME.len()..])
    }

    /// `FCALL <function of this library> 0`, its arguments to be added.
    pub(super) fn call(&self, function: &str) -> redis::Cmd {
        let mut call = redis::cmd("FCALL");
        call.arg(self.function(function)).arg(0);
        call
    }
}

/// `FUNCTION LOAD REPLACE <source>`.
fn load_command(source: &str) -> redis::Cmd {
    let mut load = redis::cmd("FUNCTION");
    load.arg("LOAD").arg("REPLACE").arg(source);
    load
}

/// Whether `name` is a library of this service (of any version, or from before libraries
/// had versions), not another program's that happens to start alike.
fn is_service_library(name: &str) -> bool {
    name == NAME
        || name
            .strip_prefix(NAME)
            .and_then(|rest| rest.strip_prefix('_'))
            .is_some_and(|version| {
                version.len() == VERSION_DIGITS && version.bytes().all(|b| b.is_ascii_hexdigit())
            })
}

/// The names of the libraries in a `FUNCTION LIST` reply (a list of maps, or in RESP2 of
/// flat key, value lists).
fn library_names(reply: Value) -> Result<Vec<String>, StoreError> {
    let libraries: Vec<HashMap<String, Value>> =
        redis::from_redis_value(reply).map_err(parse_err)?;
    libraries
        .into_iter()
        .map(|mut library| {
            let name = library
                .remove("library_name")
                .ok_or_else(|| parse_err("a library without a library_name"))?;
            redis::from_redis_value(name).map_err(parse_err)
        })
        .collect()
}

/// When Redis says the library is not there.
fn function_missing(err: &redis::RedisError) -> bool {
    err.to_string().contains("Function not found")
}

/// The audit time of a change: now, RFC 3339 UTC with milliseconds.
pub(super) fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

impl Store {
    /// Loads (or replaces) this version's library, then deletes the service's other
    /// versions (see the module's doc): when the service starts. An error is loading's; one
    /// of deleting is logged (the periodic tidying tries again). (A library a call finds
    /// missing is loaded again without deleting any: [`Store::fcall_pipe_on`].)
    pub async fn load_functions(&self) -> Result<(), StoreError> {
        let load = load_command(&self.library.source);
        let _: String = self
            .conn
            .run(|mut conn| async move { load.query_async(&mut conn).await })
            .await?;
        self.tidy_libraries().await;
        Ok(())
    }

    /// [`Store::delete_other_versions`], a failure logged (the next round tries again).
    async fn tidy_libraries(&self) {
        if let Err(err) = self.delete_other_versions().await {
            tracing::warn!(%err, "could not delete other versions' functions");
        }
    }

    /// Deletes the libraries of the service's other versions (and the unversioned one of
    /// before), not this one's nor other programs'. A version still serving loads its own
    /// again on its next call.
    pub async fn delete_other_versions(&self) -> Result<(), StoreError> {
        let mut list = redis::cmd("FUNCTION");
        list.arg("LIST").arg("LIBRARYNAME").arg(format!("{NAME}*"));
        let libraries: Value = self
            .conn
            .run(|mut conn| async move { list.query_async(&mut conn).await })
            .await?;
        let others: Vec<String> = library_names(libraries)?
            .into_iter()
            .filter(|name| *name != self.library.name && is_service_library(name))
            .collect();
        for other in others {
            let mut delete = redis::cmd("FUNCTION");
            delete.arg("DELETE").arg(&other);
            let deleted: Result<String, StoreError> = self
                .conn
                .run(|mut conn| async move { delete.query_async(&mut conn).await })
                .await;
            match deleted {
                Ok(_) => tracing::info!(library = %other, "deleted another version's functions"),
                // (Deleted meanwhile by another process: what was wanted.)
                Err(StoreError::Internal(message)) if message.contains("Library not found") => {}
                Err(err) => return Err(err),
            }
        }
        Ok(())
    }

    /// Deletes the other versions' libraries every `every`, for the life of the process
    /// (started by `main`): the old task of a deploy loads its library again after the new
    /// one started, and without this it stayed in Redis (and in its append-only file) until
    /// the next start, its Lua heap paid for by every call; a service that started while
    /// Redis was down deleted none. A failed round is logged and tried again next time.
    pub fn spawn_library_tidying(&self, every: Duration) -> tokio::task::JoinHandle<()> {
        let store = self.clone();
        tokio::spawn(async move {
            let mut rounds = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            rounds.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                rounds.tick().await;
                store.tidy_libraries().await;
            }
        })
    }

    /// The name of `function` in this service's library (for tests and tools that call it
    /// directly): `timing_put` -> `timing_put_<version>`.
    pub fn function_name(&self, function: &str) -> String {
        self.library.function(function)
    }

    /// The name of this service's library, `timing_<version>`.
    pub fn library_name(&self) -> &str {
        &self.library.name
    }

    /// Runs the FCALLs of `pipe` on `conn` (`self.conn`, or `self.bulk` for bulk writes); when
    /// the library is missing, loads it and runs them again (nothing ran: every call failed
    /// the same way).
    pub(super) async fn fcall_pipe_on(
        &self,
        conn: &Connection,
        pipe: &redis::Pipeline,
    ) -> Result<Vec<Value>, StoreError> {
        let source = self.library.source.clone();
        conn.run(|mut conn| async move {
            match pipe.query_async::<Vec<Value>>(&mut conn).await {
                Err(err) if function_missing(&err) => {
                    tracing::warn!(
                        "redis lacks this version's timing functions (restarted, or another \
                         version started); loading them"
                    );
                    let _: String = load_command(&source).query_async(&mut conn).await?;
                    pipe.query_async(&mut conn).await
                }
                other => other,
            }
        })
        .await
    }

    /// One `FCALL <function> 0 <args>`.
    pub(super) async fn fcall(&self, function: &str, args: &[&str]) -> Result<Value, StoreError> {
        self.fcall_on(&self.conn, function, args).await
    }

    /// One `FCALL <function> 0 <args>` on `conn` (see [`Store::fcall_pipe_on`]).
    pub(super) async fn fcall_on(
        &self,
        conn: &Connection,
        function: &str,
        args: &[&str],
    ) -> Result<Value, StoreError> {
        let mut call = self.library.call(function);
        call.arg(args);
        self.fcall_command_on(conn, call).await
    }

    /// One FCALL built with [`Library::call`] (arguments of any type) on `conn`.
    pub(super) async fn fcall_command_on(
        &self,
        conn: &Connection,
        call: redis::Cmd,
    ) -> Result<Value, StoreError> {
        let mut pipe = redis::pipe();
        pipe.add_command(call);
        let mut replies = self.fcall_pipe_on(conn, &pipe).await?;
        replies
            .pop()
            .ok_or_else(|| StoreError::Internal("no reply to an FCALL".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_library_is_named_by_its_source_and_race() {
        let library = Library::for_race(&Race::default());
        assert_eq!(library.name, Library::for_race(&Race::default()).name);
        assert!(is_service_library(&library.name), "{}", library.name);
        assert!(
            library
                .source
                .starts_with(&format!("#!lua name={}\n", library.name))
        );
        assert_eq!(
            library.function("timing_put"),
            format!("timing_put_{}", &library.name["timing_".len()..])
        );
        let mut other_rules = Race::default();
        other_rules.rules.start_window_ms += 1;
        assert_ne!(library.name, Library::for_race(&other_rules).name);
    }

    #[test]
    fn only_the_services_libraries_are_deleted_as_other_versions() {
        for ours in ["timing", "timing_0123456789ab", "timing_ABCDEF012345"] {
            assert!(is_service_library(ours), "{ours}");
        }
        for theirs in [
            "timing_sheets",
            "timingx",
            "timing_0123456789a",
            "timing_0123456789abc",
            "timing_0123456789ag",
            "other",
            "",
        ] {
            assert!(!is_service_library(theirs), "{theirs}");
        }
    }
}
