//! The readiness wait after `up` and `start`, once ECS reports the services stable: every
//! running API task is HEALTHY in the Cloud Map service API Gateway routes by (ECS reports the
//! container health check there), and then `/ready` answers 200 through the HTTPS URL, when
//! that URL can be reached from where the command runs. A CI runner with no route to it (or
//! an emulator, whose URL is not served) does not wait for it: the note says so.

use std::time::Duration;

use crate::error::{Error, Result};
use crate::plan::Deployment;
use crate::resources::discovery::{self, DiscoveryService};
use crate::resources::{poll_until, services};

/// How long one probe of the URL may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Waits, at most `limit` in all and never past the command's `--timeout`, until the API
/// tasks are healthy in Cloud Map (`registry`: its service `api`, as `up` ensured it or `start`
/// found it) and `url` answers `/ready` (when reachable); returns what was checked, as notes
/// for the report.
pub async fn wait_ready(
    d: &Deployment,
    registry: Option<&DiscoveryService>,
    url: Option<&str>,
    limit: Duration,
) -> Result<Vec<String>> {
    let started = tokio::time::Instant::now();
    let mut notes = Vec::new();
    if let Some(registry) = registry {
        let what = format!(
            "the running API tasks to be HEALTHY in Cloud Map {}",
            d.names.api_host()
        );
        let healthy = poll_until(&what, d.limit(limit), Duration::from_secs(3), || async {
            let running = services::running_task_ids(d, &d.names.api_service).await?;
            let health = discovery::instance_health(d, registry).await?;
            let waiting = running
                .iter()
                .filter(|task| health.get(*task).map(String::as_str) != Some("HEALTHY"))
                .count();
            Ok((waiting == 0).then_some(running.len()))
        })
        .await?;
        notes.push(format!(
            "{healthy} running API task(s) HEALTHY in Cloud Map {}",
            d.names.api_host()
        ));
    }
    let Some(url) = url else {
        return Ok(notes);
    };
    if d.clients.endpoint_override {
        notes.push(format!(
            "{url}/ready not checked: AWS calls go to a custom endpoint (--endpoint-url), which does not serve the API's URL"
        ));
        return Ok(notes);
    }
    let client = reqwest::Client::builder()
        .timeout(PROBE_TIMEOUT)
        .build()
        .map_err(|e| Error::Request {
            resource: "HTTP client".into(),
            message: e.to_string(),
        })?;
    let ready = format!("{url}/ready");
    if let Err(err) = client.get(&ready).send().await {
        notes.push(format!(
            "{ready} not checked: not reachable from here ({err}); ECS and Cloud Map report the tasks healthy"
        ));
        return Ok(notes);
    }
    let remaining = d.limit(limit.saturating_sub(started.elapsed()));
    poll_until(
        &format!("{ready} to answer 200"),
        remaining,
        Duration::from_secs(3),
        || async {
            Ok(match client.get(&ready).send().await {
                Ok(response) if response.status().is_success() => Some(()),
                _ => None,
            })
        },
    )
    .await?;
    notes.push(format!("{ready} answers 200"));
    Ok(notes)
}
