//! The app's stable HTTPS address: an API Gateway HTTP API `<app>` whose `$default` route sends
//! every request through an `HTTP_PROXY` integration over the VPC link to the Cloud Map
//! service `api` (API Gateway picks a healthy API task from it), and whose `$default` stage
//! deploys automatically, throttles (rate and burst, so a runaway client cannot run up the
//! per-request bill) and writes JSON access logs to the app's log group. Optionally a custom
//! domain (`--domain`, `--certificate-arn`) mapped to that stage; the DNS record for it is the
//! user's to create.
//!
//! The address `https://{api-id}.execute-api.{region}.amazonaws.com` lives as long as the API,
//! so it survives `stop`/`start` and new deployments. API names are not unique in API Gateway:
//! the app's API is the one of its name carrying its tags; one of its name without them is
//! someone else's, and the command stops naming it.

use std::fmt;

use serde::Serialize;

use aws_sdk_apigatewayv2::types::{
    AccessLogSettings, Api, ConnectionType, DomainName, DomainNameConfiguration, EndpointType,
    Integration, IntegrationType, ProtocolType, RouteSettings, SecurityPolicy, Stage,
};

use crate::error::{Error, Result, absent_when};
use crate::plan::{Action, Deployment, KNOWN_AFTER_APPLY};
use crate::resources::vpc_link::{all_pages, check_ours, gateway_tags, is_ours, the_apps};

/// The route and stage names that take every request at the API's root URL.
pub const DEFAULT: &str = "$default";

/// What the API's access log lines hold: one JSON object per request.
pub const ACCESS_LOG_FORMAT: &str = r#"{"requestId":"$context.requestId","ip":"$context.identity.sourceIp","requestTime":"$context.requestTime","httpMethod":"$context.httpMethod","path":"$context.path","status":"$context.status","protocol":"$context.protocol","responseLength":"$context.responseLength","latencyMs":"$context.responseLatency","integrationStatus":"$context.integrationStatus","integrationLatencyMs":"$context.integrationLatency","integrationError":"$context.integrationErrorMessage"}"#;

/// What the HTTP API should be.
#[derive(Debug, Clone)]
pub struct GatewaySpec {
    /// The VPC link the integration goes through.
    pub vpc_link_id: String,
    /// The Cloud Map service of the API tasks: the integration's URI.
    pub discovery_arn: String,
    /// Where the access logs go: the app's log group.
    pub log_group_arn: String,
    /// Stage throttling: steady requests per second.
    pub throttle_rate: f64,
    /// Stage throttling: burst.
    pub throttle_burst: i32,
    /// A custom domain and its ACM certificate.
    pub domain: Option<(String, String)>,
}

/// The app's HTTPS address, as `up`, `start` and `status` report it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gateway {
    /// The HTTP API's ID.
    pub api_id: String,
    /// `https://{api-id}.execute-api.{region}.amazonaws.com`.
    pub url: String,
    /// The custom domain, when there is one.
    pub domain: Option<CustomDomain>,
}

/// A custom domain of the API, and the DNS record the user must create for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CustomDomain {
    /// The domain, e.g. `timing.example.org`.
    pub name: String,
    /// `https://` and the domain.
    pub url: String,
    /// What the domain's CNAME (or Route 53 alias) record must point to; `None` until API
    /// Gateway has set the domain up.
    pub dns_target: Option<String>,
    /// The Route 53 hosted zone of that target, for an alias record.
    pub hosted_zone_id: Option<String>,
}

impl CustomDomain {
    /// The DNS record to create, in zone-file form.
    pub fn dns_record(&self) -> String {
        match &self.dns_target {
            Some(target) => format!("{}. CNAME {target}.", self.name),
            None => format!(
                "{}. CNAME (API Gateway's domain name for it, shown once AWS has set it up)",
                self.name
            ),
        }
    }
}

/// The line the text reports of `up`, `start` and `status` show it in.
impl fmt::Display for CustomDomain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "custom domain: {} (DNS record to create: {})",
            self.url,
            self.dns_record()
        )
    }
}

/// The ARN of a log group, as API Gateway's access log settings take it.
pub fn log_group_arn(d: &Deployment) -> String {
    format!(
        "arn:{}:logs:{}:{}:log-group:{}",
        crate::aws::partition_of(d.region()),
        d.region(),
        d.account,
        d.names.log_group
    )
}

