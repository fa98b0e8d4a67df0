//! What the test proxy needs to know of the AWS protocols: which operation and service a
//! request is (awsJson names it in `X-Amz-Target`, the query protocols of IAM, EC2 and STS in
//! the `Action` form field, the REST protocols of EFS and API Gateway by method and path), and
//! how each protocol shapes an error answer, so that an injected or refused call reads to the
//! SDK as AWS's own.

use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};

/// The operation of an AWS request: JSON protocols name it in `X-Amz-Target`, query
/// protocols (IAM, EC2, STS) in the `Action` form field.
pub fn operation_of(method: &Method, uri: &Uri, headers: &HeaderMap, body: &str) -> String {
    if let Some(target) = headers.get("x-amz-target").and_then(|v| v.to_str().ok()) {
        return target.rsplit('.').next().unwrap_or(target).to_owned();
    }
    form_field(body, "Action").unwrap_or_else(|| rest_operation(method, uri.path()))
}

/// The value of the field `name` of a form-encoded body (a query-protocol request) or of a
/// URL's query string, decoded (`+` is a space).
pub fn form_field(body: &str, name: &str) -> Option<String> {
    let raw = body.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        (key == name).then_some(value)
    })?;
    Some(
        percent_encoding::percent_decode_str(&raw.replace('+', " "))
            .decode_utf8_lossy()
            .into_owned(),
    )
}

/// The signing name of a request (`Credential=KEY/DATE/REGION/SERVICE/aws4_request`).
pub fn service_of(headers: &HeaderMap) -> String {
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|auth| auth.split("Credential=").nth(1))
        .and_then(|credential| credential.split('/').nth(3))
        .unwrap_or("unknown")
        .to_owned()
}

/// API Gateway v2's operations (REST, under `/v2/`), as its API reference maps them:
/// `POST /v2/apis` → `CreateApi`, `PATCH /v2/apis/{id}/stages/{name}` → `UpdateStage`.
fn apigateway_operation(method: &Method, path: &str) -> Option<&'static str> {
    let segments: Vec<&str> = path
        .strip_prefix("/v2/")?
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let many = |list: &'static str, create: &'static str| match *method {
        Method::GET => Some(list),
        Method::POST => Some(create),
        _ => None,
    };
    let one = |get: &'static str, update: &'static str, delete: &'static str| match *method {
        Method::GET => Some(get),
        Method::PATCH => Some(update),
        Method::DELETE => Some(delete),
        _ => None,
    };
    match segments.as_slice() {
        ["apis"] => many("GetApis", "CreateApi"),
        ["apis", _] => one("GetApi", "UpdateApi", "DeleteApi"),
        ["apis", _, "integrations"] => many("GetIntegrations", "CreateIntegration"),
        ["apis", _, "integrations", _] => {
            one("GetIntegration", "UpdateIntegration", "DeleteIntegration")
        }
        ["apis", _, "routes"] => many("GetRoutes", "CreateRoute"),
        ["apis", _, "routes", _] => one("GetRoute", "UpdateRoute", "DeleteRoute"),
        ["apis", _, "stages"] => many("GetStages", "CreateStage"),
        ["apis", _, "stages", _] => one("GetStage", "UpdateStage", "DeleteStage"),
        ["vpclinks"] => many("GetVpcLinks", "CreateVpcLink"),
        ["vpclinks", _] => one("GetVpcLink", "UpdateVpcLink", "DeleteVpcLink"),
        ["domainnames"] => many("GetDomainNames", "CreateDomainName"),
        ["domainnames", _] => one("GetDomainName", "UpdateDomainName", "DeleteDomainName"),
        ["domainnames", _, "apimappings"] => many("GetApiMappings", "CreateApiMapping"),
        ["domainnames", _, "apimappings", _] => {
            one("GetApiMapping", "UpdateApiMapping", "DeleteApiMapping")
        }
        ["tags", ..] => match *method {
            Method::GET => Some("GetTags"),
            Method::POST => Some("TagResource"),
            Method::DELETE => Some("UntagResource"),
            _ => None,
        },
        _ => None,
    }
}

/// REST protocols (EFS, API Gateway) name the operation by method and path only: EFS's
/// operations, as the API reference maps them (`GET /2015-02-01/file-systems` →
/// `DescribeFileSystems`, `PUT /2015-02-01/mount-targets/{id}/security-groups` →
/// `ModifyMountTargetSecurityGroups`), and API Gateway's ([`apigateway_operation`]).
fn rest_operation(method: &Method, path: &str) -> String {
    if let Some(operation) = apigateway_operation(method, path) {
        return operation.to_owned();
    }
    let segments: Vec<&str> = path
        .trim_start_matches("/2015-02-01/")
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let known = match (method.as_str(), segments.as_slice()) {
        ("GET", ["file-systems"]) => "DescribeFileSystems",
        ("POST", ["file-systems"]) => "CreateFileSystem",
        ("PUT", ["file-systems", _]) => "UpdateFileSystem",
        ("DELETE", ["file-systems", _]) => "DeleteFileSystem",
        ("GET", ["file-systems", _, "policy"]) => "DescribeFileSystemPolicy",
        ("PUT", ["file-systems", _, "policy"]) => "PutFileSystemPolicy",
        ("DELETE", ["file-systems", _, "policy"]) => "DeleteFileSystemPolicy",
        ("GET", ["file-systems", _, "lifecycle-configuration"]) => "DescribeLifecycleConfiguration",
        ("PUT", ["file-systems", _, "lifecycle-configuration"]) => "PutLifecycleConfiguration",
        ("GET", ["file-systems", _, "backup-policy"]) => "DescribeBackupPolicy",
        ("PUT", ["file-systems", _, "backup-policy"]) => "PutBackupPolicy",
        ("GET", ["access-points"]) => "DescribeAccessPoints",
        ("POST", ["access-points"]) => "CreateAccessPoint",
        ("DELETE", ["access-points", _]) => "DeleteAccessPoint",
        ("GET", ["mount-targets"]) => "DescribeMountTargets",
        ("POST", ["mount-targets"]) => "CreateMountTarget",
        ("DELETE", ["mount-targets", _]) => "DeleteMountTarget",
        ("GET", ["mount-targets", _, "security-groups"]) => "DescribeMountTargetSecurityGroups",
        ("PUT", ["mount-targets", _, "security-groups"]) => "ModifyMountTargetSecurityGroups",
        ("GET", ["resource-tags", _]) => "ListTagsForResource",
        ("POST", ["resource-tags", _]) => "TagResource",
        ("DELETE", ["resource-tags", _]) => "UntagResource",
        _ => "",
    };
    if !known.is_empty() {
        return known.to_owned();
    }
    generic_rest_operation(method, path)
}

