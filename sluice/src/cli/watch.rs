//! `--watch`: a command's answer printed again each time it changes, as
//! `watch` or `kubectl get -w` would, until the thing watched is settled or
//! the reader goes away.

use std::future::Future;
use std::io::Write;
use std::time::Duration;

use sluice_registry_client::ClientError;

/// How often a watch asks the registry again.
pub const WATCH_POLL: Duration = Duration::from_secs(2);

/// Calls `poll` every `every`; prints its text whenever it differs from the
/// last, under a line with the time; returns once `poll` says it is settled
/// (its last answer), or the reader has gone.
pub async fn watch<F, Fut, T>(every: Duration, mut poll: F) -> Result<Option<T>, ClientError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(String, Option<T>), ClientError>>,
{
    let mut last = String::new();
    loop {
        let (text, settled_opt) = poll().await?;
        if text != last {
            let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now());
            let mut out = std::io::stdout().lock();
            let written = write!(out, "--- {now}\n{text}").and_then(|()| out.flush());
            match written {
                Ok(()) => {}
                Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => return Ok(None),
                Err(err) => return Err(ClientError::Local(format!("cannot write the output: {err}"))),
            }
            last = text;
        }
        if settled_opt.is_some() {
            return Ok(settled_opt);
        }
        tokio::time::sleep(every).await;
    }
}