/// The app's HTTP API and the custom domain asked for, as they are now: read with the run's
/// other reads before its first write, so that one of them that is not the app's stops the run
/// before anything changes.
#[derive(Debug, Clone, Default)]
pub struct Live {
    /// The app's HTTP API ([`find_api`]).
    pub api: Option<Api>,
    /// The custom domain, when one is asked for and exists.
    pub domain: Option<DomainName>,
}

/// Reads the app's HTTP API and, when `domain` is given, that custom domain.
pub async fn read(d: &Deployment, domain: Option<&str>) -> Result<Live> {
    let (api, domain) = tokio::try_join!(find_api(d), async {
        match domain {
            Some(name) => find_domain(d, name).await,
            None => Ok(None),
        }
    })?;
    Ok(Live { api, domain })
}

/// The app's HTTP API, if it exists: the HTTP API of its name carrying its tags. One of its
/// name without them is someone else's: the command stops and names it.
pub async fn find_api(d: &Deployment) -> Result<Option<Api>> {
    let name = &d.names.http_api;
    let apis = all_pages(|token| async move {
        let out = d
            .clients
            .apigateway
            .get_apis()
            .set_next_token(token)
            .send()
            .await
            .map_err(|e| Error::aws("GetApis", format!("HTTP API {name}"), e))?;
        Ok::<_, Error>((out.items.unwrap_or_default(), out.next_token))
    })
    .await?;
    let named: Vec<Api> = apis
        .into_iter()
        .filter(|api| {
            api.name() == Some(name.as_str()) && api.protocol_type() == Some(&ProtocolType::Http)
        })
        .collect();
    the_apps(d, named, Api::tags, |api| {
        format!(
            "API Gateway HTTP API {name} ({})",
            api.api_id().unwrap_or_default()
        )
    })
}

fn api_url(api: &Api) -> Result<(String, String)> {
    let id = api
        .api_id()
        .ok_or_else(|| Error::missing("HTTP API", "apiId"))?
        .to_owned();
    let url = api
        .api_endpoint()
        .ok_or_else(|| Error::missing(format!("HTTP API {id}"), "apiEndpoint"))?
        .to_owned();
    Ok((id, url))
}

/// Creates what is missing and updates what differs: API, integration, route, stage, and the
/// custom domain and its mapping when asked for. `live`: what [`read`] found.
pub async fn ensure(d: &Deployment, live: &Live, spec: &GatewaySpec) -> Result<Gateway> {
    let name = &d.names.http_api;
    let (api_id, url) = match &live.api {
        Some(api) => {
            d.record("http-api", name, Action::Unchanged, None);
            api_url(api)?
        }
        // A dry run goes on with the API's ID unknown: each step below records what it would
        // create, without reading what an API not made yet cannot have.
        None if !d.record("http-api", name, Action::Create, Some("HTTP".into())) => {
            (KNOWN_AFTER_APPLY.to_owned(), KNOWN_AFTER_APPLY.to_owned())
        }
        None => {
            let created = d
                .clients
                .apigateway
                .create_api()
                .name(name)
                .protocol_type(ProtocolType::Http)
                .description(format!(
                    "HTTPS address of app {}: every request to its API tasks",
                    d.names.app
                ))
                .set_tags(Some(gateway_tags(d)))
                .send()
                .await
                .map_err(|e| Error::aws("CreateApi", format!("HTTP API {name}"), e))?;
            let id = created
                .api_id()
                .ok_or_else(|| Error::missing(format!("HTTP API {name}"), "apiId"))?
                .to_owned();
            let url = created
                .api_endpoint()
                .ok_or_else(|| Error::missing(format!("HTTP API {name}"), "apiEndpoint"))?
                .to_owned();
            (id, url)
        }
    };
    let integration_id = ensure_integration(d, &api_id, spec).await?;
    ensure_route(d, &api_id, &integration_id).await?;
    ensure_stage(d, &api_id, spec).await?;
    let domain = match &spec.domain {
        Some((domain, certificate)) => {
            Some(ensure_domain(d, &api_id, live.domain.as_ref(), domain, certificate).await?)
        }
        None => None,
    };
    Ok(Gateway {
        api_id,
        url,
        domain,
    })
}

