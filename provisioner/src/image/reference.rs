//! Image references (`host/repo:tag`, `host/repo@sha256:...`) and registry endpoints.
//!
//! A reference names an image the way a task definition does; an [`Endpoint`] is where the
//! HTTP requests go. They differ on purpose: with `--registry-endpoint` the push goes to a
//! private mirror or a test registry on loopback while the task definition keeps the ECR URI.
//! Plain `http://` is accepted only for loopback hosts, so credentials never cross a network in
//! clear text.

use std::fmt;
use std::net::IpAddr;

use reqwest::Url;

use super::error::ImageError;

/// Docker Hub's name in references and the host that actually serves its API.
const DOCKER_HUB: &str = "docker.io";
const DOCKER_HUB_API: &str = "registry-1.docker.io";

/// Where registry API requests are sent: a scheme and a host (with port).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    url: Url,
}

impl Endpoint {
    /// Parses `https://host[:port]`, `http://127.0.0.1:PORT` or a bare `host[:port]` (HTTPS).
    ///
    /// Plain HTTP is refused unless the host is a loopback address or `localhost`.
    pub fn parse(endpoint: &str) -> Result<Self, ImageError> {
        let invalid = |reason: &str| ImageError::InvalidEndpoint {
            endpoint: endpoint.to_string(),
            reason: reason.to_string(),
        };
        let with_scheme = if endpoint.contains("://") {
            endpoint.to_string()
        } else {
            format!("https://{endpoint}")
        };
        let url = Url::parse(&with_scheme).map_err(|e| invalid(&e.to_string()))?;
        let host = url.host_str().ok_or_else(|| invalid("it has no host"))?;
        match url.scheme() {
            "https" => {}
            "http" if is_loopback_host(host) => {}
            "http" => {
                return Err(invalid(
                    "plain http is allowed only for loopback hosts (127.0.0.0/8, ::1, localhost); \
                     use https",
                ));
            }
            other => return Err(invalid(&format!("unsupported scheme `{other}`"))),
        }
        if url.path() != "/" && !url.path().is_empty() {
            return Err(invalid(
                "give only scheme and host (the repository is passed separately)",
            ));
        }
        if url.query().is_some() || !url.username().is_empty() || url.password().is_some() {
            return Err(invalid(
                "credentials or query strings do not belong in the endpoint",
            ));
        }
        Ok(Endpoint { url })
    }

    /// The endpoint serving the registry named in an image reference (`docker.io` is served
    /// by `registry-1.docker.io`; loopback hosts use plain HTTP, as Docker does).
    pub fn for_registry(registry: &str) -> Result<Self, ImageError> {
        if registry == DOCKER_HUB {
            return Endpoint::parse(&format!("https://{DOCKER_HUB_API}"));
        }
        let host = registry.rsplit_once(':').map_or(registry, |(h, _)| h);
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if is_loopback_host(host) {
            Endpoint::parse(&format!("http://{registry}"))
        } else {
            Endpoint::parse(&format!("https://{registry}"))
        }
    }

    /// `host[:port]`, as used in messages and `docker login`.
    pub fn host(&self) -> String {
        let host = self.url.host_str().unwrap_or_default();
        match self.url.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_string(),
        }
    }

    /// The absolute URL of an API path (which starts with `/v2/`).
    pub(crate) fn join(&self, path: &str) -> Result<Url, ImageError> {
        self.url
            .join(path)
            .map_err(|e| ImageError::InvalidEndpoint {
                endpoint: self.url.to_string(),
                reason: format!("cannot join `{path}`: {e}"),
            })
    }

    /// Whether requests go over plain HTTP (loopback only).
    pub fn is_plain_http(&self) -> bool {
        self.url.scheme() == "http"
    }

    /// Whether `url` has this endpoint's origin (scheme, host and port).
    pub fn same_origin(&self, url: &Url) -> bool {
        self.url.origin() == url.origin()
    }

    /// The endpoint as a URL string without a trailing slash.
    pub fn as_str(&self) -> &str {
        self.url.as_str().trim_end_matches('/')
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// A parsed image reference: `[registry/]repository[:tag][@digest]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    /// Registry host as written (`docker.io` when the reference names none).
    pub registry: String,
    /// Repository path (`library/redis` for Docker Hub's official images).
    pub repository: String,
    /// Tag, if any.
    pub tag: Option<String>,
    /// Digest (`sha256:...`), if any.
    pub digest: Option<String>,
}

