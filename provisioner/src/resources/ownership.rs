//! Which resources the provisioner may touch. Every resource is found by a name derived from
//! the app name, so a resource of that name made by someone else (by hand, another tool,
//! another app's naming) would otherwise be adopted by `up` and deleted by `down`. Only one
//! that carries both of the app's tags (`app=<app>`, `managed-by=provisioner`) is the app's;
//! any other stops the command with [`Error::NotOurs`], which names it and says how to go on.
//!
//! Each resource module reads its resource's tags the way its service offers them (in the
//! describe answer, or with one `ListTagsForResource`) and calls [`check`] before it changes
//! or deletes anything.

use crate::config::{MANAGED_BY, Names, TAG_APP, TAG_MANAGED_BY};
use crate::error::{Error, Result};
use crate::plan::Deployment;

/// Whether `tags` (key, value pairs) mark a resource as the app's.
pub fn is_ours<'a>(names: &Names, tags: impl IntoIterator<Item = (&'a str, &'a str)>) -> bool {
    let (mut app, mut managed) = (false, false);
    for (key, value) in tags {
        app |= key == TAG_APP && value == names.app;
        managed |= key == TAG_MANAGED_BY && value == MANAGED_BY;
    }
    app && managed
}

/// `Ok` when `tags` mark `resource` (e.g. `IAM role timing-api-task`) as the app's, else
/// [`Error::NotOurs`] naming it.
pub fn check<'a>(
    d: &Deployment,
    resource: impl FnOnce() -> String,
    tags: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<()> {
    if is_ours(&d.names, tags) {
        Ok(())
    } else {
        Err(Error::NotOurs {
            resource: resource(),
            app: d.names.app.clone(),
        })
    }
}

/// A resource's tags as one SDK returns them, read as `(key, value)` pairs. Implemented for
/// each SDK's tag type (and for the maps some services use), so a resource module checks
/// what it read with one call: `ownership::check_tags(d, || name, repository_tags)?`.
pub trait Tags {
    /// Each tag, as key and value.
    fn pairs(&self) -> Vec<(&str, &str)>;
}

macro_rules! tags_with_plain_fields {
    ($($tag:ty),*) => {$(
        impl Tags for [$tag] {
            fn pairs(&self) -> Vec<(&str, &str)> {
                self.iter().map(|t| (t.key(), t.value())).collect()
            }
        }
    )*};
}
macro_rules! tags_with_optional_fields {
    ($($tag:ty),*) => {$(
        impl Tags for [$tag] {
            fn pairs(&self) -> Vec<(&str, &str)> {
                self.iter().filter_map(|t| Some((t.key()?, t.value()?))).collect()
            }
        }
    )*};
}
tags_with_plain_fields!(
    aws_sdk_iam::types::Tag,
    aws_sdk_ecr::types::Tag,
    aws_sdk_efs::types::Tag,
    aws_sdk_ssm::types::Tag,
    aws_sdk_servicediscovery::types::Tag
);
tags_with_optional_fields!(aws_sdk_ecs::types::Tag, aws_sdk_ec2::types::Tag);

impl Tags for std::collections::HashMap<String, String> {
    fn pairs(&self) -> Vec<(&str, &str)> {
        self.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
    }
}

/// [`check`] for tags as an SDK returned them.
pub fn check_tags(
    d: &Deployment,
    resource: impl FnOnce() -> String,
    tags: &(impl Tags + ?Sized),
) -> Result<()> {
    check(d, resource, tags.pairs())
}

/// The app's tags turned into one SDK's tag type with an infallible `build` (EC2, ECS).
pub fn app_tags<T>(names: &Names, build: impl Fn(&'static str, String) -> T) -> Vec<T> {
    names.tags().into_iter().map(|(k, v)| build(k, v)).collect()
}

/// The app's tags turned into one SDK's tag type with a `build` that checks them (IAM, ECR).
pub fn sdk_tags<T, E>(
    names: &Names,
    build: impl Fn(&'static str, String) -> std::result::Result<T, E>,
) -> std::result::Result<Vec<T>, E> {
    names.tags().into_iter().map(|(k, v)| build(k, v)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_both_tags_with_the_apps_values_make_it_ours() {
        let names = Names::new("timing");
        assert!(is_ours(
            &names,
            [("app", "timing"), ("managed-by", "provisioner"), ("x", "y")]
        ));
        assert!(!is_ours(&names, [("app", "timing")]));
        assert!(!is_ours(&names, [("managed-by", "provisioner")]));
        assert!(!is_ours(
            &names,
            [("app", "other"), ("managed-by", "provisioner")]
        ));
        assert!(!is_ours(&names, []));
    }
}