/// What the integration must be, as the differences from `live` (empty: as wanted).
fn integration_differences(live: &Integration, spec: &GatewaySpec) -> Vec<&'static str> {
    let mut out = Vec::new();
    if live.integration_type() != Some(&IntegrationType::HttpProxy) {
        out.push("type");
    }
    if live.connection_type() != Some(&ConnectionType::VpcLink) {
        out.push("connection type");
    }
    if live.connection_id() != Some(spec.vpc_link_id.as_str()) {
        out.push("VPC link");
    }
    if live.integration_uri() != Some(spec.discovery_arn.as_str()) {
        out.push("Cloud Map service");
    }
    if live.integration_method() != Some("ANY") {
        out.push("method");
    }
    out
}

/// The integration's settings (what [`integration_differences`] compares), set alike on its
/// create and its update request, which the SDK gives two builder types.
macro_rules! with_integration_settings {
    ($request:expr, $spec:expr) => {
        $request
            .integration_type(IntegrationType::HttpProxy)
            .integration_method("ANY")
            .connection_type(ConnectionType::VpcLink)
            .connection_id(&$spec.vpc_link_id)
            .integration_uri(&$spec.discovery_arn)
            .payload_format_version("1.0")
    };
}

async fn ensure_integration(d: &Deployment, api_id: &str, spec: &GatewaySpec) -> Result<String> {
    let name = format!("{} integration", d.names.http_api);
    let apigateway = &d.clients.apigateway;
    let live = if api_id == KNOWN_AFTER_APPLY {
        Vec::new()
    } else {
        apigateway
            .get_integrations()
            .api_id(api_id)
            .send()
            .await
            .map_err(|e| Error::aws("GetIntegrations", name.clone(), e))?
            .items
            .unwrap_or_default()
    };
    // The one the provisioner made: HTTP_PROXY (another kind is someone's addition, left alone).
    let existing = live
        .iter()
        .find(|i| i.integration_type() == Some(&IntegrationType::HttpProxy));
    if let Some(integration) = existing {
        let id = integration
            .integration_id()
            .ok_or_else(|| Error::missing(name.clone(), "integrationId"))?
            .to_owned();
        let diff = integration_differences(integration, spec);
        let action = if diff.is_empty() {
            Action::Unchanged
        } else {
            Action::Update
        };
        let detail = (!diff.is_empty()).then(|| diff.join(", "));
        if d.record("api-integration", &name, action, detail) {
            let update = apigateway
                .update_integration()
                .api_id(api_id)
                .integration_id(&id);
            with_integration_settings!(update, spec)
                .send()
                .await
                .map_err(|e| Error::aws("UpdateIntegration", name.clone(), e))?;
        }
        return Ok(id);
    }
    if !d.record(
        "api-integration",
        &name,
        Action::Create,
        Some("HTTP_PROXY over the VPC link to Cloud Map api".into()),
    ) {
        return Ok(KNOWN_AFTER_APPLY.to_owned());
    }
    let create = apigateway.create_integration().api_id(api_id);
    let created = with_integration_settings!(create, spec)
        .description(format!(
            "every request to a healthy API task of app {}",
            d.names.app
        ))
        .send()
        .await
        .map_err(|e| Error::aws("CreateIntegration", name.clone(), e))?;
    created
        .integration_id()
        .map(str::to_owned)
        .ok_or_else(|| Error::missing(name, "integrationId"))
}

async fn ensure_route(d: &Deployment, api_id: &str, integration_id: &str) -> Result<()> {
    let name = format!("{} {DEFAULT}", d.names.http_api);
    let target = format!("integrations/{integration_id}");
    let apigateway = &d.clients.apigateway;
    let live = if api_id == KNOWN_AFTER_APPLY {
        Vec::new()
    } else {
        apigateway
            .get_routes()
            .api_id(api_id)
            .send()
            .await
            .map_err(|e| Error::aws("GetRoutes", name.clone(), e))?
            .items
            .unwrap_or_default()
    };
    if let Some(route) = live.iter().find(|r| r.route_key() == Some(DEFAULT)) {
        if route.target() == Some(target.as_str()) {
            d.record("api-route", &name, Action::Unchanged, None);
            return Ok(());
        }
        if d.record(
            "api-route",
            &name,
            Action::Update,
            Some(format!("target → {target}")),
        ) {
            apigateway
                .update_route()
                .api_id(api_id)
                .route_id(route.route_id().unwrap_or_default())
                .target(&target)
                .send()
                .await
                .map_err(|e| Error::aws("UpdateRoute", name.clone(), e))?;
        }
        return Ok(());
    }
    if d.record("api-route", &name, Action::Create, Some(target.clone())) {
        apigateway
            .create_route()
            .api_id(api_id)
            .route_key(DEFAULT)
            .target(&target)
            .send()
            .await
            .map_err(|e| Error::aws("CreateRoute", name.clone(), e))?;
    }
    Ok(())
}

