//! ECR credentials: `GetAuthorizationToken` → user `AWS` and a 12-hour token.
//!
//! The token is base64 of `AWS:<password>`; the proxy endpoint (`https://<account>.dkr.ecr.
//! <region>.amazonaws.com`) is where the OCI API of the account's registry answers. The token
//! is only ever sent in an `Authorization` header or on `docker login`'s stdin.

use std::time::SystemTime;

use base64::Engine as _;

use super::error::ImageError;
use super::registry::RegistryAuth;

/// Gets the registry credentials and proxy endpoint of the account's ECR registry.
pub async fn ecr_auth(ecr: &aws_sdk_ecr::Client) -> Result<(RegistryAuth, String), ImageError> {
    let out = ecr
        .get_authorization_token()
        .send()
        .await
        .map_err(|e| ImageError::Ecr {
            operation: "GetAuthorizationToken",
            detail: aws_sdk_ecr::error::DisplayErrorContext(&e).to_string(),
        })?;
    let missing = |what: &str| ImageError::Ecr {
        operation: "GetAuthorizationToken",
        detail: format!("the answer has no {what}"),
    };
    let data = out
        .authorization_data()
        .first()
        .ok_or_else(|| missing("authorizationData"))?;
    let token = data
        .authorization_token()
        .ok_or_else(|| missing("authorizationToken"))?;
    let endpoint = data
        .proxy_endpoint()
        .ok_or_else(|| missing("proxyEndpoint"))?
        .to_string();
    let mut auth = decode_token(token)?;
    // An expiry already past when the token is handed out means a skewed clock or an emulator
    // (moto answers a fixed date in 2015): keep no expiry rather than refuse a fresh token.
    auth.expires_at = data
        .expires_at()
        .and_then(|t| SystemTime::try_from(*t).ok())
        .filter(|t| *t > SystemTime::now());
    Ok((auth, endpoint))
}

/// `base64("AWS:<password>")` → credentials.
pub(crate) fn decode_token(token: &str) -> Result<RegistryAuth, ImageError> {
    let bad = |why: &str| ImageError::Ecr {
        operation: "GetAuthorizationToken",
        detail: format!("the authorization token is not base64 of `user:password`: {why}"),
    };
    let raw = base64::engine::general_purpose::STANDARD
        .decode(token.trim())
        .map_err(|e| bad(&e.to_string()))?;
    let raw = String::from_utf8(raw).map_err(|_| bad("not UTF-8"))?;
    let (user, password) = raw.split_once(':').ok_or_else(|| bad("no `:`"))?;
    Ok(RegistryAuth::new(user, password))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn decodes_the_token() {
        let token = base64::engine::general_purpose::STANDARD.encode("AWS:123456789012-auth-token");
        let auth = decode_token(&token).unwrap();
        assert_eq!(auth.username, "AWS");
        assert_eq!(auth.password, "123456789012-auth-token");
        assert!(decode_token("!!!").is_err());
    }
}
