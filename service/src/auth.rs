//! Bearer-token authentication of writes, with named credentials.
//!
//! Writes (every method but `GET`, `HEAD`, `OPTIONS`) need `Authorization: Bearer <token>` (the
//! scheme in any case) when at least one credential is configured: the single token
//! `TIMING_API_TOKEN` (named `default`, as the provisioner injects it) and/or the named tokens
//! `TIMING_API_TOKENS=name:token,name:token`, so that two timers are told apart. The name of the
//! credential used becomes the write's [`Actor`], recorded in the audit trail. Tokens are
//! compared in constant time (`subtle`) so response timing does not reveal how much of a guess
//! was right. Reads stay public. With no credential, writes are open (the service logs a
//! warning at start) and their actor is `anonymous`.

use std::sync::Arc;

use axum::{
    extract::{FromRequestParts, Request, State},
    http::{Method, header, request::Parts},
    middleware::Next,
    response::{IntoResponse, Response},
};
use subtle::ConstantTimeEq;

use crate::error::ApiError;

/// The name the single `TIMING_API_TOKEN` is known by.
pub const DEFAULT_NAME: &str = "default";
/// The actor of writes while no credential is configured.
pub const ANONYMOUS: &str = "anonymous";

/// The configured write credentials: (name, token).
#[derive(Debug, Default)]
pub struct Credentials {
    list: Vec<(Arc<str>, String)>,
}

/// A refused credentials setting.
#[derive(Debug, thiserror::Error)]
#[error("invalid TIMING_API_TOKENS: {0}")]
pub struct CredentialsError(String);

impl Credentials {
    /// From `TIMING_API_TOKEN` (named [`DEFAULT_NAME`]; empty counts as unset) and
    /// `TIMING_API_TOKENS` (`name:token,...`; names 1 to 64 of `A-Za-z0-9_.-`, unique, as are
    /// the tokens).
    pub fn parse(single: Option<&str>, named: Option<&str>) -> Result<Self, CredentialsError> {
        let mut list: Vec<(Arc<str>, String)> = Vec::new();
        if let Some(token) = single.map(str::trim).filter(|t| !t.is_empty()) {
            list.push((Arc::from(DEFAULT_NAME), token.to_owned()));
        }
        for entry in named.unwrap_or_default().split(',').map(str::trim) {
            if entry.is_empty() {
                continue;
            }
            let Some((name, token)) = entry.split_once(':') else {
                return Err(CredentialsError(format!(
                    "entry `{}…` is not `name:token`",
                    entry.chars().take(8).collect::<String>()
                )));
            };
            let (name, token) = (name.trim(), token.trim());
            let valid_name = (1..=64).contains(&name.len())
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
            if !valid_name {
                return Err(CredentialsError(format!(
                    "name `{name}` is not 1 to 64 characters of letters, digits, `_`, `.` or `-`"
                )));
            }
            if token.is_empty() {
                return Err(CredentialsError(format!("`{name}` has an empty token")));
            }
            if list.iter().any(|(n, _)| n.as_ref() == name) {
                return Err(CredentialsError(format!("name `{name}` is given twice")));
            }
            if list.iter().any(|(_, t)| t == token) {
                return Err(CredentialsError(format!(
                    "`{name}` has the same token as another credential"
                )));
            }
            list.push((Arc::from(name), token.to_owned()));
        }
        Ok(Self { list })
    }

    /// Whether writes are open (no credential configured).
    pub fn is_open(&self) -> bool {
        self.list.is_empty()
    }

    /// The credential names, in the order configured.
    pub fn names(&self) -> Vec<&str> {
        self.list.iter().map(|(name, _)| name.as_ref()).collect()
    }

    /// The token of the first credential (tests and tools that need one to write).
    pub fn first_token(&self) -> Option<&str> {
        self.list.first().map(|(_, token)| token.as_str())
    }

    /// The credential a token belongs to. Every configured token is compared, in constant time
    /// each, so the timing does not tell which one nearly matched.
    fn name_of(&self, given: &[u8]) -> Option<Arc<str>> {
        let mut found = None;
        for (name, token) in &self.list {
            if bool::from(given.ct_eq(token.as_bytes())) {
                found = Some(name.clone());
            }
        }
        found
    }
}

/// Who made a write: the name of the credential, or [`ANONYMOUS`] while writes are open. Put
/// in the request's extensions by [`require_token`]; handlers take it as an extractor.
#[derive(Debug, Clone)]
pub struct Actor(pub Arc<str>);

impl Actor {
    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Actor {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<Actor>()
            .cloned()
            .unwrap_or_else(|| Actor(Arc::from(ANONYMOUS))))
    }
}

/// The credentials of the request's `Authorization` header, if any. The scheme is matched
/// case-insensitively (`bearer`, `BEARER`: RFC 9110 §11.1) and may be followed by several
/// spaces; the credentials are compared exactly.
fn bearer(request: &Request) -> Option<&str> {
    let (scheme, credentials) = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().split_once(' '))?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| credentials.trim())
}

/// Middleware: 401 for a write without a configured token; the write's [`Actor`] otherwise.
pub async fn require_token(
    State(credentials): State<Arc<Credentials>>,
    mut request: Request,
    next: Next,
) -> Response {
    let safe = matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    );
    if safe {
        return next.run(request).await;
    }
    let actor = if credentials.is_open() {
        Arc::from(ANONYMOUS)
    } else {
        match bearer(&request).and_then(|given| credentials.name_of(given.as_bytes())) {
            Some(name) => name,
            None => return ApiError::Unauthorized.into_response(),
        }
    };
    request.extensions_mut().insert(Actor(actor));
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_single_and_named_tokens() {
        let c = Credentials::parse(Some("s3cret"), Some("mat-1:aaa, mat-2:bbb,"))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.names(), ["default", "mat-1", "mat-2"]);
        assert_eq!(c.name_of(b"bbb").as_deref(), Some("mat-2"));
        assert_eq!(c.name_of(b"s3cret").as_deref(), Some("default"));
        assert_eq!(c.name_of(b"bb"), None);
        assert!(Credentials::parse(Some(""), None).is_ok_and(|c| c.is_open()));
        for bad in ["a", "a:", "a b:x", "a:x,a:y", "a:x,b:x"] {
            assert!(Credentials::parse(None, Some(bad)).is_err(), "{bad}");
        }
    }
}