fn stage_differences(live: &Stage, spec: &GatewaySpec, log_group_arn: &str) -> Vec<String> {
    let mut out = Vec::new();
    if live.auto_deploy() != Some(true) {
        out.push("automatic deployment".to_owned());
    }
    let settings = live.default_route_settings();
    let rate = settings.and_then(RouteSettings::throttling_rate_limit);
    let burst = settings.and_then(RouteSettings::throttling_burst_limit);
    if rate != Some(spec.throttle_rate) || burst != Some(spec.throttle_burst) {
        out.push(format!(
            "throttling {}/s burst {} → {}/s burst {}",
            rate.map_or("-".into(), |r| r.to_string()),
            burst.map_or("-".into(), |b| b.to_string()),
            spec.throttle_rate,
            spec.throttle_burst
        ));
    }
    let logs = live.access_log_settings();
    if logs.and_then(AccessLogSettings::destination_arn) != Some(log_group_arn)
        || logs.and_then(AccessLogSettings::format) != Some(ACCESS_LOG_FORMAT)
    {
        out.push("access logs".to_owned());
    }
    out
}

async fn ensure_stage(d: &Deployment, api_id: &str, spec: &GatewaySpec) -> Result<()> {
    let name = format!("{} {DEFAULT}", d.names.http_api);
    let apigateway = &d.clients.apigateway;
    let throttling = RouteSettings::builder()
        .throttling_rate_limit(spec.throttle_rate)
        .throttling_burst_limit(spec.throttle_burst)
        .build();
    let logs = AccessLogSettings::builder()
        .destination_arn(&spec.log_group_arn)
        .format(ACCESS_LOG_FORMAT)
        .build();
    let live = if api_id == KNOWN_AFTER_APPLY {
        None
    } else {
        let stages = apigateway
            .get_stages()
            .api_id(api_id)
            .send()
            .await
            .map_err(|e| Error::aws("GetStages", name.clone(), e))?;
        stages
            .items()
            .iter()
            .find(|s| s.stage_name() == Some(DEFAULT))
            .cloned()
    };
    if let Some(stage) = live {
        let diff = stage_differences(&stage, spec, &spec.log_group_arn);
        if diff.is_empty() {
            d.record("api-stage", &name, Action::Unchanged, None);
            return Ok(());
        }
        if d.record("api-stage", &name, Action::Update, Some(diff.join(", "))) {
            apigateway
                .update_stage()
                .api_id(api_id)
                .stage_name(DEFAULT)
                .auto_deploy(true)
                .default_route_settings(throttling)
                .access_log_settings(logs)
                .send()
                .await
                .map_err(|e| Error::aws("UpdateStage", name.clone(), e))?;
        }
        return Ok(());
    }
    let detail = format!(
        "auto-deploy, {}/s burst {}, JSON access logs to {}",
        spec.throttle_rate, spec.throttle_burst, d.names.log_group
    );
    if d.record("api-stage", &name, Action::Create, Some(detail)) {
        apigateway
            .create_stage()
            .api_id(api_id)
            .stage_name(DEFAULT)
            .auto_deploy(true)
            .default_route_settings(throttling)
            .access_log_settings(logs)
            .set_tags(Some(gateway_tags(d)))
            .send()
            .await
            .map_err(|e| Error::aws("CreateStage", name.clone(), e))?;
    }
    Ok(())
}

/// The custom domain `name`, if it exists; one without the app's tags stops the command.
async fn find_domain(d: &Deployment, name: &str) -> Result<Option<DomainName>> {
    let out = d
        .clients
        .apigateway
        .get_domain_name()
        .domain_name(name)
        .send()
        .await;
    let Some(out) = absent_when(
        out,
        |e| e.is_not_found_exception(),
        "GetDomainName",
        format!("custom domain {name}"),
    )?
    else {
        return Ok(None);
    };
    check_ours(
        d,
        || format!("API Gateway custom domain {name}"),
        out.tags(),
    )?;
    Ok(Some(
        DomainName::builder()
            .domain_name(name)
            .set_domain_name_configurations(Some(out.domain_name_configurations().to_vec()))
            .set_tags(out.tags().cloned())
            .build(),
    ))
}

