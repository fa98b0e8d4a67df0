//! The one place that builds the AWS configuration and clients: the standard credential and
//! region chain (environment, profile, SSO, web identity), the `--region`/`--profile`/
//! `--endpoint-url` overrides, more attempts per call than the SDK's default (throttling comes
//! in bursts), and an interceptor that counts every call so each command can
//! report how many read and mutating calls it made.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use aws_config::retry::{RetryConfig, RetryMode};
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::BeforeSerializationInterceptorContextRef;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use aws_types::sdk_config::SharedCredentialsProvider;
use serde::Serialize;

use crate::cli::AwsArgs;
use crate::error::{Error, Result};

/// Counts AWS operations by name. Shared by every client of a run.
#[derive(Debug, Clone, Default)]
pub struct CallCounter {
    calls: Arc<Mutex<BTreeMap<String, u32>>>,
}

/// How many AWS calls a command made.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct CallSummary {
    /// Calls that only read (Describe*, List*, Get*).
    pub read: u32,
    /// Calls that change something.
    pub mutating: u32,
    /// The mutating operations, `Service.Operation` → count.
    pub mutating_operations: BTreeMap<String, u32>,
}

/// Whether an operation name only reads state.
pub fn is_read_only(operation: &str) -> bool {
    [
        "Describe",
        "List",
        "Get",
        "BatchGet",
        "BatchCheck",
        "Filter",
    ]
    .iter()
    .any(|prefix| operation.starts_with(prefix))
}

impl CallCounter {
    /// Read and mutating counts so far.
    pub fn summary(&self) -> CallSummary {
        let calls = match self.calls.lock() {
            Ok(calls) => calls.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        let mut summary = CallSummary::default();
        for (name, count) in calls {
            let operation = name.rsplit('.').next().unwrap_or(&name);
            if is_read_only(operation) {
                summary.read += count;
            } else {
                summary.mutating += count;
                summary.mutating_operations.insert(name, count);
            }
        }
        summary
    }
}

impl Intercept for CallCounter {
    fn name(&self) -> &'static str {
        "CallCounter"
    }

    // Runs once per operation, after the operation's configuration (which holds its name) is
    // applied, and before the retry loop: the figure is logical calls, not attempts.
    fn read_before_serialization(
        &self,
        _context: &BeforeSerializationInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(metadata) = cfg.load::<Metadata>() {
            let key = format!("{}.{}", metadata.service(), metadata.name());
            let mut calls = match self.calls.lock() {
                Ok(calls) => calls,
                Err(poisoned) => poisoned.into_inner(),
            };
            *calls.entry(key).or_default() += 1;
        }
        Ok(())
    }
}

/// One client per AWS service the provisioner talks to, all sharing one configuration.
#[derive(Debug, Clone)]
pub struct Clients {
    /// ECS: cluster, task definitions, services.
    pub ecs: aws_sdk_ecs::Client,
    /// ECR: the service image repository.
    pub ecr: aws_sdk_ecr::Client,
    /// IAM: roles and policies.
    pub iam: aws_sdk_iam::Client,
    /// EC2: VPC, subnets, security groups, network interfaces.
    pub ec2: aws_sdk_ec2::Client,
    /// CloudWatch Logs: the log group.
    pub logs: aws_sdk_cloudwatchlogs::Client,
    /// Cloud Map: namespace and discovery service.
    pub discovery: aws_sdk_servicediscovery::Client,
    /// STS: the account ID.
    pub sts: aws_sdk_sts::Client,
    /// EFS: the file system holding Redis's data.
    pub efs: aws_sdk_efs::Client,
    /// SSM Parameter Store: the API token (and Redis password) as SecureString parameters.
    pub ssm: aws_sdk_ssm::Client,
    /// API Gateway v2: the HTTP API, its VPC link and custom domain.
    pub apigateway: aws_sdk_apigatewayv2::Client,
    /// Whether calls go to an endpoint given by `--endpoint-url`/`AWS_ENDPOINT_URL` (an
    /// emulator): the API's execute-api URL is then not the one to check.
    pub endpoint_override: bool,
    /// The region in use.
    pub region: String,
    /// Counts the calls of all the clients above.
    pub calls: CallCounter,
}

