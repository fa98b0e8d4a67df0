//! What the data volume is: the identity and directory the access point enforces, the bounds
//! of the waits, the tags and error codes every EFS call of the other parts uses, and
//! [`DataVolume`], the file system and access point the Redis task mounts.

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_efs::types::Tag;
use serde_json::Value;

use crate::config::Template;
use crate::error::{Error, Result};
use crate::plan::Deployment;
use crate::policy::allow_also;
use crate::resources::ownership;

/// Owner of every file Redis writes: the `redis` user of the official Alpine image.
pub const POSIX_UID: i64 = 999;
/// Group of that user in the Alpine image (the Debian image uses 999; the access point
/// enforces this identity whatever the container runs as, so either image works).
pub const POSIX_GID: i64 = 1000;
/// The directory of the file system Redis sees as its `/data`.
pub const ROOT_DIRECTORY: &str = "/redis";
/// Mode of that directory when EFS creates it.
pub const ROOT_PERMISSIONS: &str = "750";

pub(super) const FILE_SYSTEM_LIMIT: Duration = Duration::from_secs(300);
pub(super) const MOUNT_TARGET_LIMIT: Duration = Duration::from_secs(600);
pub(super) const POLL_INTERVAL: Duration = Duration::from_secs(3);

/// An access point's ID and ARN.
pub type AccessPointIds = (String, String);

/// The file system and access point the Redis task mounts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataVolume {
    /// `fs-…`.
    pub file_system_id: String,
    /// Its ARN (the task role's policy resource).
    pub file_system_arn: String,
    /// `fsap-…`.
    pub access_point_id: String,
    /// Its ARN (the task role's policy condition).
    pub access_point_arn: String,
    /// Access points it replaces: kept, and allowed by the policies, until the Redis revision
    /// that mounts the new one is stable ([`retire_replaced`]).
    pub replaced: Vec<AccessPointIds>,
}

impl DataVolume {
    /// The placeholders of `task-definitions/redis.json` and `policies/redis-task-role.json`
    /// that only exist once the file system does.
    pub fn placeholder_values(&self) -> [(&'static str, String); 4] {
        [
            ("EFS_FILE_SYSTEM_ID", self.file_system_id.clone()),
            ("EFS_FILE_SYSTEM_ARN", self.file_system_arn.clone()),
            ("EFS_ACCESS_POINT_ID", self.access_point_id.clone()),
            ("EFS_ACCESS_POINT_ARN", self.access_point_arn.clone()),
        ]
    }

    /// A policy template rendered for this volume: `values` plus the volume's own, allowing
    /// the replaced access points too while they are kept.
    pub fn render(&self, template: &Template, values: &BTreeMap<&'static str, String>) -> Value {
        let mut values = values.clone();
        values.extend(self.placeholder_values());
        let mut document = template.render(&values);
        let replaced: Vec<String> = self.replaced.iter().map(|(_, arn)| arn.clone()).collect();
        allow_also(&mut document, &self.access_point_arn, &replaced);
        document
    }
}

/// The app's tags and a `Name` tag.
pub(super) fn tags(d: &Deployment, name: &str) -> Result<Vec<Tag>> {
    let mut tags = ownership::sdk_tags(&d.names, |k, v| Tag::builder().key(k).value(v).build())
        .map_err(Error::request(format!("EFS tags of {name}")))?;
    tags.push(
        Tag::builder()
            .key("Name")
            .value(name)
            .build()
            .map_err(Error::request(format!("EFS tags of {name}")))?,
    );
    Ok(tags)
}

pub(super) fn not_found<E: aws_smithy_types::error::metadata::ProvideErrorMetadata, R>(
    e: &aws_smithy_runtime_api::client::result::SdkError<E, R>,
    code: &str,
) -> bool {
    crate::error::code_of(e) == Some(code)
}