fn custom_domain(domain: &DomainName) -> CustomDomain {
    let name = domain.domain_name().unwrap_or_default().to_owned();
    let configuration = domain.domain_name_configurations().first();
    CustomDomain {
        url: format!("https://{name}"),
        name,
        dns_target: configuration
            .and_then(DomainNameConfiguration::api_gateway_domain_name)
            .map(str::to_owned),
        hosted_zone_id: configuration
            .and_then(DomainNameConfiguration::hosted_zone_id)
            .map(str::to_owned),
    }
}

/// `live`: the domain `name` as [`find_domain`] read it.
async fn ensure_domain(
    d: &Deployment,
    api_id: &str,
    live: Option<&DomainName>,
    name: &str,
    certificate: &str,
) -> Result<CustomDomain> {
    let apigateway = &d.clients.apigateway;
    let domain = match live.cloned() {
        Some(domain) => {
            let live_certificate = domain
                .domain_name_configurations()
                .first()
                .and_then(DomainNameConfiguration::certificate_arn);
            if live_certificate == Some(certificate) {
                d.record("api-domain", name, Action::Unchanged, None);
            } else if d.record(
                "api-domain",
                name,
                Action::Update,
                Some("certificate".into()),
            ) {
                apigateway
                    .update_domain_name()
                    .domain_name(name)
                    .domain_name_configurations(domain_configuration(certificate))
                    .send()
                    .await
                    .map_err(|e| {
                        Error::aws("UpdateDomainName", format!("custom domain {name}"), e)
                    })?;
            }
            domain
        }
        None => {
            if !d.record(
                "api-domain",
                name,
                Action::Create,
                Some("regional, TLS 1.2".into()),
            ) {
                d.record("api-mapping", name, Action::Create, None);
                return Ok(CustomDomain {
                    name: name.to_owned(),
                    url: format!("https://{name}"),
                    dns_target: None,
                    hosted_zone_id: None,
                });
            }
            let created = apigateway
                .create_domain_name()
                .domain_name(name)
                .domain_name_configurations(domain_configuration(certificate))
                .set_tags(Some(gateway_tags(d)))
                .send()
                .await
                .map_err(|e| Error::aws("CreateDomainName", format!("custom domain {name}"), e))?;
            DomainName::builder()
                .domain_name(name)
                .set_domain_name_configurations(Some(created.domain_name_configurations().to_vec()))
                .build()
        }
    };
    ensure_mapping(d, api_id, name).await?;
    Ok(custom_domain(&domain))
}

fn domain_configuration(certificate: &str) -> DomainNameConfiguration {
    DomainNameConfiguration::builder()
        .certificate_arn(certificate)
        .endpoint_type(EndpointType::Regional)
        .security_policy(SecurityPolicy::Tls12)
        .build()
}

/// The domain's root maps to the API's `$default` stage.
async fn ensure_mapping(d: &Deployment, api_id: &str, domain: &str) -> Result<()> {
    let apigateway = &d.clients.apigateway;
    let mappings = if api_id == KNOWN_AFTER_APPLY {
        Vec::new()
    } else {
        apigateway
            .get_api_mappings()
            .domain_name(domain)
            .send()
            .await
            .map_err(|e| Error::aws("GetApiMappings", format!("custom domain {domain}"), e))?
            .items()
            .to_vec()
    };
    let root = mappings
        .iter()
        .find(|m| m.api_mapping_key().unwrap_or_default().is_empty());
    match root {
        Some(m) if m.api_id() == Some(api_id) && m.stage() == Some(DEFAULT) => {
            d.record("api-mapping", domain, Action::Unchanged, None);
        }
        Some(m) => {
            if d.record(
                "api-mapping",
                domain,
                Action::Update,
                Some(format!("→ {api_id} {DEFAULT}")),
            ) {
                apigateway
                    .update_api_mapping()
                    .domain_name(domain)
                    .api_mapping_id(m.api_mapping_id().unwrap_or_default())
                    .api_id(api_id)
                    .stage(DEFAULT)
                    .send()
                    .await
                    .map_err(|e| {
                        Error::aws("UpdateApiMapping", format!("custom domain {domain}"), e)
                    })?;
            }
        }
        None => {
            if d.record(
                "api-mapping",
                domain,
                Action::Create,
                Some(format!("→ {DEFAULT} stage")),
            ) {
                apigateway
                    .create_api_mapping()
                    .domain_name(domain)
                    .api_id(api_id)
                    .stage(DEFAULT)
                    .api_mapping_key("")
                    .send()
                    .await
                    .map_err(|e| {
                        Error::aws("CreateApiMapping", format!("custom domain {domain}"), e)
                    })?;
            }
        }
    }
    Ok(())
}