impl ImageRef {
    /// Parses a reference the way Docker does (with `oci-client`'s parser): the first path
    /// component is a registry when it contains a `.` or a `:`, or is `localhost`; otherwise
    /// the image is on Docker Hub (`redis` is `docker.io/library/redis`).
    pub fn parse(reference: &str) -> Result<Self, ImageError> {
        let invalid = |reason: String| ImageError::InvalidReference {
            reference: reference.to_string(),
            reason,
        };
        let parsed: oci_client::Reference = reference
            .parse()
            .map_err(|e: oci_client::ParseError| invalid(e.to_string()))?;
        let digest = match parsed.digest() {
            Some(digest) if !digest.starts_with("sha256:") => {
                return Err(invalid("only sha256 digests are supported".into()));
            }
            digest => digest.map(str::to_ascii_lowercase),
        };
        Ok(ImageRef {
            registry: parsed.registry().to_string(),
            repository: parsed.repository().to_string(),
            // A bare name means `latest`, which the parser fills in; with a digest it does not.
            tag: parsed.tag().map(str::to_string),
            digest,
        })
    }

    /// What goes after `/manifests/`: the digest when there is one, else the tag, else `latest`.
    pub fn manifest_reference(&self) -> &str {
        self.digest
            .as_deref()
            .or(self.tag.as_deref())
            .unwrap_or("latest")
    }

    /// `registry/repository` without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_docker_hub_short_names() {
        let r = ImageRef::parse("redis:7.4-alpine").unwrap();
        assert_eq!(r.registry, "docker.io");
        assert_eq!(r.repository, "library/redis");
        assert_eq!(r.tag.as_deref(), Some("7.4-alpine"));
        assert_eq!(r.manifest_reference(), "7.4-alpine");
    }

    #[test]
    fn parses_registry_port_and_digest() {
        let d = format!("sha256:{}", "a".repeat(64));
        let r = ImageRef::parse(&format!("127.0.0.1:5000/app/api:v1@{d}")).unwrap();
        assert_eq!(r.registry, "127.0.0.1:5000");
        assert_eq!(r.repository, "app/api");
        assert_eq!(r.tag.as_deref(), Some("v1"));
        assert_eq!(r.manifest_reference(), d);
        let ecr =
            ImageRef::parse("123456789012.dkr.ecr.us-east-1.amazonaws.com/timing-api").unwrap();
        assert_eq!(ecr.repository, "timing-api");
        assert_eq!(ecr.manifest_reference(), "latest");
    }

    #[test]
    fn refuses_bad_references() {
        assert!(ImageRef::parse("Upper/Case").is_err());
        assert!(ImageRef::parse("x@sha256:abc").is_err());
        assert!(ImageRef::parse("host.io/repo:bad/tag:").is_err());
        assert!(ImageRef::parse("").is_err());
        assert!(ImageRef::parse("has space:1").is_err());
    }

    #[test]
    fn http_only_for_loopback() {
        assert!(Endpoint::parse("http://127.0.0.1:5000").is_ok());
        assert!(Endpoint::parse("http://localhost:5000").is_ok());
        assert!(Endpoint::parse("http://[::1]:5000").is_ok());
        let err = Endpoint::parse("http://registry.example.com").unwrap_err();
        assert!(err.to_string().contains("loopback"), "{err}");
        assert_eq!(
            Endpoint::parse("registry.example.com").unwrap().as_str(),
            "https://registry.example.com"
        );
        assert!(Endpoint::parse("https://host/v2/").is_err());
        assert_eq!(
            Endpoint::for_registry("docker.io").unwrap().host(),
            "registry-1.docker.io"
        );
        assert_eq!(
            Endpoint::for_registry("127.0.0.1:5000").unwrap().as_str(),
            "http://127.0.0.1:5000"
        );
    }
}
