//! `token`: prints the API's write token (the SSM SecureString the API tasks get as
//! `TIMING_API_TOKEN`), or with `--rotate` replaces it and restarts the API tasks to use it.

use std::fmt;

use serde::Serialize;

use crate::error::Result;
use crate::plan::Deployment;
use crate::resources::{secrets, services};

/// What `token` prints. `token` is absent after a rotation: printing a fresh secret into a
/// CI log by default would defeat rotating it.
#[derive(Debug, Clone, Serialize)]
pub struct TokenReport {
    /// Version of the JSON schema (`docs/output.md`).
    pub schema_version: u32,
    /// `token`.
    pub command: &'static str,
    /// The app.
    pub app: String,
    /// The region.
    pub region: String,
    /// The account.
    pub account: String,
    /// Whether this run replaced the token.
    pub rotated: bool,
    /// The token, when not rotating.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// What the user should know.
    pub notes: Vec<String>,
}

impl fmt::Display for TokenReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(token) = &self.token {
            writeln!(f, "{token}")?;
        }
        for note in &self.notes {
            writeln!(f, "{note}")?;
        }
        Ok(())
    }
}

/// Reads the token, or rotates it and replaces the API tasks.
pub async fn token(d: &Deployment, rotate: bool) -> Result<TokenReport> {
    let (token, notes) = if rotate {
        secrets::rotate_token(d).await?;
        services::restart(d, &d.names.api_service).await?;
        let note = "token rotated; the API tasks are being replaced to use it (`provisioner token` prints it)";
        (None, vec![note.to_owned()])
    } else {
        (Some(secrets::read_token(d).await?), Vec::new())
    };
    Ok(TokenReport {
        schema_version: 1,
        command: "token",
        app: d.names.app.clone(),
        region: d.region().to_owned(),
        account: d.account.clone(),
        rotated: rotate,
        token,
        notes,
    })
}