/// Any other REST call: a name in the same verb-first style from method and path.
fn generic_rest_operation(method: &Method, path: &str) -> String {
    let verb = match *method {
        Method::GET | Method::HEAD => "Describe",
        Method::POST => "Create",
        Method::PUT | Method::PATCH => "Modify",
        Method::DELETE => "Delete",
        _ => "Unknown",
    };
    // The resource: the last path segment that is not an ID or a version date.
    let resource = path
        .split('/')
        .rfind(|s| !s.is_empty() && !s.chars().any(|c| c.is_ascii_digit()))
        .unwrap_or("Unknown");
    let resource: String = resource
        .split('-')
        .map(|word| {
            let mut chars = word.chars();
            chars
                .next()
                .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
                .unwrap_or_default()
        })
        .collect();
    format!("{verb}{resource}")
}

/// The wire protocol of a request, which decides the shape of its error answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// awsJson 1.0/1.1 (ECS, ECR, CloudWatch Logs, Cloud Map, SSM): `X-Amz-Target` names the
    /// operation; errors are `{"__type": code, "message": ...}`.
    Json,
    /// The EC2 query protocol: errors are `<Response><Errors><Error>...`.
    Ec2,
    /// The awsQuery protocol (IAM, STS): errors are `<ErrorResponse><Error>...`.
    Query,
    /// restJson1 (EFS, API Gateway): the code in the `x-amzn-ErrorType` header and the JSON
    /// body.
    RestJson,
}

impl Protocol {
    /// The protocol of a request with these headers and this (signing) service name.
    pub fn of(headers: &HeaderMap, service: &str) -> Self {
        if headers.contains_key("x-amz-target") {
            Protocol::Json
        } else if service == "ec2" {
            Protocol::Ec2
        } else if service == "iam" || service == "sts" {
            Protocol::Query
        } else {
            Protocol::RestJson
        }
    }

    /// An error answer as this protocol's service would give it.
    pub fn error(self, status: StatusCode, code: &str, message: &str) -> Response {
        let (content_type, body) = match self {
            Protocol::Json => (
                "application/x-amz-json-1.1",
                serde_json::json!({"__type": code, "message": message}).to_string(),
            ),
            Protocol::RestJson => (
                "application/json",
                serde_json::json!({"ErrorCode": code, "Message": message}).to_string(),
            ),
            Protocol::Ec2 => (
                "text/xml",
                format!(
                    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error>\
                     <Code>{code}</Code><Message>{message}</Message></Error></Errors>\
                     <RequestID>test-proxy</RequestID></Response>"
                ),
            ),
            Protocol::Query => (
                "text/xml",
                format!(
                    "<ErrorResponse xmlns=\"https://iam.amazonaws.com/doc/2010-05-08/\">\
                     <Error><Type>{}</Type><Code>{code}</Code><Message>{message}</Message>\
                     </Error><RequestId>test-proxy</RequestId></ErrorResponse>",
                    if status.is_server_error() {
                        "Receiver"
                    } else {
                        "Sender"
                    }
                ),
            ),
        };
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        if self == Protocol::RestJson
            && let Ok(value) = HeaderValue::from_str(code)
        {
            headers.insert("x-amzn-errortype", value);
        }
        response
    }

    /// This protocol's answer to a throttled request, with the status and code its services
    /// use (each is in the SDK's list of throttling errors, which it retries with back-off).
    pub fn throttled(self) -> Response {
        let (status, code) = match self {
            Protocol::Json => (StatusCode::BAD_REQUEST, "ThrottlingException"),
            Protocol::Query => (StatusCode::BAD_REQUEST, "Throttling"),
            Protocol::Ec2 => (StatusCode::SERVICE_UNAVAILABLE, "RequestLimitExceeded"),
            Protocol::RestJson => (StatusCode::TOO_MANY_REQUESTS, "ThrottlingException"),
        };
        self.error(status, code, "Rate exceeded")
    }

    /// This protocol's answer when the service fails internally (HTTP 500).
    pub fn internal_error(self, message: &str) -> Response {
        let code = match self {
            Protocol::Json => "InternalFailure",
            Protocol::Query => "ServiceFailure",
            Protocol::Ec2 => "InternalError",
            Protocol::RestJson => "InternalServerError",
        };
        self.error(StatusCode::INTERNAL_SERVER_ERROR, code, message)
    }
}