macro_rules! client_with_counter {
    ($sdk:ident, $config:expr, $counter:expr) => {
        $sdk::Client::from_conf(
            $sdk::config::Builder::from($config)
                .interceptor($counter.clone())
                .build(),
        )
    };
}

impl Clients {
    /// Loads the configuration from the standard chain, applies the flags, and checks that a
    /// region and credentials exist before any call is made.
    pub async fn load(args: &AwsArgs) -> Result<Self> {
        let mut loader = aws_config::defaults(BehaviorVersion::latest());
        if let Some(profile) = &args.profile {
            loader = loader.profile_name(profile);
        }
        if let Some(region) = &args.region {
            loader = loader.region(Region::new(region.clone()));
        }
        if let Some(endpoint) = &args.endpoint_url {
            loader = loader.endpoint_url(endpoint);
        }
        let mut config = loader.load().await;
        if config.retry_config().is_some_and(is_the_sdk_default) {
            config = config
                .into_builder()
                .retry_config(RetryConfig::standard().with_max_attempts(MAX_ATTEMPTS))
                .build();
        }
        let region = config
            .region()
            .map(|r| r.to_string())
            .ok_or(Error::NoRegion)?;
        check_credentials(&config).await?;
        Ok(Self::from_sdk_config(&config, region))
    }

    /// Builds the clients from an already loaded configuration (tests use this with mocks).
    pub fn from_sdk_config(config: &SdkConfig, region: String) -> Self {
        let calls = CallCounter::default();
        Self {
            ecs: client_with_counter!(aws_sdk_ecs, config, calls),
            ecr: client_with_counter!(aws_sdk_ecr, config, calls),
            iam: client_with_counter!(aws_sdk_iam, config, calls),
            ec2: client_with_counter!(aws_sdk_ec2, config, calls),
            logs: client_with_counter!(aws_sdk_cloudwatchlogs, config, calls),
            discovery: client_with_counter!(aws_sdk_servicediscovery, config, calls),
            sts: client_with_counter!(aws_sdk_sts, config, calls),
            efs: client_with_counter!(aws_sdk_efs, config, calls),
            ssm: client_with_counter!(aws_sdk_ssm, config, calls),
            apigateway: client_with_counter!(aws_sdk_apigatewayv2, config, calls),
            endpoint_override: config.endpoint_url().is_some(),
            region,
            calls,
        }
    }

    /// The account ID of the caller, from STS.
    pub async fn account_id(&self) -> Result<String> {
        let identity = self
            .sts
            .get_caller_identity()
            .send()
            .await
            .map_err(|e| Error::aws("GetCallerIdentity", "the caller identity", e))?;
        identity
            .account
            .ok_or_else(|| Error::missing("the caller identity", "Account"))
    }
}

/// Attempts per AWS call unless the user set their own (`AWS_MAX_ATTEMPTS`, `max_attempts` in
/// the profile). The SDK's default of 3 gives up when a burst of throttling hits one call
/// three times running, which a real account does during a deployment (Cloud Map and ECS
/// throttle per account); Terraform's AWS provider retries up to 25 times for the same reason.
/// Ten attempts with the SDK's exponential backoff (capped at 20 s) ride out about two
/// minutes of throttling.
const MAX_ATTEMPTS: u32 = 10;

/// Whether a retry configuration is the SDK's own default (standard mode, 3 attempts), i.e.
/// nobody chose it.
fn is_the_sdk_default(config: &RetryConfig) -> bool {
    config.mode() == RetryMode::Standard && config.max_attempts() == 3
}

async fn check_credentials(config: &SdkConfig) -> Result<()> {
    use aws_credential_types::provider::ProvideCredentials;
    let provider: SharedCredentialsProvider =
        config
            .credentials_provider()
            .ok_or_else(|| Error::NoCredentials {
                detail: "no credential provider".into(),
            })?;
    provider
        .provide_credentials()
        .await
        .map(|_| ())
        .map_err(|e| Error::NoCredentials {
            detail: e.to_string(),
        })
}

/// The AWS partition of a region (`aws`, `aws-cn`, `aws-us-gov`), for ARNs.
pub fn partition_of(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "aws-cn"
    } else if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else {
        "aws"
    }
}
