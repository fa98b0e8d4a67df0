//! End-to-end tests of the provisioner: the real binary against moto in server mode, the image
//! builder against a real registry, Redis persistence against a real `redis-server`, and the
//! deployment watcher against aws-smithy-mocks. One test binary, one module per area (as
//! `service/tests/api.rs`): the AWS SDK is linked once instead of once per file (seven
//! binaries of about 125 MB each before), which keeps a cold CI build's target/ at 3.5 GB.

// Tests state their expectations with `expect` / `unwrap`: a failure is the test failing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

/// The registry, Redis and the upload-cutting proxy of the image tests.
mod image_support;
/// Free ports and the real programs, moto, the recording and fault-injecting proxy, and
/// running the real binary.
mod support;

/// What a person sees: the one-line error, `plan` on a terminal.
mod console;
/// Redis data on EFS, `down --delete-data`, and the API token in SSM.
mod data;
/// `up` building and pushing the service image, then deploying it by digest.
mod deploy_image;
/// Policies given back in another form, security-group rules of every kind, refused networks.
mod drift;
/// `up` / `plan` / `down` end to end: what is created, idempotence, teardown, bad input.
mod emulator;
/// Ctrl-C, a closed stdout, and a failed build that writes nothing.
mod exits;
/// Throttling, internal errors and a SIGKILL at any point of `up` and `down`.
mod faults;
/// A fresh account's first deploy: stops of a setup still propagating are waited out.
mod first_deploy;
/// The HTTPS address: HTTP API, VPC link, Cloud Map `api`, `--api-count`, custom domain.
mod gateway;
/// The OCI image builder and the registry client.
mod image;
/// A whole lifecycle: every JSON output matches its schema, every AWS call is in the deployer policy.
mod lifecycle;
/// `stop` / `start` / `status` / `logs` / `token`.
mod operations;
/// Resources of the app's names without its tags: neither adopted nor deleted.
mod ownership;
/// Redis with the task definition's persistence settings loses no acknowledged write.
mod persistence;
/// Redis's storage kept while Redis may run on it; every wait within `--timeout`.
mod storage;
/// Named write tokens: created, printed, rotated, revoked and listed by name; kept by `up`,
/// removed by `down`; bad names and a foreign parameter refused.
mod tokens;
/// The deployment watcher and the log reader, against aws-smithy-mocks.
mod watch;
