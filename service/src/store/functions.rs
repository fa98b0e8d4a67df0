//! The Redis Functions library `timing` (`timing.lua`): built from the source, the key names
//! (`keys::lua_prelude`) and the race (checkpoints, read rules), loaded with
//! `FUNCTION LOAD REPLACE` when the service starts and again whenever Redis answers that a
//! function is missing (a Redis restarted without persistence, or a new one behind the same
//! name), then called with `FCALL`. Helpers and tables are built once per load, not per call as
//! in an `EVAL` script.

use std::time::SystemTime;

use redis::Value;

use super::{Store, StoreError, connection::Connection, keys};
use crate::{
    model::DAY_MS,
    race::{BEFORE_MS, Race},
};

/// The library's source for `race`: the `#!lua` line, the generated tables `K` and `R` (the
/// race's own: its checkpoints, the name of its times index, the read rules; and the layout of
/// the planned chip-read call's arguments), then
/// `timing.lua`.
pub(super) fn library_source(race: &Race) -> String {
    let checkpoints: Vec<String> = race
        .checkpoints
        .iter()
        .map(|c| keys::lua_string(c))
        .collect();
    let min_times: Vec<String> = race.rules.min_time_ms.iter().map(u64::to_string).collect();
    format!(
        "#!lua name=timing\n{}-- generated from the race definition\nlocal R = {{\n  checkpoints = {{ {} }},\n  times_index = {},\n  start_window = {},\n  min_time = {{ {} }},\n  day = {},\n  before = {},\n  planned_layout = {},\n}}\n{}",
        keys::lua_prelude(),
        checkpoints.join(", "),
        keys::lua_string(&keys::times_index(&race.checkpoints)),
        race.rules.start_window_ms,
        min_times.join(", "),
        DAY_MS,
        BEFORE_MS,
        keys::lua_string(super::PLANNED_LAYOUT),
        include_str!("timing.lua"),
    )
}

/// `FUNCTION LOAD REPLACE <library>`.
fn load_command(library: &str) -> redis::Cmd {
    let mut load = redis::cmd("FUNCTION");
    load.arg("LOAD").arg("REPLACE").arg(library);
    load
}

/// `FCALL <function> 0`, its arguments to be added.
pub(super) fn fcall_command(function: &str) -> redis::Cmd {
    let mut call = redis::cmd("FCALL");
    call.arg(function).arg(0);
    call
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
    /// Loads (or replaces) the library.
    pub async fn load_functions(&self) -> Result<(), StoreError> {
        let load = load_command(&self.library);
        let _: String = self
            .conn
            .run(|mut conn| async move { load.query_async(&mut conn).await })
            .await?;
        Ok(())
    }

    /// Runs the FCALLs of `pipe` on `conn` (`self.conn`, or `self.bulk` for bulk writes); when
    /// the library is missing, loads it and runs them again (nothing ran: every call failed
    /// the same way).
    pub(super) async fn fcall_pipe_on(
        &self,
        conn: &Connection,
        pipe: &redis::Pipeline,
    ) -> Result<Vec<Value>, StoreError> {
        let library = self.library.clone();
        conn.run(|mut conn| async move {
            match pipe.query_async::<Vec<Value>>(&mut conn).await {
                Err(err) if function_missing(&err) => {
                    tracing::warn!("redis lacks the timing functions (restarted?); loading them");
                    let _: String = load_command(&library).query_async(&mut conn).await?;
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
        let mut call = fcall_command(function);
        call.arg(args);
        self.fcall_command_on(conn, call).await
    }

    /// One FCALL built with [`fcall_command`] (arguments of any type) on `conn`.
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