/// The app's custom domains: those tagged with the app (any name, so a `--domain` left out of
/// a later command is still found).
async fn app_domains(d: &Deployment) -> Result<Vec<DomainName>> {
    let mut domains = all_pages(|token| async move {
        let out = d
            .clients
            .apigateway
            .get_domain_names()
            .set_next_token(token)
            .send()
            .await
            .map_err(|e| Error::aws("GetDomainNames", "custom domains", e))?;
        Ok::<_, Error>((out.items.unwrap_or_default(), out.next_token))
    })
    .await?;
    domains.retain(|domain| is_ours(d, domain.tags()));
    Ok(domains)
}

/// The app's address as it is now, for `status` and `start`; `None` when there is no API.
pub async fn describe(d: &Deployment) -> Result<Option<Gateway>> {
    let Some(api) = find_api(d).await? else {
        return Ok(None);
    };
    let (api_id, url) = api_url(&api)?;
    let domain = app_domains(d).await?.first().map(custom_domain);
    Ok(Some(Gateway {
        api_id,
        url,
        domain,
    }))
}

/// Deletes the app's custom domains (their mappings first), then the API: DeleteApi takes the
/// API's stages, routes and integrations with it, so they are not deleted one by one.
pub async fn delete(d: &Deployment) -> Result<()> {
    let apigateway = &d.clients.apigateway;
    for domain in app_domains(d).await? {
        let name = domain.domain_name().unwrap_or_default().to_owned();
        let mappings = apigateway
            .get_api_mappings()
            .domain_name(&name)
            .send()
            .await
            .map_err(|e| Error::aws("GetApiMappings", format!("custom domain {name}"), e))?;
        for mapping in mappings.items() {
            d.record("api-mapping", &name, Action::Delete, None);
            apigateway
                .delete_api_mapping()
                .domain_name(&name)
                .api_mapping_id(mapping.api_mapping_id().unwrap_or_default())
                .send()
                .await
                .map_err(|e| Error::aws("DeleteApiMapping", format!("custom domain {name}"), e))?;
        }
        d.record("api-domain", &name, Action::Delete, None);
        let out = apigateway
            .delete_domain_name()
            .domain_name(&name)
            .send()
            .await;
        absent_when(
            out,
            |e| e.is_not_found_exception(),
            "DeleteDomainName",
            format!("custom domain {name}"),
        )?;
    }
    let name = &d.names.http_api;
    let Some(api) = find_api(d).await? else {
        d.record("http-api", name, Action::Absent, None);
        return Ok(());
    };
    let (api_id, _) = api_url(&api)?;
    d.record("http-api", name, Action::Delete, Some(api_id.clone()));
    let out = apigateway.delete_api().api_id(&api_id).send().await;
    absent_when(
        out,
        |e| e.is_not_found_exception(),
        "DeleteApi",
        format!("HTTP API {name}"),
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_access_log_format_is_json_with_the_request_and_the_integration() {
        let line = ACCESS_LOG_FORMAT.replace("$context.", "");
        let parsed: serde_json::Value = serde_json::from_str(&line).expect("valid JSON");
        for field in [
            "requestId",
            "status",
            "integrationStatus",
            "integrationError",
        ] {
            assert!(parsed.get(field).is_some(), "{field} missing");
        }
    }

    #[test]
    fn the_dns_record_names_the_target_once_known() {
        let mut domain = CustomDomain {
            name: "timing.example.org".into(),
            url: "https://timing.example.org".into(),
            dns_target: None,
            hosted_zone_id: None,
        };
        assert!(
            domain
                .dns_record()
                .starts_with("timing.example.org. CNAME (")
        );
        domain.dns_target = Some("d-abc.execute-api.eu-north-1.amazonaws.com".into());
        assert_eq!(
            domain.dns_record(),
            "timing.example.org. CNAME d-abc.execute-api.eu-north-1.amazonaws.com."
        );
    }
}
